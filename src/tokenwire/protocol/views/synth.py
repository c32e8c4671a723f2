"""Ops that rebuild a message state: the basis of every state-based (compacted) catch-up.

A view fed these ops emits one start per block, its accumulated text in as few deltas as the
frame bound allows, its end if it ended, and the end of the message if it ended. A view that
already sent part of the message and then meets a ``snapshot`` (its reader fell out of a
trimmed log mid-connection) is fed ``continuation_ops`` instead: only what the snapshot adds.
"""

from __future__ import annotations

from typing import Any

from tokenwire.protocol.views.base import CITING, BlockState, MessageState, split_escaped

_SLACK = 512  # room for a frame's envelope (ids, keys, SSE framing) around the text


def split_text(text: str, max_frame_bytes: int | None) -> list[str]:
    """``text`` in pieces whose JSON-encoded size stays under ``max_frame_bytes`` minus the
    envelope slack; ``None``: one piece (for a view that splits a delta at its own frame's
    exact room: pre-split pieces there would each leave part of a frame empty)."""
    if max_frame_bytes is None:
        return [text] if text else []
    return split_escaped(text, max(64, max_frame_bytes - _SLACK))


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


def _block_ops(
    index: int, block: BlockState, max_frame_bytes: int | None, whole: frozenset[str]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """The ops that start block ``index`` and give it all its text, and its end (if ended)."""
    ops: list[dict[str, Any]] = []
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
    return ops, ({"type": "block.end", "index": index} if block.ended else None)


def _add_blocks(
    ops: list[dict[str, Any]],
    ends: list[dict[str, Any]],
    blocks: list[BlockState],
    first: int,
    step: int | None,
    max_frame_bytes: int | None,
    whole: frozenset[str],
) -> None:
    """Blocks ``first``, ``first + 1``, ... of ``blocks`` in the order a log has them: the
    blocks of its choice before each end (``ends``, still owed) before it starts, unless it
    is a citation; all of them before a block of another step (a step's parts end before the
    next step starts)."""
    for index in range(first, len(blocks)):
        block = blocks[index]
        if step is None or block.step != step:
            ops.extend(ends)
            ends.clear()
        elif block.type not in CITING and ends:  # (only its choice's: choices interleave)
            mine = [end for end in ends if blocks[end["index"]].choice == block.choice]
            if mine:
                ops.extend(mine)
                ends[:] = [end for end in ends if blocks[end["index"]].choice != block.choice]
        step = block.step
        body, end = _block_ops(index, block, max_frame_bytes, whole)
        ops.extend(body)
        if end is not None:
            ends.append(end)
    ops.extend(ends)
    ends.clear()


def _message_end(state: MessageState) -> dict[str, Any]:
    return {
        "type": "message.end",
        "status": state.status,
        "finish_reason": state.finish_reason,
        "usage": state.usage,
        "error": state.error,
    }


def state_ops(
    state: MessageState, max_frame_bytes: int | None, whole: frozenset[str] = frozenset()
) -> list[dict[str, Any]]:
    """Op dicts that rebuild ``state`` from nothing, text split by ``max_frame_bytes``.
    Blocks of a type in ``whole`` are not split (a view that sends such a block's value as
    one part would send it once per piece, each holding the value so far): an ended one
    starts with its text, an open one gets it as one delta."""
    ops: list[dict[str, Any]] = []
    if not state.started:
        return ops
    ops.append({"type": "message.start", "id": state.id, "model": state.model})
    _add_blocks(ops, [], state.blocks, 0, None, max_frame_bytes, whole)
    if state.ended:
        ops.append(_message_end(state))
    return ops


_IDENTITY = ("id", "call_id", "name", "url")  # attributes a block keeps for good


def _continues(old: BlockState, new: BlockState, unsure: bool) -> bool:
    """Whether ``new`` is ``old`` later on: same kind, place and identity, its text ``old``'s
    and more, and not reopened or grown once ended (else it is another block at the same
    index: a step reset among the ops the reader missed dropped ``old``). ``unsure``: the
    snapshot left ``new`` open on a guess (it may have ended)."""
    if (old.type, old.choice, old.step, old.key) != (new.type, new.choice, new.step, new.key):
        return False
    if any(old.attrs.get(k) != new.attrs.get(k) for k in _IDENTITY):
        return False
    if old.ended and (new.length != old.length or not (new.ended or unsure)):
        return False
    return old.key is None or (new.length >= old.length and new.text.startswith(old.text))


def continuation_ops(
    sent: MessageState, target: MessageState, max_frame_bytes: int | None, whole: frozenset[str]
) -> list[dict[str, Any]]:
    """Op dicts that take a view whose reader has ``sent`` on to ``target`` (the state a
    ``snapshot`` met mid-connection holds), sending nothing twice: the rest of each block's
    text, changed attributes, new blocks, ends. Blocks ``target`` no longer has (a step reset
    among the trimmed ops) are dropped with ``step.reset`` ops, as the live log did.

    Order: what the kept blocks gain, then their ends and the new blocks as a log has them
    (``_add_blocks``)."""
    ops: list[dict[str, Any]] = []
    old, new = sent.blocks, target.blocks
    kept = 0
    while (
        kept < len(old)
        and kept < len(new)
        and _continues(old[kept], new[kept], kept in target.unsure)
    ):
        kept += 1
    steps = [block.step for block in old]
    while len(steps) > kept:  # (a reset drops the trailing blocks of its step)
        step = steps[-1]
        ops.append({"type": "step.reset", "step": step})
        while steps and steps[-1] == step:
            steps.pop()
    kept = len(steps)
    ends: list[dict[str, Any]] = []
    for index in range(kept):
        before, after = old[index], new[index]
        changed = {k: v for k, v in after.attrs.items() if before.attrs.get(k) != v}
        if changed:
            ops.append({"type": "block.update", "index": index, "set": changed})
        if after.key is not None and after.length > before.length:
            rest = after.text[before.length :]
            pieces = [rest] if after.type in whole else split_text(rest, max_frame_bytes)
            ops.extend({"type": "block.delta", "index": index, "text": p} for p in pieces)
        if after.ended and not before.ended:
            ends.append({"type": "block.end", "index": index})
    step = old[kept - 1].step if kept else None
    _add_blocks(ops, ends, new, kept, step, max_frame_bytes, whole)
    if target.ended and not sent.ended:
        ops.append(_message_end(target))
    return ops
