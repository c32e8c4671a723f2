"""Ops that rebuild a message state: the basis of every state-based (compacted) catch-up.

A view fed these ops emits one start per block, its accumulated text in as few deltas as the
frame bound allows, its end if it ended, and the end of the message if it ended.
"""

from __future__ import annotations

from typing import Any

from tokenwire.protocol.views.base import BlockState, MessageState, encode_json

_SLACK = 512  # room for a frame's envelope (ids, keys, SSE framing) around the text


def split_text(text: str, max_frame_bytes: int) -> list[str]:
    """``text`` in pieces whose JSON-encoded size stays under ``max_frame_bytes`` minus the
    envelope slack (escaping can grow a character up to 6 bytes, so it is measured)."""
    budget = max(64, max_frame_bytes - _SLACK)
    pieces: list[str] = []
    start = 0
    size = max(16, budget // 4)  # a first guess in characters (UTF-8: up to 4 bytes each)
    while start < len(text):
        piece = text[start : start + size]
        while len(encode_json(piece)) > budget and len(piece) > 1:
            piece = piece[: len(piece) // 2]
        # Grow to the largest piece whose encoded size still fits (binary search between
        # what fits and twice that; ASCII text fits ~4x the first guess).
        low, high = len(piece), min(len(text) - start, len(piece) * 4)
        while low < high:
            mid = (low + high + 1) // 2
            if len(encode_json(text[start : start + mid])) <= budget:
                low = mid
            else:
                high = mid - 1
        piece = text[start : start + low]
        pieces.append(piece)
        start += len(piece)
    return pieces


def block_dict(block: BlockState) -> dict[str, Any]:
    """The block's JSON in v1.1 key order, its streamed key empty (deltas follow)."""
    out: dict[str, Any] = {"type": block.type}
    if block.choice:
        out["choice"] = block.choice
    if block.step:
        out["step"] = block.step
    out.update(block.attrs)
    if block.key is not None:
        out[block.key] = ""
    return out


def state_ops(
    state: MessageState, max_frame_bytes: int, whole: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Op dicts that rebuild ``state`` from nothing, text split by ``max_frame_bytes``.
    Blocks of a type in ``whole`` are not split (a view that sends such a block's value as
    one part would send it once per piece, each holding the value so far): an ended one
    starts with its text, an open one gets it as one delta."""
    ops: list[dict[str, Any]] = []
    if not state.started:
        return ops
    ops.append({"type": "message.start", "id": state.id, "model": state.model})
    for index, block in enumerate(state.blocks):
        start = block_dict(block)
        if block.type in whole and block.key is not None:
            if block.ended:
                start[block.key] = block.text
            ops.append({"type": "block.start", "index": index, "block": start})
            if not block.ended and block.text:
                ops.append({"type": "block.delta", "index": index, "text": block.text})
        else:
            ops.append({"type": "block.start", "index": index, "block": start})
        if block.key is not None and block.type not in whole:
            for piece in split_text(block.text, max_frame_bytes):
                ops.append({"type": "block.delta", "index": index, "text": piece})
        if block.ended:
            ops.append({"type": "block.end", "index": index})
    if state.ended:
        ops.append(
            {
                "type": "message.end",
                "status": state.status,
                "finish_reason": state.finish_reason,
                "usage": state.usage,
                "error": state.error,
            }
        )
    return ops
