"""Hypothesis: any interleaving of writer calls and piped recordings rebuilds exactly."""

from __future__ import annotations

import asyncio
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tokenwire import Streams, StreamWriter
from tokenwire.errors import StreamFailed
from tokenwire.protocol import apply_ops

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("*.sse"))
RECORDINGS = {path.name: path.read_bytes() for path in FIXTURES}

text = st.text(st.characters(codec="utf-8"), min_size=0, max_size=12)
call = st.one_of(
    st.tuples(st.just("text"), text),
    st.tuples(st.just("reasoning"), text),
    st.tuples(st.just("tool_call"), st.tuples(text, text, text)),
    st.tuples(st.just("source"), st.tuples(text, st.none() | text)),
    st.tuples(st.just("image"), text),
    st.tuples(st.just("pipe"), st.tuples(st.sampled_from(sorted(RECORDINGS)), st.integers(1, 64))),
)


async def _chunks(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


async def _run(calls: list, coalesce_ms: float) -> None:
    async with Streams(coalesce_ms=coalesce_ms) as streams:

        async def produce(w: StreamWriter) -> None:
            for kind, arg in calls:
                if kind == "text":
                    await w.text(arg)
                elif kind == "reasoning":
                    await w.reasoning(arg)
                elif kind == "tool_call":
                    await w.tool_call(*arg)
                elif kind == "source":
                    await w.source(*arg)
                elif kind == "image":
                    await w.image(arg)
                else:
                    name, size = arg
                    try:
                        await w.pipe(_chunks(RECORDINGS[name], size))
                    except StreamFailed:
                        pass  # (an upstream error: the host goes on writing)

        handle = await streams.start(produce)
        assert await streams.wait(handle.id, 10) == "completed"
        ops = [op async for op in streams.follow(handle.id)]
        assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
        rebuilt = apply_ops(ops).to_dict()
        assert rebuilt == handle.writer.message.to_dict()
        assert rebuilt == (await streams.message(handle.id)).to_dict()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(call, max_size=12), st.sampled_from([0.0, 0.0, 1.0]))
def test_writer_calls_and_pipes_rebuild_exactly(calls: list, coalesce_ms: float) -> None:
    asyncio.run(_run(calls, coalesce_ms))
