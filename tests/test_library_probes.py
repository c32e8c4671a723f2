"""What a probe of issue 13 (the library) found: ``close()`` right after ``start()`` still ends
the stream, arguments a stream cannot carry are refused by the call that got them (see also
tests/test_writer_arguments.py), and host mistakes (a URL for a store, an unusable owner) are
named."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from conftest import serve_asgi
from starlette.applications import Starlette
from starlette.routing import Mount

from tokenwire import Streams, StreamWriter
from tokenwire.errors import InvalidArgument


def test_close_right_after_start_ends_the_stream() -> None:
    """(A task cancelled before its first line never wrote the shutdown end: the stream
    stayed in_progress and ``on_end`` never ran.)"""
    ended: list[str] = []

    async def main() -> Any:
        async def on_end(row: Any, message: Any) -> None:
            ended.append(row.status)

        hub_streams = Streams(coalesce_ms=0, on_end=on_end)
        async with hub_streams as streams:
            handle = await streams.start(lambda w: asyncio.sleep(30))
        return await hub_streams.hub.info(handle.id)

    info = asyncio.run(main())
    assert info is not None and info.status == "failed"
    assert ended == ["failed"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metadata": {"x": object()}},
        {"metadata": {"x": float("nan")}},
        {"metadata": {2: "int key"}},
    ],
)
def test_start_refuses_metadata_json_cannot_carry(kwargs: dict[str, Any]) -> None:
    async def main() -> None:
        async with Streams(coalesce_ms=0) as streams:
            with pytest.raises(InvalidArgument, match="metadata"):
                await streams.start(lambda w: w.text("x"), **kwargs)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("kwargs", "said"),
    [
        ({"store": "sqlite:///tmp/x.db"}, "store must be a StreamStore"),
        ({"store": object()}, "store must be a StreamStore"),
        ({"hub": "redis://127.0.0.1:6379"}, "hub must be a Hub"),
    ],
)
def test_streams_refuses_what_is_not_a_store_or_a_hub(kwargs: dict[str, Any], said: str) -> None:
    """(A store URL was accepted, and every final message was then lost with a logged
    AttributeError.)"""
    with pytest.raises(InvalidArgument, match=said):
        Streams(**kwargs)


def test_a_refused_pipe_opens_no_step() -> None:
    sse = [
        b'data: {"choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}]}\n\n',
        b"data: [DONE]\n\n",
    ]

    async def main() -> Any:
        async def produce(w: StreamWriter) -> None:
            await w.pipe(sse)
            for bad in (12345, None, object()):
                with pytest.raises(InvalidArgument, match="cannot pipe"):
                    await w.pipe(bad)
            await w.pipe(sse)

        async with Streams(coalesce_ms=0) as streams:
            handle = await streams.start(produce)
            await streams.wait(handle.id, 5)
            return await streams.message(handle.id)

    message = asyncio.run(main())
    assert [(b.type, b.step) for b in message.blocks] == [("text", 0), ("text", 1)]


def test_authorize_returning_an_unusable_owner_is_a_json_500() -> None:
    class User:
        pass

    streams = Streams(coalesce_ms=0, secret="s")
    app = Starlette(
        routes=[Mount("/tw", streams.asgi(lambda request: User()))], lifespan=streams.lifespan
    )
    with serve_asgi(app) as url:
        got = httpx.get(f"{url}/tw/st_0123456789abcdefghij")
    assert got.status_code == 500
    error = got.json()["error"]
    assert error["code"] == "invalid_owner" and "authorize returned" in error["message"]


async def _cancelled_after(streams: Streams, produce: Any, seconds: float) -> Any:
    """Start ``produce``, cancel its stream after ``seconds``; the final message."""
    handle = await streams.start(produce)
    await asyncio.sleep(seconds)
    await streams.cancel(handle.id)
    assert await streams.wait(handle.id, 5) == "cancelled"
    return await streams.message(handle.id)


@pytest.mark.parametrize("coalesce_ms", [0, 20])
def test_a_write_after_the_cancel_reached_the_producer_raises_and_writes_nothing(
    coalesce_ms: int,
) -> None:
    """After a cancel reached the producer (``CancelledError`` at its await), each write
    raises ``CancelledError`` again and writes nothing: never both raised and kept (a host
    that retries on the exception does not write twice), and a producer that swallows the
    cancel is stopped at its next write."""
    outcomes: list[str] = []

    async def main() -> Any:
        async with Streams(coalesce_ms=coalesce_ms) as streams:

            async def produce(w: StreamWriter) -> None:
                await w.text("partial")
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    outcomes.append("cancelled")  # (swallowed: goes on writing)
                for note in (" [stopped]", " [more]"):
                    try:
                        await w.text(note)
                        outcomes.append("ok")
                    except asyncio.CancelledError:
                        outcomes.append("raised")
                await w.text(" [last]")  # (raises: the stream ends cancelled)

            return await _cancelled_after(streams, produce, 0.05)

    message = asyncio.run(main())
    assert outcomes == ["cancelled", "raised", "raised"]
    assert message.text == "partial" and message.status == "cancelled"


@pytest.mark.parametrize("next_step", ["write", "await"])
def test_a_producer_cancelling_its_own_stream_gets_the_cancel_once(next_step: str) -> None:
    """The cancel of its own stream reaches the producer once, at its next write (which
    writes nothing) or, if it awaits something else first, there; its cleanup is not
    cancelled a second time, and the stream ends cancelled after what it wrote before."""
    seen: list[str] = []

    async def main() -> Any:
        async with Streams(coalesce_ms=0) as streams:

            async def produce(w: StreamWriter) -> None:
                await w.text("one")
                await streams.cancel(w.id)
                try:
                    if next_step == "write":
                        await w.text(" two")
                    else:
                        await asyncio.Event().wait()
                except asyncio.CancelledError:
                    seen.append("cancelled")
                    await asyncio.sleep(0.01)
                    seen.append("cleanup done")
                    raise

            handle = await streams.start(produce)
            assert await streams.wait(handle.id, 5) == "cancelled"
            return await streams.message(handle.id)

    message = asyncio.run(main())
    assert seen == ["cancelled", "cleanup done"]
    assert message.status == "cancelled" and message.text == "one"


def test_a_pipe_whose_source_swallows_the_cancel_reads_nothing_more_in() -> None:
    """A client library that swallows ``CancelledError``: the pipe's next read raises the
    cancel again and nothing read after the cancel is in the message."""
    import contextlib
    import json

    def chunk(text: str) -> bytes:
        data = {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {}}]}
        data["choices"][0]["delta"]["content"] = text
        return b"data: " + json.dumps(data).encode() + b"\n\n"

    read: list[str] = []
    cancelled = asyncio.Event()

    async def body() -> Any:
        for i in range(40):
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(0.01)
            read.append(f"t{i} ")
            if cancelled.is_set():
                read.append("|")  # (read after the cancel)
            yield chunk(f"t{i} ")

    async def main() -> Any:
        async with Streams(coalesce_ms=0) as streams:
            handle = await streams.start(lambda w: w.pipe(body()))
            await asyncio.sleep(0.1)
            await streams.cancel(handle.id)
            cancelled.set()
            assert await streams.wait(handle.id, 5) == "cancelled"
            return await streams.message(handle.id)

    message = asyncio.run(main())
    before = "".join(read).split("|")[0]
    assert message.text and before.startswith(message.text)
    assert len(message.text) < len("".join(r for r in read if r != "|"))


def test_a_cancel_during_a_transient_write_reaches_the_producer_at_once() -> None:
    """A cancel that arrives while the producer's transient ``data()`` holds the lock is
    delivered when that write returns (it used to wait for the next write, which then both
    raised and was kept)."""
    seen: list[str] = []

    async def main() -> Any:
        async with Streams(coalesce_ms=0) as streams:
            hub = streams.hub
            real = hub.publish_transient

            async def slow_publish(stream_id: str, op: Any) -> None:
                await asyncio.sleep(0.2)
                await real(stream_id, op)

            hub.publish_transient = slow_publish  # type: ignore[method-assign]

            async def produce(w: StreamWriter) -> None:
                await w.text("a")
                try:
                    await w.data("status", "searching", transient=True)
                except asyncio.CancelledError:
                    seen.append("data raised")
                    raise
                seen.append("went on")
                await w.text(" AFTER")

            return await _cancelled_after(streams, produce, 0.1)

    message = asyncio.run(main())
    assert seen == ["data raised"] and message.text == "a"


def test_a_refused_append_on_the_in_process_hub_still_ends_the_stream() -> None:
    """No other process watches the in-process hub: a refused append (here injected) must
    not leave the stream in progress for good; it ends failed, stored, reported once."""
    from tokenwire.errors import StreamEnded

    ended: list[str] = []

    async def main() -> Any:
        async with Streams(coalesce_ms=0, on_end=lambda row, m: ended.append(row.status)) as s:
            real = s.hub.append
            calls = {"n": 0}

            async def append(stream_id: str, ops: Any) -> None:
                calls["n"] += 1
                if calls["n"] == 3:
                    raise StreamEnded("refused (test)")
                await real(stream_id, ops)

            s.hub.append = append  # type: ignore[method-assign]

            async def produce(w: StreamWriter) -> None:
                for word in ("a", "b", "c"):
                    await w.text(word)

            handle = await s.start(produce)
            assert await s.wait(handle.id, 5) == "failed"
            return await s.message(handle.id)

    message = asyncio.run(main())
    assert message.status == "failed" and ended == ["failed"]
