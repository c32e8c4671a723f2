"""What a probe of issue 13 (the library) found: arguments a stream cannot carry are refused by
the call that got them (``InvalidArgument``, nothing written, the stream goes on and ends and
is stored as usual), ``close()`` right after ``start()`` still ends the stream, and host
mistakes (a URL for a store, an unusable owner) are named."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest
from conftest import serve_asgi
from starlette.applications import Starlette
from starlette.routing import Mount

from tokenwire import Streams, StreamWriter
from tokenwire.errors import InvalidArgument
from tokenwire.streams.store import MemoryStore

LONE = "bad \ud83d surrogate"  # (what surrogateescape decoding or a JSON "\ud83d" gives)

CALLS = {
    "text": lambda w: w.text(LONE),
    "reasoning": lambda w: w.reasoning(LONE),
    "refusal": lambda w: w.refusal(LONE),
    "tool_call name": lambda w: w.tool_call("c1", LONE, "{}"),
    "tool_call arguments": lambda w: w.tool_call("c1", "f", LONE),
    "tool_result output": lambda w: w.tool_result("c1", LONE),
    "tool_result call_id": lambda w: w.tool_result(LONE, "ok"),
    "source url": lambda w: w.source(LONE),
    "source title": lambda w: w.source("https://x.example/", title=LONE),
    "image": lambda w: w.image(LONE),
    "file": lambda w: w.file(LONE, "text/plain"),
    "data name": lambda w: w.data(LONE, 1),
    "data value": lambda w: w.data("d", {"v": LONE}),
    "data nan": lambda w: w.data("d", {"v": float("nan")}),
    "data inf": lambda w: w.data("d", [float("inf")]),
    "data int key": lambda w: w.data("d", {1: "one"}),
    "tool_result nan": lambda w: w.tool_result("c1", {"v": float("nan")}),
    "fail message": lambda w: w.fail(LONE),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_an_argument_the_log_cannot_carry_is_refused_and_the_stream_goes_on(call: str) -> None:
    """(A lone surrogate used to pass the type check, move the writer's seq, then fail the
    op's encoding: every later op and the end were refused, nothing was stored.)"""
    ended: list[str] = []

    async def main() -> tuple[str, Any, Any]:
        refused: list[BaseException] = []

        async def produce(w: StreamWriter) -> None:
            await w.text("kept ")
            try:
                await CALLS[call](w)
            except InvalidArgument as exc:
                refused.append(exc)
            await w.text("and more")

        async def on_end(row: Any, message: Any) -> None:
            ended.append(row.id)

        store = MemoryStore()
        async with Streams(store=store, coalesce_ms=0, on_end=on_end) as streams:
            handle = await streams.start(produce)
            status = await streams.wait(handle.id, 5)
            row = await store.get(handle.id)
        assert refused, call
        return status, row, handle

    status, row, handle = asyncio.run(main())
    assert status == "completed" and row is not None and ended == [handle.id]
    blocks = msgspec.json.decode(row.message)["blocks"]
    assert [b["text"] for b in blocks] == ["kept and more"]


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
