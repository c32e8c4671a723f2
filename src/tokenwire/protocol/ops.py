"""Ops: the only thing that travels to clients. Encoded once, shared by every subscriber."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from tokenwire.errors import ProtocolError
from tokenwire.protocol.message import Block, Message


class MessageStart(msgspec.Struct, tag="message.start", tag_field="type", gc=False):
    seq: int
    id: str | None
    model: str | None


class BlockStart(msgspec.Struct, tag="block.start", tag_field="type", gc=False):
    seq: int
    index: int
    block: dict[str, Any]


class BlockDelta(
    msgspec.Struct, tag="block.delta", tag_field="type", gc=False, kw_only=True, omit_defaults=True
):
    """The one frequent op, so the leanest: it carries no ``seq`` (it is the previous op's seq
    plus one; over SSE the event id says it) and no ``index`` when it extends the newest block
    (``index == -1``, Python's own "last element"). That keeps a one-token delta near 50 bytes
    on the wire."""

    index: int = -1
    text: str = ""
    seq: int = 0


class BlockEnd(msgspec.Struct, tag="block.end", tag_field="type", gc=False):
    seq: int
    index: int


class MessageEnd(msgspec.Struct, tag="message.end", tag_field="type", gc=False):
    seq: int
    status: str
    finish_reason: str | None
    usage: dict[str, Any] | None
    error: dict[str, Any] | None


class Snapshot(msgspec.Struct, tag="snapshot", tag_field="type", gc=False, omit_defaults=True):
    seq: int
    message: dict[str, Any]
    # Indexes of the blocks still open (a message says only what its blocks hold). ``None``
    # (left out): unknown, read as "all but a streamed last block have ended".
    open: list[int] | None = None


# -- v1.1 -------------------------------------------------------------------------------------
class BlockUpdate(msgspec.Struct, tag="block.update", tag_field="type", gc=False):
    """Shallow-merge ``set`` into block ``index``'s attrs (a data block's new ``value``, a tool
    result's ``error``, a reasoning block's late ``signature``); open or ended blocks alike."""

    seq: int
    index: int
    set: dict[str, Any]


class StepReset(msgspec.Struct, tag="step.reset", tag_field="type", gc=False):
    """Supersede: drop every block of ``step``. They are the message's last blocks (only the
    latest step can be reset); the retry reuses the step number."""

    seq: int
    step: int


class Transient(msgspec.Struct, tag="transient", tag_field="type", gc=False):
    """App data for live readers only: never stored, never applied to the message. ``seq`` is
    the last real op's (it does not advance the seq), and its SSE frame has no ``id:``."""

    seq: int
    name: str
    value: Any = None


Op = (
    MessageStart
    | BlockStart
    | BlockDelta
    | BlockEnd
    | MessageEnd
    | Snapshot
    | BlockUpdate
    | StepReset
    | Transient
)

_encode = msgspec.json.Encoder().encode
_decoder = msgspec.json.Decoder(Op)
_type_probe = msgspec.json.Decoder(dict[str, Any])


class EncodedOp(msgspec.Struct, gc=False):
    """An op together with its bytes: ``json`` (the op) and ``sse`` (one SSE event, ``id: seq``).

    Build one with ``encode(op)``; it is a Struct because its C constructor is cheap on the
    per-token path.
    """

    op: Op
    seq: int
    json: bytes
    sse: bytes

    @property
    def type(self) -> str:
        return self.op.__struct_config__.tag  # type: ignore[return-value]

    @classmethod
    def from_json(cls, data: bytes, seq: int | None = None) -> EncodedOp:
        """Rebuild from stored bytes (e.g. a Redis entry) without re-encoding. Deltas carry
        no seq of their own, so the caller passes it (stores keep it next to the bytes)."""
        op = decode_op(data)
        if op is None:
            raise ProtocolError("unknown op type")
        if type(op) is Transient:
            return cls(op, op.seq if seq is None else seq, data, transient_frame(data))
        if seq is None:
            seq = op.seq
            if not seq:
                raise ProtocolError("a block.delta needs its seq from outside the op")
        return cls(op, seq, data, sse_frame(seq, data))

    def __repr__(self) -> str:
        return f"EncodedOp({self.json.decode()})"


def sse_frame(seq: int, json: bytes) -> bytes:
    """One op's SSE event: ``id:<seq>`` then ``data:<op JSON>``."""
    # No space after the colons: the SSE grammar allows it and every byte counts per token.
    return b"id:%d\ndata:%s\n\n" % (seq, json)


def transient_frame(json: bytes) -> bytes:
    """A transient op's SSE event: no ``id:`` line, so a browser's ``Last-Event-ID`` (and a
    reconnect's resume position) stays at the last real op."""
    return b"data:%s\n\n" % json


def encode(op: Op, seq: int | None = None) -> EncodedOp:
    """Encode ``op`` once, to JSON and to its SSE frame (``seq`` is required for deltas)."""
    seq = op.seq if seq is None else seq
    json = _encode(op)
    if type(op) is Transient:
        return EncodedOp(op, seq, json, transient_frame(json))
    return EncodedOp(op, seq, json, sse_frame(seq, json))


def is_transient(op: EncodedOp) -> bool:
    """True for a transient op: hand it to live readers, never to the log (``Hub.publish``)."""
    return type(op.op) is Transient


def decode_op(data: bytes | str) -> Op | None:
    """Decode one op. Unknown op types give ``None`` (clients skip them); bad JSON raises."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        try:
            probe = _type_probe.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise ProtocolError(f"invalid op: {exc}") from None
        if probe.get("type") in _KNOWN_TYPES:
            raise ProtocolError(f"invalid op: {exc}") from None
        return None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"invalid op JSON: {exc}") from None
    except RecursionError:  # (msgspec recurses per nesting level)
        raise ProtocolError("invalid op JSON: nested too deep") from None


_KNOWN_TYPES = {
    "message.start",
    "block.start",
    "block.delta",
    "block.end",
    "message.end",
    "snapshot",
    "block.update",
    "step.reset",
    "transient",
}


def apply_op(message: Message, op: Op) -> None:
    """Apply one op to ``message`` in place."""
    if isinstance(op, BlockDelta):  # the hot case first; index -1 is the newest block
        try:
            message.blocks[op.index].append(op.text)
        except IndexError:
            raise ProtocolError(f"block.delta for unknown block {op.index}") from None
    elif isinstance(op, BlockStart):
        if op.index != len(message.blocks):
            raise ProtocolError(f"block.start index {op.index}, expected {len(message.blocks)}")
        message.blocks.append(Block.from_dict(op.block))
    elif isinstance(op, BlockEnd):
        if op.index >= len(message.blocks):
            raise ProtocolError(f"block.end for unknown block {op.index}")
    elif isinstance(op, MessageStart):
        message.id = op.id
        message.model = op.model
    elif isinstance(op, MessageEnd):
        message.status = op.status
        message.finish_reason = op.finish_reason
        message.usage = op.usage
        message.error = op.error
    elif isinstance(op, BlockUpdate):
        if not 0 <= op.index < len(message.blocks):
            raise ProtocolError(f"block.update for unknown block {op.index}")
        message.blocks[op.index].update(op.set)
    elif isinstance(op, StepReset):
        # Only the latest step can be reset, so its blocks are the tail: pop them.
        blocks = message.blocks
        while blocks and blocks[-1].step == op.step:
            blocks.pop()
    elif isinstance(op, Snapshot):
        fresh = Message.from_dict(op.message)
        for name in Message.__slots__:
            setattr(message, name, getattr(fresh, name))
    # A Transient is never applied: it is not part of the message.


def apply_op_with_open(message: Message, op: Op, open_blocks: set[int]) -> None:
    """``apply_op``, keeping ``open_blocks`` (the indexes of the blocks not yet ended) in
    step: what a snapshot says besides its message."""
    apply_op(message, op)
    kind = type(op)
    if kind is BlockStart:
        open_blocks.add(op.index)  # type: ignore[union-attr]
    elif kind is BlockEnd:
        open_blocks.discard(op.index)  # type: ignore[union-attr]
    elif kind is StepReset:  # (its blocks are gone, open or not)
        open_blocks.intersection_update(range(len(message.blocks)))


def apply_ops(ops: list[EncodedOp] | list[Op], message: Message | None = None) -> Message:
    """Apply ops in order, to a new empty message unless one is given."""
    message = message if message is not None else Message.empty()
    for item in ops:
        apply_op(message, item.op if isinstance(item, EncodedOp) else item)
    return message


def snapshot_op(message: Message, seq: int, open_blocks: Iterable[int] | None = None) -> EncodedOp:
    """A snapshot op: ``message`` is the state as of ``seq``; ``open_blocks``, the indexes of
    its blocks still open, when known."""
    if open_blocks is None or message.status != "in_progress":
        return encode(Snapshot(seq, message.to_dict()))
    return encode(Snapshot(seq, message.to_dict(), sorted(open_blocks)))
