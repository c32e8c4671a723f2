"""The frame bound (``max_frame_bytes``) holds on the wire: every catch-up frame's bytes (its
``id:`` line and separators included) stay within it, and a single huge text delta becomes
several frames in the views whose format allows it (openai, aisdk, responses; never ops,
whose frame is one op). See docs/views.md, "Catch-up is compacted"."""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwire.protocol.views import VIEWS, RawOp, catch_up, replay, resume

_TEXT = st.text(alphabet=st.sampled_from('ab é"\n\\\u2028😀'), min_size=1, max_size=40)


def _log(deltas: list[str], *, first_seq: int = 1, ended: bool = True) -> list[RawOp]:
    enc = msgspec.json.encode
    seq = first_seq
    ops = [RawOp(seq, enc({"type": "message.start", "seq": seq, "id": "m1", "model": "x"}))]
    seq += 1
    block = {"type": "text", "text": ""}
    ops.append(RawOp(seq, enc({"type": "block.start", "seq": seq, "index": 0, "block": block})))
    for text in deltas:
        seq += 1
        ops.append(RawOp(seq, enc({"type": "block.delta", "text": text})))
    if ended:
        seq += 1
        ops.append(RawOp(seq, enc({"type": "block.end", "seq": seq, "index": 0})))
        seq += 1
        end = {"type": "message.end", "seq": seq, "status": "completed"}
        ops.append(RawOp(seq, enc({**end, "finish_reason": "stop", "usage": None, "error": None})))
    return ops


def _factory(view: str, bound: int) -> Any:
    """The view as the routes make it: with the same bound as the catch-up's."""
    return functools.partial(VIEWS[view], max_frame_bytes=bound)


def _delta_text(view: str, frame: Any) -> str:
    """The text a delta frame carries ('' for other frames)."""
    if frame.body is None or frame.merge is None:
        return ""
    body = frame.body
    for key in frame.path:
        body = body[key]
    return str(body)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(_TEXT, min_size=1, max_size=400),
    st.integers(min_value=600, max_value=6000),
    st.sampled_from([1, 7, 95, 9_999_990]),
    st.sampled_from(sorted(VIEWS)),
    st.booleans(),
)
def test_every_catch_up_frame_fits_the_bound(
    deltas: list[str], bound: int, first_seq: int, view: str, ended: bool
) -> None:
    ops = _log(deltas, first_seq=first_seq, ended=ended)
    frames, _ = catch_up(_factory(view, bound), ops, threshold=0, max_frame_bytes=bound)
    # (the Responses format repeats the whole text in its .done events: only deltas count)
    checked = [f for f in frames if view != "responses" or f.merge is not None]
    assert all(len(f.data) <= bound for f in checked), max(len(f.data) for f in checked)
    if view != "ops":
        text = "".join(_delta_text(view, f) for f in frames)
        assert text == "".join(deltas)


def test_the_reported_ops_frame_fits() -> None:
    """The reviewer's case: an ops catch-up frame of 65,539 B with the default 65,536 bound."""
    for size in range(1, 400, 7):
        deltas = ["x" * size] * (200_000 // size)
        frames, _ = catch_up(VIEWS["ops"], _log(deltas, first_seq=9, ended=False), threshold=0)
        assert max(len(f.data) for f in frames) <= 65_536


@settings(max_examples=40, deadline=None)
@given(
    st.integers(min_value=1, max_value=5 * 4096),
    st.integers(min_value=1024, max_value=4096),
    st.sampled_from(["openai", "aisdk", "responses"]),
    st.sampled_from(["a", "é", '"', "😀", "\u2028"]),
)
def test_a_huge_delta_is_split_live_and_in_catch_up(
    size: int, bound: int, view: str, char: str
) -> None:
    text = char * size
    ops = _log(["hi ", text, " bye"])
    live = replay(VIEWS[view](max_frame_bytes=bound), ops)
    again = replay(VIEWS[view](max_frame_bytes=bound), ops)
    assert [(f.index, f.data) for f in live] == [(f.index, f.data) for f in again]
    indexes = [f.index for f in live if f.index is not None]
    assert indexes == list(range(len(indexes)))  # (dense: a split delta takes several)
    deltas = [f for f in live if f.merge is not None]
    assert all(len(f.data) <= bound for f in deltas)
    assert "".join(_delta_text(view, f) for f in deltas) == "hi " + text + " bye"
    if view != "responses":  # (its .done events repeat the whole text, by the format)
        assert all(len(f.data) <= bound for f in live)
        caught, _ = catch_up(_factory(view, bound), ops, threshold=0, max_frame_bytes=bound)
        assert all(len(f.data) <= bound for f in caught)
    if view == "aisdk":
        frames, _ = resume(ops, None, max_frame_bytes=bound)
        assert all(len(f.data) <= bound for f in frames)


def test_a_400_kb_text_call_is_several_frames() -> None:
    ops = _log(["x" * 400_000])
    for view in ("openai", "aisdk", "responses"):
        deltas = [f for f in replay(VIEWS[view](), ops) if f.merge is not None]
        assert len(deltas) >= 7 and all(len(f.data) <= 64 * 1024 for f in deltas), view
    ops_frames = replay(VIEWS["ops"](), ops)  # (an op is never split: one 400 KB frame)
    assert max(len(f.data) for f in ops_frames) > 400_000
