"""``max_event_bytes`` and ``max_stream_bytes`` reach every pipe: the gateway's settings and
the library's parameters.

An upstream SSE event bigger than the limit ends the stream ``failed`` with error type
``event_too_large``; an upstream that sends more than ``max_stream_bytes`` in all (one that
never ends) ends it ``failed`` with ``stream_too_large``. Either way what the upstream sent
before stays in the message."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import httpx
import msgspec
import pytest
from conftest import serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tokenwire import Streams, StreamWriter
from tokenwire.errors import StreamEnded
from tokenwire.gateway import Settings, create_app
from tokenwire.protocol.sse import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_STREAM_BYTES

LIMIT = 4096


def chunk(content: str | None = None, *, finish: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + msgspec.json.encode(body) + b"\n\n"


def body(big: int) -> list[bytes]:
    """'partial ' as two small events, then one event of about ``big`` bytes, then the end."""
    return [
        chunk("part"),
        chunk("ial "),
        chunk("x" * big),
        chunk(finish="stop"),
        b"data: [DONE]\n\n",
    ]


async def parts(big: int) -> AsyncIterator[bytes]:
    for piece in body(big):
        yield piece
        await asyncio.sleep(0.01)  # (each event its own read, as over a network)


async def endless() -> AsyncIterator[bytes]:
    """An upstream that never ends: text as fast as it is read."""
    while True:
        yield chunk("y" * 1000) * 4
        await asyncio.sleep(0)


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    async def completions(request: Request) -> StreamingResponse:
        asked = await request.json()
        if asked.get("endless"):
            return StreamingResponse(endless(), media_type="text/event-stream")
        big = int(asked.get("big", 0) or request.query_params.get("big", 0))
        return StreamingResponse(parts(big), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])
    with serve_asgi(app) as url:
        yield f"{url}/v1"


def gateway_generation(upstream: str, big: int) -> dict:
    settings = Settings(upstream=upstream, coalesce_ms=0, max_event_bytes=LIMIT)
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url, timeout=20) as http:
        created = http.post(
            "/v1/streams",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "big": big},
        )
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
        with http.stream("GET", f"/v1/streams/{stream_id}/events") as events:
            events.read()  # until message.end
        snap = http.get(f"/v1/streams/{stream_id}")
        assert snap.status_code == 200, snap.text
        return snap.json()


def test_the_gateway_fails_an_oversized_event_and_keeps_the_partial(upstream: str) -> None:
    snap = gateway_generation(upstream, 2 * LIMIT)
    message = snap["message"]
    assert snap["status"] == message["status"] == "failed"
    assert message["error"]["type"] == "event_too_large"
    assert str(LIMIT) in message["error"]["message"]
    assert message["blocks"] == [{"type": "text", "text": "partial "}]


def test_the_gateway_takes_an_event_under_its_limit(upstream: str) -> None:
    message = gateway_generation(upstream, LIMIT // 2)["message"]
    assert message["status"] == "completed" and message["error"] is None
    assert message["blocks"] == [{"type": "text", "text": "partial " + "x" * (LIMIT // 2)}]


async def bytes_of(big: int) -> AsyncIterator[bytes]:
    for piece in body(big):
        yield piece


async def run(streams: Streams, produce) -> dict:  # type: ignore[no-untyped-def]
    handle = await streams.start(produce)
    await streams.wait(handle.id, 5)
    return (await streams.message(handle.id)).to_dict()


async def test_streams_and_pipe_take_a_max_event_bytes() -> None:
    assert Streams().max_event_bytes == DEFAULT_MAX_EVENT_BYTES
    with pytest.raises(ValueError):
        Streams(max_event_bytes=0)
    raised: list[BaseException] = []

    async def pipe_default(w: StreamWriter) -> None:
        try:
            await w.pipe(bytes_of(2 * LIMIT))
        except StreamEnded as exc:
            raised.append(exc)
            raise

    async with Streams(coalesce_ms=0, max_event_bytes=LIMIT) as streams:
        message = await run(streams, pipe_default)
        assert message["status"] == "failed" and message["error"]["type"] == "event_too_large"
        assert message["blocks"] == [{"type": "text", "text": "partial "}]
        assert len(raised) == 1

        async def pipe_raised(w: StreamWriter) -> None:  # the pipe's own limit wins
            await w.pipe(bytes_of(2 * LIMIT), max_event_bytes=4 * LIMIT)

        message = await run(streams, pipe_raised)
        assert message["status"] == "completed"
        assert message["blocks"][0]["text"] == "partial " + "x" * (2 * LIMIT)

    async with Streams(coalesce_ms=0) as streams:

        async def pipe_lowered(w: StreamWriter) -> None:
            await w.pipe(bytes_of(2 * LIMIT), "chat", max_event_bytes=LIMIT)

        message = await run(streams, pipe_lowered)
        assert message["error"]["type"] == "event_too_large"
        assert message["blocks"] == [{"type": "text", "text": "partial "}]


def test_the_gateway_ends_an_endless_upstream_at_max_stream_bytes(upstream: str) -> None:
    limit = 256 * 1024
    settings = Settings(upstream=upstream, coalesce_ms=0, max_stream_bytes=limit)
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url, timeout=20) as http:
        created = http.post(
            "/v1/streams",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}], "endless": 1},
        )
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
        with http.stream("GET", f"/v1/streams/{stream_id}/events") as events:
            events.read()  # until message.end: it comes
        snap = http.get(f"/v1/streams/{stream_id}").json()
    message = snap["message"]
    assert snap["status"] == message["status"] == "failed"
    assert message["error"]["type"] == "stream_too_large"
    assert str(limit) in message["error"]["message"]
    text = message["blocks"][0]["text"]
    assert set(text) == {"y"} and limit // 2 < len(text) <= limit  # what came is kept


async def test_streams_and_pipe_take_a_max_stream_bytes() -> None:
    assert Streams().max_stream_bytes == DEFAULT_MAX_STREAM_BYTES
    for bad in (0, -1, 1.5, "9"):
        with pytest.raises(ValueError, match="max_stream_bytes"):
            Streams(max_stream_bytes=bad)  # type: ignore[arg-type]
    raised: list[BaseException] = []

    async def pipe_endless(w: StreamWriter) -> None:
        try:
            await w.pipe(endless(), "chat")
        except StreamEnded as exc:
            raised.append(exc)
            raise

    async with Streams(coalesce_ms=0, max_stream_bytes=50_000) as streams:
        message = await run(streams, pipe_endless)
        assert message["status"] == "failed"
        assert message["error"]["type"] == "stream_too_large"
        assert "50000" in message["error"]["message"]
        assert 0 < len(message["blocks"][0]["text"]) <= 50_000
        assert len(raised) == 1

        async def pipe_own_limit(w: StreamWriter) -> None:  # the pipe's own limit wins
            await w.pipe(bytes_of(100), max_stream_bytes=10)

        message = await run(streams, pipe_own_limit)
        assert message["error"]["type"] == "stream_too_large" and message["blocks"] == []

        async def pipe_small(w: StreamWriter) -> None:  # a whole answer under the limit
            await w.pipe(bytes_of(100))

        message = await run(streams, pipe_small)
        assert message["status"] == "completed"

        refused: list[BaseException] = []

        async def pipe_bad(w: StreamWriter) -> None:
            try:
                await w.pipe(bytes_of(100), max_stream_bytes=0)
            except ValueError as exc:
                refused.append(exc)
            await w.pipe(bytes_of(100))

        message = await run(streams, pipe_bad)
        assert "max_stream_bytes" in str(refused[0]) and message["status"] == "completed"
