"""Hostile-but-plausible answers cost time linear in their size (a probe found each of these
quadratic: seconds to minutes of one event loop for a few MB). The bounds are loose, for slow
machines; before the fixes each case took several times its bound."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tokenwire import Streams, StreamWriter
from tokenwire.protocol import Pipeline
from tokenwire.protocol.views.aisdk import AISDKView
from tokenwire.protocol.views.base import RawOp, replay
from tokenwire.protocol.views.responses import ResponsesView


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
    choice = {"index": 0, "delta": delta, "finish_reason": finish}
    return b"data: " + json.dumps({"choices": [choice]}).encode() + b"\n\n"


def test_content_of_only_whitespace_is_decided_soon() -> None:
    """Whitespace-only content kept the harmony check undecided, and every chunk re-stripped
    all of it: 4.6 MB took 21 s. Past 512 characters of it, it is text."""
    pipeline = Pipeline("st_ws", format="chat")
    body = b"".join(_chunk({"content": " " * 100}) for _ in range(10_000))
    elapsed, ops = _timed(lambda: [*pipeline.feed(body), *pipeline.feed(_chunk({}, "stop"))])
    ops += pipeline.close()
    assert elapsed < 2.0, elapsed
    assert pipeline.assembler.message.blocks[0].text == " " * 1_000_000


async def _produced_in(produce: Callable[[StreamWriter], Any], *, coalesce_ms: float) -> float:
    """Seconds from start to a completed stream of ``produce``."""
    async with Streams(coalesce_ms=coalesce_ms) as streams:
        started = time.perf_counter()
        handle = await streams.start(produce)
        assert await streams.wait(handle.id, 120) == "completed"
        return time.perf_counter() - started


async def _pieces(data: bytes) -> AsyncIterator[bytes]:
    for at in range(0, len(data), 65536):
        yield data[at : at + 65536]


async def test_a_tool_calls_many_argument_fragments_are_linear() -> None:
    """``PipeResult.tool_calls`` gathered the arguments with ``+=`` on the call: every
    fragment copied all before it (9.7 MB of chunks: 6 s)."""
    start = {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}
    more = {"tool_calls": [{"index": 0, "function": {"arguments": "a" * 150}}]}
    body = _chunk(start) + _chunk(more) * 30_000 + _chunk({}, "tool_calls") + b"data: [DONE]\n\n"
    got: list[Any] = []

    async def produce(w: StreamWriter) -> None:
        got.append(await w.pipe(_pieces(body)))

    assert await _produced_in(produce, coalesce_ms=20) < 3.0
    assert got[0].tool_calls[0].arguments == "a" * 4_500_000


async def test_cited_spans_after_long_text_are_linear() -> None:
    """Each ``source(start=, end=)`` checks its span against the text's length, which joined
    the whole text (12,000 sources after 6 MB of text: some 15 s)."""

    async def produce(w: StreamWriter) -> None:
        for _ in range(12_000):
            await w.text("x" * 500)
            await w.source("https://docs.example/a", start=0, end=3)

    assert await _produced_in(produce, coalesce_ms=0) < 4.0


class _Log:
    """An op log built by hand, as the hub would hand it to a view."""

    def __init__(self) -> None:
        self.ops: list[RawOp] = []
        self.seq = 0
        self.blocks = 0
        self.add({"type": "message.start", "id": "st_x", "model": "m"})

    def add(self, op: dict[str, Any]) -> None:
        if op["type"] != "block.delta":
            self.seq += 1
            op = {"type": op["type"], "seq": self.seq, **op}
        else:
            self.seq += 1
        self.ops.append(RawOp(self.seq, json.dumps(op).encode()))

    def block(self, block: dict[str, Any], *deltas: str, end: bool = True) -> int:
        index = self.blocks
        self.blocks += 1
        self.add({"type": "block.start", "index": index, "block": block})
        for text in deltas:
            self.add({"type": "block.delta", "index": index, "text": text})
        if end:
            self.add({"type": "block.end", "index": index})
        return index

    def done(self) -> list[RawOp]:
        end = {"status": "completed", "finish_reason": "stop", "usage": None, "error": None}
        self.add({"type": "message.end", **end})
        return self.ops


def _text_blocks(n: int) -> list[RawOp]:
    log = _Log()
    for _ in range(n):
        log.block({"type": "text", "text": ""}, "hello ")
    return log.done()


def _sources_after_items(n: int) -> list[RawOp]:
    log = _Log()
    log.block({"type": "text", "text": ""}, "hi")
    for k in range(n):
        log.block({"type": "tool_call", "id": f"c{k}", "name": "f", "arguments": "{}"})
    for _ in range(n):
        log.block({"type": "source", "url": "https://docs.example/a"})
    return log.done()


def _reset_steps(n: int) -> list[RawOp]:
    log = _Log()
    for k in range(n):
        log.block({"type": "tool_call", "step": 2 * k, "id": f"c{k}", "name": "f"}, "{}")
        log.block(
            {"type": "tool_call", "step": 2 * k + 1, "id": f"r{k}", "name": "f"}, "{", end=False
        )
        log.add({"type": "step.reset", "step": 2 * k + 1})
        log.blocks -= 1
    return log.done()


def _streamed_tool_output(n: int) -> list[RawOp]:
    log = _Log()
    log.block({"type": "tool_call", "id": "c", "name": "f", "arguments": "{}"})
    log.block({"type": "tool_result", "call_id": "c", "output": ""}, *["0123456789"] * n)
    return log.done()


@pytest.mark.parametrize(
    ("view", "ops"),
    [
        (ResponsesView, _text_blocks(12_000)),  # each text's end scanned every block (12 s)
        (ResponsesView, _sources_after_items(10_000)),  # each source listed every item (7 s)
        (ResponsesView, _reset_steps(16_000)),  # each reset scanned every item (10 s)
        (lambda: AISDKView("st_x"), _streamed_tool_output(160_000)),  # joined per delta (13 s)
    ],
    ids=["responses-text-blocks", "responses-sources", "responses-resets", "aisdk-tool-output"],
)
def test_the_views_are_linear_on_long_logs(view: Callable[[], Any], ops: list[RawOp]) -> None:
    elapsed, frames = _timed(lambda: list(replay(view(), ops)))
    assert elapsed < 4.0, elapsed
    assert frames


def test_a_span_less_source_after_a_reset_cites_the_newest_text_still_shown() -> None:
    """The newest text item is remembered, not searched for: after a reset drops it (and a
    tool call takes its index), a span-less source cites the text before it."""
    log = _Log()
    log.block({"type": "text", "text": ""}, "kept")
    log.block({"type": "text", "step": 1, "text": ""}, "dropped")
    log.add({"type": "step.reset", "step": 1})
    log.blocks -= 1
    log.block({"type": "tool_call", "step": 1, "id": "c1", "name": "f"}, "{}")
    log.block({"type": "source", "url": "https://docs.example/a", "title": "A"})
    frames = [f.body for f in replay(ResponsesView(), log.done())]
    added = [f for f in frames if f["type"] == "response.output_text.annotation.added"]
    assert len(added) == 1
    assert added[0]["output_index"] == 0
    assert added[0]["annotation"]["start_index"] == added[0]["annotation"]["end_index"] == 4
