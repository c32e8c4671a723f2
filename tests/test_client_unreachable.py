"""Issue 12, item 16: a gateway that is down is one clear line, not an httpx traceback."""

from __future__ import annotations

import pytest
from conftest import free_port

from tokenwire.cli import main
from tokenwire.client import AsyncClient, Client, GatewayUnreachable


def test_client_calls_raise_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, max_retries=0) as client:
        for call in (
            lambda: client.get("st_x"),
            lambda: client.create([{"role": "user", "content": "hi"}]),
            lambda: client.cancel("st_x"),
        ):
            with pytest.raises(GatewayUnreachable, match="cannot reach the gateway at") as info:
                call()
            assert isinstance(info.value, ConnectionError)
            assert info.value.__cause__ is None and info.value.__suppress_context__
            assert "\n" not in str(info.value)


async def test_async_client_calls_raise_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    async with AsyncClient(url, max_retries=0) as client:
        with pytest.raises(GatewayUnreachable, match="cannot reach the gateway at"):
            await client.get("st_x")
        with pytest.raises(GatewayUnreachable):
            await client.create([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("argv", [["st_x"], ["--prompt", "hi"]])
def test_tail_prints_one_line_when_the_gateway_is_down(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert main(["tail", "--url", url, *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"tokenwire tail: error: cannot reach the gateway at {url}")
    assert "Traceback" not in err
