"""The canonical message: what applying every op of a stream yields.

Blocks keep streamed text as a list of fragments and join it on demand, so appending a delta
costs O(delta), not O(answer so far).
"""

from __future__ import annotations

from typing import Any

import msgspec

# Block type -> the key its streamed text lives under.
STREAM_KEYS: dict[str, str | None] = {
    "text": "text",
    "reasoning": "text",
    "refusal": "text",
    "tool_call": "arguments",
    "tool_result": "output",
    "image": None,
    "source": None,
    "file": None,
    "data": None,
}
# Keys that are not attrs: ``block.update`` never changes them (the streamed key is added per
# block).
_FIXED_KEYS = frozenset(("type", "choice", "step"))

IN_PROGRESS = "in_progress"
COMPLETED = "completed"
CANCELLED = "cancelled"
FAILED = "failed"
END_STATUSES = (COMPLETED, CANCELLED, FAILED)

_encode = msgspec.json.encode


class Block:
    """One block of a message. ``attrs`` are set at start (id, name, url, ...); v1.1's
    ``block.update`` may merge new values into them later (``update``)."""

    __slots__ = ("_parts", "attrs", "choice", "length", "step", "stream_key", "type")

    def __init__(
        self,
        type: str,
        *,
        choice: int = 0,
        step: int = 0,
        attrs: dict[str, Any] | None = None,
        text: str = "",
    ) -> None:
        self.type = type
        self.choice = choice
        self.step = step
        self.attrs: dict[str, Any] = attrs or {}
        self.stream_key = STREAM_KEYS.get(type, "text")
        self._parts: list[str] = [text] if text else []
        # (kept as text comes: asking for ``text`` between appends would copy it all each time)
        self.length = len(text)
        """The length of ``text``, without joining it."""

    @property
    def text(self) -> str:
        """The streamed text (for a tool call: its arguments)."""
        parts = self._parts
        if len(parts) > 1:
            joined = "".join(parts)
            self._parts = [joined]
            return joined
        return parts[0] if parts else ""

    def append(self, fragment: str) -> None:
        self._parts.append(fragment)
        self.length += len(fragment)

    def update(self, values: dict[str, Any]) -> None:
        """Shallow-merge ``values`` into the attrs (``block.update``); the streamed key,
        ``type``, ``choice`` and ``step`` are not attrs and are never changed."""
        stream_key = self.stream_key
        attrs = self.attrs
        for key, value in values.items():
            if key not in _FIXED_KEYS and key != stream_key:
                attrs[key] = value

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.choice:
            out["choice"] = self.choice
        if self.step:
            out["step"] = self.step
        out.update(self.attrs)
        if self.stream_key is not None:
            out[self.stream_key] = self.text
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Block:
        type_ = str(data.get("type", "text"))
        stream_key = STREAM_KEYS.get(type_, "text")
        attrs = {k: v for k, v in data.items() if k not in _FIXED_KEYS and k != stream_key}
        block = cls(
            type_,
            choice=int(data.get("choice") or 0),
            step=int(data.get("step") or 0),
            attrs=attrs,
        )
        if stream_key is not None and STREAM_KEYS.get(type_) is None and stream_key not in data:
            block.stream_key = None  # an unknown type that carries no text
        text = data.get(stream_key) if stream_key else None
        if text:
            block.append(str(text))
        return block

    def copy(self) -> Block:
        clone = Block(
            self.type, choice=self.choice, step=self.step, attrs=dict(self.attrs), text=self.text
        )
        clone.stream_key = self.stream_key
        return clone

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Block) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Block({self.to_dict()!r})"


class Message:
    """An assistant answer as a list of typed blocks, plus how it ended."""

    __slots__ = ("blocks", "error", "finish_reason", "id", "model", "status", "usage")

    def __init__(
        self,
        id: str | None = None,
        model: str | None = None,
        *,
        status: str = IN_PROGRESS,
        finish_reason: str | None = None,
        usage: dict[str, Any] | None = None,
        error: dict[str, Any] | None = None,
        blocks: list[Block] | None = None,
    ) -> None:
        self.id = id
        self.model = model
        self.status = status
        self.finish_reason = finish_reason
        self.usage = usage
        self.error = error
        self.blocks: list[Block] = blocks if blocks is not None else []

    @classmethod
    def empty(cls, id: str | None = None, model: str | None = None) -> Message:
        return cls(id, model)

    @property
    def done(self) -> bool:
        """Whether the message has ended (its status is not ``in_progress``)."""
        return self.status in END_STATUSES

    @property
    def text(self) -> str:
        """All text blocks of choice 0 joined: the plain answer."""
        return "".join(b.text for b in self.blocks if b.type == "text" and b.choice == 0)

    def to_dict(self) -> dict[str, Any]:
        """The message as JSON-ready dicts (the protocol's message shape)."""
        return {
            "id": self.id,
            "model": self.model,
            "status": self.status,
            "finish_reason": self.finish_reason,
            "usage": self.usage,
            "error": self.error,
            "blocks": [b.to_dict() for b in self.blocks],
        }

    def to_json(self) -> bytes:
        """Canonical JSON: fixed key order, compact, UTF-8 (docs/protocol.md)."""
        return _encode(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Message:
        return cls(
            data.get("id"),
            data.get("model"),
            status=data.get("status") or IN_PROGRESS,
            finish_reason=data.get("finish_reason"),
            usage=data.get("usage"),
            error=data.get("error"),
            blocks=[Block.from_dict(b) for b in data.get("blocks") or ()],
        )

    def copy(self) -> Message:
        """An independent copy (blocks included)."""
        return Message(
            self.id,
            self.model,
            status=self.status,
            finish_reason=self.finish_reason,
            usage=self.usage,
            error=self.error,
            blocks=[b.copy() for b in self.blocks],
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Message) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"Message({self.to_dict()!r})"
