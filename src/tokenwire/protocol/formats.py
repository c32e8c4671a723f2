"""Which upstream API a stream (or a whole body) speaks, and the normalizer for it.

Formats: ``"chat"`` (OpenAI chat completions and the many servers compatible with it),
``"responses"`` (OpenAI Responses events), ``"anthropic"`` (Anthropic Messages events), and
``"auto"``: decided by the first SSE event. A Responses event's type starts with ``response.``
(``error`` events without a nested ``error`` object are Responses' too); Anthropic's are
``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``, ``ping`` and
``error`` with a nested ``error`` object; ``keepalive`` is a Responses keep-alive; anything
else (a chunk has no top-level ``type``) is chat completions. The SSE ``event:`` name is
checked first, then the data's ``type``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import msgspec

from tokenwire.protocol.anthropic import EVENT_TYPES as ANTHROPIC_EVENTS
from tokenwire.protocol.anthropic import AnthropicNormalizer
from tokenwire.protocol.assembler import TRUNCATED_CHAT
from tokenwire.protocol.facts import Fact
from tokenwire.protocol.jsonsafe import repair_utf8
from tokenwire.protocol.normalizer import ChunkNormalizer
from tokenwire.protocol.responses_events import ResponsesNormalizer
from tokenwire.protocol.sse import SSEEvent

Format = Literal["chat", "responses", "anthropic", "auto"]
FORMATS: tuple[str, ...] = ("chat", "responses", "anthropic", "auto")
Normalizer = ChunkNormalizer | ResponsesNormalizer | AnthropicNormalizer
# What a stream of each format is made of (in errors: "no … found").
FORMAT_ITEMS = {
    "chat": "chat-completion chunks",
    "responses": "Responses events",
    "anthropic": "Anthropic Messages events",
}

# Why a stream that stopped before its end is ``truncated``, in its API's words.
_TRUNCATED_WHY = {
    "responses": "upstream stream ended without response.completed, response.incomplete or "
    "response.failed",
    "anthropic": "upstream stream ended without message_stop",
}
_UNFINISHED_BODY = {
    "chat": "upstream chat completion is unfinished (no choice has a finish_reason)",
    "responses": "upstream response is unfinished (its status is not completed, incomplete "
    "or failed)",
    "anthropic": "upstream message is unfinished (it has no stop_reason)",
}


def truncated_message(fmt: str, *, whole: bool = False) -> str:
    """The error message of a ``truncated`` stream of format ``fmt`` (``whole``: of a whole,
    non-streamed body)."""
    if whole and fmt in _UNFINISHED_BODY:
        return _UNFINISHED_BODY[fmt]
    return _TRUNCATED_WHY.get(fmt, TRUNCATED_CHAT)


class _Probe(msgspec.Struct, gc=False):
    type: Any = None
    object: Any = None
    error: Any = None
    sequence_number: Any = None  # (every Responses event has one; no Anthropic event does)


_probe = msgspec.json.Decoder(_Probe).decode
_PROBE_ERRORS = (msgspec.DecodeError, msgspec.ValidationError, RecursionError)


def _probed(data: bytes) -> _Probe | None:
    """The keys that tell the formats apart, or ``None`` if ``data`` is no JSON object. Bytes
    the decoders repair (invalid UTF-8, lone surrogate escapes) are repaired here too, so
    that they never decide the format."""
    try:
        return _probe(data)
    except _PROBE_ERRORS:
        repaired = repair_utf8(data)
        if repaired is None:
            return None
        try:
            return _probe(repaired)
        except _PROBE_ERRORS:
            return None


def _from_type(kind: Any, has_error: bool) -> str | None:
    if not isinstance(kind, str):
        return None
    if kind.startswith("response.") or kind == "keepalive":  # (OpenAI's Responses keep-alive)
        return "responses"
    if kind in ANTHROPIC_EVENTS:
        return "anthropic"
    if kind == "error":
        return "anthropic" if has_error else "responses"
    return None


def detect_event(event: SSEEvent) -> str:
    """The format of a stream, from its first event."""
    name = event.event
    if name != "message" and name != "error":
        found = _from_type(name, False)
        if found is not None:
            return found
    raw = event.raw
    if raw[:1] != b"{":
        return "chat"
    probe = _probed(raw)
    if probe is None:
        return "chat"
    if probe.type == "error" and probe.sequence_number is not None:
        return "responses"  # (its error event, flat or with a nested "error" object)
    return _from_type(probe.type, probe.error is not None) or "chat"


def detect_body(data: bytes) -> str:
    """The format of a whole (non-streamed) JSON body."""
    probe = _probed(data)
    if probe is None:
        return "chat"
    if probe.object == "response":
        return "responses"
    if probe.type == "message" or (probe.type == "error" and probe.error is not None):
        return "anthropic"
    return "chat"


def body_fits(fmt: str, data: bytes) -> bool:
    """Whether a whole JSON body can be one of ``fmt``'s (``"responses"``: a response object
    or an error body; ``"anthropic"``: a message or an error body), so forcing a format on
    another API's body is an error rather than an empty answer."""
    probe = _probed(data)
    if probe is None:
        return False
    if fmt == "responses":
        return probe.object == "response" or probe.error is not None
    if fmt == "anthropic":
        return probe.type == "message" or probe.type == "error" or probe.error is not None
    return True


def make_normalizer(fmt: str, think_tags: Iterable[str] | None) -> Normalizer:
    if fmt == "chat":
        return ChunkNormalizer(think_tags)
    if fmt == "responses":
        return ResponsesNormalizer()
    if fmt == "anthropic":
        return AnthropicNormalizer()
    raise ValueError(f"unknown upstream format {fmt!r} (one of {', '.join(FORMATS)})")


class AutoNormalizer:
    """Stands in until the first event names the format, then hands over (``on_detect``)."""

    __slots__ = (
        "_on_detect",
        "_target",
        "_think_tags",
        "last_skip_reason",
        "saw_chunk",
        "saw_done",
    )

    skipped = 0

    def __init__(
        self, think_tags: Iterable[str] | None, on_detect: Callable[[str, Normalizer], None]
    ) -> None:
        self._think_tags = think_tags
        self._on_detect = on_detect
        self._target: Normalizer | None = None
        self.saw_chunk = False
        self.saw_done = False
        self.last_skip_reason: str | None = None

    @property
    def replaced(self) -> int:
        """The detected normalizer's count of chunks repaired (invalid UTF-8), so the read that
        detects the format still reports its repairs."""
        return self._target.replaced if self._target is not None else 0

    def passes_plain_text(self, choice: int) -> bool:
        return False

    def close(self) -> list[Fact]:
        return []

    def feed_event(self, event: SSEEvent) -> list[Fact]:
        target = self._target
        if target is None:  # (later events of the same read still come here)
            fmt = detect_event(event)
            target = self._target = make_normalizer(fmt, self._think_tags)
            self._on_detect(fmt, target)
        return target.feed_event(event)
