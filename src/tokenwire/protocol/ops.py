"""Ops: the only thing that travels to clients. Encoded once, shared by every subscriber."""

from __future__ import annotations

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


class Snapshot(msgspec.Struct, tag="snapshot", tag_field="type", gc=False):
    seq: int
    message: dict[str, Any]


Op = MessageStart | BlockStart | BlockDelta | BlockEnd | MessageEnd | Snapshot

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


def encode(op: Op, seq: int | None = None) -> EncodedOp:
    """Encode ``op`` once, to JSON and to its SSE frame (``seq`` is required for deltas)."""
    seq = op.seq if seq is None else seq
    json = _encode(op)
    return EncodedOp(op, seq, json, sse_frame(seq, json))


def decode_op(data: bytes | str) -> Op | None:
    """Decode one op. Unknown op types give ``None`` (clients skip them); bad JSON raises."""
    try:
        return _decoder.decode(data)
    except msgspec.ValidationError as exc:
        try:
            probe = _type_probe.decode(data)
        except msgspec.DecodeError:
            raise ProtocolError(f"invalid op: {exc}") from None
        if probe.get("type") in _KNOWN_TYPES:
            raise ProtocolError(f"invalid op: {exc}") from None
        return None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"invalid op JSON: {exc}") from None


_KNOWN_TYPES = {
    "message.start",
    "block.start",
    "block.delta",
    "block.end",
    "message.end",
    "snapshot",
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
    elif isinstance(op, Snapshot):
        fresh = Message.from_dict(op.message)
        for name in Message.__slots__:
            setattr(message, name, getattr(fresh, name))


def apply_ops(ops: list[EncodedOp] | list[Op], message: Message | None = None) -> Message:
    """Apply ops in order, to a new empty message unless one is given."""
    message = message if message is not None else Message.empty()
    for item in ops:
        apply_op(message, item.op if isinstance(item, EncodedOp) else item)
    return message


def snapshot_op(message: Message, seq: int) -> EncodedOp:
    """A snapshot op: ``message`` is the state as of ``seq``."""
    return encode(Snapshot(seq, message.to_dict()))
