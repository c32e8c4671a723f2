"""``max_event_bytes`` reaches every pipe: the gateway's setting and the library's parameter.

An upstream SSE event bigger than the limit ends the stream ``failed`` with error type
``event_too_large``; what the upstream sent before it stays in the message."""

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
from tokenwire.protocol.sse import DEFAULT_MAX_EVENT_BYTES

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


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    async def completions(request: Request) -> StreamingResponse:
        big = int((await request.json()).get("big", 0) or request.query_params.get("big", 0))
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
