"""Assembler behaviour that the fixtures do not pin down: coalescing, deadlines, endings."""

from __future__ import annotations

import json

from tokenwire.protocol import Assembler, Pipeline, ThinkTagSplitter
from tokenwire.protocol.facts import (
    Done,
    Finished,
    Started,
    TextFact,
    ToolCallArguments,
    ToolCallStarted,
)


def sse(*chunks: dict) -> bytes:
    return b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)


def text(t: str, choice: int = 0) -> dict:
    return {"choices": [{"index": choice, "delta": {"content": t}}]}


def texts(ops) -> list[str]:
    return [json.loads(o.json)["text"] for o in ops if o.type == "block.delta"]


def test_coalescing_sends_the_first_delta_at_once_then_one_per_window() -> None:
    pipe = Pipeline("st_1", coalesce_ms=20)
    ops = pipe.feed(sse(text("a")), now=0.0)
    assert [o.type for o in ops] == ["message.start", "block.start", "block.delta"]
    assert pipe.next_deadline() is None
    assert pipe.feed(sse(text("b")), now=0.01) == []  # 10 ms after the last delta: held
    assert pipe.next_deadline() == 0.02
    assert pipe.feed(sse(text("c")), now=0.015) == []
    assert pipe.poll(0.019) == []
    assert texts(pipe.poll(0.02)) == ["bc"]
    assert pipe.next_deadline() is None
    assert texts(pipe.feed(sse(text("d")), now=0.05)) == ["d"]  # a slow stream waits for nothing
    assert pipe.message.blocks[0].text == "abcd"


def test_coalescing_flushes_before_any_structural_op() -> None:
    pipe = Pipeline("st_1", coalesce_ms=1000)
    pipe.feed(sse(text("a"), text("b"), text("c")), now=0.0)
    ops = pipe.feed(
        sse({"choices": [{"index": 0, "delta": {"reasoning_content": "r"}}]}), now=0.001
    )
    kinds = [(o.type, json.loads(o.json).get("text")) for o in ops]
    assert kinds == [("block.delta", "bc"), ("block.end", None), ("block.start", None)]


def test_message_is_never_ahead_of_emitted_ops() -> None:
    pipe = Pipeline("st_1", coalesce_ms=50)
    pipe.feed(sse(text("sent"), text("held")), now=0.0)
    assert pipe.message.blocks[0].text == "sent"  # held delta not yet sent, not yet in the message


def test_cancel_keeps_partial_and_is_idempotent() -> None:
    pipe = Pipeline("st_1", coalesce_ms=50)
    pipe.feed(sse(text("part"), text("ial")), now=0.0)
    ops = pipe.cancel(now=0.001)
    assert [o.type for o in ops] == ["block.delta", "block.end", "message.end"]
    assert pipe.message.status == "cancelled" and pipe.message.text == "partial"
    assert pipe.cancel() == [] and pipe.fail("late") == []
    assert pipe.feed(sse(text("more"))) == []


def test_fail_before_any_output_still_starts_and_ends_the_message() -> None:
    pipe = Pipeline("st_1", model="requested-model")
    ops = pipe.fail("connection refused", error_type="upstream_error")
    assert [o.type for o in ops] == ["message.start", "message.end"]
    assert pipe.message.model == "requested-model"
    assert pipe.message.error == {
        "message": "connection refused",
        "type": "upstream_error",
        "code": None,
    }


def test_tool_fragment_after_its_block_closed_continues_in_a_new_block() -> None:
    asm = Assembler("st_1")
    asm.feed(
        [
            Started("m"),
            ToolCallStarted(0, 7, "call_1", "f"),
            ToolCallArguments(0, 7, '{"a"'),
            TextFact(0, "text", "interjection"),
            ToolCallArguments(0, 7, ":1}"),
            Finished(0, "tool_calls"),
            Done(),
        ]
    )
    blocks = asm.message.to_dict()["blocks"]
    assert [b["type"] for b in blocks] == ["tool_call", "text", "tool_call"]
    assert (
        blocks[2]["id"] == "call_1" and blocks[0]["arguments"] + blocks[2]["arguments"] == '{"a":1}'
    )


def test_choice_blocks_carry_choice_and_finish_per_choice() -> None:
    pipe = Pipeline("st_1")
    pipe.feed(
        sse(text("x", 1), {"choices": [{"index": 1, "delta": {}, "finish_reason": "length"}]})
    )
    ops = pipe.close()
    assert pipe.message.finish_reason == "length"  # no choice 0 reported: the first one that did
    assert pipe.message.to_dict()["blocks"] == [{"type": "text", "choice": 1, "text": "x"}]
    assert ops[-1].type == "message.end"


def test_sse_frame_carries_the_seq_as_event_id() -> None:
    ops = Pipeline("st_1").feed(sse(text("a")))
    assert ops[1].sse == b"id:2\ndata:" + ops[1].json + b"\n\n"


def test_think_splitter_holds_possible_tags_and_releases_them_at_flush() -> None:
    splitter = ThinkTagSplitter()
    assert splitter.feed("x <thi") == [("text", "x ")]
    assert splitter.flush() == [("text", "<thi")]
    splitter = ThinkTagSplitter(("think",))
    assert splitter.feed("<thinking>") == [("text", "<thinking>")]  # not a configured tag
    assert splitter.feed("<think>a</th") == [("reasoning", "a")]
    assert splitter.feed("ink>  b") == [("text", "b")]


def test_nothing_is_emitted_after_the_message_ended() -> None:
    for end in (Pipeline.close, Pipeline.cancel, lambda p: p.fail("boom")):
        pipe = Pipeline("st_1")
        pipe.feed(sse(text("a")))
        pipe.feed(sse(text("b")))  # one-event reads of plain text: the per-token fast path
        end(pipe)
        assert pipe.feed(sse(text("c"))) == []
        assert pipe.message.text == "ab"


def test_unknown_block_types_are_kept_as_the_web_client_keeps_them() -> None:
    # The same ops as web/test/model.test.js: both clients must print the same blocks.
    from tokenwire.protocol import Message, apply_op, decode_op

    ops = [
        {"type": "message.start", "seq": 1, "id": "st_4", "model": "m", "future": True},
        {
            "type": "block.start",
            "seq": 2,
            "index": 0,
            "block": {"type": "hologram", "text": "", "depth": 3},
        },
        {"type": "block.delta", "seq": 3, "index": 0, "text": "3d"},
        {"type": "block.start", "seq": 4, "index": 1, "block": {"type": "widget", "choice": 1}},
        {"type": "block.delta", "seq": 5, "index": 1, "text": "dropped: no text field"},
    ]
    message = Message.empty()
    for raw in ops:
        op = decode_op(json.dumps(raw))
        assert op is not None
        apply_op(message, op)
    blocks = [json.dumps(b, separators=(",", ":")) for b in message.to_dict()["blocks"]]
    assert blocks == ['{"type":"hologram","depth":3,"text":"3d"}', '{"type":"widget","choice":1}']


def test_text_delta_bytes_are_the_op_encoders() -> None:
    """``Assembler.text_delta`` spells the delta's JSON out by hand (the per-token path): its
    bytes must stay exactly what encoding the ``BlockDelta`` op gives, for any text."""
    import msgspec
    from hypothesis import given
    from hypothesis import strategies as st

    from tokenwire.protocol.facts import Started, TextFact
    from tokenwire.protocol.ops import BlockDelta, sse_frame

    encode = msgspec.json.Encoder().encode

    @given(st.lists(st.text(), min_size=1, max_size=20))
    def check(texts: list[str]) -> None:
        assembler = Assembler("st_x")
        assembler.feed([Started("m"), TextFact(0, "text", "a")])
        kind, index = assembler.text_block(0)
        assert kind == "text"
        for text in texts:
            op = assembler.text_delta(index, text)
            assert op.json == encode(BlockDelta(text=text))
            assert op.sse == sse_frame(op.seq, op.json)
            assert op.op == BlockDelta(text=text)
        assert assembler.message.blocks[index].text == "a" + "".join(texts)

    check()


def test_a_tool_result_whose_call_id_is_taken_again_is_ended_by_its_choices_next_result() -> None:
    """Choice 1's open result for call ``c`` is replaced when choice 0 starts a result for
    ``c``: no later fact can name it, so choice 1's next result ends it (as every other open
    block of that choice), rather than it staying open to the end."""
    from tokenwire.protocol.facts import ToolResultOutput, ToolResultStarted

    asm = Assembler("s1")
    ops = asm.feed(
        [
            ToolResultOutput(1, "c", "o"),
            ToolResultStarted(0, "c", "n"),
            ToolResultStarted(1, "a", None),
        ]
    )
    shapes = [(op.type, getattr(op.op, "index", None)) for op in ops]
    assert shapes[-2:] == [("block.end", 0), ("block.start", 2)]
    assert sorted(asm._open) == [1, 2]
