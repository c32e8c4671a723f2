"""A live reader that falls out of a trimmed log gets a ``snapshot`` op in the middle of its
connection. Each view then sends only what the snapshot adds to what the reader has, and the
real clients (the ``ai`` package's readUIMessageStream, the ``openai`` SDK's Responses and chat
stream accumulators) end with the message a reader of the whole log gets: no repeated text
(before: the whole message again), no part continued after a step reset replaced it, no
block left open or ended early.

Each case cuts the reader after op ``p`` and hands it a snapshot of the state after op ``q``,
then the ops after ``q``; with and without the snapshot's ``open`` list (hubs send it; a
snapshot without it is read as "all but the last block have ended")."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from tokenwire.protocol.views import VIEWS, OpsView, RawOp, message_dict, ops_from_jsonl

WEB = Path(__file__).parent.parent / "web"
READER = WEB / "test-views" / "read-ui-messages.mjs"


def _end(reason: str = "stop") -> dict[str, Any]:
    return {"type": "message.end", "status": "completed", "finish_reason": reason}


def _start(index: int, block: dict[str, Any]) -> dict[str, Any]:
    return {"type": "block.start", "index": index, "block": block}


def _delta(index: int, text: str) -> dict[str, Any]:
    return {"type": "block.delta", "index": index, "text": text}


def _stop(index: int) -> dict[str, Any]:
    return {"type": "block.end", "index": index}


MSG = {"type": "message.start", "id": "st_cut", "model": "m"}
TEXT = {"type": "text", "text": ""}

CASES: dict[str, tuple[list[dict[str, Any]], int, int]] = {
    # A text ends, its step is reset, the retry starts with the same words.
    "reset_same_prefix": (
        [
            MSG,
            _start(0, {**TEXT, "step": 1}),
            _delta(0, "Hi"),
            _stop(0),
            {"type": "step.reset", "step": 1},
            _start(0, {**TEXT, "step": 1}),
            _delta(0, "Hi"),
            _delta(0, " there"),
            _delta(0, "!"),
            _stop(0),
            _end(),
        ],
        4,
        8,
    ),
    # A tool call replaced by the retry's call to another tool, same index.
    "reset_other_call": (
        [
            MSG,
            _start(0, {"type": "tool_call", "step": 1, "id": "call_A", "name": "weather"}),
            {"type": "step.reset", "step": 1},
            _start(0, {"type": "tool_call", "step": 1, "id": "call_B", "name": "search"}),
            _delta(0, '{"q": '),
            _delta(0, '"x"}'),
            _stop(0),
            _end("tool_calls"),
        ],
        2,
        5,
    ),
    # The snapshot comes right after a block ended (a tool boundary).
    "after_a_block_end": (
        [
            MSG,
            _start(0, TEXT),
            _delta(0, "Let me"),
            _delta(0, " check."),
            _stop(0),
            _start(1, {"type": "tool_call", "id": "c1", "name": "f", "arguments": ""}),
            _delta(1, "{}"),
            _stop(1),
            _end("tool_calls"),
        ],
        3,
        5,
    ),
    # Two tool calls streaming at once.
    "parallel_calls": (
        [
            MSG,
            _start(0, {"type": "tool_call", "id": "c0", "name": "f", "arguments": ""}),
            _start(1, {"type": "tool_call", "id": "c1", "name": "g", "arguments": ""}),
            _delta(0, '{"a"'),
            _delta(1, '{"b"'),
            _delta(0, ": 1"),
            _delta(1, ": 2"),
            _delta(0, "}"),
            _delta(1, "}"),
            _stop(0),
            _stop(1),
            _end("tool_calls"),
        ],
        5,
        7,
    ),
    # Reasoning then text: the reader is cut inside the reasoning, the snapshot is mid-text.
    "into_the_next_block": (
        [
            MSG,
            _start(0, {"type": "reasoning", "text": ""}),
            _delta(0, "Think"),
            _delta(0, "ing."),
            _stop(0),
            _start(1, TEXT),
            _delta(1, "The answer"),
            _delta(1, " is 42."),
            _stop(1),
            _end(),
        ],
        3,
        7,
    ),
}


def _log(ops: list[dict[str, Any]]) -> list[RawOp]:
    return ops_from_jsonl([json.dumps(op) for op in ops])


def _snapshot(ops: list[RawOp], q: int, with_open: bool) -> RawOp:
    """The snapshot a hub hands a reader of the log trimmed after op ``q``."""
    state_view, still = OpsView(), set()
    for op in ops[:q]:
        state_view.feed(op)
        body = json.loads(op.json)
        if body["type"] == "block.start":
            still.add(body["index"])
        elif body["type"] == "block.end":
            still.discard(body["index"])
        elif body["type"] == "step.reset":
            still = {i for i in still if i < len(state_view.state.blocks)}
    seq = ops[q - 1].seq
    snap: dict[str, Any] = {"type": "snapshot", "seq": seq}
    snap["message"] = message_dict(state_view.state)
    if with_open:
        snap["open"] = sorted(still)
    return RawOp(seq, msgspec.json.encode(snap))


def _frames(view: str, ops: list[RawOp], cut: tuple[int, int, bool] | None) -> list[Any]:
    reader = VIEWS[view]()
    if cut is None:
        return [f for op in ops for f in reader.feed(op)]
    p, q, with_open = cut
    frames = [f for op in ops[:p] for f in reader.feed(op)]
    frames += reader.feed(_snapshot(ops, q, with_open))
    return frames + [f for op in ops[q:] for f in reader.feed(op)]


def _responses(frames: list[Any]) -> Any:
    from openai import omit
    from openai.lib.streaming.responses._responses import ResponseStreamState
    from openai.types.responses import ResponseStreamEvent
    from pydantic import TypeAdapter

    adapter = TypeAdapter(ResponseStreamEvent)
    state = ResponseStreamState(input_tools=omit, text_format=omit)
    for frame in frames:
        if frame.body is not None:
            state.handle_event(adapter.validate_python(frame.body))
    final = state._completed_response
    assert final is not None
    return [item.model_dump() for item in final.output]


def _chat(frames: list[Any]) -> Any:
    from openai.lib.streaming.chat._completions import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    state = ChatCompletionStreamState()
    for frame in frames:
        if frame.body is not None:
            state.handle_chunk(ChatCompletionChunk.model_validate(frame.body))
    return [choice.message.model_dump() for choice in state.get_final_completion().choices]


MODES = [(name, with_open) for name in CASES for with_open in (True, False)]


@pytest.mark.parametrize(("name", "with_open"), MODES)
def test_openai_sdk_accumulators_end_with_the_whole_logs_message(
    name: str, with_open: bool
) -> None:
    ops_dicts, p, q = CASES[name]
    ops = _log(ops_dicts)
    cut = (p, q, with_open)
    assert _responses(_frames("responses", ops, cut)) == _responses(_frames("responses", ops, None))
    assert _chat(_frames("openai", ops, cut)) == _chat(_frames("openai", ops, None))


@pytest.mark.skipif(
    shutil.which("node") is None or not (WEB / "node_modules" / "ai").is_dir(),
    reason="node or web/node_modules is missing",
)
def test_the_ai_package_ends_with_the_whole_logs_message(tmp_path: Path) -> None:
    cases: dict[str, list[str]] = {}
    for name, with_open in MODES:
        ops_dicts, p, q = CASES[name]
        ops = _log(ops_dicts)
        cases[f"{name}/{with_open}"] = [
            f.data.decode() for f in _frames("aisdk", ops, (p, q, with_open))
        ]
        cases[f"{name}/whole"] = [f.data.decode() for f in _frames("aisdk", ops, None)]
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    done = subprocess.run(
        ["node", str(READER), str(path)], cwd=WEB, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    for name, with_open in MODES:
        cut, whole = got[f"{name}/{with_open}"], got[f"{name}/whole"]
        assert whole["errors"] == [] and cut["errors"] == [], (name, with_open, cut["errors"])
        assert cut["parts"] == whole["parts"], (name, with_open)
