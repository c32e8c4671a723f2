"""Regressions from the v2 review: bad input is a clear, typed error and loses nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import websockets
from conftest import serve_asgi

from tokenwire import Streams
from tokenwire.errors import InvalidArgument, StreamEnded
from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app

PROMPT = [{"role": "user", "content": "hi"}]
DEEP = b"[" * 3000 + b"]" * 3000


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_asgi(create_mock_app()) as mock:
        settings = Settings(
            upstream=f"{mock}/v1",
            coalesce_ms=0,
            cors_origins=("https://app.example",),
            data_dir=str(tmp_path_factory.mktemp("gw")),
        )
        with serve_asgi(create_app(settings)) as url:
            yield url


@pytest.mark.parametrize("path", ["/v1/streams", "/v1/aisdk/chat"])
def test_deeply_nested_request_body_is_a_400(gateway: str, path: str) -> None:
    body = b'{"model":"mock","messages":' + DEEP + b"}"
    response = httpx.post(gateway + path, content=body, timeout=10)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"


def test_deeply_nested_detached_chat_body_is_a_400(gateway: str) -> None:
    body = b'{"model":"mock","stream":true,"messages":' + DEEP + b"}"
    response = httpx.post(
        gateway + "/v1/chat/completions",
        content=body,
        headers={"X-Tokenwire-Detach": "1"},
        timeout=10,
    )
    assert response.status_code == 400, response.text


async def test_deeply_nested_websocket_hello_closes_with_4400(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        created = await http.post("/v1/streams", json={"model": "mock", "messages": PROMPT})
    stream_id = created.json()["id"]
    ws_url = gateway.replace("http://", "ws://") + f"/v1/streams/{stream_id}/ws"
    async with websockets.connect(ws_url) as ws:
        await ws.send(DEEP.decode())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:
                await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


def test_cors_preflight_allows_the_sdks_own_headers(gateway: str) -> None:
    response = httpx.options(
        gateway + "/v1/chat/completions",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "x-stainless-lang, x-stainless-os, content-type",
        },
    )
    assert response.status_code == 200, response.text
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "x-stainless-lang" in allowed


async def _ended(streams: Streams, stream_id: str) -> dict:
    for _ in range(200):
        message = await streams.message(stream_id)
        if message.status != "in_progress":
            return message.to_dict()
        await asyncio.sleep(0.01)
    raise AssertionError("the stream did not end")


async def test_a_200_html_answer_piped_says_what_it_was() -> None:
    async with Streams() as streams:

        async def produce(w) -> None:  # type: ignore[no-untyped-def]
            await w.pipe([b"<!doctype html><html><body>login</body></html>"])

        handle = await streams.start(produce, owner=None)
        message = await _ended(streams, handle.id)
    assert message["status"] == "failed"
    assert message["error"]["type"] == "not_event_stream"
    assert "HTML" in message["error"]["message"]


async def test_invalid_utf8_is_reported_with_format_auto() -> None:
    body = [
        b'data: {"choices":[{"index":0,"delta":{"content":"a\xffb"}}]}\n\n',
        b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\ndata: [DONE]\n\n',
    ]
    async with Streams() as streams:

        async def produce(w) -> None:  # type: ignore[no-untyped-def]
            await w.pipe(body)  # format="auto"

        handle = await streams.start(produce, owner=None)
        message = await _ended(streams, handle.id)
    assert message["status"] == "completed"
    assert message["blocks"][0]["text"] == "a\ufffdb"
    assert message["error"]["type"] == "invalid_utf8"


async def test_bad_writer_arguments_are_typed_and_change_nothing() -> None:
    seen: list[str] = []
    async with Streams() as streams:

        async def produce(w) -> None:  # type: ignore[no-untyped-def]
            await w.text("kept")
            for bad in (
                lambda: w.data("x", object()),
                lambda: w.source("https://a.example", start=5, end=2),
                lambda: w.source(5),
            ):
                with pytest.raises(InvalidArgument):
                    await bad()
                seen.append("refused")
            await w.data("status", "ok", id="s")
            await w.end()
            with pytest.raises(StreamEnded):
                await w.step()

        handle = await streams.start(produce, owner=None)
        message = await _ended(streams, handle.id)
        with pytest.raises(InvalidArgument):
            await streams.start(produce, owner=None, stream_id="a/b")
    assert seen == ["refused"] * 3
    assert message["status"] == "completed"
    assert [b["type"] for b in message["blocks"]] == ["text", "data"]
    assert message["blocks"][0]["text"] == "kept"


@pytest.mark.parametrize("path", ["/v1/streams", "/v1/aisdk/chat", "/v1/chat/completions"])
def test_a_client_leaving_mid_upload_logs_no_traceback(gateway: str, path: str) -> None:
    """A body cut short by the client (``Content-Length`` not reached) used to log a whole
    ``ClientDisconnect`` traceback; now it is a quiet 400 answered to nobody."""
    import logging
    import socket
    import time

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("uvicorn.error")  # (where uvicorn logs an app's exception)
    logger.addHandler(handler)
    try:
        host, port = gateway.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            sock.sendall(f"{head}Content-Length: 100\r\n\r\n".encode() + b'{"messages": [')
            time.sleep(0.2)
        time.sleep(0.3)  # (the gateway notices the disconnect)
        assert httpx.get(f"{gateway}/healthz").status_code == 200
    finally:
        logger.removeHandler(handler)
    errors = [r for r in records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def test_small_input_checks_from_the_bad_input_probe(gateway: str) -> None:
    created = httpx.post(f"{gateway}/v1/streams", json={"model": "mock", "messages": PROMPT})
    stream_id = created.json()["id"]
    # A read token must live at least a second (1e-9 s made one already expired).
    for ttl in (1e-9, 0.5, 0):
        r = httpx.post(f"{gateway}/v1/streams/{stream_id}/token", json={"ttl_s": ttl})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_ttl", ttl
    assert httpx.post(f"{gateway}/v1/streams/{stream_id}/token", json={"ttl_s": 1}).is_success
    # UI messages that convert to no chat message at all: refused before any upstream call.
    empty = [{"id": "a1", "role": "assistant", "parts": [{"type": "step-start"}]}]
    r = httpx.post(f"{gateway}/v1/aisdk/chat", json={"id": "c-empty", "messages": empty})
    assert r.status_code == 400 and r.json()["error"]["code"] == "missing_messages"
    # An empty Last-Event-ID is no cursor (as in the other formats), not a bad one.
    r = httpx.get(
        f"{gateway}/v1/streams/{stream_id}/events?format=responses&catchup=exact",
        headers={"Last-Event-ID": ""},
        timeout=10,
    )
    assert r.status_code == 200 and b"response.created" in r.content


async def test_a_bad_websocket_catchup_is_refused_before_the_hello_wait(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway) as http:
        created = await http.post("/v1/streams", json={"model": "mock", "messages": PROMPT})
    ws_url = gateway.replace("http://", "ws://") + f"/v1/streams/{created.json()['id']}/ws"
    loop = asyncio.get_running_loop()
    async with websockets.connect(f"{ws_url}?catchup=bogus") as ws:
        started = loop.time()
        with pytest.raises(websockets.ConnectionClosed) as closed:
            while True:  # (the JSON error, then the close; no hello sent)
                await asyncio.wait_for(ws.recv(), 5)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400
    assert loop.time() - started < 0.9  # (not after the 1 s wait for a hello)


def test_a_responses_input_must_be_a_string_or_an_array() -> None:
    with serve_asgi(create_mock_app()) as mock:
        settings = Settings(upstream=f"{mock}/v1", upstream_api="responses")
        with serve_asgi(create_app(settings)) as url:
            for bad in (1, True, {"a": 1}, "", []):
                r = httpx.post(f"{url}/v1/streams", json={"model": "mock", "input": bad})
                assert r.status_code == 400, bad
                assert r.json()["error"]["code"] == "missing_input"
            r = httpx.post(f"{url}/v1/streams", json={"model": "mock", "input": "hi"})
            assert r.status_code == 201, r.text
