"""Bad arguments to ``Streams`` and ``StreamWriter`` are typed errors that write nothing, and
nothing a host does (a bad value, a close during its ``on_end``) leaves a stream unended."""

from __future__ import annotations

import asyncio
import datetime
import decimal
from typing import Any

import httpx
import pytest
from conftest import serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from tokenwire import Streams, StreamWriter
from tokenwire.errors import InvalidArgument, Unauthorized
from tokenwire.streams.store import MemoryStore

BAD_CALLS: dict[str, Any] = {
    "text(123)": lambda w: w.text(123),
    "text(None)": lambda w: w.text(None),
    "text(b'x')": lambda w: w.text(b"x"),
    "reasoning(1.5)": lambda w: w.reasoning(1.5),
    "refusal([])": lambda w: w.refusal([]),
    "text choice='a'": lambda w: w.text("x", choice="a"),
    "text choice=-1": lambda w: w.text("x", choice=-1),
    "image(None)": lambda w: w.image(None),
    "file(url, None)": lambda w: w.file("https://f.example/a", None),
    "tool_call(1, 'n')": lambda w: w.tool_call(1, "n"),
    "tool_call args object()": lambda w: w.tool_call("c", "n", object()),
    "tool_result(5, 'x')": lambda w: w.tool_result(5, "x"),
    "tool_result output object()": lambda w: w.tool_result("c", object()),
    "data(123, 1)": lambda w: w.data(123, 1),
    "data id=5": lambda w: w.data("n", 1, id=5),
    "source span True..2": lambda w: w.source("https://s.example", start=True, end=2),
    "source cited_text=5": lambda w: w.source("https://s.example", cited_text=5),
    "pipe format": lambda w: w.pipe([b""], "bogus"),
    "pipe max_event_bytes=0": lambda w: w.pipe([b""], max_event_bytes=0),
    "pipe(object())": lambda w: w.pipe(object()),
    "fail(None)": lambda w: w.fail(None),
    "fail code=1.5": lambda w: w.fail("x", code=1.5),
}
# What passed the type checks and then could not be encoded, failing every later op and the
# end (nothing stored, on_end never run): a lone surrogate (from ``surrogateescape``
# decoding or a JSON "\ud83d" escape), and values the encoder would silently change.
LONE = "bad \ud83d surrogate"
BAD_CALLS.update(
    {
        "text lone surrogate": lambda w: w.text(LONE),
        "reasoning lone surrogate": lambda w: w.reasoning(LONE),
        "refusal lone surrogate": lambda w: w.refusal(LONE),
        "tool_call name lone surrogate": lambda w: w.tool_call("c1", LONE, "{}"),
        "tool_call arguments lone surrogate": lambda w: w.tool_call("c1", "f", LONE),
        "tool_result output lone surrogate": lambda w: w.tool_result("c1", LONE),
        "tool_result call_id lone surrogate": lambda w: w.tool_result(LONE, "ok"),
        "source url lone surrogate": lambda w: w.source(LONE),
        "source title lone surrogate": lambda w: w.source("https://x.example/", title=LONE),
        "image lone surrogate": lambda w: w.image(LONE),
        "file lone surrogate": lambda w: w.file(LONE, "text/plain"),
        "data name lone surrogate": lambda w: w.data(LONE, 1),
        "data value lone surrogate": lambda w: w.data("d", {"v": LONE}),
        "data nan": lambda w: w.data("d", {"v": float("nan")}),
        "data inf": lambda w: w.data("d", [float("inf")]),
        "data int key": lambda w: w.data("d", {1: "one"}),
        # ("before " is 7 characters, held back when coalescing: a span may end at 7, not 8)
        "source span past its text": lambda w: w.source("https://x.example/", start=0, end=8),
        # JSON would give these back as something else (a string, a list): refused.
        "data bytes": lambda w: w.data("d", {"v": b"raw"}),
        "data set": lambda w: w.data("d", {1, 2}),
        "data datetime": lambda w: w.data("d", [datetime.datetime(2026, 1, 1)]),
        "data decimal": lambda w: w.data("d", decimal.Decimal("1.5")),
        "tool_result nan": lambda w: w.tool_result("c1", {"v": float("nan")}),
        "fail lone surrogate": lambda w: w.fail(LONE),
    }
)


@pytest.mark.parametrize("coalesce_ms", [0, 20])
@pytest.mark.parametrize("name", sorted(BAD_CALLS))
def test_a_bad_writer_argument_is_invalid_argument_and_loses_nothing(
    name: str, coalesce_ms: int
) -> None:
    caught: list[BaseException] = []

    async def answer(w: StreamWriter) -> None:
        await w.text("before ")
        try:
            await BAD_CALLS[name](w)
        except Exception as exc:
            caught.append(exc)
        await w.text("after")

    ended: list[str] = []

    async def on_end(row: Any, message: Any) -> None:
        ended.append(row.id)

    async def main() -> Any:
        store = MemoryStore()
        async with Streams(store=store, coalesce_ms=coalesce_ms, on_end=on_end) as streams:
            handle = await streams.start(answer)
            assert await asyncio.wait_for(streams.wait(handle.id), 10) == "completed"
            assert await store.get(handle.id) is not None and ended == [handle.id]
            return await streams.message(handle.id)

    message = asyncio.run(main())
    assert len(caught) == 1 and isinstance(caught[0], InvalidArgument), caught
    assert [b["text"] for b in message.to_dict()["blocks"]] == ["before after"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"coalesce_ms": "abc"},
        {"coalesce_ms": -1},
        {"max_event_bytes": 0},
        {"max_event_bytes": "1"},
        {"secret": 123},
        {"secret": ""},
        {"on_end": 5},
    ],
)
def test_bad_streams_settings_are_invalid_argument(kwargs: dict) -> None:
    with pytest.raises(InvalidArgument):
        Streams(**kwargs)


def test_bad_start_and_token_arguments() -> None:
    async def main() -> None:
        async with Streams(secret="s") as streams:
            for kwargs in (
                {"metadata": "x"},
                {"metadata": {"at": datetime.datetime(2026, 1, 1)}},
                {"metadata": {"note": ["a\x00b"]}},  # (PostgreSQL's jsonb cannot keep it)
                {"owner": "al\x00ice"},
                {"resume_args": {"ids": {1, 2}}},
                {"model": 5},
                {"owner": ["alice"]},
                {"coalesce_ms": "soon"},
                {"resume": "nowhere"},
            ):
                with pytest.raises(InvalidArgument):
                    await streams.start(lambda w: w.text("x"), **kwargs)
            with pytest.raises(InvalidArgument):
                await streams.start(None)  # type: ignore[arg-type]
            for ttl in ("x", None, float("inf"), float("nan"), True):
                with pytest.raises(InvalidArgument):
                    streams.read_token("st_a", ttl_s=ttl)  # type: ignore[arg-type]
            for token in (None, 5, ""):
                with pytest.raises(Unauthorized):
                    streams.check_read_token(token, "st_a")  # type: ignore[arg-type]
            assert streams.active == 0

    asyncio.run(main())


def test_an_int_owner_is_the_same_owner_on_every_route() -> None:
    """``owner=user.id`` with an int id (and ``authorize`` returning it) reads and stops."""
    streams = Streams(coalesce_ms=0, secret="s")

    async def answer(w: StreamWriter) -> None:
        await w.text("hi")

    async def chat(request: Request) -> JSONResponse:
        stream = await streams.start(answer, owner=42)
        await streams.wait(stream.id, 10)
        return JSONResponse({"id": stream.id, "owner": stream.owner})

    app = Starlette(
        routes=[
            Route("/chat", chat, methods=["POST"]),
            Mount("/tw", streams.asgi(authorize=lambda c: 42)),
        ],
        lifespan=streams.lifespan,
    )
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        started = http.post("/chat").json()
        assert started["owner"] == "42"
        sid = started["id"]
        snapshot = http.get(f"/tw/{sid}")
        assert snapshot.json()["message"]["blocks"] == [{"type": "text", "text": "hi"}]
        assert http.get(f"/tw/{sid}/events").status_code == 200
        assert http.post(f"/tw/{sid}/cancel").status_code == 202


def test_close_during_on_end_lets_the_hook_finish_and_ends_the_stream() -> None:
    hook: list[str] = []

    async def main() -> None:
        running = asyncio.Event()

        async def on_end(row, message) -> None:  # type: ignore[no-untyped-def]
            hook.append(f"start {row.status}")
            running.set()
            await asyncio.sleep(0.5)
            hook.append("done")

        streams = Streams(coalesce_ms=0, on_end=on_end)
        await streams.open()
        handle = await streams.start(lambda w: w.text("hi"))
        follower = asyncio.create_task(_follow(streams, handle.id))
        await running.wait()
        await streams.close()  # (cancels the stream's task while its hook runs)
        assert hook == ["start completed", "done"]
        ops = await asyncio.wait_for(follower, 5)
        assert ops[-1] == "message.end"
        info = await streams.hub.info(handle.id)
        assert info is None or info.status == "completed"

    asyncio.run(main())


async def _follow(streams: Streams, stream_id: str) -> list[str]:
    seen = []
    async for op in streams.follow(stream_id):
        seen.append(op.type)
        if op.type == "message.end":
            break
    return seen


def test_values_that_were_valid_stay_valid() -> None:
    """The checks refuse only what could not be written: a tool result for a call without an
    id (harmony calls have none), a str enum owner (its value), a bytearray secret."""
    import enum

    from tokenwire.streams.core import owner_of

    class Tenant(str, enum.Enum):  # noqa: UP042 (the mixin form: its str() is its name)
        ACME = "acme"

    assert owner_of(Tenant.ACME) == "acme" and owner_of(7) == "7" and owner_of(None) is None
    Streams(secret=bytearray(b"k" * 32))

    async def answer(w: StreamWriter) -> None:
        await w.tool_call(None, "f", {"a": 1})
        await w.tool_result(None, {"ok": True})

    async def main() -> Any:
        async with Streams(coalesce_ms=0) as streams:
            handle = await streams.start(answer)
            assert await streams.wait(handle.id, 10) == "completed"
            return await streams.message(handle.id)

    blocks = asyncio.run(main()).to_dict()["blocks"]
    assert [b["type"] for b in blocks] == ["tool_call", "tool_result"]
    assert blocks[1]["call_id"] is None


def test_data_and_metadata_are_kept_as_written_not_as_the_host_changes_them_later() -> None:
    """The message (stored, ``on_end``, a late reader's snapshot) holds the value the live
    readers got, even if the host changes its object after writing it."""
    rows: list[Any] = []

    async def main() -> Any:
        status = {"state": "searching", "hits": [1]}
        metadata = {"chat": "c-1"}

        async def answer(w: StreamWriter) -> None:
            await w.data("status", status, id="status")
            status["state"] = "MUTATED"
            status["hits"].append(2)
            metadata["chat"] = "MUTATED"

        async with Streams(coalesce_ms=0, on_end=lambda row, m: rows.append((row, m))) as s:
            handle = await s.start(answer, metadata=metadata)
            assert await asyncio.wait_for(s.wait(handle.id), 10) == "completed"
            return await s.message(handle.id)

    message = asyncio.run(main())
    row, ended = rows[0]
    for final in (message, ended):
        assert final.to_dict()["blocks"][0]["value"] == {"state": "searching", "hits": [1]}
    assert row.metadata == {"chat": "c-1"}


@pytest.mark.parametrize("coalesce_ms", [0, 20])
def test_a_span_up_to_the_end_of_its_text_is_taken(coalesce_ms: int) -> None:
    async def main() -> Any:
        async def answer(w: StreamWriter) -> None:
            await w.text("before ")
            await w.source("https://x.example/", start=0, end=7)

        async with Streams(coalesce_ms=coalesce_ms) as streams:
            handle = await streams.start(answer)
            assert await asyncio.wait_for(streams.wait(handle.id), 10) == "completed"
            return await streams.message(handle.id)

    blocks = asyncio.run(main()).to_dict()["blocks"]
    assert blocks[1]["span"] == {"block": 0, "start": 0, "end": 7}


def test_a_span_with_no_text_to_cite_is_refused_and_a_plain_source_is_not() -> None:
    """A span before any text named nothing: it was dropped without a word."""
    caught: list[BaseException] = []

    async def main() -> Any:
        async def answer(w: StreamWriter) -> None:
            for span in ((0, 5), (0, 0)):
                try:
                    await w.source("https://x.example/", start=span[0], end=span[1])
                except InvalidArgument as exc:
                    caught.append(exc)
            await w.source("https://x.example/", "X")  # (no span: fine without text)
            await w.text("after")

        async with Streams(coalesce_ms=0) as streams:
            handle = await streams.start(answer)
            assert await asyncio.wait_for(streams.wait(handle.id), 10) == "completed"
            return await streams.message(handle.id)

    blocks = asyncio.run(main()).to_dict()["blocks"]
    assert len(caught) == 2 and "text block" in str(caught[0])
    assert [b["type"] for b in blocks] == ["source", "text"]
    assert "span" not in blocks[0] and blocks[1]["text"] == "after"
