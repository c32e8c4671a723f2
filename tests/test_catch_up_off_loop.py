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
