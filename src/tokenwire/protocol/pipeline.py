"""Upstream bytes -> ops in one object: SSE decoder + normalizer + assembler.

``format`` picks the upstream API: ``"chat"`` (chat completions, the default), ``"responses"``
(OpenAI Responses events), ``"anthropic"`` (Anthropic Messages events) or ``"auto"`` (from
the first event; see protocol/formats.py). Only chat has the per-token fast path below.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from tokenwire.protocol.assembler import Assembler
from tokenwire.protocol.chunks import Chunk, chunk_decoder
from tokenwire.protocol.facts import TextFact
from tokenwire.protocol.formats import AutoNormalizer, Normalizer, make_normalizer
from tokenwire.protocol.message import Message
from tokenwire.protocol.normalizer import ChunkNormalizer
from tokenwire.protocol.ops import EncodedOp
from tokenwire.protocol.sse import SSEDecoder
from tokenwire.protocol.think_tags import DEFAULT_THINK_TAGS


class Pipeline:
    """Feed an upstream SSE body in any pieces; get sequenced ops."""

    __slots__ = (
        "_chat",
        "_fast_index",
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
    ) -> None:
        self.decoder = SSEDecoder()
        self.format = format  # "auto" until the first event decides
        self.normalizer: Normalizer | AutoNormalizer
        if format == "chat":
            self.normalizer = ChunkNormalizer(think_tags)
        elif format == "auto":
            self.normalizer = AutoNormalizer(think_tags, self._detected)
        else:
            self.normalizer = make_normalizer(format, think_tags)
        self._chat = format == "chat"
        self.assembler = Assembler(stream_id, model=model, coalesce_ms=coalesce_ms)
        # Index of choice 0's open text block while the per-token fast path may be taken.
        self._fast_index: int | None = None

    @property
    def message(self) -> Message:
        return self.assembler.message

    @property
    def seq(self) -> int:
        return self.assembler.seq

    @property
    def done(self) -> bool:
        return self.assembler.done

    def feed(self, data: bytes, now: float = 0.0) -> list[EncodedOp]:
        index = self._fast_index  # (never set for other formats)
        if index is not None and data.endswith(b"\n\n"):
            lines = data.splitlines()
            if len(lines) == 2 and lines[0].startswith(b"data: {"):
                chunk = _decode_or_none(lines[0][6:])
                if chunk is not None:
                    text = _plain_text(chunk)
                    if text is not None:
                        return [self.assembler.text_delta(index, text)]
                    # Exactly one event, decoder idle: hand the decoded chunk on directly.
                    ops = self.assembler.feed(self.normalizer.feed_chunk(chunk), now)
                    self._fast_index = self._fast_path_index()
                    return ops
        if not self._chat:
            return self._feed_events(data, now)
        ops = self._feed(data, now)
        self._fast_index = self._fast_path_index()
        return ops

    def _feed_events(self, data: bytes, now: float) -> list[EncodedOp]:
        """Responses / Anthropic events (and "auto" before it decides). The usual read is one
        whole ``event: …`` + ``data: …`` event: with the SSE decoder between events, its data
        goes straight to the normalizer (the event name is in the data's ``type`` too), and a
        text fact for the open block of its kind straight to a delta op."""
        if data.endswith(b"\n\n") and self.decoder.idle and self.format != "auto":
            lines = data.splitlines()
            if (
                len(lines) == 3
                and lines[1].startswith(b"data: ")
                and lines[0].startswith(b"event:")
            ):
                facts = self.normalizer.feed_data(lines[1][6:])  # type: ignore[union-attr]
                assembler = self.assembler
                if len(facts) == 1 and not assembler.window:
                    fact = facts[0]
                    if type(fact) is TextFact:
                        current = assembler.text_block(0)
                        if current is not None and current[0] == fact.kind and not fact.choice:
                            return [assembler.text_delta(current[1], fact.text)]
                return assembler.feed(facts, now)
        ops = self._feed(data, now)
        if self._chat:  # "auto" just decided on chat
            self._fast_index = self._fast_path_index()
        return ops

    def _detected(self, fmt: str, normalizer: Normalizer) -> None:
        self.format = fmt
        self.normalizer = normalizer
        self._chat = fmt == "chat"

    def _feed(self, data: bytes, now: float) -> list[EncodedOp]:
        events = self.decoder.feed(data)
        if not events:
            return self.assembler.poll(now)
        normalize = self.normalizer.feed_event
        if len(events) == 1:
            return self.assembler.feed(normalize(events[0]), now)
        facts = []
        for event in events:
            facts.extend(normalize(event))
        return self.assembler.feed(facts, now)

    def _fast_path_index(self) -> int | None:
        """The per-token fast path: a read that is exactly one ``data:`` event whose chunk
        only adds plain text to choice 0's open text block is turned into its delta op in one
        step, skipping the layers' generality. Measured in bench/core.py (about a quarter
        off the per-chunk CPU); allowed only while that shortcut provably gives the same ops
        as the layers: decoder between events, no coalescing, no tag held back."""
        assembler = self.assembler
        current = assembler.text_block(0)
        if (
            current is None
            or current[0] != "text"
            or assembler.window
            or assembler.done
            or not self.decoder.idle
            or not self.normalizer.passes_plain_text(0)
        ):
            return None
        return current[1]

    def poll(self, now: float) -> list[EncodedOp]:
        return self.assembler.poll(now)

    def next_deadline(self) -> float | None:
        return self.assembler.next_deadline()

    def close(self, now: float = 0.0) -> list[EncodedOp]:
        """Upstream EOF: release held text, then end the message per the status rules."""
        self.decoder.close()
        self._fast_index = None  # the message ends here: nothing may take the fast path
        ops = self.assembler.feed(self.normalizer.close(), now)
        return ops + self.assembler.close(now)

    def cancel(self, now: float = 0.0) -> list[EncodedOp]:
        self._fast_index = None  # the message ends here: nothing may take the fast path
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
        self._fast_index = None  # the message ends here: nothing may take the fast path
        ops = self.assembler.feed(self.normalizer.close(), now)
        return ops + self.assembler.fail(message, error_type=error_type, code=code, now=now)


_decode_chunk = chunk_decoder.decode


def _decode_or_none(payload: bytes) -> Chunk | None:
    try:
        return _decode_chunk(payload)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # the general path decodes it again and records the skip


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
