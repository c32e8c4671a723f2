"""A long catch-up never holds the event loop: computing the frames of a finished stream of
many ops (the views' catch-up, pure CPU) runs on a worker thread, so the loop keeps serving
everything else meanwhile. Before, a 200,000-op log held the loop for about 1.8 s.

The app and a ticker share one event loop here (httpx's in-process ASGI transport): the ticker
measures the longest time the loop was away while the catch-up ran (before the fix: 0.6-1.6 s
for these 120,000 ops, the whole catch-up)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from conftest import http_scope

from tokenwire import Streams, StreamWriter

OPS = 120_000


async def _ticker(stop: asyncio.Event, gaps: list[float]) -> None:
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        gaps.append(now - last)
        last = now


async def _finished_long_stream(streams: Streams) -> Any:
    """A finished stream of ``OPS`` text deltas."""

    async def produce(w: StreamWriter) -> None:
        for i in range(OPS):
            await w.text("x ")
            if i % 5_000 == 0:
                await asyncio.sleep(0)

    handle = await streams.start(produce)
    for _ in range(600):
        if (await streams.lookup(handle.id))[0].status != "in_progress":  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.05)
    return handle


async def _while_ticking(ask: Callable[[httpx.AsyncClient, str], Awaitable[Any]]) -> Any:
    """``ask(client, stream_id)`` on a finished long stream: its result, and the longest
    time the event loop was away meanwhile."""
    streams = Streams(coalesce_ms=0)
    async with streams:
        handle = await _finished_long_stream(streams)
        transport = httpx.ASGITransport(app=streams.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://tw") as client:
            stop, gaps = asyncio.Event(), []
            ticker = asyncio.create_task(_ticker(stop, gaps))
            await asyncio.sleep(0.02)
            result = await ask(client, handle.id)
            stop.set()
            await ticker
    return result, max(gaps)


@pytest.mark.parametrize("query", ["format=openai", "format=aisdk", "format=responses"])
async def test_a_long_catch_up_leaves_the_loop_free(query: str) -> None:
    started = time.perf_counter()
    r, gap = await _while_ticking(
        lambda client, stream_id: client.get(f"/{stream_id}/events?{query}&catchup=exact")
    )
    took = time.perf_counter() - started
    assert r.status_code == 200
    assert len(r.content) > OPS  # (every op's frame: the uncompacted replay)
    # The catch-up takes 0.6-2 s here; the loop was never away for long meanwhile (before:
    # as long as the catch-up; now the worst is a garbage collection in the worker thread,
    # ~0.2 s, which holds the interpreter lock).
    assert gap < 0.5, (gap, took)


async def test_many_readers_of_a_long_log_leave_the_loop_free() -> None:
    """Each reader gathers the log on the loop before its catch-up goes to the worker thread;
    that gathering looks for a newer ``snapshot`` batch by batch, between its yields. Before,
    it scanned the whole log at the end in one go: 20 readers of 120,000 ops held the loop
    0.4-0.9 s (the scans of readers whose reads ended together ran back to back)."""

    async def twenty(client: httpx.AsyncClient, stream_id: str) -> list[httpx.Response]:
        reads = (client.get(f"/{stream_id}/events?format=ops") for _ in range(20))
        return await asyncio.gather(*reads)

    answers, gap = await _while_ticking(twenty)
    assert all(r.status_code == 200 for r in answers)
    assert len({r.content for r in answers}) == 1  # (one compacted snapshot each)
    assert gap < 0.3, gap


async def _read_asgi(app: Any, path: str, query: bytes) -> tuple[int, bytes]:
    """A GET straight through the ASGI app; the body's start and end kept, its size counted
    (joining a 60 MB body on the loop, as an in-process client does, would be a stall of the
    test's own)."""
    status, size, head, tail = 0, 0, b"", b""
    done = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size, head, tail
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            body = message.get("body", b"")
            size += len(body)
            head = head or body[:65536]
            tail = (tail + body)[-65536:]
            if not message.get("more_body"):
                done.set()

    scope = http_scope("GET", path, query, [(b"host", b"tw")])
    await app(scope, receive, send)
    return status, head + b"..." + tail + b" %d" % size


async def _ticking_while(
    go: asyncio.Event, readers: list[asyncio.Task[Any]]
) -> tuple[list[Any], float]:
    """Set ``go`` and wait for the readers: their answers, and the longest time the loop was
    away meanwhile."""
    stop, gaps = asyncio.Event(), []
    ticker = asyncio.create_task(_ticker(stop, gaps))
    await asyncio.sleep(0.02)
    go.set()
    answers = await asyncio.gather(*readers)
    stop.set()
    await ticker
    return answers, max(gaps)


async def test_live_readers_of_a_huge_op_leave_the_loop_free() -> None:
    """Each live reader's view renders each op itself; one op of 12 MB of text (under the
    16 MiB event bound) is split and re-encoded in several events per view: 6 readers of it
    held the loop for ~0.5 s. Ops that big are rendered on the catch-up thread."""
    text = "word " * (12 * 1024 * 1024 // 5)
    go = asyncio.Event()
    streams = Streams(coalesce_ms=0)
    async with streams:

        async def produce(w: StreamWriter) -> None:
            await go.wait()
            await w.text(text)

        handle = await streams.start(produce)
        app = streams.asgi()
        path = f"/{handle.id}/events"
        readers = [
            asyncio.create_task(_read_asgi(app, path, b"format=responses")) for _ in range(6)
        ]
        await asyncio.sleep(0.3)  # (all of them live, waiting for the op)
        answers, gap = await _ticking_while(go, readers)
    for status, body in answers:
        assert status == 200
        assert body.startswith(b"id:0\nevent:response.created\n")
        assert body.endswith(b',"sequence_number":200}\n\n %d' % int(body.rsplit(b" ", 1)[1]))
        assert int(body.rsplit(b" ", 1)[1]) > 5 * len(text)  # (the text in 5 events)
    assert gap < 0.3, gap  # (before: 0.48-0.50 s; now ~0.05 s)


async def test_readers_joining_after_a_huge_text_render_its_end_off_the_loop() -> None:
    """Readers that joined after the text (their catch-up has it) meet only the block's and
    the message's end live; the Responses view renders the whole text again there (its
    ``….done`` events, ``response.completed``). That is off the loop too."""
    text = "word " * (12 * 1024 * 1024 // 5)
    ending = asyncio.Event()
    streams = Streams(coalesce_ms=0)
    async with streams:

        async def produce(w: StreamWriter) -> None:
            await w.text(text)
            await ending.wait()

        handle = await streams.start(produce)
        app = streams.asgi()
        path = f"/{handle.id}/events"
        await asyncio.sleep(0.1)
        readers = [
            asyncio.create_task(_read_asgi(app, path, b"format=responses")) for _ in range(6)
        ]
        await asyncio.sleep(1.5)  # (their catch-ups done, all live)
        answers, gap = await _ticking_while(ending, readers)
    for status, body in answers:
        assert status == 200 and int(body.rsplit(b" ", 1)[1]) > 5 * len(text)
    assert gap < 0.3, gap  # (before: ~0.09 s per reader, one after another)


async def test_live_renders_do_not_wait_behind_a_catch_up() -> None:
    """Live renders have a thread of their own: with the catch-up thread busy (here: held),
    a live reader of a huge op still gets it."""
    import threading

    from tokenwire.streams import views_http

    held = threading.Event()
    blocker = views_http.worker_thread("tokenwire-catch-up").submit(held.wait, 30)
    try:
        streams = Streams(coalesce_ms=0)
        async with streams:
            go = asyncio.Event()

            async def produce(w: StreamWriter) -> None:
                await go.wait()
                await w.text("x" * (2 * 1024 * 1024))

            handle = await streams.start(produce)
            app = streams.asgi()
            reader = asyncio.create_task(_read_asgi(app, f"/{handle.id}/events", b"format=openai"))
            await asyncio.sleep(0.2)
            go.set()
            status, body = await asyncio.wait_for(reader, 20)
        assert status == 200 and body.endswith(b"data: [DONE]\n\n %d" % int(body.rsplit(b" ")[-1]))
        assert not blocker.done()  # (the catch-up thread was held all along)
    finally:
        held.set()
        blocker.result(5)


async def test_a_catch_up_of_few_but_huge_ops_leaves_the_loop_free() -> None:
    """A catch-up goes to the worker thread for a long log, and for a short one of big ops:
    6 readers of a finished 12 MB text (a few ops) held the loop ~0.1 s each."""
    text = "word " * (12 * 1024 * 1024 // 5)
    streams = Streams(coalesce_ms=0)
    async with streams:

        async def produce(w: StreamWriter) -> None:
            await w.text(text)

        handle = await streams.start(produce)
        await streams.wait(handle.id, 10)
        app = streams.asgi()
        stop, gaps = asyncio.Event(), []
        ticker = asyncio.create_task(_ticker(stop, gaps))
        await asyncio.sleep(0.02)
        path = f"/{handle.id}/events"
        answers = await asyncio.gather(
            *(_read_asgi(app, path, b"format=responses") for _ in range(6))
        )
        stop.set()
        await ticker
    for status, body in answers:
        assert status == 200 and int(body.rsplit(b" ", 1)[1]) > 4 * len(text)
    assert max(gaps) < 0.3, max(gaps)
