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
    # A deeply nested body (under the route's 4 KiB) is a 400, not a RecursionError's 500.
    r = httpx.post(f"{gateway}/v1/streams/{stream_id}/token", content=b"[" * 4000)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
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


# -- a v1 contract probe (this session) ---------------------------------------------------------
def test_a_chunk_of_many_choices_is_bounded_and_linear() -> None:
    """One event of 50,000 choices: choices past MAX_CHOICES are ignored (each choice is a
    block: such an event held the event loop for minutes, the assembler being quadratic)."""
    from tokenwire.protocol import assemble_response
    from tokenwire.protocol.normalizer import MAX_CHOICES

    n = 50_000
    first = b",".join(b'{"index":%d,"delta":{"content":"x"}}' % i for i in range(n))
    last = b",".join(b'{"index":%d,"delta":{},"finish_reason":"stop"}' % i for i in range(n))
    body = b'data: {"choices":[%s]}\n\ndata: {"choices":[%s]}\n\ndata: [DONE]\n\n' % (first, last)
    _, message = assemble_response(body, format="chat")
    assert len(message.blocks) == MAX_CHOICES
    assert message.status == "completed"


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/responses", "/v1/messages"])
def test_the_mock_answers_deep_json_with_a_400(path: str) -> None:
    body = b'{"model":"mock","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    with serve_asgi(create_mock_app()) as url:
        response = httpx.post(
            f"{url}{path}", content=body, timeout=20, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400, response.text
    assert "nested too deep" in response.text or "invalid" in response.text.lower()


@pytest.mark.parametrize(
    ("data", "said"),
    [
        (b"data: " + b"[" * 100_000 + b"]" * 100_000 + b"\n\n", "no chat-completion chunks"),
        (b'data: {"foo": 1}\n\n', "no 'choices', 'usage' or 'error'"),
        (b'id:3\ndata:{"type":"block.delta","text":"x"}\n\n', "starts mid-way"),
        (b'{"type":"message.start","x":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n", "too deep"),
    ],
)
def test_replay_of_what_is_no_response_is_one_line_and_exit_2(tmp_path, data, said) -> None:
    import subprocess
    import sys

    path = tmp_path / "in.sse"
    path.write_bytes(data)
    done = subprocess.run(
        [sys.executable, "-m", "tokenwire", "replay", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert said in done.stderr and "Traceback" not in done.stderr


def test_serve_with_an_unusable_data_dir_or_log_level_is_one_line(tmp_path, monkeypatch) -> None:
    from conftest import refused_serve

    afile = tmp_path / "afile"
    afile.write_text("")
    assert "Not a directory" in refused_serve("--data-dir", str(afile / "sub"))
    monkeypatch.setenv("TOKENWIRE_LOG_LEVEL", "bogus")
    assert "TOKENWIRE_LOG_LEVEL" in refused_serve("--data-dir", str(tmp_path / "d"))


def test_with_api_keys_a_malformed_stream_id_is_401_not_404() -> None:
    settings = Settings(upstream="http://127.0.0.1:9/v1", api_keys=("k",))
    with serve_asgi(create_app(settings)) as url:
        assert httpx.get(f"{url}/v1/streams/st_nope").status_code == 401
        assert httpx.get(f"{url}/v1/streams/st_nope/events").status_code == 401
        keyed = httpx.get(f"{url}/v1/streams/st_nope", headers={"Authorization": "Bearer k"})
        assert keyed.status_code == 404


async def test_a_websocket_replay_lets_other_tasks_run_between_batches() -> None:
    """The WebSocket writer's ``send`` yields only once the client's buffer is full, and a
    read of a long log returns at once: a fast reader of a 200,000-op log held the event
    loop 1.7 s (``/healthz`` 1,687 ms; 42 ms now). Other tasks run between batches."""
    from types import SimpleNamespace

    from tokenwire.protocol import encode
    from tokenwire.protocol.ops import BlockDelta, MessageEnd
    from tokenwire.streams.websocket import _ws_write

    delta = encode(BlockDelta(text="x"))
    batches = [[delta] * 1024 for _ in range(5)]
    batches.append([encode(MessageEnd(2, "completed", "stop", None, None))])

    class Cursor:  # (a log already there: every read returns at once)
        done = False

        async def read(self, timeout: float | None = None) -> list:
            batch = batches.pop(0)
            self.done = not batches
            return batch

    sent: list[str] = []

    class Client:  # (a client that reads as fast as it comes: send never waits)
        async def send(self, message: dict) -> None:
            sent.append(message["text"])

    counter = SimpleNamespace(inc=lambda n=1: None)
    metrics = SimpleNamespace(ops_out=counter, bytes_out=counter)
    routes = SimpleNamespace(keepalive_s=1.0, metrics=metrics)
    seen: list[int] = []

    async def other() -> None:
        while True:
            seen.append(len(sent))
            await asyncio.sleep(0)

    ticker = asyncio.ensure_future(other())
    await asyncio.sleep(0)
    await _ws_write(routes, Client(), Cursor())  # type: ignore[arg-type]
    ticker.cancel()
    assert len(sent) == 5 * 1024 + 1
    assert any(0 < n < len(sent) for n in seen), seen  # (it ran in between)
