"""Upstream bytes -> ops in one object: SSE decoder + normalizer + assembler.

``format`` picks the upstream API: ``"chat"`` (chat completions, the default), ``"responses"``
(OpenAI Responses events), ``"anthropic"`` (Anthropic Messages events) or ``"auto"`` (from
the first event; see protocol/formats.py). Each has a per-token fast path (see ``feed``), and
a Responses or Anthropic read that is one whole event skips the SSE decoder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import msgspec

from tokenwire.protocol._textpos import TextPosition
from tokenwire.protocol.assembler import INVALID_UTF8, Assembler, error_info
from tokenwire.protocol.chunks import Chunk, chunk_decoder
from tokenwire.protocol.facts import TextFact
from tokenwire.protocol.formats import (
    FORMAT_ITEMS,
    AutoNormalizer,
    Normalizer,
    make_normalizer,
    truncated_message,
)
from tokenwire.protocol.message import Message
from tokenwire.protocol.normalizer import ChunkNormalizer
from tokenwire.protocol.ops import EncodedOp
from tokenwire.protocol.sse import DEFAULT_MAX_EVENT_BYTES, SSEDecoder, SSEEventTooLarge
from tokenwire.protocol.think_tags import DEFAULT_THINK_TAGS

_encode = msgspec.json.Encoder().encode
# A ``TokenShortcut``'s fields and the open text block the token's delta goes to (as
# ``Pipeline._fast_block``). A plain tuple: its unpacking is the fastest there is, and it is
# on the per-token path.
_Token = tuple[
    bytes, "bytes | None", frozenset[bytes], "bytes | None", TextPosition, tuple[str, int]
]
# A Responses token's sequence number has at most this many digits on the per-token path.
_MAX_SEQ_DIGITS = 18

# How much of a body's start is kept to say what it was when it held no event.
_HEAD_BYTES = 512


class Pipeline:
    """Feed an upstream SSE body in any pieces; get sequenced ops."""

    __slots__ = (
        "_chat",
        "_events_direct",
        "_fast_block",
        "_head",
        "_head_open",
        "_max_event_bytes",
        "_token",
        "assembler",
        "decoder",
        "format",
        "normalizer",
    )

    def __init__(
        self,
        stream_id: str | None = None,
        *,
        model: str | None = None,
        coalesce_ms: float = 0.0,
        think_tags: Iterable[str] | None = DEFAULT_THINK_TAGS,
        format: str = "chat",
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.decoder = SSEDecoder(max_event_bytes)
        # A read bigger than this skips the fast paths: the decoder enforces the limit.
        self._max_event_bytes = max_event_bytes
        self.format = format  # "auto" until the first event decides
        self.normalizer: Normalizer | AutoNormalizer
        if format == "chat":
            self.normalizer = ChunkNormalizer(think_tags)
        elif format == "auto":
            self.normalizer = AutoNormalizer(think_tags, self._detected)
        else:
            self.normalizer = make_normalizer(format, think_tags)
        self._chat = format == "chat"
        # Responses / Anthropic: whether a read that is one whole event may skip the SSE
        # decoder (it is between events and the format is known). Not before the decoder
        # had the body's first bytes: only there is a BOM dropped.
        self._events_direct = False
        self.assembler = Assembler(stream_id, model=model, coalesce_ms=coalesce_ms)
        # Choice 0's open text block (the assembler's ``text_block(0)``) while the per-token
        # fast path may be taken. The assembler may be shared (a ``StreamWriter``'s, which
        # its host writes to between the pipe's reads): the path is taken only while that
        # very entry is still the open one.
        self._fast_block: tuple[str, int] | None = None
        # While the Responses / Anthropic per-token shortcut may be taken (see ``_token_op``):
        # how a plain text token's read looks and the open text block its delta goes to.
        # (One slot, not six: every open stream holds a pipeline.)
        self._token: _Token | None = None
        # The body's first _HEAD_BYTES, gathered over as many reads as it takes (a split
        # must not change the verdict), to say what a 200 answer was if it held no chunk.
        self._head = b""
        self._head_open = True  # (a flag, not a len() per read: the events path is per token)

    @property
    def head(self) -> bytes:
        """The first bytes of the body (to say what a 200 answer without chunks was). Reads
        taken by the per-token paths, which come only after a chunk, are not in it."""
        return self._head

    @property
    def message(self) -> Message:
        """The message as the ops so far built it."""
        return self.assembler.message

    @property
    def seq(self) -> int:
        """The seq of the last op emitted."""
        return self.assembler.seq

    @property
    def done(self) -> bool:
        """Whether ``message.end`` has been emitted."""
        return self.assembler.done

    def feed(self, data: bytes, now: float = 0.0) -> list[EncodedOp]:
        """Feed the next bytes of the upstream body (any split); returns the ops they complete."""
        block = self._fast_block  # (never set for other formats)
        if block is not None and data.endswith(b"\n\n") and len(data) <= self._max_event_bytes:
            lines = data.splitlines()
            if len(lines) == 2 and lines[0].startswith(b"data: {"):
                chunk = _decode_or_none(lines[0][6:])
                if chunk is not None:
                    text = _plain_text(chunk)
                    assembler = self.assembler
                    if text is not None and assembler.text_block(0) is block:
                        return [assembler.text_delta(block[1], text)]
                    # Exactly one event, decoder idle: hand the decoded chunk on directly.
                    ops = assembler.feed(self.normalizer.feed_chunk(chunk), now)
                    self._fast_block = self._fast_path_block()
                    return ops
        token = self._token  # (set only for Responses and Anthropic)
        if token is not None and data.startswith(token[0]) and len(data) <= self._max_event_bytes:
            op = self._token_op(data, token)
            if op is not None:
                return [op]
        # (Past the fast paths: they are taken only once a chunk came, when the head is moot.)
        if self._head_open:
            self._head += data[: _HEAD_BYTES - len(self._head)]
            self._head_open = len(self._head) < _HEAD_BYTES
        # (With coalescing no per-token path is ever taken: nothing to look at per read.)
        if not self._chat:
            ops = self._feed_events(data, now)
            if not self.assembler.window:
                self._allow_token_shortcut()
            return ops
        ops = self._feed(data, now)
        if not self.assembler.window:
            self._fast_block = self._fast_path_block()
        return ops

    def _feed_events(self, data: bytes, now: float) -> list[EncodedOp]:
        """Responses / Anthropic events (and "auto" before it decides). The usual read is one
        whole ``event: …`` + ``data: …`` event: with the SSE decoder between events, its data
        goes straight to the normalizer (the event name is in the data's ``type`` too), and a
        text token for the open text block straight to a delta op. Hand-inlined (no SSE
        decoder, no fact object) because it is the per-token path: bench/core.py measures it."""
        if self._events_direct and len(data) <= self._max_event_bytes and b"\r" not in data:
            # Exactly two lines, ``event:`` then ``data: ``, "\n"-ended: anything else (more
            # lines, "\r" line ends, a "data:" without its space) goes to the SSE decoder.
            # (One split, not a find/startswith per line: ~0.1 us less per token.)
            lines = data.split(b"\n", 4)  # (at most 5 parts, whatever the read holds)
            if (
                len(lines) == 4
                and lines[1][:6] == b"data: "
                and lines[0][:6] == b"event:"
                and not lines[2]
                and not lines[3]
            ):
                normalizer = self.normalizer
                out = normalizer.feed_token(lines[1][6:])  # type: ignore[union-attr]
                assembler = self.assembler
                if type(out) is str:
                    current = self._delta_block()
                    if current is not None:
                        return [assembler.text_delta(current[1], out)]
                    out = [TextFact(0, "text", out)]
                elif normalizer.replaced:  # (before the facts, which may end the message)
                    self._note_repairs(normalizer.replaced)
                return assembler.feed(out, now)  # type: ignore[arg-type]
        ops = self._feed(data, now)
        self._events_direct = self.decoder.idle and self.format != "auto"
        if self._chat:  # "auto" just decided on chat
            self._fast_block = self._fast_path_block()
        return ops

    def _detected(self, fmt: str, normalizer: Normalizer) -> None:
        self.format = fmt
        self.normalizer = normalizer
        self._chat = fmt == "chat"

    def _feed(self, data: bytes, now: float) -> list[EncodedOp]:
        try:
            events = self.decoder.feed(data)
        except SSEEventTooLarge as exc:
            # Keep what came before the oversized event, then end the message.
            ops = self._events(exc.events, now) if exc.events else []
            return ops + self.fail(str(exc), error_type="event_too_large", now=now)
        if not events:
            return self.assembler.poll(now)
        return self._events(events, now)

    def _events(self, events: list, now: float) -> list[EncodedOp]:
        normalizer = self.normalizer
        replaced = normalizer.replaced
        normalize = normalizer.feed_event
        if len(events) == 1:
            facts = normalize(events[0])
            now_replaced = normalizer.replaced
            if now_replaced != replaced:
                self._note_repairs(now_replaced)
            return self.assembler.feed(facts, now)
        ops: list[EncodedOp] = []
        facts = []
        for event in events:
            more = normalize(event)
            now_replaced = normalizer.replaced
            if now_replaced != replaced:
                # A repaired event: the facts before it go first, as they would had it come
                # in a read of its own (a repair after the message's end must not change it).
                replaced = now_replaced
                if facts:
                    ops += self.assembler.feed(facts, now)
                    facts = []
                self._note_repairs(now_replaced)
            facts.extend(more)
        ops += self.assembler.feed(facts, now)
        return ops

    def _note_repairs(self, count: int) -> None:
        """Events held invalid UTF-8 (used with U+FFFD): the message's end says so."""
        self.assembler.warning = error_info(
            f"{count} upstream chunk(s) held invalid UTF-8; "
            "the undecodable bytes were replaced with U+FFFD",
            INVALID_UTF8,
        )

    def _fast_path_block(self) -> tuple[str, int] | None:
        """The per-token fast path: a read that is exactly one ``data:`` event whose chunk
        only adds plain text to choice 0's open text block is turned into its delta op in one
        step, skipping the layers' generality. Measured in bench/core.py (about a quarter
        off the per-chunk CPU); allowed only while that shortcut provably gives the same ops
        as the layers: decoder between events, no coalescing, no tag held back."""
        current = self._delta_block()
        if current is None or not self.decoder.idle or not self.normalizer.passes_plain_text(0):
            return None
        return current

    def _delta_block(self) -> tuple[str, int] | None:
        """Choice 0's open text block while a text token may go to it as a delta op at once
        (every per-token path): a text block, no coalescing, the message not ended."""
        assembler = self.assembler
        current = assembler.text_block(0)
        if current is None or current[0] != "text" or assembler.window or assembler.done:
            return None
        return current

    def _token_op(self, data: bytes, token: _Token) -> EncodedOp | None:
        """The op of a read that is one plain text token (see ``TokenShortcut``), or ``None``
        for the decoder's way. Its text's JSON string is sliced out and used as UTF-8, not
        decoded as JSON: taken only when it holds no escape, which is when ``msgspec`` writes
        the text back at the same length (every escape it writes is longer than the character
        it stands for: a quote, a backslash, a control character). A JSON decode would then
        give the same text. Whatever is not taken goes the decoder's way, which gives the same
        ops. Hand-written because it is the per-token path: bench/core.py
        measures it (it takes about a third off the per-token cost of both APIs)."""
        prefix, middle, ends, padded, position, block = token
        assembler = self.assembler
        start = len(prefix)
        if middle is not None:  # a sequence number (JSON: no leading zero), then ``middle``
            at = data.find(middle, start, start + _MAX_SEQ_DIGITS + len(middle))
            digits = data[start:at]
            if at <= start or not digits.isdigit() or (digits[0] == 48 and len(digits) > 1):
                return None
            start = at + len(middle)
        end = data.find(b'"', start)
        if end <= start:
            return None
        rest = data[end:]
        if rest not in ends and (
            padded is None
            or not rest.startswith(padded)
            or not rest.endswith(b'"}\n\n')
            or not rest[len(padded) : -4].isalnum()
        ):
            return None
        raw = data[start:end]
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            return None
        quoted = _encode(text)
        if len(quoted) != len(raw) + 2:
            return None
        if assembler.text_block(0) is not block:  # (something else wrote since: see __init__)
            return None
        position.length += len(text)
        return assembler.text_delta(block[1], text, quoted)

    def _allow_token_shortcut(self) -> None:
        """Allow the per-token shortcut (see ``_token_op``) while it provably gives the
        ops the decoder gives: the decoder between events (a read that is one event goes
        the direct way), a plain text token already taken (see ``token_shortcut``), choice
        0's text block open, no coalescing, the message not ended."""
        self._token = None
        if self._events_direct and not self._chat:
            current = self._delta_block()
            if current is not None:
                shortcut = self.normalizer.token_shortcut()  # type: ignore[union-attr]
                if shortcut is not None:
                    self._token = (*shortcut, current)

    def why_nothing(self) -> tuple[str, str] | None:
        """Why a body that gave no chunk or event of the format did so: ``(message, error
        type)``; ``None`` if it was an event stream merely cut short."""
        what = describe_non_stream(self.head)
        if what is not None:
            return what, "not_event_stream"
        normalizer = self.normalizer
        reason = normalizer.last_skip_reason
        if normalizer.skipped and reason:  # events came, none of them this format's
            items = FORMAT_ITEMS.get(self.format, FORMAT_ITEMS["chat"])
            return f"upstream's event stream held no {items} (last event: {reason})", "wrong_format"
        return None

    def poll(self, now: float) -> list[EncodedOp]:
        """Ops whose coalescing window has passed by ``now`` (see ``next_deadline``)."""
        return self.assembler.poll(now)

    def next_deadline(self) -> float | None:
        """When ``poll`` must next be called (``None``: nothing is held back)."""
        return self.assembler.next_deadline()

    def close(self, now: float = 0.0) -> list[EncodedOp]:
        """Upstream EOF: release held text, then end the message per the status rules."""
        self.decoder.close()
        self._fast_block = self._token = None  # the message ends: no fast path
        normalizer = self.normalizer
        ops = self.assembler.feed(normalizer.close(), now)
        if not self.assembler.done and not normalizer.saw_chunk and not normalizer.saw_done:
            why = self.why_nothing()
            if why is not None:
                return ops + self.assembler.fail(why[0], error_type=why[1], now=now)
        return ops + self.assembler.close(now, truncated_message(self.format))

    def cancel(self, now: float = 0.0) -> list[EncodedOp]:
        """End the message ``cancelled`` (what was produced is kept)."""
        self._fast_block = self._token = None  # the message ends: no fast path
        ops = self.assembler.feed(self.normalizer.close(), now)
        return ops + self.assembler.cancel(now)

    def fail(
        self,
        message: str,
        *,
        error_type: str | None = "upstream_error",
        code: str | int | None = None,
        now: float = 0.0,
    ) -> list[EncodedOp]:
        """End the message ``failed`` with this error (what was produced is kept)."""
        self._fast_block = self._token = None  # the message ends: no fast path
        ops = self.assembler.feed(self.normalizer.close(), now)
        return ops + self.assembler.fail(message, error_type=error_type, code=code, now=now)


_decode_chunk = chunk_decoder.decode


def _decode_or_none(payload: bytes) -> Chunk | None:
    try:
        return _decode_chunk(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        return None  # the general path decodes it again and records the skip


# A whole (non-streamed) answer of each API, told by its first bytes; an error body has an
# "error" member that is an object or a string (a whole response's "error": null is none).
_WHOLE_BODIES = (
    (re.compile(rb'"object"\s*:\s*"chat\.completion"'), "a whole chat.completion"),
    (re.compile(rb'"object"\s*:\s*"response"'), "a whole Responses API response"),
    (re.compile(rb'"type"\s*:\s*"message"'), "a whole Anthropic message"),
)
_ERROR_MEMBER = re.compile(rb'"error"\s*:\s*[{"]')


def describe_non_stream(head: bytes) -> str | None:
    """What a body that held no chat-completion chunk was, from its first bytes; ``None`` if
    it looked like an event stream (or was empty): then it was merely cut short."""
    body = head.lstrip()
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:].lstrip()
    if not body or body.startswith((b"data:", b":", b"event:", b"id:", b"retry:")):
        return None
    lower = body[:64].lower()
    if body.startswith(b"<") or lower.startswith((b"<!doctype", b"<html")):
        return "upstream answered with an HTML page, not an event stream"
    if body.startswith(b"{"):
        for pattern, what in _WHOLE_BODIES:
            if pattern.search(head):
                return (
                    f"upstream answered with {what} JSON body, not an event stream "
                    "(the request was not streamed)"
                )
        if _ERROR_MEMBER.search(head):
            return "upstream answered with a JSON error body, not an event stream"
        return "upstream answered with a JSON body, not an event stream"
    return "upstream answered with something that is not an event stream"


def _plain_text(chunk: Chunk) -> str | None:
    """The content of a chunk that carries nothing but text for choice 0, else ``None``.
    (The rare fields checked here are the ones ``ChunkNormalizer._delta`` reads.)"""
    choices = chunk.choices
    if not choices or len(choices) != 1 or chunk.usage is not None or chunk.error is not None:
        return None
    choice = choices[0]
    delta = choice.delta
    if choice.index or choice.finish_reason or delta is None or chunk.citations:
        return None
    text = delta.content
    if (
        type(text) is not str
        or not text
        or "<" in text
        # anything else in the delta (the rare fields) takes the general path
        or delta.reasoning_content is not None
        or delta.reasoning is not None
        or delta.reasoning_details is not None
        or delta.refusal is not None
        or delta.tool_calls is not None
        or delta.function_call is not None
        or delta.images is not None
        or delta.annotations is not None
    ):
        return None
    return text
