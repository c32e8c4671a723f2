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
import re
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
    final = None
    for frame in frames:
        if frame.body is not None:
            event = adapter.validate_python(frame.body)
            state.handle_event(event)
            if event.type in ("response.completed", "response.failed", "response.incomplete"):
                final = event.response
    assert final is not None
    return [item.model_dump() for item in final.output]


def _chat(frames: list[Any]) -> Any:
    from openai.lib.streaming.chat._completions import ChatCompletionStreamState
    from openai.types.chat import ChatCompletionChunk

    state = ChatCompletionStreamState()
    for frame in frames:
        if frame.body is not None and "error" not in frame.body:  # (the SDK raises those)
            state.handle_chunk(ChatCompletionChunk.model_validate(frame.body))
    snapshot = state.current_completion_snapshot  # (get_final_completion raises on length)
    return [choice.message.model_dump() for choice in snapshot.choices]


# Without ``open`` a snapshot cannot show two blocks open at once: its guess ends all but the
# last (the hubs always send ``open``; a snapshot without it comes only from older Redis data).
NEEDS_OPEN = {"parallel_calls"}
MODES = [
    (name, with_open)
    for name in CASES
    for with_open in (True, False)
    if with_open or name not in NEEDS_OPEN
]


@pytest.mark.parametrize(("name", "with_open"), MODES)
def test_openai_sdk_accumulators_end_with_the_whole_logs_message(
    name: str, with_open: bool
) -> None:
    ops_dicts, p, q = CASES[name]
    ops = _log(ops_dicts)
    cut = (p, q, with_open)
    assert _responses(_frames("responses", ops, cut)) == _responses(_frames("responses", ops, None))
    assert _chat(_frames("openai", ops, cut)) == _chat(_frames("openai", ops, None))


_NEEDS_NODE = pytest.mark.skipif(
    shutil.which("node") is None or not (WEB / "node_modules" / "ai").is_dir(),
    reason="node or web/node_modules is missing",
)


def _read_ui_messages(cases: dict[str, list[str]], tmp_path: Path) -> dict[str, Any]:
    """What the ``ai`` package's readUIMessageStream makes of each case's frames."""
    path = tmp_path / "cases.json"
    path.write_text(json.dumps(cases))
    done = subprocess.run(
        ["node", str(READER), str(path)], cwd=WEB, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


@_NEEDS_NODE
def test_the_ai_package_ends_with_the_whole_logs_message(tmp_path: Path) -> None:
    cases: dict[str, list[str]] = {}
    for name, with_open in MODES:
        ops_dicts, p, q = CASES[name]
        ops = _log(ops_dicts)
        cases[f"{name}/{with_open}"] = [
            f.data.decode() for f in _frames("aisdk", ops, (p, q, with_open))
        ]
        cases[f"{name}/whole"] = [f.data.decode() for f in _frames("aisdk", ops, None)]
    got = _read_ui_messages(cases, tmp_path)
    for name, with_open in MODES:
        cut, whole = got[f"{name}/{with_open}"], got[f"{name}/whole"]
        assert whole["errors"] == [] and cut["errors"] == [], (name, with_open, cut["errors"])
        assert cut["parts"] == whole["parts"], (name, with_open)


HERE = Path(__file__).parent
VECTORS = sorted(
    [*(HERE / "vectors").glob("*.ops.jsonl"), *(HERE / "vectors" / "views").glob("*.ops.jsonl")]
)
AI_VECTORS = [  # (tools, citations, steps, resets, choices)
    "anthropic_citations",
    "openai_n2_choices",
    "responses_reasoning_citation",
    "v11_agent",
    "v11_citations",
    "v11_steps",
    "v11_step_reset",
    "v11_tool_result",
]


def _cuts(ops: list[RawOp]) -> list[tuple[int, int]]:
    """Every cut point p, with a snapshot up to 3 ops later and one at the end (all p <= q
    takes minutes: the same checks run exhaustively once gave no other failure)."""
    n = len(ops)
    return sorted({(p, q) for p in range(1, n + 1) for q in (p, p + 1, p + 3, n) if q <= n})


def _without_generated_ids(items: Any) -> Any:
    """Item ids the Responses view makes up (``item_<stream>_<n>``) are the connection's own
    after a snapshot; the rest must match."""
    text = json.dumps(items)
    return json.loads(re.sub(r'"item_[A-Za-z0-9_]*?_\d+"', '"ITEM"', text))


@pytest.mark.parametrize(
    "path", VECTORS, ids=[f"{p.parent.name}/{p.name[: -len('.ops.jsonl')]}" for p in VECTORS]
)
def test_every_cut_of_every_vector_ends_with_the_whole_logs_message(path: Path) -> None:
    """Every reader cut point p and snapshot point q >= p of every recorded log, with the
    snapshot's ``open`` as the hubs send it: the openai SDK's accumulators end with what a
    reader of the whole log gets (the chat view cannot take back text a missed step reset
    dropped, so it is compared only when none was missed)."""
    ops = ops_from_jsonl(path.read_bytes().splitlines())
    if not ops or json.loads(ops[0].json)["type"] == "snapshot":
        pytest.skip("a log that starts with a snapshot has no earlier state to cut")
    whole_r = _without_generated_ids(_responses(_frames("responses", ops, None)))
    whole_c = _chat(_frames("openai", ops, None))
    for p, q in _cuts(ops):
        got = _without_generated_ids(_responses(_frames("responses", ops, (p, q, True))))
        assert got == whole_r, (p, q)
        if not any(b'"step.reset"' in op.json for op in ops[p:q]):
            assert _chat(_frames("openai", ops, (p, q, True))) == whole_c, (p, q)


@_NEEDS_NODE
def test_every_cut_of_tool_citation_and_step_vectors_reads_alike_in_the_ai_package(
    tmp_path: Path,
) -> None:
    cases: dict[str, list[str]] = {}
    for name in AI_VECTORS:
        ops = ops_from_jsonl(
            (Path(__file__).parent / "vectors" / f"{name}.ops.jsonl").read_bytes().splitlines()
        )
        cases[f"{name}/whole"] = [f.data.decode() for f in _frames("aisdk", ops, None)]
        for p, q in _cuts(ops):
            frames = _frames("aisdk", ops, (p, q, True))
            cases[f"{name}/{p}/{q}"] = [f.data.decode() for f in frames]
    got = _read_ui_messages(cases, tmp_path)
    for key, result in got.items():
        whole = got[f"{key.split('/')[0]}/whole"]
        assert result["errors"] == [] and result["parts"] == whole["parts"], key
