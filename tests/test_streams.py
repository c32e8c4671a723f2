"""Streams + StreamWriter: detached generations written by host code and by piped upstreams."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tokenwire import Streams, StreamWriter, TokenwireError
from tokenwire.errors import NotStarted, StreamEnded, StreamExists, StreamNotFound, Unauthorized
from tokenwire.protocol import Message, apply_ops, assemble_response
from tokenwire.streams import MemoryStore, StoredStream

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


async def chunks(data: bytes, size: int = 7):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def ops_of(streams: Streams, stream_id: str) -> list:
    return [op async for op in streams.follow(stream_id)]


async def test_written_message_round_trips_through_the_ops() -> None:
    async with Streams(coalesce_ms=0) as streams:
        written: dict[str, Message] = {}

        async def produce(w: StreamWriter) -> None:
            await w.source("https://docs.example/a", title="A")
            await w.reasoning("thinking")
            await w.text("Hello, ")
            await w.text("world")
            await w.tool_call("call_1", "search", {"q": "x"})
            await w.image("https://img.example/1.png")
            written["m"] = w.message

        handle = await streams.start(produce, owner="u1", metadata={"chat": 1})
        assert handle.id.startswith("st_")
        assert await streams.wait(handle.id, 5) == "completed"
        ops = await ops_of(streams, handle.id)
        rebuilt = apply_ops(ops)
        final = await streams.message(handle.id)
        assert rebuilt.to_dict() == final.to_dict() == written["m"].to_dict()
        assert [b["type"] for b in final.to_dict()["blocks"]] == [
            "source",
            "reasoning",
            "text",
            "tool_call",
            "image",
        ]
        assert final.to_dict()["blocks"][3]["arguments"] == '{"q":"x"}'
        assert final.status == "completed" and final.finish_reason is None
        assert [op.seq for op in ops] == list(range(1, len(ops) + 1))


@pytest.mark.parametrize(
    "name", ["openai_text.sse", "openai_parallel_tools.sse", "openai_include_usage.sse"]
)
async def test_pipe_gives_the_pipelines_message(name: str) -> None:
    data = fixture(name)
    expected = assemble_response(data, stream_id="x")[1].to_dict()
    async with Streams(coalesce_ms=0) as streams:
        results = []

        async def produce(w: StreamWriter) -> None:
            results.append(await w.pipe(chunks(data)))

        handle = await streams.start(produce, stream_id="x")
        await streams.wait("x", 5)
        final = (await streams.message(handle.id)).to_dict()
        assert final == expected
        result = results[0]
        assert result.finish_reason == expected["finish_reason"]
        assert result.usage == expected["usage"]
        calls = [b for b in expected["blocks"] if b["type"] == "tool_call"]
        assert [(c.id, c.name, c.arguments) for c in result.tool_calls] == [
            (b["id"], b["name"], b["arguments"]) for b in calls
        ]


async def test_two_pipes_and_host_writes_make_one_message() -> None:
    tools = fixture("openai_parallel_tools.sse")
    text = fixture("openai_include_usage.sse")
    async with Streams(coalesce_ms=0) as streams:

        async def produce(w: StreamWriter) -> None:
            await w.source("https://docs.example/a", "A")
            first = await w.pipe(chunks(tools, 13))
            assert first.finish_reason == "tool_calls" and first.tool_calls
            for call in first.tool_calls:
                await w.tool_result(call.id or "", {"ok": True})
            second = await w.pipe(chunks(text, 5))
            assert second.finish_reason == "stop"

        handle = await streams.start(produce)
        assert await streams.wait(handle.id, 5) == "completed"
        ops = await ops_of(streams, handle.id)
        final = await streams.message(handle.id)
        assert apply_ops(ops).to_dict() == final.to_dict()
        kinds = [b["type"] for b in final.to_dict()["blocks"]]
        assert kinds[0] == "source" and kinds.count("tool_call") == 2 and kinds[-1] == "text"
        assert final.finish_reason == "stop"  # the last call's reason


async def test_pipe_errors_fail_the_stream_and_keep_the_partial() -> None:
    async with Streams(coalesce_ms=0) as streams:

        async def cut(w: StreamWriter) -> None:
            await w.text("before ")
            await w.pipe(chunks(fixture("truncated.sse")))

        async def error(w: StreamWriter) -> None:
            await w.pipe(chunks(fixture("error_mid_stream.sse")))

        a = await streams.start(cut)
        b = await streams.start(error)
        assert await streams.wait(a.id, 5) == "failed"
        assert await streams.wait(b.id, 5) == "failed"
        msg = await streams.message(a.id)
        assert msg.error is not None and msg.error["type"] == "truncated"
        assert msg.to_dict()["blocks"][0]["text"].startswith("before ")
        expected = assemble_response(fixture("error_mid_stream.sse"))[1].to_dict()
        assert (await streams.message(b.id)).to_dict()["error"] == expected["error"]


async def test_cancel_ends_cancelled_and_keeps_the_partial() -> None:
    async with Streams(coalesce_ms=0) as streams:
        seen: list[str] = []

        async def produce(w: StreamWriter) -> None:
            await w.text("partial")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise

        handle = await streams.start(produce)
        await asyncio.sleep(0.05)
        assert await streams.cancel(handle.id) == "in_progress"
        assert await streams.wait(handle.id, 5) == "cancelled"
        msg = await streams.message(handle.id)
        assert msg.to_dict()["blocks"][0]["text"] == "partial" and seen == ["cancelled"]
        with pytest.raises(StreamEnded):
            await handle.writer.text("late")  # a writer used after its generation ended
        assert await streams.cancel(handle.id) == "cancelled"  # idempotent


async def test_exceptions_fail_the_stream_and_typed_errors() -> None:
    streams = Streams()
    with pytest.raises(NotStarted, match="lifespan"):
        await streams.start(lambda w: asyncio.sleep(0))
    async with streams:

        async def boom(w: StreamWriter) -> None:
            await w.text("kept")
            raise RuntimeError("secret detail")

        handle = await streams.start(boom, stream_id="mine-1")
        assert await streams.wait("mine-1", 5) == "failed"
        msg = await streams.message("mine-1")
        assert msg.error == {
            "message": "producer error: RuntimeError",
            "type": "internal_error",
            "code": None,
        }
        assert msg.to_dict()["blocks"][0]["text"] == "kept"
        with pytest.raises(StreamExists):
            await streams.start(boom, stream_id="mine-1")
        with pytest.raises(StreamNotFound):
            await streams.message("nope")
        with pytest.raises(StreamNotFound):
            await streams.cancel("nope")
        with pytest.raises(StreamEnded):
            await handle.writer.end()
        assert issubclass(StreamEnded, TokenwireError)


async def test_on_end_runs_before_the_end_is_visible_and_may_fail() -> None:
    store = MemoryStore()
    calls: list[tuple[str, str]] = []

    async def on_end(info: StoredStream, message: Message) -> None:
        hub_info = await streams.hub.info(info.id)
        assert hub_info is not None
        calls.append((hub_info.status, message.status))  # not ended in the hub yet
        assert info.metadata == {"chat": 7}
        raise ValueError("the host's database is down")

    streams = Streams(store=store, on_end=on_end)
    async with streams:

        async def produce(w: StreamWriter) -> None:
            await w.text("hi")

        handle = await streams.start(produce, metadata={"chat": 7})
        assert await streams.wait(handle.id, 5) == "completed"
        assert calls == [("in_progress", "completed")]
        row = await store.get(handle.id)
        assert row is not None and row.status == "completed" and row.metadata == {"chat": 7}


async def test_coalescing_holds_fast_text_and_flushes_before_structure() -> None:
    async with Streams(coalesce_ms=50) as streams:

        async def produce(w: StreamWriter) -> None:
            for ch in "abcdefgh":
                await w.text(ch)
            await w.source("https://x.example", "X")
            await w.text("tail")
            await asyncio.sleep(0.2)  # the timer flushes the held "tail"
            await w.text("!")

        handle = await streams.start(produce)
        await streams.wait(handle.id, 5)
        ops = await ops_of(streams, handle.id)
        deltas = [op for op in ops if op.type == "block.delta"]
        assert len(deltas) < 8  # merged
        final = (await streams.message(handle.id)).to_dict()
        # (a source does not close the open text block: the text continues after it)
        assert final["blocks"][0]["text"] == "abcdefghtail!"
        assert apply_ops(ops).to_dict() == final
        source_at = next(op.seq for op in ops if op.type == "block.start" and op.seq > 2)
        held = "".join(op.op.text for op in ops if op.type == "block.delta" and op.seq < source_at)
        assert held == "abcdefgh"  # flushed before the structural op


async def test_read_tokens() -> None:
    streams = Streams(secret="s3cret")
    token = streams.read_token("st_a", ttl_s=60)
    streams.check_read_token(token, "st_a")
    with pytest.raises(StreamNotFound):
        streams.check_read_token(token, "st_b")
    with pytest.raises(Unauthorized):
        streams.check_read_token(token[:-2] + "AA", "st_a")
    with pytest.raises(Unauthorized):
        Streams(secret="other").check_read_token(token, "st_a")
    with pytest.raises(Unauthorized):
        streams.check_read_token("garbage", "st_a")
    expired = streams.read_token("st_a", ttl_s=-1)
    with pytest.raises(Unauthorized, match="expired"):
        streams.check_read_token(expired, "st_a")
    assert time.time()  # (tokens carry wall-clock expiry)


async def test_lifespan_nests_and_restarts() -> None:
    streams = Streams()
    async with streams.lifespan(None):
        async with streams:
            assert streams.started
        assert streams.started
    assert not streams.started
    async with streams:  # a second start works
        handle = await streams.start(lambda w: w.text("x"))
        assert await streams.wait(handle.id, 5) == "completed"


async def test_cancel_lands_after_an_append_in_flight_and_ends_cleanly() -> None:
    from tokenwire.hub import MemoryHub

    class SlowHub(MemoryHub):
        async def append(self, stream_id, ops):  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.05)  # an append in flight when the cancel arrives
            await super().append(stream_id, ops)

    async with Streams(SlowHub(), coalesce_ms=0) as streams:

        async def produce(w: StreamWriter) -> None:
            for i in range(1000):
                await w.text(f"{i} ")

        handle = await streams.start(produce)
        await asyncio.sleep(0.12)
        await streams.cancel(handle.id)
        assert await streams.wait(handle.id, 5) == "cancelled"
        task = handle.writer._task
        assert task is not None
        await asyncio.wait_for(asyncio.shield(task), 5)  # ended normally: not re-cancelled
        assert not task.cancelled() and streams.active == 0
        ops = [op async for op in streams.follow(handle.id)]
        assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
        assert apply_ops(ops).to_dict() == (await streams.message(handle.id)).to_dict()


async def test_a_cancelled_producer_that_swallows_the_cancel_still_ends_cancelled() -> None:
    async with Streams(coalesce_ms=0) as streams:

        async def stubborn(w: StreamWriter) -> None:
            await w.text("partial")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                pass  # returns normally

        async def failing(w: StreamWriter) -> None:
            await w.text("partial")
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                raise RuntimeError("cleanup failed") from None

        a = await streams.start(stubborn)
        b = await streams.start(failing)
        await asyncio.sleep(0.05)
        await streams.cancel(a.id)
        await streams.cancel(b.id)
        assert await streams.wait(a.id, 5) == "cancelled"
        assert await streams.wait(b.id, 5) == "cancelled"


async def test_a_whole_tool_call_ends_its_block_at_once() -> None:
    """``w.tool_call(...)`` writes a complete call: its ``block.end`` follows at once (before
    the host writes anything else), so an AI SDK reader gets ``tool-input-available`` while
    the tool runs, not when the next block starts."""
    from tokenwire.protocol.views import AISDKView

    async with Streams(coalesce_ms=0) as streams:
        gate = asyncio.Event()

        async def produce(w: StreamWriter) -> None:
            await w.tool_call("call_1", "search", {"q": "x"})
            await gate.wait()  # (the tool runs)
            await w.text("done")

        handle = await streams.start(produce)
        view = AISDKView()
        parts: list[str] = []

        async def until_input_available() -> None:
            async for op in streams.follow(handle.id):
                parts.extend(f.data.decode() for f in view.feed(op))
                if any("tool-input-available" in p for p in parts):
                    return

        try:  # (seen while the tool still runs, or never: the gate opens only after)
            await asyncio.wait_for(until_input_available(), 5)
        finally:
            gate.set()
        assert await streams.wait(handle.id, 5) == "completed"
        ops = await ops_of(streams, handle.id)
        kinds = [op.type for op in ops]
        assert kinds[kinds.index("block.start") + 1 : kinds.index("block.start") + 3] == [
            "block.delta",
            "block.end",
        ]


def _token_read(fmt: str, text: str, n: int) -> bytes:
    """One text token as one read of each upstream API's stream."""
    import json

    if fmt == "chat":
        chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
        return b"data: " + json.dumps(chunk).encode() + b"\n\n"
    if fmt == "anthropic":
        event = {"type": "content_block_delta", "index": 0}
        event["delta"] = {"type": "text_delta", "text": text}
    else:
        event = {"type": "response.output_text.delta", "sequence_number": n, "item_id": "m"}
        event.update(output_index=0, content_index=0, delta=text, logprobs=[])
    data = json.dumps(event, separators=(",", ":")).encode()
    return b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n"


_HEADS = {
    "chat": [b'data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant"}}]}\n\n'],
    "anthropic": [
        b'event: message_start\ndata: {"type":"message_start","message":{"model":"m"}}\n\n',
        b'event: content_block_start\ndata: {"type":"content_block_start","index":0,'
        b'"content_block":{"type":"text","text":""}}\n\n',
    ],
    "responses": [
        b'event: response.created\ndata: {"type":"response.created","response":{}}\n\n',
        b'event: response.output_item.added\ndata: {"type":"response.output_item.added",'
        b'"output_index":0,"item":{"id":"m","type":"message","content":[]}}\n\n',
    ],
}
_TAILS = {
    "chat": b'data: {"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}\n\n'
    b"data: [DONE]\n\n",
    "anthropic": b'event: message_delta\ndata: {"type":"message_delta","delta":'
    b'{"stop_reason":"end_turn"}}\n\nevent: message_stop\ndata: {"type":"message_stop"}\n\n',
    "responses": b'event: response.completed\ndata: {"type":"response.completed",'
    b'"response":{"status":"completed"}}\n\n',
}


@pytest.mark.parametrize("fmt", ["chat", "anthropic", "responses"])
async def test_host_writes_between_a_pipes_reads_end_its_text_block(fmt: str) -> None:
    """Without coalescing the pipe's per-token paths are taken; a host write that lands
    between two of its reads (here a data part) ends the open text block, so the next
    token must open a new one, not become a delta of the ended block."""
    async with Streams(coalesce_ms=0) as streams:
        between = asyncio.Event()
        written = asyncio.Event()

        async def upstream():
            for read in _HEADS[fmt]:
                yield read
            for n, token in enumerate(["a", "b"]):
                yield _token_read(fmt, token, n + 3)
            between.set()
            await written.wait()
            for n, token in enumerate(["c", "d"]):
                yield _token_read(fmt, token, n + 5)
            yield _TAILS[fmt]

        async def produce(w: StreamWriter) -> None:
            async def host() -> None:
                await between.wait()
                await w.data("progress", {"done": 1})
                written.set()

            task = asyncio.create_task(host())
            await w.pipe(upstream(), format=fmt)
            await task

        handle = await streams.start(produce)
        assert await streams.wait(handle.id, 5) == "completed"
        ops = await ops_of(streams, handle.id)
        final = await streams.message(handle.id)
        assert apply_ops(ops).to_dict() == final.to_dict()
        blocks = [(b["type"], b.get("text")) for b in final.to_dict()["blocks"]]
        assert blocks == [("text", "ab"), ("data", None), ("text", "cd")]
        ended: set[int] = set()
        last = -1  # (a delta without an index is for the last block started)
        for op in ops:  # no delta for a block after its end
            kind = op.__struct_config__.tag
            if kind == "block.start":
                last = op.index
            elif kind == "block.end":
                ended.add(op.index)
            elif kind == "block.delta":
                assert (last if op.index is None else op.index) not in ended
