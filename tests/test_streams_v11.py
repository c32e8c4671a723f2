"""Writer calls that need the protocol v1.1 assembler (tool results, files, data, steps).

They run once the assembler turns the v1.1 facts into ops; on an assembler without them,
the writer calls write nothing and these tests are skipped (see the check below).
"""

from __future__ import annotations

import pytest

from tokenwire import Streams, StreamWriter
from tokenwire.protocol import Assembler, apply_ops
from tokenwire.protocol.facts import ToolResultEnd, ToolResultStarted


def _assembler_has_v11() -> bool:
    asm = Assembler("probe")
    ops = asm.feed([ToolResultStarted(0, "c1", "t"), ToolResultEnd(0, "c1", None)])
    return any(op.type == "block.start" for op in ops)


pytestmark = pytest.mark.skipif(
    not _assembler_has_v11(), reason="the protocol v1.1 assembler is not on this branch"
)


async def test_v11_blocks_written_by_the_host_rebuild_exactly() -> None:
    async with Streams(coalesce_ms=0) as streams:

        async def produce(w: StreamWriter) -> None:
            await w.data("status", "searching", id="s1")
            await w.data("progress", 0.5, transient=True)  # live readers only
            await w.tool_call("c1", "search", {"q": "x"})
            await w.tool_result("c1", {"hits": 5}, name="search")
            await w.data("status", "5 results", id="s1")  # updated in place
            await w.file("https://f.example/a.pdf", "application/pdf", "a.pdf")
            await w.step()
            await w.text("a failed attempt")
            await w.supersede()
            await w.text("the answer")

        handle = await streams.start(produce)
        assert await streams.wait(handle.id, 5) == "completed"
        ops = [op async for op in streams.follow(handle.id)]
        real = [op for op in ops if op.type != "transient"]
        assert [op.seq for op in real] == list(range(1, len(real) + 1))  # (none in the log)
        final = (await streams.message(handle.id)).to_dict()
        assert apply_ops(ops).to_dict() == final == handle.writer.message.to_dict()
        blocks = final["blocks"]
        data = [b for b in blocks if b["type"] == "data"]
        assert len(data) == 1 and data[0]["value"] == "5 results"  # (no transient kept)
        result = next(b for b in blocks if b["type"] == "tool_result")
        assert result["call_id"] == "c1" and result["output"] == '{"hits":5}'
        assert any(b["type"] == "file" and b["media_type"] == "application/pdf" for b in blocks)
        texts = [b for b in blocks if b["type"] == "text"]
        assert [b["text"] for b in texts] == ["the answer"] and texts[0]["step"] == 1
