"""The views (AI SDK UI message stream, OpenAI chunks, Responses events, ops): golden vectors,
exact resume at every index, and compacted catch-up (size and continuation)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.catchup import long_answer, measure
from tokenwire.protocol import SSEDecoder
from tokenwire.protocol.views import (
    VIEWS,
    AISDKView,
    OpenAIChunksView,
    OpsView,
    RawOp,
    ResponsesView,
    catch_up,
    frames_after,
    message_dict,
    ops_from_jsonl,
    replay,
    resume,
    tail_index,
)
from tokenwire.protocol.views.base import split_escaped
from tokenwire.protocol.views.synth import split_text

HERE = Path(__file__).parent
VIEW_VECTORS = HERE / "vectors" / "views"


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("views_generate", VIEW_VECTORS / "generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEN = _generator()
INPUTS = GEN.inputs()


def test_golden_frames_are_current() -> None:
    built = GEN.build()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in VIEW_VECTORS.glob("*.frames")}
    assert sorted(on_disk) == sorted(built), "run tests/vectors/views/generate.py"
    for name, text in built.items():
        assert on_disk[name] == text, f"{name} is stale; run tests/vectors/views/generate.py"


def _ops(name: str) -> list[RawOp]:
    return ops_from_jsonl(INPUTS[name].read_bytes().splitlines())


def _logged(frames: list[Any]) -> list[Any]:
    return [f for f in frames if f.index is not None]


def _sig(frames: list[Any]) -> list[tuple[Any, bytes]]:
    return [(f.index, f.data) for f in frames]


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_resume_at_every_index_gives_the_rest(name: str, view: str) -> None:
    ops = _ops(name)
    full = _logged(replay(VIEWS[view](), ops))
    assert [f.index for f in full] == list(range(len(full)))  # dense
    for n in range(-len(full) - 1, len(full) + 1):
        rest, _ = frames_after(VIEWS[view], ops, n)
        assert _sig(_logged(rest)) == _sig(full[n if n >= 0 else max(0, len(full) + n) :])
        if view == "aisdk":  # an unindexed [DONE] closes an ended stream's frames
            assert rest[-1].data == b"data: [DONE]\n\n"
    assert tail_index(len(full)) == len(full) - 1


@pytest.mark.parametrize("view", sorted(VIEWS))
@pytest.mark.parametrize("name", sorted(INPUTS))
def test_live_after_a_cut_continues_the_log(name: str, view: str) -> None:
    """A reader that caught up at op k, then fed live, gets the full frames' tail exactly."""
    ops = _ops(name)
    full = _logged(replay(VIEWS[view](), ops))
    for k in range(len(ops) + 1):
        got, live = frames_after(VIEWS[view], ops[:k], 0)
        got = _logged(got) + [f for op in ops[k:] for f in live.feed(op) if f.index is not None]
        assert _sig(got) == _sig(full)


# -- generated logs ------------------------------------------------------------------------
@st.composite
def op_logs(draw: Any) -> list[RawOp]:
    """A valid v1.1 op log: steps of text/reasoning/tool_call/tool_result/data blocks,
    deltas of random sizes, maybe a step reset, data updates and transients."""
    ops: list[dict[str, Any]] = [{"type": "message.start", "id": "st_gen", "model": "m"}]
    blocks = 0
    steps = draw(st.integers(1, 3))
    kinds = st.sampled_from(["text", "reasoning", "tool_call", "tool_result", "data", "source"])
    text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=8)
    for step in range(steps):
        first_of_step = blocks
        for _ in range(draw(st.integers(1, 3))):
            kind = draw(kinds)
            block: dict[str, Any] = {"type": kind}
            if step:
                block["step"] = step
            if kind == "tool_call":
                block.update(id=f"call_{blocks}", name="f", arguments="")
            elif kind == "tool_result":
                block.update(call_id=f"call_{blocks}", name="f", output="")
            elif kind == "data":
                block.update(name="progress", id=f"p{blocks}", value=0)
            elif kind == "source":
                block.update(url="https://x.example", title=None)
            else:
                block["text"] = ""
            ops.append({"type": "block.start", "index": blocks, "block": block})
            if kind in ("text", "reasoning"):
                for piece in draw(st.lists(text, max_size=5)):
                    ops.append({"type": "block.delta", "text": piece})
            elif kind in ("tool_call", "tool_result"):
                ops.append({"type": "block.delta", "text": '{"a": 1}'})
            if draw(st.booleans()):
                ops.append({"type": "transient", "name": "status", "value": blocks})
            ops.append({"type": "block.end", "index": blocks})
            if kind == "data":
                ops.append({"type": "block.update", "index": blocks, "set": {"value": 1}})
            blocks += 1
        if step == steps - 1 and step and draw(st.booleans()):
            ops.append({"type": "step.reset", "step": step})
            blocks = first_of_step
            ops.append(
                {"type": "block.start", "index": blocks, "block": {"type": "text", "step": step}}
            )
            ops.append({"type": "block.delta", "text": "retried"})
            ops.append({"type": "block.end", "index": blocks})
            blocks += 1
    status = draw(st.sampled_from(["completed", "cancelled", "failed"]))
    error = {"message": "boom", "type": "x", "code": None} if status == "failed" else None
    ops.append(
        {
            "type": "message.end",
            "status": status,
            "finish_reason": "stop" if status == "completed" else None,
            "usage": None,
            "error": error,
        }
    )
    out: list[RawOp] = []
    seq = 0
    for op in ops:
        if op["type"] != "transient":
            seq += 1
        if op["type"] not in ("block.delta",):
            op = {"type": op["type"], "seq": seq, **{k: v for k, v in op.items() if k != "type"}}
        out.append(RawOp(seq, msgspec.json.encode(op)))
    return out


@settings(max_examples=40, deadline=None)
@given(op_logs(), st.sampled_from(sorted(VIEWS)), st.data())
def test_frames_after_n_is_the_full_frames_from_n(ops: list[RawOp], view: str, data: Any) -> None:
    full = _logged(replay(VIEWS[view](), ops))
    n = data.draw(st.integers(-len(full) - 2, len(full) + 2))
    rest, _ = frames_after(VIEWS[view], ops, n)
    assert _sig(_logged(rest)) == _sig(full[n if n >= 0 else max(0, len(full) + n) :])


@settings(max_examples=40, deadline=None)
@given(op_logs(), st.sampled_from(["openai", "responses", "ops"]), st.data())
def test_compacted_catch_up_keeps_cursors_and_text(ops: list[RawOp], view: str, data: Any) -> None:
    """Merged frames carry the index of the last frame they cover, indexes only grow, the
    text of every merged run is the concatenation, and live frames continue the log."""
    full = _logged(replay(VIEWS[view](), ops))
    k = data.draw(st.integers(0, len(ops)))
    after = data.draw(st.integers(-1, max(-1, len(full) - 1)))
    got, live = catch_up(VIEWS[view], ops[:k], after=after, threshold=0, max_frame_bytes=300)
    if view != "ops":  # the ops view may answer with one snapshot instead
        got = _logged(got)
        indexes = [f.index for f in got]
        assert indexes == sorted(set(indexes))
        assert set(indexes) <= {f.index for f in full}
        covered = [f for f in full if f.index > after and f.index <= (indexes or [after])[-1]]
        joined = "".join(_payload(f) for f in got)
        assert joined == "".join(_payload(f) for f in covered)
    tail = [f for op in ops[k:] for f in live.feed(op) if f.index is not None]
    done = _logged(replay(VIEWS[view](), ops[:k]))
    assert _sig(tail) == _sig(full[len(done) :])


@settings(max_examples=120, deadline=None)
@given(op_logs(), st.sampled_from(["aisdk", "openai", "responses"]), st.data())
def test_a_snapshot_mid_connection_sends_nothing_twice(
    ops: list[RawOp], view: str, data: Any
) -> None:
    """A live reader that falls out of a trimmed log gets a ``snapshot`` op in the middle of
    its connection: the view sends only what the snapshot adds to what the reader has, then
    goes on with the live ops. Before, it sent the whole message again (repeated text)."""
    p = data.draw(st.integers(1, len(ops)))
    q = data.draw(st.integers(p, len(ops)))
    state_view = OpsView()
    for op in ops[:q]:
        state_view.feed(op)
    seq = ops[q - 1].seq
    snap = {"type": "snapshot", "seq": seq, "message": message_dict(state_view.state)}
    cut = VIEWS[view]()
    frames = [f for op in ops[:p] for f in cut.feed(op)]
    frames += cut.feed(RawOp(seq, msgspec.json.encode(snap)))
    frames += [f for op in ops[q:] for f in cut.feed(op)]
    whole = VIEWS[view]()
    full = replay(whole, ops)
    assert message_dict(cut.state) == message_dict(whole.state)
    reset_skipped = any(b'"step.reset"' in op.json for op in ops[p:q])
    if not reset_skipped:  # (else the reader never saw the text the reset took back)
        assert "".join(map(_payload, frames)) == "".join(map(_payload, full))
    indexes = [f.index for f in frames if f.index is not None]
    assert indexes == list(range(len(indexes)))  # (the connection's own numbering goes on)


def _payload(frame: Any) -> str:
    """The text a frame adds (its merge path's string), '' for other frames."""
    if frame.merge is None:
        return ""
    body = frame.body
    for key in frame.path:
        body = body[key]
    return str(body)


# -- compacted catch-up: the issue's measure ----------------------------------------------
@pytest.mark.parametrize("view", ["aisdk", "openai", "ops"])
def test_catch_up_on_10000_tokens_is_small(view: str) -> None:
    ops = long_answer()
    state = OpsView()
    replay(state, ops)
    message_bytes = len(msgspec.json.encode(message_dict(state.state)))
    frames, _ = catch_up(VIEWS[view], ops)
    sent = sum(len(f.data) for f in frames)
    assert len(frames) <= 20
    assert sent <= 1.2 * message_bytes
    assert max(len(f.data) for f in frames) <= 64 * 1024


def test_responses_catch_up_on_10000_tokens_merges_deltas() -> None:
    """The Responses format repeats the text in its done events and in response.completed
    (about 5x the text); compaction still sends few frames and far fewer bytes."""
    ops = long_answer()
    raw = replay(ResponsesView(), ops)
    frames, _ = catch_up(ResponsesView, ops)
    assert len(frames) <= 20
    assert sum(len(f.data) for f in frames) * 5 < sum(len(f.data) for f in raw)


def test_long_text_is_split_under_the_frame_bound() -> None:
    ops = long_answer(40_000)
    for view in (AISDKView, OpenAIChunksView):
        frames, _ = catch_up(view, ops, max_frame_bytes=16 * 1024)
        assert max(len(f.data) for f in frames) <= 16 * 1024
        assert len(frames) <= 40
    pieces = split_text('"\n' * 5000 + "é" * 9000, 4096)
    assert "".join(pieces) == '"\n' * 5000 + "é" * 9000
    assert all(len(msgspec.json.encode(p)) <= 4096 for p in pieces)


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        st.sampled_from(["a", "é", "€", "😀", "\n", '"', "\\", "\x01", "\u2028", " "]),
        max_size=80,
    ),
    st.integers(min_value=1, max_value=40),
)
def test_split_escaped_cuts_at_character_boundaries_into_the_fullest_pieces(text, budget):
    """Pieces join to the text; each escapes to at most ``budget`` bytes (a lone character
    may pass it: it cannot be cut), and is the longest that does (the next character would
    not fit), so frames are as few as the bound allows."""
    pieces = split_escaped(text, budget)
    assert "".join(pieces) == text
    size = lambda piece: len(msgspec.json.encode(piece)) - 2  # noqa: E731
    for number, piece in enumerate(pieces):
        assert piece and (size(piece) <= budget or len(piece) == 1)
        if number + 1 < len(pieces):
            assert size(piece + pieces[number + 1][0]) > budget


def test_a_large_text_splits_into_full_pieces() -> None:
    """An 8 MB text with escapes and multi-byte characters: every piece but the last fills
    the budget to within one character (the cut is moved back only to a boundary)."""
    text = ('Héllo "wörld" \\ 😀\n' * 800_000)[: 16 * 1024 * 1024 // 2]
    pieces = split_escaped(text, 64 * 1024)
    assert "".join(pieces) == text
    assert len(pieces) <= len(msgspec.json.encode(text)) // (64 * 1024 - 8) + 1


def test_the_aisdk_resume_fills_frames_at_a_small_bound() -> None:
    """The resume from state sends each block's text in as few deltas as the bound allows:
    no more frames than the uncompacted log at a 1 KiB bound with 900-character deltas."""
    ops = [
        RawOp(1, b'{"type":"message.start","seq":1,"id":"st_big","model":"m"}'),
        RawOp(2, b'{"type":"block.start","seq":2,"index":0,"block":{"type":"text","text":""}}'),
    ]
    for seq in range(3, 23):
        ops.append(RawOp(seq, msgspec.json.encode({"type": "block.delta", "text": "x" * 900})))
    ops.append(RawOp(23, b'{"type":"block.end","seq":23,"index":0}'))
    view = lambda: AISDKView(max_frame_bytes=1024)  # noqa: E731
    exact, _ = catch_up(view, ops, threshold=1 << 62, max_frame_bytes=1024)
    compacted, _ = catch_up(view, ops, threshold=8, max_frame_bytes=1024)
    assert max(len(f.data) for f in compacted) <= 1024
    assert len(compacted) <= len(exact), (len(compacted), len(exact))


def test_short_lag_gets_exact_frames() -> None:
    ops = _ops("openai_text")
    full = _logged(replay(OpenAIChunksView(), ops))
    got, _ = catch_up(OpenAIChunksView, ops, after_seq=full[1].seq, threshold=64)
    assert _sig(got) == _sig(full[2:])


# -- the AI SDK resume from state -----------------------------------------------------------
def test_aisdk_resume_rebuilds_from_state_without_the_reset_step() -> None:
    ops = _ops("v11_step_reset")
    frames, _ = resume(ops, "msg_1")
    parts = [msgspec.json.decode(f.data[6:]) for f in frames if f.data != b"data: [DONE]\n\n"]
    assert parts[0] == {"type": "start", "messageId": "msg_1"}
    deltas = [p["delta"] for p in parts if p["type"] == "text-delta"]
    assert deltas == ["Let me check.", "The answer is 42."]
    assert frames[-1].data == b"data: [DONE]\n\n"
    # Only the last part carries a cursor (the log's last chunk index); [DONE] has none.
    full = _logged(replay(AISDKView(), ops))
    assert [f.index for f in frames] == [None] * (len(frames) - 2) + [full[-1].index, None]


def test_aisdk_resume_mid_answer_then_live() -> None:
    ops = _ops("v11_agent_steps")
    k = 18  # inside the step-1 text block
    frames, live = resume(ops[:k])
    rest = [f for op in ops[k:] for f in live.feed(op)]
    kinds = [
        msgspec.json.decode(f.data[6:])["type"] for f in frames + rest if b"[DONE]" not in f.data
    ]
    assert kinds.count("start") == 1 and kinds.count("finish") == 1
    assert kinds.count("text-start") == 1 and kinds.count("text-end") == 1


def test_snapshot_op_rebuilds_the_view() -> None:
    """A reader that fell out of the retained log gets a snapshot op first; every view turns
    it into the per-block state and continues live."""
    ops = _ops("snapshot_resume")
    assert b'"snapshot"' in ops[0].json
    full = _ops("deepseek_reasoning_content")
    for name, cls in VIEWS.items():
        frames = replay(cls(), ops)
        want = replay(cls(), full)
        if name == "ops":
            continue
        text_got = "".join(_payload(f) for f in frames)
        text_want = "".join(_payload(f) for f in want)
        assert text_got == text_want, name


def test_transient_frames_have_no_index_or_id() -> None:
    ops = _ops("v11_agent_steps")
    for name, cls in VIEWS.items():
        for frame in replay(cls(), ops):
            if frame.index is None:
                assert not frame.data.startswith(b"id:"), name


def test_bench_rows_meet_the_issue_bound() -> None:
    rows = {r.view: r for r in measure(10_000)}
    for view in ("aisdk", "openai", "ops"):
        assert rows[view].ratio <= 1.2 and rows[view].compacted_frames <= 20
        assert rows[view].compacted_max_frame <= 64 * 1024
        assert rows[view].replay_frames > 10_000  # the uncompacted replay: one frame per token
    assert rows["responses"].compacted_frames <= 20


def test_views_are_sans_io() -> None:
    """The views import no I/O library (they run inside the sans-IO core)."""
    import ast

    forbidden = {"asyncio", "socket", "httpx", "redis", "starlette", "anyio", "uvicorn"}
    folder = Path(__file__).parent.parent / "src" / "tokenwire" / "protocol" / "views"
    for path in folder.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in forbidden, (path.name, name)


def test_a_streamed_error_result_is_one_tool_output_error() -> None:
    ops = ops_from_jsonl(
        [
            '{"type":"message.start","seq":1,"id":"s","model":null}',
            '{"type":"block.start","seq":2,"index":0,"block":{"type":"tool_call","id":"c","name":"f","arguments":"{}"}}',
            '{"type":"block.end","seq":3,"index":0}',
            '{"type":"block.start","seq":4,"index":1,"block":{"type":"tool_result","call_id":"c","name":"f","error":true,"output":""}}',
            '{"type":"block.delta","text":"bad "}',
            '{"type":"block.delta","text":"input"}',
            '{"type":"block.end","seq":7,"index":1}',
            '{"type":"message.end","seq":8,"status":"completed","finish_reason":"stop","usage":null,"error":null}',
        ]
    )
    parts = [f.data for f in replay(AISDKView(), ops) if b"tool-output" in f.data]
    assert parts == [
        b'data: {"type":"tool-output-error","toolCallId":"c","errorText":"bad input"}\n\n'
    ]


def test_views_take_encoded_ops_from_the_producer() -> None:
    """``EncodedOp``s (what ``streams.follow`` yields) are views' input as they are."""
    from tokenwire.protocol import assemble_response

    fixture = HERE / "fixtures" / "openai_parallel_tools.sse"
    encoded, _ = assemble_response(fixture.read_bytes(), stream_id="st_openai_parallel_tools")
    raw = _ops("openai_parallel_tools")
    for cls in VIEWS.values():
        assert _sig(replay(cls(), encoded)) == _sig(replay(cls(), raw))


def test_aisdk_reset_step_only_for_the_clients_current_step() -> None:
    """``reset-step`` drops what follows the client's last ``step-start``: a reset of a step
    that sent nothing yet must not send it (it would drop the previous step's parts)."""
    from tokenwire.protocol import Assembler
    from tokenwire.protocol import facts as f
    from tokenwire.protocol.views import AISDKView

    def parts(facts: list) -> list[str]:
        asm = Assembler("st_r", coalesce_ms=0)
        ops = asm.feed(facts) + asm.close()
        view = AISDKView(None)
        out = []
        for op in ops:
            for frame in view.feed(op):
                if frame.body is not None:
                    out.append(frame.body["type"])
        return out

    empty_step = [
        f.Started("m"),
        f.TextFact(0, "text", "zero"),
        f.StepStarted(1),
        f.StepReset(1),
        f.TextFact(0, "text", "retry"),
        f.Done(),
    ]
    assert "reset-step" not in parts(empty_step)
    tried = [
        f.Started("m"),
        f.TextFact(0, "text", "zero"),
        f.StepStarted(1),
        f.TextFact(0, "text", "bad"),
        f.StepReset(1),
        f.TextFact(0, "text", "retry"),
        f.Done(),
    ]
    assert parts(tried).count("reset-step") == 1


def test_responses_usage_counts_anthropic_cache_tokens_as_input() -> None:
    from tokenwire.protocol.views.usage import responses_usage as _usage

    usage = _usage(
        {
            "input_tokens": 10,
            "output_tokens": 5,
            "cache_read_input_tokens": 3000,
            "cache_creation_input_tokens": 500,
        }
    )
    assert usage is not None
    assert usage["input_tokens"] == 3510 and usage["total_tokens"] == 3515
    assert usage["input_tokens_details"] == {"cached_tokens": 3000, "cache_write_tokens": 500}
    chat = _usage(
        {
            "prompt_tokens": 20,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": 16},
        }
    )
    assert chat is not None and chat["input_tokens"] == 20 and chat["total_tokens"] == 22


def test_usage_in_each_views_spelling_whatever_the_upstreams() -> None:
    """The openai view's usage chunk is in chat completions' spelling (an Anthropic or
    Responses upstream's usage converted, a chat one kept whole); odd values from an upstream
    count as 0 in the converted ones instead of stopping the view (a 500 before)."""
    from tokenwire.protocol.views.usage import chat_usage, responses_usage

    anthropic = {"input_tokens": 12, "output_tokens": 5, "cache_read_input_tokens": 3}
    assert chat_usage(anthropic) == {
        "prompt_tokens": 15,
        "completion_tokens": 5,
        "total_tokens": 20,
        "prompt_tokens_details": {"cached_tokens": 3},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    responses = {
        "input_tokens": 9,
        "output_tokens": 8,
        "total_tokens": 17,
        "output_tokens_details": {"reasoning_tokens": 4},
    }
    converted = chat_usage(responses)
    assert converted is not None and converted["prompt_tokens"] == 9
    assert converted["completion_tokens_details"] == {"reasoning_tokens": 4}
    chat = {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3, "cost": 0.1}
    assert chat_usage(chat) is chat
    odd = {"prompt_tokens": "many", "prompt_tokens_details": [1], "completion_tokens": 2.0}
    assert responses_usage(odd) == {
        "input_tokens": 0,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": 2,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 2,
    }
    assert chat_usage(None) is None and responses_usage({}) is None
    # Through the views: an Anthropic usage read by the openai SDK's chunk model.
    from openai.types.chat import ChatCompletionChunk

    view = OpenAIChunksView()
    ops = [
        {"type": "message.start", "seq": 1, "id": "st_u", "model": "claude"},
        {"type": "message.end", "seq": 2, "status": "completed", "finish_reason": "stop"}
        | {"usage": anthropic, "error": None},
    ]
    frames = [f.body for op in ops for f in view.feed_json(op, op["seq"]) if f.body]
    last = ChatCompletionChunk.model_validate(frames[-1])
    assert last.usage is not None and last.usage.total_tokens == 20
    assert last.usage.prompt_tokens == 15 and last.choices == []
    frames = [
        f.body
        for op in [*ops[:1], {**ops[1], "usage": odd}]
        for f in ResponsesView().feed_json(op, op["seq"])
        if f.body
    ]
    assert frames[-1]["response"]["usage"]["output_tokens"] == 2


def test_aisdk_parts_without_ids_get_ids_unique_across_tool_rounds() -> None:
    """A continuation (one UI message, two streams) starts its block indexes at 0 again: a
    data part or tool call without an id of its own must not take the first round's id."""
    from tokenwire.protocol import Assembler
    from tokenwire.protocol import facts as f

    def ids(stream_id: str) -> list[str]:
        asm = Assembler(stream_id, coalesce_ms=0)
        facts = [
            f.Started("m"),
            f.DataFact(0, "note", {"n": 1}),
            f.ToolCallStarted(0, 0, None, "g"),
            f.ToolCallArguments(0, 0, "{}"),
            f.Done(),
        ]
        view = AISDKView("msg_1")
        out = []
        for op in asm.feed(facts) + asm.close():
            for frame in view.feed(op):
                body = frame.body or {}
                out += [body[k] for k in ("id", "toolCallId") if k in body]
        return sorted(set(out))

    first, second = ids("st_round1"), ids("st_round2")
    assert first and second and not set(first) & set(second)


@pytest.mark.parametrize(
    "path", sorted(VIEW_VECTORS.glob("*.responses.frames")), ids=lambda p: p.name
)
def test_every_responses_vector_event_passes_the_sdks_strict_types(path: Path) -> None:
    """The openai SDK's stream reader builds events without validating; its strict models
    hold what the real API sends (e.g. the enum of ``response.failed`` error codes)."""
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    adapter = TypeAdapter(ResponseStreamEvent)
    for line in path.read_text(encoding="utf-8").splitlines():
        frame = msgspec.json.decode(line)["data"]
        for event in SSEDecoder().feed(frame.encode()):
            adapter.validate_python(msgspec.json.decode(event.data))


def _tool_output_log(pieces: list[str]) -> list[Any]:
    from tokenwire.protocol import Assembler
    from tokenwire.protocol import facts as f

    asm = Assembler("st_tool", coalesce_ms=0)
    facts = [
        f.Started("m"),
        f.ToolCallStarted(0, 0, "call_1", "run"),
        f.ToolCallArguments(0, 0, "{}"),
        f.ToolCallEnded(0, 0),
        f.ToolResultStarted(0, "call_1", "run"),
        *(f.ToolResultOutput(0, "call_1", piece) for piece in pieces),
        f.ToolResultEnd(0, "call_1"),
        f.Finished(0, "stop"),
        f.Done(),
    ]
    return asm.feed(facts, 0.0) + asm.close(0.0)


def _outputs(frames: list[Any]) -> list[dict[str, Any]]:
    bodies = [f.body for f in frames if f.body is not None]
    return [b for b in bodies if b["type"] == "tool-output-available"]


def test_a_streamed_tool_output_costs_linear_bytes_in_the_aisdk_view() -> None:
    """Each preliminary part holds the whole output so far: one per delta cost the square of
    the output (1,000 deltas of 100 bytes were 50 MB). Past 1 KiB they are sent only when
    the output has doubled; the final part holds it all."""
    pieces = [f"{i:05d}" + "x" * 95 for i in range(1000)]
    ops = _tool_output_log(pieces)
    frames = replay(AISDKView(), ops)
    total = sum(len(f.data) for f in frames)
    output = "".join(pieces)
    assert total < 4 * len(output), total
    outputs = _outputs(frames)
    assert outputs[-1] == {
        "type": "tool-output-available",
        "toolCallId": "call_1",
        "output": output,
    }
    preliminary = [o["output"] for o in outputs[:-1]]
    assert all(o.get("preliminary") for o in outputs[:-1]) and preliminary
    assert all(output.startswith(p) for p in preliminary)  # (each is the output so far)
    # Small outputs still get one per delta.
    small = _outputs(replay(AISDKView(), _tool_output_log(["a", "b", "c"])))
    assert [o["output"] for o in small] == ["a", "ab", "abc", "abc"]


def test_a_compacted_resume_sends_an_ended_tool_output_once() -> None:
    """(It was cut at the frame bound and each piece became a part holding the output so
    far: 64 KiB, 128 KiB, ... then the whole again, 4x the message for 200 KB.)"""
    from tokenwire.protocol.views import resume

    output = "y" * 200_000
    ops = _tool_output_log([output[i : i + 1000] for i in range(0, len(output), 1000)])
    frames, _ = resume(ops)
    outputs = _outputs(frames)
    assert outputs == [{"type": "tool-output-available", "toolCallId": "call_1", "output": output}]
    assert sum(len(f.data) for f in frames) < 1.1 * len(output)


def test_the_responses_views_error_codes_are_the_sdks() -> None:
    from typing import get_args

    from openai.types.responses.response_error import ResponseError

    from tokenwire.protocol.views.responses import _ERROR_CODES

    known = set(get_args(ResponseError.model_fields["code"].annotation))
    assert known >= _ERROR_CODES and "server_error" in _ERROR_CODES
    assert {"bio_policy", "data_residency_mismatch"} <= _ERROR_CODES
