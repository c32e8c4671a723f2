"""What the typed-event normalizers (OpenAI Responses, Anthropic Messages) share.

Both decode each event from its data alone, skip and count what does not decode, start the
message on the first event that has a ``type``, and track the current text block for cited
spans. Their per-token text case stays inline in each ``feed_token`` (the hot path).
"""

from __future__ import annotations

import abc
from typing import Any, NamedTuple

import msgspec

from tokenwire.protocol._textpos import TextPosition
from tokenwire.protocol.facts import Fact, Started, TextFact
from tokenwire.protocol.jsonsafe import repair_utf8
from tokenwire.protocol.sse import SSEEvent


class TokenShortcut(NamedTuple):
    """How a read that is one plain text token of the block being written looks, so that
    ``Pipeline.feed`` may turn it into its op without decoding it (see there): the read is
    ``prefix``, then (when ``middle`` is set) a sequence number and ``middle``, then the
    text's JSON string, then one of ``ends``, or ``padded`` and a run of ASCII letters and
    digits and ``"}\n\n`` (OpenAI's ``obfuscation`` padding). ``position`` is the text
    position the token advances."""

    prefix: bytes
    middle: bytes | None
    ends: frozenset[bytes]
    padded: bytes | None
    position: TextPosition


# What a malformed event or block raises while decoding (RecursionError: deep nesting).
DECODE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)
ABSENT = msgspec.Raw(b"")  # (msgspec.Raw cannot be in a union with None)


class EventNormalizer(abc.ABC):
    """The base of ``ResponsesNormalizer`` and ``AnthropicNormalizer``. Subclasses implement
    ``feed_data`` (calling ``_skip`` / ``_structural``), ``_event`` and ``_model``."""

    __slots__ = ("_pos", "last_skip_reason", "replaced", "saw_chunk", "saw_done", "skipped")

    def __init__(self) -> None:
        self._pos = TextPosition()
        self.saw_chunk = False
        self.saw_done = False
        self.skipped = 0
        self.last_skip_reason: str | None = None
        # Events that held invalid UTF-8 (or lone surrogate escapes), used with the bad bytes
        # replaced by U+FFFD, as the chat normalizer does: the message then carries a warning.
        self.replaced = 0

    def passes_plain_text(self, choice: int) -> bool:
        return False  # the chat-completions fast path never applies

    def token_shortcut(self) -> TokenShortcut | None:
        """How the next plain text token's read looks while it may skip decoding; ``None``
        while it may not (the API has none, no plain token came yet, the text position is
        closed). The caller keeps the rest of ``feed_token``'s rules (see ``Pipeline``)."""
        return None

    def close(self) -> list[Fact]:
        return []

    def feed_event(self, event: SSEEvent) -> list[Fact]:
        return self.feed_data(event.raw)

    def feed_data(self, data: bytes | str) -> list[Fact]:
        """One event's JSON -> its facts (never the per-token ``str``: a repaired event comes
        here, so its caller looks at ``replaced`` however the body was split into reads)."""
        out = self.feed_token(data)
        return [TextFact(0, "text", out)] if type(out) is str else out  # type: ignore[list-item]

    @abc.abstractmethod
    def feed_token(self, data: bytes | str) -> str | list[Fact]:
        """One event's JSON: a plain text token of choice 0 as the ``str`` itself (the
        per-token path: no fact built, see ``Pipeline``), anything else as its facts. Each
        API's own normalizer keeps that case inline."""

    def _repaired(self, data: bytes | str) -> bytes | None:
        """``data`` with invalid UTF-8 replaced (counted), or ``None`` if it had none."""
        repaired = repair_utf8(data)
        if repaired is not None:
            self.replaced += 1
        return repaired

    def _skip(self, reason: str) -> list[Fact]:
        """Count an event (or a block inside one) that could not be used."""
        self.skipped += 1
        self.last_skip_reason = reason
        return []

    API = ""  # the API's name, in skip reasons
    IDLE_TYPES: frozenset[str] = frozenset()  # keep-alive events: they carry nothing

    def _structural(self, event: Any, data: bytes | str | None = None) -> list[Fact]:
        """Any event but a plain text token: the first event of the API starts the message
        (with the model it names); keep-alives before it are passed over, and any other
        event before it is skipped as not this API's (the stream is of another format)."""
        facts: list[Fact] = []
        if not self.saw_chunk:
            kind = event.type
            if not kind:  # not an event of this API (e.g. a chat chunk)
                return self._skip("no 'type' in the event")
            if not isinstance(kind, str) or not self._is_event_type(kind):
                if kind in self.IDLE_TYPES:
                    return facts
                return self._skip(f"{kind!r} is not an event type of the {self.API} API")
            self.saw_chunk = True
            facts.append(Started(self._model(event)))
        before = len(facts)
        try:
            self._event(event, facts)
        except DECODE_ERRORS as exc:  # a malformed item or block inside a valid event
            # (msgspec does not check the UTF-8 of the items and blocks it keeps raw)
            repaired = self._repaired(data) if data is not None else None
            if repaired is None:
                self._skip(str(exc))
                return facts
            del facts[before:]
            try:
                self._event(self._decode(repaired), facts)
            except DECODE_ERRORS:
                self._skip(str(exc))
        return facts

    @abc.abstractmethod
    def _is_event_type(self, kind: str) -> bool:
        """Whether an event of this type may start the message (one of this API's, not a
        keep-alive)."""

    @abc.abstractmethod
    def _decode(self, data: bytes) -> Any:
        """One event of this API, decoded (raises what msgspec raises)."""

    @abc.abstractmethod
    def _model(self, event: Any) -> str | None:
        """The model named by the stream's first event."""

    @abc.abstractmethod
    def _event(self, event: Any, facts: list[Fact]) -> None:
        """Turn one structural event into facts."""
