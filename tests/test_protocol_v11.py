"""Protocol v1.1: the new ops, the assembler's handling of the new facts, and the invariants
(split invariance, ops rebuild the message, resume from any seq) over random agent answers
with steps, supersede, in-place data updates and transient data."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwire.protocol import (
    Assembler,
    Block,
    BlockUpdate,
    Message,
    ProtocolError,
    StepReset,
    Transient,
    apply_op,
    apply_ops,
    decode_op,
    encode,
    is_transient,
    snapshot_op,
)
from tokenwire.protocol import facts as f

# -- ops ---------------------------------------------------------------------------------------


def test_new_ops_encode_in_the_contract_shapes_and_decode_back() -> None:
    update = encode(BlockUpdate(5, 2, {"value": [1, "a"]}))
    assert update.json == b'{"type":"block.update","seq":5,"index":2,"set":{"value":[1,"a"]}}'
    assert update.sse == b"id:5\ndata:" + update.json + b"\n\n"
    reset = encode(StepReset(6, 1))
    assert reset.json == b'{"type":"step.reset","seq":6,"step":1}'
    transient = encode(Transient(6, "progress", {"pct": 5}))
    assert transient.json == b'{"type":"transient","seq":6,"name":"progress","value":{"pct":5}}'
    assert transient.sse == b"data:" + transient.json + b"\n\n"  # no id: line
    assert is_transient(transient) and not is_transient(reset)
    for op in (update, reset, transient):
        assert decode_op(op.json) == op.op
    again = type(transient).from_json(transient.json)
    assert again.sse == transient.sse and again.seq == 6


def test_malformed_new_ops_are_errors_and_unknown_ops_are_skipped() -> None:
    with pytest.raises(ProtocolError):
        decode_op(b'{"type":"block.update","seq":1,"index":0}')
    with pytest.raises(ProtocolError):
        decode_op(b'{"type":"step.reset","seq":1}')
    assert decode_op(b'{"type":"block.frobnicate","seq":1}') is None


def test_block_update_merges_attrs_but_never_the_streamed_key_type_choice_or_step() -> None:
    message = Message.empty()
    apply_op(
        message,
        decode_op(
            b'{"type":"block.start","seq":2,"index":0,"block":'
            b'{"type":"tool_result","choice":1,"step":2,"call_id":"c",'
            b'"name":null,"output":"out"}}'
        ),
    )
    apply_op(
        message,
        BlockUpdate(
            3,
            0,
            {"error": True, "output": "x", "type": "text", "choice": 0, "step": 0, "name": "n"},
        ),
    )
    assert message.blocks[0].to_dict() == {
        "type": "tool_result",
        "choice": 1,
        "step": 2,
        "call_id": "c",
        "name": "n",
        "error": True,
        "output": "out",
    }
    with pytest.raises(ProtocolError):
        apply_op(message, BlockUpdate(4, 1, {"value": 1}))


def test_step_reset_drops_the_latest_steps_tail_and_transient_is_never_applied() -> None:
    message = Message(
        blocks=[
            Block("text", text="a"),
            Block("text", step=1, text="b"),
            Block("data", step=1, attrs={"value": 1}),
        ]
    )
    before = message.to_json()
    apply_op(message, Transient(3, "x", 1))
    assert message.to_json() == before
    apply_op(message, StepReset(4, 1))
    assert [b.to_dict() for b in message.blocks] == [{"type": "text", "text": "a"}]


def test_unknown_block_types_are_kept_as_sent_with_step() -> None:
    data = {"type": "widget", "choice": 1, "step": 3, "spec": {"a": 1}}
    assert Block.from_dict(data).to_dict() == data


# -- assembler ---------------------------------------------------------------------------------


def feed(facts: list) -> tuple[list, Message]:
    a = Assembler("st")
    ops = a.feed(facts)
    ops += a.close()
    return ops, a.message


def test_steps_only_go_up_and_only_the_latest_can_be_reset() -> None:
    a = Assembler("st")
    a.feed([f.StepStarted(2)])
    with pytest.raises(ValueError):
        a.feed([f.StepStarted(1)])
    with pytest.raises(ValueError):
        a.feed([f.StepReset(1)])


def test_a_reset_step_starts_clean_text_tools_data_and_finish() -> None:
    ops, message = feed(
        [
            f.Started("m"),
            f.StepStarted(1),
            f.TextFact(0, "text", "bad"),
            f.ToolCallStarted(0, 0, "c", "t"),
            f.DataFact(0, "s", 1, id="d"),
            f.ToolResultStarted(0, "r", None),
            f.Finished(0, "length"),
            f.StepReset(1),
            f.StepStarted(1),
            f.TextFact(0, "text", "good"),
            f.ToolCallArguments(0, 0, "{}"),
            f.ToolResultOutput(0, "r", "o"),
            f.DataFact(0, "s", 2, id="d"),
            f.Finished(0, "stop"),
            f.Done(),
        ]
    )
    blocks = [b.to_dict() for b in message.blocks]
    assert blocks == [
        {"type": "text", "step": 1, "text": "good"},
        {"type": "tool_call", "step": 1, "id": None, "name": None, "arguments": "{}"},
        {"type": "tool_result", "step": 1, "call_id": "r", "name": None, "output": "o"},
        {"type": "data", "step": 1, "name": "s", "id": "d", "value": 2},
    ]
    assert message.finish_reason == "stop"
    assert apply_ops(ops).to_json() == message.to_json()


def test_a_later_step_finish_reason_wins() -> None:
    _, message = feed(
        [
            f.Started("m"),
            f.Finished(0, "tool_calls"),
            f.StepStarted(1),
            f.TextFact(0, "text", "x"),
            f.Finished(0, "stop"),
            f.Done(),
        ]
    )
    assert message.finish_reason == "stop"


def test_a_span_needs_a_text_block_else_the_source_is_plain() -> None:
    _, message = feed([f.Started("m"), f.SourceFact(0, "u", "t", 0, 3), f.Done()])
    assert message.blocks[0].to_dict() == {"type": "source", "url": "u", "title": "t"}


def test_transient_data_goes_out_without_advancing_the_seq() -> None:
    a = Assembler("st")
    ops = a.feed(
        [f.Started("m"), f.DataFact(0, "p", 1, transient=True), f.TextFact(0, "text", "x")]
    )
    assert [(o.type, o.seq) for o in ops] == [
        ("message.start", 1),
        ("transient", 1),
        ("block.start", 2),
        ("block.delta", 3),
    ]
    assert b"transient" not in a.message.to_json()


def test_a_held_delta_goes_out_before_a_transient_or_an_update() -> None:
    a = Assembler("st", coalesce_ms=50)
    ops = a.feed([f.Started("m"), f.TextFact(0, "text", "a"), f.DataFact(0, "d", 1, id="x")], 0.0)
    ops += a.feed([f.TextFact(0, "text", "b")], 0.01)  # held
    ops += a.feed([f.DataFact(0, "p", 1, transient=True), f.DataFact(0, "d", 2, id="x")], 0.02)
    types = [o.type for o in ops]
    assert types[-3:] == ["block.delta", "transient", "block.update"]


# -- random agent answers ----------------------------------------------------------------------

snippets = st.sampled_from(["Hi", " there", "é", "😀", "\n", '"q"', "\\", "<b>"])
values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=2)
    ),
    max_leaves=5,
)


@st.composite
def agent_facts(draw) -> list:
    """A random multi-step answer: every v1.1 fact, steps that go up, resets of the latest
    step, data ids updated in place, transient data."""
    facts: list = [f.Started("agent")]
    step = 0
    keys: list[int] = []
    for _ in range(draw(st.integers(0, 40))):
        choice = draw(st.sampled_from([0, 0, 0, 1]))
        kind = draw(
            st.sampled_from(
                [
                    "text",
                    "text",
                    "reasoning",
                    "tool",
                    "args",
                    "result",
                    "output",
                    "result_end",
                    "data",
                    "data",
                    "transient",
                    "source",
                    "span",
                    "file",
                    "signature",
                    "encrypted",
                    "step",
                    "reset",
                    "finish",
                ]
            )
        )
        call = draw(st.sampled_from(["c1", "c2"]))
        if kind in ("text", "reasoning"):
            facts.append(f.TextFact(choice, kind, draw(snippets)))
        elif kind == "tool":
            keys.append(len(keys))
            facts.append(f.ToolCallStarted(choice, keys[-1], f"call_{keys[-1]}", "fn"))
        elif kind == "args" and keys:
            facts.append(f.ToolCallArguments(choice, draw(st.sampled_from(keys)), draw(snippets)))
        elif kind == "result":
            facts.append(f.ToolResultStarted(choice, call, "fn", draw(st.booleans())))
        elif kind == "output":
            facts.append(f.ToolResultOutput(choice, call, draw(snippets)))
        elif kind == "result_end":
            facts.append(f.ToolResultEnd(choice, call, draw(st.sampled_from([None, True]))))
        elif kind in ("data", "transient"):
            data_id = draw(st.sampled_from([None, "a", "b"]))
            facts.append(f.DataFact(choice, "d", draw(values), data_id, kind == "transient"))
        elif kind in ("source", "span"):
            start = draw(st.integers(0, 5))
            span = (start, start + 2) if kind == "span" else (None, None)
            facts.append(f.SourceFact(choice, "https://x.example", None, *span))
        elif kind == "file":
            facts.append(f.FileFact(choice, "data:,x", "text/plain"))
        elif kind == "signature":
            facts.append(f.ReasoningSignature(choice, draw(st.text(max_size=6))))
        elif kind == "encrypted":
            facts.append(f.ReasoningEncrypted(choice, "enc", draw(st.booleans())))
        elif kind == "step":
            step += draw(st.integers(0, 2))
            facts.append(f.StepStarted(step))
        elif kind == "reset":
            facts.append(f.StepReset(step))
        elif kind == "finish":
            facts.append(f.Finished(choice, draw(st.sampled_from(["stop", "tool_calls"]))))
    if draw(st.booleans()):
        facts.append(f.Done())
    return facts


def run(
    facts: list, cuts: list[int] = (), window: float = 0.0, gaps=(0.0,)
) -> tuple[list, Message]:
    a = Assembler("st_prop", coalesce_ms=window)
    bounds = sorted({c % (len(facts) + 1) for c in cuts})
    ops: list = []
    now = 0.0
    for i, (lo, hi) in enumerate(zip([0, *bounds], [*bounds, len(facts)], strict=True)):
        now += gaps[i % len(gaps)]
        ops += a.feed(facts[lo:hi], now)
        ops += a.poll(now)
    ops += a.close(now)
    return ops, a.message


def resume_from_every_seq(ops: list, final: Message) -> None:
    """A reader that resumes at any seq (snapshot there, then what follows) gets ``final``."""
    real = [op for op in ops if not is_transient(op)]
    assert [op.seq for op in real] == list(range(1, len(real) + 1))
    for k in range(len(real) + 1):
        resumed = Message.empty()
        apply_op(resumed, decode_op(snapshot_op(apply_ops(real[:k]), k).json))
        for op in ops:
            if op.seq > k:  # a live reader also gets the transients: they change nothing
                apply_op(resumed, decode_op(op.json))
        assert resumed.to_json() == final.to_json()


@settings(max_examples=150, deadline=None)
@given(agent_facts(), st.lists(st.integers(0, 10**6), max_size=8))
def test_any_split_of_the_facts_gives_the_same_ops_and_message(facts, cuts) -> None:
    whole_ops, whole = run(facts)
    ops, message = run(facts, cuts)
    assert [o.json for o in ops] == [o.json for o in whole_ops]
    assert [o.sse for o in ops] == [o.sse for o in whole_ops]
    assert message.to_json() == whole.to_json()


@settings(max_examples=150, deadline=None)
@given(agent_facts())
def test_the_ops_rebuild_the_message_without_transient_data(facts) -> None:
    ops, message = run(facts)
    assert apply_ops([decode_op(op.json) for op in ops]).to_json() == message.to_json()
    real = [op for op in ops if not is_transient(op)]
    assert apply_ops([decode_op(op.json) for op in real]).to_json() == message.to_json()
    for op in ops:
        if is_transient(op):
            assert not op.sse.startswith(b"id:")
            assert op.seq == max([0, *(o.seq for o in real if ops.index(o) < ops.index(op))])
    # Blocks of one choice never go back in steps; data ids are unique in the message.
    ids = [b.attrs["id"] for b in message.blocks if b.type == "data" and b.attrs["id"]]
    assert len(ids) == len(set(ids))
    steps = [b.step for b in message.blocks]
    assert steps == sorted(steps)


@settings(max_examples=80, deadline=None)
@given(agent_facts())
def test_resume_from_every_seq_gives_the_same_message(facts) -> None:
    ops, message = run(facts)
    resume_from_every_seq(ops, message)


@settings(max_examples=80, deadline=None)
@given(
    agent_facts(),
    st.lists(st.integers(0, 10**6), max_size=8),
    st.sampled_from([1.0, 20.0, 10_000.0]),
    st.lists(st.floats(0, 0.05), min_size=9, max_size=9),
)
def test_coalescing_never_changes_the_message(facts, cuts, window, gaps) -> None:
    _, plain = run(facts)
    ops, message = run(facts, cuts, window, gaps)
    assert message.to_json() == plain.to_json()
    assert apply_ops([decode_op(op.json) for op in ops]).to_json() == plain.to_json()


# -- the held-out-style check ------------------------------------------------------------------


def test_agent_answer_resumed_from_every_seq_keeps_only_the_final_state() -> None:
    """Two steps (the first superseded once), tool results, a data block updated 5 times and 3
    transient events: resumed from every seq, one final message with exactly the latest data
    value, no transient data and no blocks of the superseded attempt."""
    facts = [
        f.Started("mock-agent"),
        f.StepStarted(1),
        f.TextFact(0, "reasoning", "SUPERSEDED thought"),
        f.ToolCallStarted(0, 0, "call_x", "search"),
        f.ToolCallArguments(0, 0, '{"q":"SUPERSEDED"}'),
        f.DataFact(0, "status", "SUPERSEDED status", id="other"),
        f.StepReset(1),
        f.StepStarted(1),
        f.DataFact(0, "status", "v1", id="status"),
        f.TextFact(0, "reasoning", "Search first."),
        f.ToolCallStarted(0, 1, "call_1", "search"),
        f.ToolCallArguments(0, 1, '{"q":"tokenwire"}'),
        f.Finished(0, "tool_calls"),
        f.DataFact(0, "status", "v2", id="status"),
        f.DataFact(0, "progress", "TRANSIENT-1", transient=True),
        f.ToolResultStarted(0, "call_1", "search"),
        f.ToolResultOutput(0, "call_1", '["a",'),
        f.DataFact(0, "progress", "TRANSIENT-2", transient=True),
        f.ToolResultOutput(0, "call_1", '"b"]'),
        f.ToolResultEnd(0, "call_1"),
        f.DataFact(0, "status", "v3", id="status"),
        f.StepStarted(2),
        f.DataFact(0, "status", "v4", id="status"),
        f.TextFact(0, "text", "Found a and b [1]."),
        f.SourceFact(0, "https://a.example", "A", 14, 17),
        f.DataFact(0, "progress", "TRANSIENT-3", transient=True),
        f.DataFact(0, "status", "v5-final", id="status"),
        f.Finished(0, "stop"),
        f.Done(),
    ]
    ops, message = run(facts)
    assert sum(is_transient(op) for op in ops) == 3
    assert sum(op.type == "block.update" for op in ops) == 4  # 5 values: a start + 4 updates
    final = message.to_json()
    assert b"SUPERSEDED" not in final and b"TRANSIENT" not in final
    data = [json.loads(json.dumps(b.to_dict())) for b in message.blocks if b.type == "data"]
    assert data == [
        {"type": "data", "step": 1, "name": "status", "id": "status", "value": "v5-final"}
    ]
    assert [b.type for b in message.blocks] == [
        "data",
        "reasoning",
        "tool_call",
        "tool_result",
        "text",
        "source",
    ]
    assert message.status == "completed" and message.finish_reason == "stop"
    resume_from_every_seq(ops, message)


def test_a_resumed_assembler_updates_data_and_tool_results_by_id() -> None:
    """A takeover (``Assembler.resume``) keeps what later facts refer to by id: a data value
    written again replaces the block's value (not a second block), an open tool result takes
    more output."""
    before = [
        f.Started("m"),
        f.DataFact(0, "status", "working", id="status"),
        f.ToolResultStarted(0, "call_1", "search"),
        f.ToolResultOutput(0, "call_1", '["a",'),
    ]
    after = [
        f.ToolResultOutput(0, "call_1", '"b"]'),
        f.ToolResultEnd(0, "call_1"),
        f.DataFact(0, "status", "resumed", id="status"),
        f.TextFact(0, "text", "done"),
        f.Done(),
    ]
    _, whole = run(before + after)
    first = Assembler("st_prop")
    first_ops = first.feed(before)
    taker = Assembler("st_prop")
    taker.resume(first.message.copy(), first.seq, list(first._open))
    ops = first_ops + taker.feed(after) + taker.close()
    assert taker.message.to_json() == whole.to_json()
    assert [b.type for b in taker.message.blocks] == ["data", "tool_result", "text"]
    assert apply_ops([decode_op(op.json) for op in ops]).to_json() == whole.to_json()


def test_a_reset_drops_a_call_that_came_as_arguments_alone() -> None:
    """A call whose arguments came without its start (its block made from them, no id or
    name known) is dropped by a reset like any other; its retry starts a fresh block."""
    ops, message = feed(
        [
            f.Started("m"),
            f.ToolCallArguments(0, 5, '{"a":'),
            f.StepReset(0),
            f.ToolCallArguments(0, 5, '{"b":2}'),
        ]
    )
    assert apply_ops(ops).to_dict() == message.to_dict()
    assert [(b.type, b.text) for b in message.blocks] == [("tool_call", '{"b":2}')]
