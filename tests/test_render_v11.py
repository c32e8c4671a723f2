"""Markdown (``render_markdown``) and ``tokenwire tail`` rendering of the v1.1 blocks."""

from __future__ import annotations

from rich.console import Console

from tests import v11_vectors
from tokenwire.commands import tail
from tokenwire.protocol import Block, Message, render_markdown


def test_markdown_of_an_agent_answer() -> None:
    _, message = v11_vectors.assemble("v11_agent")
    md = render_markdown(message)
    assert md.startswith("*status:* done: 2 sources\n")  # the data block's latest value only
    assert "**Tool result** `search` (call_s)\n\n```json\n[\n  {" in md
    assert "---\n\n*Step 2*\n\ntokenwire streams answers [\\[1\\]][1]." in md  # cited span
    assert "[1] Source: [A](https://a.example)" in md
    assert md.rstrip().endswith('[1]: <https://a.example> "A"')
    assert "progress" not in md  # transient data is not in the message


def test_markdown_citations_tool_errors_files_and_opaque_reasoning() -> None:
    md = render_markdown(v11_vectors.assemble("v11_citations")[1])
    assert md.startswith(
        "[Paris][3] 🗼 is 330 m tall [\\[1\\]][1]. It opened in 1889 [\\[2\\]][2]."
    )
    assert "\nSource: [Plain](https://example.org/plain)\n" in md  # a plain source: as in v1
    md = render_markdown(v11_vectors.assemble("v11_tool_result")[1])
    assert "**Tool error** `lookup` (call_b)\n\n```\nTraceback: KeyError 'x'\n```" in md
    md = render_markdown(v11_vectors.assemble("v11_file")[1])
    assert "**File:** [report.pdf](https://files.example/r.pdf) (application/pdf)" in md
    md = render_markdown(v11_vectors.assemble("v11_reasoning_opaque")[1])
    assert "> **Reasoning** (redacted)\n" in md and "sig" not in md


def test_markdown_keeps_fences_and_spans_safe() -> None:
    message = Message(
        blocks=[
            Block("text", text="a [b] c"),
            Block(
                "source",
                attrs={"url": "u", "title": 'T "q"', "span": {"block": 0, "start": 2, "end": 5}},
            ),
            Block(
                "source",
                attrs={"url": "v", "title": None, "span": {"block": 0, "start": 3, "end": 99}},
            ),
            Block("tool_result", attrs={"call_id": "c", "name": None}, text="```x```"),
        ]
    )
    md = render_markdown(message)
    assert md.startswith("a [\\[b\\]][1] c\n")  # the out-of-range span is left as text
    assert "````\n```x```\n````" in md
    assert '[1]: <u> "T \\"q\\""' in md


def test_tail_renders_the_v11_blocks_and_live_transients() -> None:
    _, message = v11_vectors.assemble("v11_agent")
    live = Message.from_dict(message.to_dict())
    live.status = "in_progress"
    console = Console(record=True, width=100)
    console.print(tail.render(live, {"progress": 0.5}))
    text = console.export_text()
    for needle in (
        "status: done: 2 sources",
        "tool result search",
        "step 2",
        "[1] A",
        "progress: 0.5",
    ):
        assert needle in text, needle
    console = Console(record=True, width=100)
    console.print(tail.render(v11_vectors.assemble("v11_tool_result")[1]))
    assert "tool error lookup" in console.export_text()
