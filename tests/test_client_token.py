"""The Python clients with only a read token, against a real gateway run with API keys.

A backend holding the key mints ``POST /v1/streams/{id}/token``; a client given only that
token reads the one stream (events, snapshot, the openai view) and can neither cancel it nor
start another."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import serve_asgi

from tokenwire.client import AsyncClient, Client, GatewayError
from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app

PROMPT = [{"role": "user", "content": "hi"}]
KEY = "k-backend"


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as mock_url:
        settings = Settings(
            upstream=f"{mock_url}/v1", coalesce_ms=0, api_keys=(KEY,), secret="test-secret"
        )
        with serve_asgi(create_app(settings)) as url:
            yield url


def mint(gateway: str, stream_id: str) -> str:
    response = httpx.post(
        f"{gateway}/v1/streams/{stream_id}/token",
        json={"ttl_s": 60},
        headers={"Authorization": f"Bearer {KEY}"},
    )
    assert response.status_code == 200, response.text
    return response.json()["token"]


def test_a_token_only_client_reads_its_stream_and_cannot_cancel(gateway: str) -> None:
    with Client(gateway, api_key=KEY) as backend:
        # Paced, so it is still being written while the reader tries to cancel it.
        live = backend.create(PROMPT, model="mock", mock={"tps": 400})
        other = backend.create(PROMPT, model="mock").wait()
    token = mint(gateway, live.id)

    with Client(gateway, token=token) as reader:
        with pytest.raises(GatewayError) as refused:
            reader.cancel(live.id)
        assert refused.value.status == 401
        with pytest.raises(GatewayError) as refused:
            reader.create(PROMPT, model="mock")
        assert refused.value.status == 401

        message = reader.stream(live.id).wait()  # events, from the start
        assert message.status == "completed" and message.text  # never cancelled
        snap = reader.get(live.id)
        assert snap["status"] == "completed"
        assert snap["message"] == message.to_dict()
        chunks = list(reader.openai_chunks(live.id))
        assert (
            "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
            == message.text
        )

        with pytest.raises(GatewayError) as other_stream:  # the token names one stream
            reader.get(other.id)
        assert other_stream.value.status in (401, 404)

    with Client(gateway) as nobody, pytest.raises(GatewayError) as no_token:
        nobody.get(live.id)
    assert no_token.value.status == 401


async def test_the_async_client_takes_a_token_too(gateway: str) -> None:
    async with AsyncClient(gateway, api_key=KEY) as backend:
        live = await backend.create(PROMPT, model="mock", mock={"tps": 400})
    token = mint(gateway, live.id)
    async with AsyncClient(gateway, token=token) as reader:
        with pytest.raises(GatewayError) as refused:
            await reader.cancel(live.id)
        assert refused.value.status == 401
        message = await reader.stream(live.id).wait()
        assert message.status == "completed" and message.text
        assert (await reader.get(live.id))["message"] == message.to_dict()
        chunks = [c async for c in reader.openai_chunks(live.id)]
        assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)
    async with AsyncClient(gateway, token="forged" + token) as forged:
        with pytest.raises(GatewayError) as bad:
            await forged.get(live.id)
        assert bad.value.status == 401
