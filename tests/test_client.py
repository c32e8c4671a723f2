"""The Python clients against a real gateway, including cut connections mid-stream."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import serve_asgi

from tokenwire.client import AsyncClient, Client, GatewayError
from tokenwire.errors import InvalidArgument
from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app
from tokenwire.protocol import Message, Snapshot

PROMPT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as mock_url:
        settings = Settings(upstream=f"{mock_url}/v1", coalesce_ms=0)
        with serve_asgi(create_app(settings)) as url:
            yield url


class CuttingProxy:
    """A TCP proxy that drops every connection after relaying ``budget`` response bytes."""

    def __init__(self, target_port: int, budget: int) -> None:
        self.target_port = target_port
        self.budget = budget
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            server = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self._pump, args=(client, server, None), daemon=True).start()
            threading.Thread(
                target=self._pump, args=(server, client, self.budget), daemon=True
            ).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket, budget: int | None) -> None:
        sent = 0
        try:
            while data := src.recv(65536):
                if budget is not None and sent + len(data) > budget:
                    dst.sendall(data[: budget - sent])
                    break
                dst.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def test_create_iterate_and_message(gateway: str) -> None:
    with Client(gateway) as client:
        stream = client.create(PROMPT, model="mock-reasoning", max_tokens=60)
        ops = list(stream)
        assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
        assert stream.done and stream.seq == ops[-1].seq
        snapshot = client.get(stream.id)
        assert stream.message.to_dict() == snapshot["message"]
        assert stream.message.status == "completed"


def finished(client: Client, stream_id: str) -> None:
    for _ in range(400):
        if client.get(stream_id)["status"] != "in_progress":
            return
        time.sleep(0.025)
    raise AssertionError("the stream did not finish")


def test_created_stream_read_late_still_yields_every_op(gateway: str) -> None:
    """The model ran far ahead (here: to its end) before the first read: ``create``'s stream
    still yields every op from seq 1 (only ``catchup="compact"`` makes that a snapshot)."""
    with Client(gateway) as client:
        exact = client.create(PROMPT, model="mock-reasoning", max_tokens=200)
        compact = client.create(PROMPT, model="mock-reasoning", max_tokens=200, catchup="compact")
        finished(client, exact.id)
        finished(client, compact.id)
        seqs = [op.seq for op in exact]
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 200
        ops = list(compact)
        assert [type(op) for op in ops] == [Snapshot] and ops[0].seq == len(seqs)
        assert exact.message.status == compact.message.status == "completed"
        assert compact.message.to_dict()["blocks"] == exact.message.to_dict()["blocks"]
        with pytest.raises(InvalidArgument):
            client.create(PROMPT, model="mock", catchup="all")  # refused before anything starts


def test_reconnects_and_resumes_through_cut_connections(gateway: str) -> None:
    with Client(gateway) as direct:
        stream = direct.create(PROMPT, model="mock", max_tokens=300, mock={"tps": 2000})
        expected = Message.from_dict(direct.stream(stream.id).wait().to_dict())
    proxy = CuttingProxy(int(gateway.rsplit(":", 1)[1]), budget=2500)
    try:
        with Client(f"http://127.0.0.1:{proxy.port}", max_retries=3) as client:
            followed = client.stream(stream.id, catchup="exact")  # (every op: many cuts)
            seqs = [op.seq for op in followed]
    finally:
        proxy.close()
    assert proxy.connections > 3  # really cut, several times
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing repeated
    assert followed.message == expected


def test_cancel_and_errors(gateway: str) -> None:
    with Client(gateway) as client:
        stream = client.create(PROMPT, model="mock", max_tokens=5000, mock={"tps": 50})
        for op in stream:
            if op.seq >= 3:
                break
        assert stream.cancel() == "cancelled"
        assert stream.wait().status == "cancelled"  # resumes after seq 3 to the end
        with pytest.raises(GatewayError) as err:
            client.get("st_doesnotexistdoesnotexist")
        assert err.value.status == 404 and err.value.code == "stream_not_found"
        with pytest.raises(GatewayError):
            list(client.stream("st_doesnotexistdoesnotexist"))
        with pytest.raises(GatewayError) as bad:
            client.create([])
        assert bad.value.status == 400


def test_gives_up_when_gateway_is_gone() -> None:
    port = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{port.getsockname()[1]}"
    port.close()
    with Client(url, max_retries=1) as client, pytest.raises(ConnectionError):
        list(client.stream("st_abcdefghijklmnopqrstuv"))


async def test_async_client(gateway: str) -> None:
    async with AsyncClient(gateway) as client:
        stream = await client.create(PROMPT, model="mock-tools", coalesce_ms=10)
        seqs = [op.seq async for op in stream]
        assert seqs == list(range(1, len(seqs) + 1))
        snapshot = await client.get(stream.id)
        assert stream.message.to_dict() == snapshot["message"]
        again = client.stream(stream.id)
        assert (await again.wait()) == stream.message
        assert await again.cancel() == "completed"


def test_api_key_is_sent() -> None:
    with serve_asgi(create_mock_app()) as mock_url:
        settings = Settings(upstream=f"{mock_url}/v1", api_keys=("k",))
        with serve_asgi(create_app(settings)) as url:
            with Client(url, api_key="k") as client:
                assert client.create(PROMPT, model="mock").wait().status == "completed"
            with Client(url, api_key="wrong") as client, pytest.raises(GatewayError) as err:
                client.create(PROMPT, model="mock")
            assert err.value.status == 401
            assert httpx.get(f"{url}/healthz").status_code == 200


def test_stream_ids_are_percent_encoded_and_bad_options_refused(gateway: str) -> None:
    """An id given by a user cannot steer the client's key to another route (``..``, ``?``),
    and a coalescing window JSON cannot carry is refused before any request."""
    from tokenwire.errors import InvalidArgument

    with Client(gateway) as client:
        for forged in ("../../v1/models", "st_x?x=1", "a/b"):
            with pytest.raises(GatewayError) as err:
                client.get(forged)
            assert err.value.status == 404, forged
        for bad in (float("nan"), float("inf"), "20"):
            with pytest.raises(InvalidArgument):
                client.create(PROMPT, model="mock", coalesce_ms=bad)  # type: ignore[arg-type]


def test_openai_chunks_retry_a_503_as_the_op_reader_does() -> None:
    """A Redis blip answers 503 (``Retry-After``): ``openai_chunks`` reconnects, as op
    iteration does, instead of raising at once."""
    refusals = {"left": 2}

    def flaky(app):  # type: ignore[no-untyped-def]
        async def wrapped(scope, receive, send):  # type: ignore[no-untyped-def]
            query = scope.get("query_string", b"")
            if scope["type"] == "http" and b"format=openai" in query and refusals["left"]:
                refusals["left"] -= 1
                body = b'{"error":{"message":"hub","type":"server_error","code":"hub_unavailable"}}'
                headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
                await send({"type": "http.response.start", "status": 503, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
            await app(scope, receive, send)

        return wrapped

    with serve_asgi(create_mock_app()) as mock_url:
        app = create_app(Settings(upstream=f"{mock_url}/v1", coalesce_ms=0))
        with serve_asgi(flaky(app)) as url, Client(url) as client:
            stream = client.create(PROMPT, model="mock", max_tokens=20)
            stream.wait()
            chunks = list(client.openai_chunks(stream.id))
    assert refusals["left"] == 0 and chunks
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == stream.message.text


async def _always_503(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while (event := await receive())["type"] != "lifespan.shutdown":
            await send({"type": event["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    error = {"message": "redis down", "type": "service_unavailable", "code": "hub_unavailable"}
    body = json.dumps({"error": error}).encode()
    headers = [(b"content-type", b"application/json"), (b"retry-after", b"1")]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def test_a_lasting_503_ends_in_the_gateways_own_error() -> None:
    """After its retries a reader facing a gateway that keeps answering 503 (Redis down)
    raises that answer as ``GatewayError`` (status, type, code), not "cannot reach": the
    gateway was reached, and said why it could not serve."""
    with serve_asgi(_always_503) as url:
        with Client(url, max_retries=1) as client:
            with pytest.raises(GatewayError) as chunks_error:
                list(client.openai_chunks("st_abc"))
            with pytest.raises(GatewayError) as ops_error:
                list(client.stream("st_abc"))

        async def read_async() -> list[GatewayError]:
            got = []
            async with AsyncClient(url, max_retries=1) as aclient:
                for reader in (aclient.openai_chunks("st_abc"), aclient.stream("st_abc")):
                    with pytest.raises(GatewayError) as caught:
                        async for _ in reader:
                            pass
                    got.append(caught.value)
            return got

        errors = [chunks_error.value, ops_error.value, *asyncio.run(read_async())]
    for error in errors:
        assert (error.status, error.code) == (503, "hub_unavailable"), error
        assert "redis down" in str(error)
