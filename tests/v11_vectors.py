"""Protocol v1.1 vector sources: fact scripts fed to an ``Assembler``.

``tests/test_vectors.py`` turns each script into ``<name>.ops.jsonl`` + ``<name>.message.json``
under ``tests/vectors/`` (the JS client's tests apply the same op logs). The ops files keep the
``transient`` ops a live reader gets, so both clients prove they never apply them.
"""

from __future__ import annotations

from tokenwire.protocol import Assembler, EncodedOp, Message, apply_ops, is_transient, snapshot_op
from tokenwire.protocol.facts import (
    DataFact,
    Done,
    Fact,
    FileFact,
    Finished,
    ReasoningEncrypted,
    ReasoningSignature,
    SourceFact,
    Started,
    StepReset,
    StepStarted,
    TextFact,
    ToolCallArguments,
    ToolCallStarted,
    ToolResultEnd,
    ToolResultOutput,
    ToolResultStarted,
    UsageFact,
)


def tool_result() -> list[Fact]:
    """Two parallel calls, their results streamed interleaved; one fails at its end, a third
    result is marked as an error from its start."""
    return [
        Started("agent-1"),
        ToolCallStarted(0, 0, "call_a", "weather"),
        ToolCallArguments(0, 0, '{"city":"Paris"}'),
        ToolCallStarted(0, 1, "call_b", "lookup"),
        ToolCallArguments(0, 1, '{"q":"x"}'),
        Finished(0, "tool_calls"),
        ToolResultStarted(0, "call_a", "weather"),
        ToolResultStarted(0, "call_b", "lookup"),
        ToolResultOutput(0, "call_a", '{"temp":'),
        ToolResultOutput(0, "call_b", "Traceback: "),
        ToolResultOutput(0, "call_a", "21}"),
        ToolResultOutput(0, "call_b", "KeyError 'x'"),
        ToolResultEnd(0, "call_a"),
        ToolResultEnd(0, "call_b", error=True),
        ToolResultStarted(0, "call_c", None, error=True),
        ToolResultOutput(0, "call_c", "tool not found: ünïcode ✓"),
        ToolResultEnd(0, "call_c"),
        Done(),
    ]


def file() -> list[Fact]:
    return [
        Started("agent-1"),
        TextFact(0, "text", "Here is the report:"),
        FileFact(0, "https://files.example/r.pdf", "application/pdf", "report.pdf"),
        FileFact(0, "data:text/plain;base64,aGk=", "text/plain"),
        TextFact(0, "text", "And a second choice's file."),
        FileFact(1, "https://files.example/b.csv", "text/csv", "b.csv"),
        Finished(0, "stop"),
        Finished(1, "stop"),
        Done(),
    ]


def data_update() -> list[Fact]:
    """A status line updated in place (the message keeps only the latest value), plus data
    without an id (a new block each time) and values of every JSON kind."""
    return [
        Started("agent-1"),
        DataFact(0, "status", {"text": "searching the web…", "done": False}, id="st"),
        TextFact(0, "text", "Looking"),
        DataFact(0, "status", {"text": "reading 3 pages", "done": False}, id="st"),
        DataFact(0, "log", ["a", 1, None, True, 2.5]),
        DataFact(0, "log", "second, no id"),
        DataFact(0, "status", {"text": "5 results", "done": True}, id="st"),
        DataFact(0, "count", 0, id="n"),
        DataFact(0, "count", None, id="n"),
        TextFact(0, "text", "Done."),
        Finished(0, "stop"),
        Done(),
    ]


def transient() -> list[Fact]:
    """Transient data before and between real ops: in the ops file, never in the message."""
    return [
        Started("agent-1"),
        DataFact(0, "progress", 0.0, transient=True),
        TextFact(0, "text", "Step one"),
        DataFact(0, "progress", {"pct": 50}, id="p", transient=True),
        TextFact(0, "text", " and two."),
        DataFact(0, "progress", 1.0, transient=True),
        DataFact(0, "status", "kept", id="s"),
        DataFact(0, "status", "not kept", id="s", transient=True),
        Finished(0, "stop"),
        Done(),
    ]


def steps() -> list[Fact]:
    """Three steps; blocks of step 0 carry no ``step``; choice 1 shows the key order."""
    return [
        Started("agent-1"),
        TextFact(0, "reasoning", "I need the weather."),
        ToolCallStarted(0, 0, "call_1", "weather"),
        ToolCallArguments(0, 0, '{"city":"Oslo"}'),
        Finished(0, "tool_calls"),
        StepStarted(1),
        ToolResultStarted(0, "call_1", "weather"),
        ToolResultOutput(0, "call_1", "-3°C"),
        ToolResultEnd(0, "call_1"),
        StepStarted(2),
        TextFact(0, "text", "It is -3°C in Oslo."),
        TextFact(1, "text", "Cold: -3°C."),
        Finished(0, "stop"),
        Finished(1, "stop"),
        UsageFact({"prompt_tokens": 30, "completion_tokens": 12, "total_tokens": 42}),
        Done(),
    ]


def step_reset() -> list[Fact]:
    """Step 1 fails mid-answer and is superseded (twice); its retry reuses step 1, and block
    indexes continue from the shortened message."""
    return [
        Started("agent-1"),
        TextFact(0, "text", "Let me check."),
        Finished(0, "tool_calls"),
        StepStarted(1),
        TextFact(0, "reasoning", "first attempt"),
        TextFact(0, "text", "The answer is 4"),
        DataFact(0, "status", "writing", id="w"),
        StepReset(1),
        StepStarted(1),
        TextFact(0, "text", "The answer"),
        StepReset(1),
        StepStarted(1),
        DataFact(0, "status", "retrying", id="w"),
        TextFact(0, "text", "The answer is 42."),
        DataFact(0, "status", "done", id="w"),
        Finished(0, "stop"),
        Done(),
    ]


def citations() -> list[Fact]:
    """Sources citing spans (offsets in code points: the text has non-BMP characters), a span
    into an earlier text block, a plain source, and cited text without a span."""
    return [
        Started("agent-1"),
        TextFact(0, "text", "Paris 🗼 is 330 m tall [1]."),
        SourceFact(0, "https://example.org/eiffel", "Eiffel", 22, 25, "330 m tall"),
        TextFact(0, "text", " It opened in 1889 [2]."),
        SourceFact(0, "https://example.org/history", None, 45, 48),
        TextFact(0, "reasoning", "checking a third source"),
        SourceFact(0, "https://example.org/late", "Late", 0, 5),
        SourceFact(0, "https://example.org/plain", "Plain"),
        SourceFact(0, "https://example.org/quote", "Quote", cited_text="a quoted passage"),
        Finished(0, "stop"),
        Done(),
    ]


def reasoning_opaque() -> list[Fact]:
    """Signatures, encrypted and redacted reasoning, kept byte-exact."""
    return [
        Started("agent-1"),
        TextFact(0, "reasoning", "Consider the question."),
        ReasoningSignature(0, "EqQBCkgIARABGAIiQH/+sig=="),
        ReasoningEncrypted(0, "RWR5YXRhX3JlZGFjdGVk\u2028+/=", redacted=True),
        TextFact(0, "text", "Paris."),
        ReasoningEncrypted(0, "gAAAAABencrypted=="),
        TextFact(0, "reasoning", "**Summary** of hidden thought"),
        TextFact(0, "text", " Still Paris."),
        ReasoningSignature(0, "late-signature-for-the-last-reasoning-block"),
        ReasoningSignature(1, "sig-with-no-reasoning-yet"),
        Finished(0, "stop"),
        Done(),
    ]


def agent() -> list[Fact]:
    """The held-out-style answer: two steps (the first superseded once), tool results, a data
    block updated 5 times and 3 transient events."""
    return [
        Started("mock-agent"),
        StepStarted(1),
        TextFact(0, "reasoning", "Try the tool."),
        TextFact(0, "text", "Searchi"),
        StepReset(1),
        StepStarted(1),
        DataFact(0, "status", "thinking…", id="status"),
        TextFact(0, "reasoning", "I should search."),
        ReasoningSignature(0, "sig-1"),
        ToolCallStarted(0, 0, "call_s", "search"),
        ToolCallArguments(0, 0, '{"q":"tokenwire"}'),
        DataFact(0, "progress", 0.1, transient=True),
        Finished(0, "tool_calls"),
        DataFact(0, "status", "searching…", id="status"),
        ToolResultStarted(0, "call_s", "search"),
        ToolResultOutput(0, "call_s", '[{"url":"https://a.example"}'),
        DataFact(0, "progress", 0.5, transient=True),
        ToolResultOutput(0, "call_s", ',{"url":"https://b.example"}]'),
        ToolResultEnd(0, "call_s"),
        DataFact(0, "status", "reading 2 results", id="status"),
        StepStarted(2),
        DataFact(0, "status", "writing", id="status"),
        TextFact(0, "text", "tokenwire streams answers [1]."),
        SourceFact(0, "https://a.example", "A", 26, 29),
        DataFact(0, "progress", 1.0, transient=True),
        DataFact(0, "status", "done: 2 sources", id="status"),
        Finished(0, "stop"),
        Done(),
    ]


SCRIPTS = {
    "v11_tool_result": tool_result,
    "v11_file": file,
    "v11_data_update": data_update,
    "v11_transient": transient,
    "v11_steps": steps,
    "v11_step_reset": step_reset,
    "v11_citations": citations,
    "v11_reasoning_opaque": reasoning_opaque,
    "v11_agent": agent,
}


def superseded(*retry: str) -> tuple[list[EncodedOp], Message]:
    """Step 0's text, then step 1 tried ("bad ") and reset; each ``retry`` text is written into
    step 1 again, every one but the last reset too (not a vector: for the views' reset tests)."""
    facts: list[Fact] = [Started("m"), TextFact(0, "text", "zero "), StepStarted(1)]
    facts += [TextFact(0, "text", "bad "), StepReset(1)]
    for i, text in enumerate(retry):
        facts.append(TextFact(0, "text", text))
        if i < len(retry) - 1:
            facts.append(StepReset(1))
    assembler = Assembler("st_superseded", coalesce_ms=0)
    ops = assembler.feed([*facts, Done()]) + assembler.close()
    return ops, assembler.message


def assemble(name: str) -> tuple[list[EncodedOp], Message]:
    assembler = Assembler(f"st_{name}")
    ops = assembler.feed(SCRIPTS[name]())
    ops += assembler.close()
    return ops, assembler.message


def build() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name in SCRIPTS:
        ops, message = assemble(name)
        files[f"{name}.ops.jsonl"] = b"".join(op.json + b"\n" for op in ops)
        files[f"{name}.message.json"] = message.to_json()
    # An upstream that refused the request with an HTTP status: the error keeps it.
    refused = Assembler("st_http_status", model="gpt-x")
    ops = refused.feed([Started("gpt-x")])
    why = "upstream returned HTTP 429: slow down"
    ops += refused.fail(why, error_type="rate_limit_error", code=None, status=429)
    files["upstream_http_status.ops.jsonl"] = b"".join(op.json + b"\n" for op in ops)
    files["upstream_http_status.message.json"] = refused.message.to_json()
    # A resume from a snapshot taken after a reset, an update and a transient.
    ops, message = assemble("v11_agent")
    real = [op for op in ops if not is_transient(op)]
    k = next(i for i, op in enumerate(real) if op.type == "block.update" and i > 12) + 1
    snap = snapshot_op(apply_ops(real[:k]), real[k - 1].seq)
    rest = [op for op in ops if op.seq > snap.seq or (op.seq == snap.seq and is_transient(op))]
    files["v11_snapshot_resume.ops.jsonl"] = b"".join(op.json + b"\n" for op in [snap, *rest])
    files["v11_snapshot_resume.message.json"] = message.to_json()
    return files
