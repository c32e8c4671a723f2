"""The op stream itself as a view, for its compacted catch-up.

Live, each op is its own SSE event (``id:<seq>`` / ``data:<op>``, as docs/protocol.md says; a
``transient`` op has no id line). Catching up, a reader gets one ``snapshot`` op (the message
as of the newest seq) when it fits in ``max_frame_bytes``, else the log with runs of
consecutive deltas of one block merged into one ``block.delta`` (stating its ``index`` and, as
no live delta does, its ``seq``: the run's last, also its SSE id, so the reader's next op is
that seq + 1). When blocks' deltas interleave (n>1 choices), runs are one op long: then the
snapshot after all, bigger than the bound.
"""

from __future__ import annotations

from typing import Any

from tokenwire.protocol.views.base import (
    Frame,
    MessageState,
    OpLike,
    View,
    encode_json,
)
from tokenwire.protocol.views.synth import block_dict


def message_dict(state: MessageState) -> dict[str, Any]:
    """The canonical message JSON of ``state`` (v1.1 key order)."""
    blocks = []
    for block in state.blocks:
        data = block_dict(block)
        if block.key is not None:
            data[block.key] = block.text
        blocks.append(data)
    return {
        "id": state.id,
        "model": state.model,
        "status": state.status,
        "finish_reason": state.finish_reason,
        "usage": state.usage,
        "error": state.error,
        "blocks": blocks,
    }


class OpsView(View):
    """Ops -> op SSE events (the identity view, with merging and snapshots for catch-up)."""

    _split_deltas = False  # (one frame is one op, with one seq: an op is never split)
    _mends_ends = False  # (the log's ops as they are)

    def fork(self) -> OpsView:
        return OpsView(self.max_frame_bytes)

    def feed(self, op: OpLike) -> list[Frame]:
        self._raw = op.json  # the live frame is the op's own bytes, never re-encoded
        return super().feed(op)

    def feed_json(self, op: dict[str, Any], seq: int) -> list[Frame]:
        if not hasattr(self, "_raw") or self._raw is None:
            self._raw = encode_json(op)
        try:
            return super().feed_json(op, seq)
        finally:
            self._raw = None

    def _on_snapshot(self, op: dict[str, Any], seq: int) -> None:
        self.state.apply(op, seq)
        self._on(op, seq)

    def _on(self, op: dict[str, Any], seq: int) -> None:
        kind = op.get("type")
        if kind == "block.delta":
            index = int(op.get("index", -1)) % len(self.state.blocks)
            body = {"type": "block.delta", "index": index, "text": op.get("text", "")}
            self._emit(body, ("delta", index), ("text",))
            self._out[-1].data = self._sse(seq, self._raw or encode_json(op))
        else:
            self._emit(op)
            if self._raw is not None:
                self._out[-1].data = self._sse(seq, self._raw, op.get("type") != "transient")

    @staticmethod
    def _sse(seq: int, json: bytes, with_id: bool = True) -> bytes:
        if with_id:
            return b"id:%d\ndata:%s\n\n" % (seq, json)
        return b"data:%s\n\n" % json

    def render(self, frame: Frame) -> bytes:
        body = frame.body
        with_id = frame.index is not None and frame.cursor
        return self._sse(frame.seq, encode_json(body), with_id)

    def _merge(self, run: list[Frame]) -> Frame:
        frame = super()._merge(run)
        if len(run) > 1:
            # A merged delta states the seq it reaches (live deltas never state one), so a
            # client's gap check can tell it from a lost op (docs/protocol.md, "catch-up").
            frame.body = {**frame.body, "seq": frame.seq}
            frame.data = self.render(frame)
        return frame

    def compacted(
        self, frames: list[Frame], after: int, after_seq: int | None, max_frame_bytes: int
    ) -> list[Frame]:
        """One snapshot op when the message fits in ``max_frame_bytes``, else merged ops;
        but the snapshot past the bound (up to 8 MiB) when merging did not help: many more
        merged delta frames than blocks, fewer than 4 deltas each on average."""
        snapshot = {"type": "snapshot", "seq": self.state.seq, "message": message_dict(self.state)}
        data = self._sse(self.state.seq, encode_json(snapshot))
        if not frames:
            return []
        whole = Frame(frames[-1].index, self.state.seq, data, snapshot)
        if len(data) <= max_frame_bytes:
            return [whole]
        merged = self.compact(frames, max_frame_bytes)
        # Deltas of blocks that interleave (an answer's n>1 choices, one op per token each)
        # never form runs to merge. A frame here is one op with one seq, so no frame can carry
        # both blocks' text: rather than one frame per token, the one snapshot, past the bound
        # (but well within what clients read as one event). Runs that other ops only
        # interrupt now and then (citations, updates) still merge well: those stay merged.
        deltas = [frame.merge for frame in merged if frame.merge is not None]
        before = sum(1 for frame in frames if frame.merge is not None)
        splits = -(-len(data) // max_frame_bytes)  # (frames the text needs at the bound)
        if (
            len(deltas) > 2 * len(set(deltas)) + 2 * splits + 16
            and before < _MERGED_WELL * len(deltas)
            and len(data) <= _MOST_SNAPSHOT_BYTES
        ):
            return [whole]
        return merged


_MERGED_WELL = 4
"""Deltas per merged frame, on average, below which merging did not help (interleaving)."""
_MOST_SNAPSHOT_BYTES = 8 * 1024 * 1024
"""The largest snapshot sent past the bound: half the 16 MiB event limit of the clients."""
