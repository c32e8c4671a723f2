"""Readers catching up on one finished stream together share one computation
(streams/shared_catch_up.py): before, 20 readers of a 100,000-op answer each computed their
catch-up in turn on the one catch-up thread (the last waited 12-20 s; now about 1 s)."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tokenwire import Streams, StreamWriter
from tokenwire.streams import shared_catch_up, views_http
from tokenwire.streams.shared_catch_up import SharedCatchUps

OPS = 6_000  # (above views_http.OFF_LOOP_OPS: the catch-up runs on the worker thread)


async def test_concurrent_gets_compute_once_and_a_leaving_reader_cancels_nothing() -> None:
    shared = SharedCatchUps()
    calls = 0
    gate = asyncio.Event()

    async def compute() -> list[bytes]:
        nonlocal calls
        calls += 1
        await gate.wait()
        return [b"frame"]

    first = asyncio.create_task(shared.get("k", compute, len))
    others = [asyncio.create_task(shared.get("k", compute, len)) for _ in range(5)]
    await asyncio.sleep(0.01)
    first.cancel()  # (its client went away)
    await asyncio.sleep(0.01)
    gate.set()
    assert [await t for t in others] == [[b"frame"]] * 5
    assert calls == 1
    # Kept for a reader just after; another key computes anew.
    assert await shared.get("k", compute, len) == [b"frame"] and calls == 1
    assert await shared.get("other", compute, len) == [b"frame"] and calls == 2


async def test_failures_and_big_results_are_not_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = SharedCatchUps()
    calls = 0

    async def failing() -> list[bytes]:
        nonlocal calls
        calls += 1
        raise ValueError("bad cursor")

    for _ in range(2):
        with pytest.raises(ValueError):
            await shared.get("bad", failing, len)
    assert calls == 2

    async def big() -> bytes:
        nonlocal calls
        calls += 1
        return b"x" * (shared_catch_up.KEEP_BYTES + 1)

    await shared.get("big", big, len)
    await shared.get("big", big, len)
    assert calls == 4

    # Kept results expire.
    async def small() -> bytes:
        nonlocal calls
        calls += 1
        return b"x"

    await shared.get("small", small, len)
    monkeypatch.setattr(shared_catch_up, "KEEP_S", 0.0)
    await shared.get("small", small, len)
    assert calls == 6
    # ... when their time is up, also with no catch-up coming along after them.
    monkeypatch.setattr(shared_catch_up, "KEEP_S", 0.1)
    await shared.get("idle", small, len)
    await asyncio.sleep(0)  # (the task's done callback)
    assert "idle" in shared._kept
    await asyncio.sleep(0.3)
    assert not shared._kept


def _count_computations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A fresh shared store, and a counter (``[n]``) of the catch-ups actually computed."""
    runs = [0]
    computed = views_http.computed

    async def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        runs[0] += 1
        return await computed(*args, **kwargs)

    monkeypatch.setattr(views_http, "computed", counting)
    monkeypatch.setattr(views_http, "_shared", SharedCatchUps())
    return runs


async def _finished_stream(streams: Streams) -> str:
    async def produce(w: StreamWriter) -> None:
        for i in range(OPS):
            await w.text(f"w{i} ")
            if i % 1_000 == 0:
                await asyncio.sleep(0)

    handle = await streams.start(produce)
    for _ in range(400):
        if (await streams.lookup(handle.id))[0].status != "in_progress":  # type: ignore[union-attr]
            return handle.id
        await asyncio.sleep(0.05)
    raise AssertionError("the stream did not finish")


@pytest.mark.parametrize(
    "query",
    [
        "format=openai",
        "format=aisdk",
        "format=responses&starting_after=3",
        "format=ops",
        "format=aisdk&startIndex=7",
    ],
)
async def test_readers_of_a_finished_stream_share_one_catch_up(
    query: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _count_computations(monkeypatch)
    streams = Streams(coalesce_ms=0)
    async with streams:
        stream_id = await _finished_stream(streams)
        transport = httpx.ASGITransport(app=streams.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://tw") as client:
            together = await asyncio.gather(
                *(client.get(f"/{stream_id}/events?{query}") for _ in range(8))
            )
            assert runs[0] == 1
            # A different cursor is its own computation, and gives other frames.
            other = await client.get(f"/{stream_id}/events?{query}&catchup=exact")
            assert runs[0] == 2
        views_http._shared.clear()
        async with httpx.AsyncClient(transport=transport, base_url="http://tw") as client:
            alone = await client.get(f"/{stream_id}/events?{query}")
        assert runs[0] == 3
    assert all(r.status_code == 200 for r in together)
    assert {r.content for r in together} == {alone.content}
    assert together[0].headers.get("x-workflow-stream-tail-index") == alone.headers.get(
        "x-workflow-stream-tail-index"
    )
    assert other.status_code == 200
    if "startIndex" not in query:  # (a startIndex read is exact either way)
        assert other.content != alone.content


async def test_a_live_stream_is_never_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(views_http, "_shared", SharedCatchUps())
    streams = Streams(coalesce_ms=0)
    release = asyncio.Event()
    async with streams:

        async def produce(w: StreamWriter) -> None:
            for i in range(OPS):
                await w.text(f"w{i} ")
            await release.wait()
            await w.text("end")

        handle = await streams.start(produce)
        while (await streams.lookup(handle.id))[0].seq < OPS:  # type: ignore[union-attr]
            await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=streams.asgi())
        async with httpx.AsyncClient(transport=transport, base_url="http://tw") as client:

            async def read() -> bytes:
                async with client.stream("GET", f"/{handle.id}/events?format=openai") as r:
                    return b"".join([part async for part in r.aiter_bytes()])

            readers = [asyncio.create_task(read()) for _ in range(3)]
            await asyncio.sleep(0.3)
            assert not views_http._shared._running and not views_http._shared._kept
            release.set()
            bodies = await asyncio.gather(*readers)
    assert len(set(bodies)) == 1 and b"end" in bodies[0]


def test_websocket_readers_of_a_finished_stream_share_one_catch_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The WebSocket's merged catch-up (a message past ``max_frame_bytes``) is shared as
    SSE's is: 20 WebSocket readers of a long answer each computed their own, and held the
    event loop for seconds sending them."""
    import threading
    import time

    from conftest import serve_asgi
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from websockets.sync.client import connect

    from tokenwire.protocol import Message, apply_op, decode_op

    runs = _count_computations(monkeypatch)
    streams = Streams(coalesce_ms=0)

    async def start(request):  # type: ignore[no-untyped-def]
        return JSONResponse({"id": await _finished_stream(streams)})

    app = Starlette(
        routes=[
            Route("/start", start, methods=["POST"]),
            Mount("/tw", streams.asgi(max_frame_bytes=2048)),
        ],
        lifespan=streams.lifespan,
    )
    messages: list[Message] = []
    counts: list[int] = []

    def read(url: str) -> None:
        message, count = Message.empty(), 0
        with connect(url) as ws:
            try:
                while True:
                    apply_op(message, decode_op(ws.recv(timeout=20).encode()))
                    count += 1
            except Exception:
                pass
        messages.append(message)
        counts.append(count)

    with serve_asgi(app) as base, httpx.Client(base_url=base, timeout=60) as http:
        stream_id = http.post("/start").json()["id"]
        stored = http.get(f"/tw/{stream_id}").json()["message"]
        url = base.replace("http://", "ws://") + f"/tw/{stream_id}/ws?after=0"
        readers = [threading.Thread(target=read, args=(url,)) for _ in range(8)]
        started = time.monotonic()
        for reader in readers:
            reader.start()
        for reader in readers:
            reader.join(60)
        assert time.monotonic() - started < 60
    assert runs[0] == 1
    assert len(messages) == 8 and all(m.to_dict() == stored for m in messages)
    assert len(set(counts)) == 1 and 10 < counts[0] < OPS // 10  # (merged, not every op)
