"""OpenAI-compatible chunks -> facts, absorbing the quirks of "compatible" servers.

Handled here so that nothing downstream needs to know which server spoke:
- reasoning as ``reasoning_content`` (DeepSeek, vLLM), ``reasoning`` (vLLM, OpenRouter, Ollama)
  or ``reasoning_details[].text`` (OpenRouter), or wrapped in tags inside ``content``; the
  opaque parts of OpenRouter's ``reasoning_details`` (signatures, encrypted reasoning) kept;
- OpenAI ``annotations`` (``url_citation``, with the cited ``start_index``/``end_index``);
- tool-call fragments with an ``index`` (OpenAI), without one (Gemini: each entry a whole
  call), or with one ``index`` reused for different ``id``s (Ollama);
- usage in a chunk with empty ``choices``; ``{"error": …}`` objects mid-stream; ``n > 1``;
- gpt-oss "harmony" markup in ``content`` (llama.cpp without a reasoning parser): content whose
  first markup-bearing piece opens with ``<|channel|>`` or ``<|start|>`` is split by channel;
- Azure: a first chunk with ``model: ""`` and no choices (prompt filter results), so the model
  name is taken from the first chunk that has one; filter results are never text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from tokenwire.protocol.anthropic import EVENT_TYPES as ANTHROPIC_EVENTS
from tokenwire.protocol.chunks import Chunk, ContentPart, Delta, chunk_decoder, decode_chunk
from tokenwire.protocol.facts import (
    Done,
    Fact,
    Finished,
    ImageFact,
    ReasoningEncrypted,
    ReasoningEnd,
    ReasoningSignature,
    SourceFact,
    Started,
    TextFact,
    ToolCallArguments,
    ToolCallStarted,
    UpstreamError,
    UsageFact,
)
from tokenwire.protocol.harmony import HarmonySplitter, starts_harmony
from tokenwire.protocol.jsonsafe import repair_utf8
from tokenwire.protocol.sse import SSEEvent
from tokenwire.protocol.think_tags import DEFAULT_THINK_TAGS, ThinkTagSplitter

DONE_SENTINEL = "[DONE]"
_decode = chunk_decoder.decode


MAX_CHOICES = 1024
"""Choices of a chunk past this many, or with an index of this or more, are ignored: real
servers send at most 128 (OpenAI's ``n``), and one hostile event of a million choices must
not hold the event loop (each choice is a block)."""


class _ChoiceState:
    __slots__ = (
        "by_index",
        "call_ids",
        "detail_index",
        "harmony",
        "harmony_held",
        "harmony_key",
        "last_key",
        "sources",
        "splitter",
    )

    def __init__(self, tags: tuple[str, ...]) -> None:
        # Always a splitter (even without tags): content with "<" must reach the harmony check.
        self.splitter: ThinkTagSplitter | HarmonySplitter = ThinkTagSplitter(tags)
        self.harmony: bool | None = None  # None: undecided until content with "<" is seen
        self.harmony_held = ""  # the start of content that may still become harmony markup
        self.harmony_key: int | None = None  # the key of harmony's open tool call
        self.by_index: dict[int, int] = {}  # upstream tool-call index -> our key
        self.call_ids: dict[int, str | None] = {}  # key -> upstream id
        self.last_key: int | None = None
        self.detail_index: Any = None  # the index of the last reasoning_details entry
        # URLs (or (url, start, end) cited spans) already listed; made on the first source:
        # most answers cite none.
        self.sources: set[str | tuple[str, int, int]] | None = None


class ChunkNormalizer:
    """Stateful: feed SSE events (or decoded chunks) in order, get facts."""

    __slots__ = (
        "_choices",
        "_next_key",
        "_started",
        "_tags",
        "content_reasoning",
        "last_skip_reason",
        "replaced",
        "saw_chunk",
        "saw_done",
        "skipped",
    )

    def __init__(self, think_tags: Iterable[str] | None = DEFAULT_THINK_TAGS) -> None:
        self._tags = tuple(think_tags or ())
        self._choices: dict[int, _ChoiceState] = {}
        self._next_key = 0
        self.saw_chunk = False  # a chunk was decoded
        self._started = False  # Started was emitted
        self.skipped = 0  # data events that were not JSON chunks (ignored, counted)
        self.last_skip_reason: str | None = None
        self.saw_done = False
        # Chunks decoded only after invalid UTF-8 or lone surrogate escapes in them were
        # replaced by U+FFFD (the message reports it: see Assembler.warning).
        self.replaced = 0
        # Reasoning was split out of ``content`` (``<think>`` tags, harmony, thinking parts):
        # the upstream's raw text is then not rebuildable from the blocks (tags dropped).
        self.content_reasoning = False

    def passes_plain_text(self, choice: int) -> bool:
        """True if plain content (no ``<``) for ``choice`` becomes one text fact as it is."""
        state = self._choices.get(choice)
        if state is None:
            return False
        # (while harmony is undecided, whitespace content is held: it may start markup)
        return state.harmony is not None and state.splitter.idle

    # -- input ---------------------------------------------------------------------------
    def feed_event(self, event: SSEEvent) -> list[Fact]:
        data = event.raw
        if data[:1] == b"{":  # a chunk: decode right here, the per-token path
            try:
                chunk = _decode(data)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                return self.feed_data(data)  # repairs, or counts and records the skip
            return self.feed_chunk(chunk)
        return self.feed_data(data)

    def feed_data(self, data: str | bytes) -> list[Fact]:
        """One SSE ``data`` payload: a chunk's JSON, or ``[DONE]``."""
        if data == b"[DONE]" or data == DONE_SENTINEL:
            self.saw_done = True
            return [*self._flush_all(), Done()]
        try:
            chunk = decode_chunk(data)
        except RecursionError:  # msgspec recurses per nesting level
            return self._skip("JSON nested too deep")
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            repaired = repair_utf8(data)
            if repaired is None:
                return self._skip(str(exc))
            try:
                chunk = decode_chunk(repaired)
            except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
                return self._skip(str(exc))
            self.replaced += 1
        return self.feed_chunk(chunk)

    def _skip(self, reason: str) -> list[Fact]:
        self.skipped += 1
        self.last_skip_reason = reason
        return []

    def feed_chunk(self, chunk: Chunk) -> list[Fact]:
        if (
            chunk.choices is None
            and chunk.usage is None
            and chunk.error is None
            and not chunk.citations
        ):  # JSON, but no chat-completion chunk (e.g. another format's event): nothing in it
            return self._skip("no 'choices', 'usage' or 'error' in the chunk")
        kind = chunk.type
        if chunk.choices is None and type(kind) is str and _other_api_event(kind):
            # (Anthropic's message_delta has a top-level usage: still not a chat chunk)
            return self._skip(f"no 'choices' in the chunk, a {kind!r} event")
        facts: list[Fact] = []
        choices = chunk.choices or ()
        if len(choices) > MAX_CHOICES:
            choices = choices[:MAX_CHOICES]  # (a bound on one event's work; see MAX_CHOICES)
        for choice in choices:
            if not 0 <= choice.index < MAX_CHOICES:
                continue
            delta = choice.delta or choice.message
            state = self._choices.get(choice.index)
            if state is None:
                state = self._choices[choice.index] = _ChoiceState(self._tags)
            if delta is not None:
                self._delta(choice.index, state, delta, facts)
            if choice.finish_reason:
                self._flush(choice.index, state, facts)
                reason = choice.finish_reason
                if reason == "stop" and state.harmony and state.splitter.called:  # type: ignore[union-attr]
                    reason = "tool_calls"  # (what a harmony parser would have said)
                facts.append(Finished(choice.index, reason))
        if chunk.citations:
            state = self._choices.get(0) or self._choices.setdefault(0, _ChoiceState(self._tags))
            for url in chunk.citations:
                self._source(0, state, url, None, facts)
        if chunk.usage is not None:
            facts.append(UsageFact(chunk.usage))
        if chunk.error is not None:
            facts.extend(self._flush_all())
            err = chunk.error
            if isinstance(err, str):
                facts.append(UpstreamError(err))
            else:
                facts.append(UpstreamError(err.message or "upstream error", err.type, err.code))
        if not self._started:
            self.saw_chunk = True
            # Azure opens with a chunk holding only prompt filter results and ``model: ""``
            # (and may send its role chunk without the model too): the message starts on the
            # first chunk that names a model or carries anything.
            if chunk.model or facts:
                self._started = True
                facts.insert(0, Started(chunk.model or None))
        return facts

    def close(self) -> list[Fact]:
        """The upstream stream ended: release any text held back by the tag splitters."""
        return self._flush_all()

    # -- pieces --------------------------------------------------------------------------
    def _delta(self, index: int, state: _ChoiceState, delta: Delta, facts: list[Fact]) -> None:
        # Field order is fact order: reasoning, content, refusal, tool calls, images, sources.
        # The rare fields are tested together so plain text costs few checks.
        if delta.reasoning_content or delta.reasoning or delta.reasoning_details:
            self._reasoning(index, state, delta, facts)
        content = delta.content
        if content:
            if type(content) is str:
                if state.splitter.idle and "<" not in content:
                    if state.harmony is None:  # the choice's first content
                        if content.isspace():  # (harmony markup may still follow: held)
                            self._content(index, state, content, facts)
                            content = ""
                        else:
                            state.harmony = False  # plain text came first: never markup
                    if content:
                        facts.append(TextFact(index, "text", content))  # the per-token case
                else:
                    self._content(index, state, content, facts)
            else:
                self._content_parts(index, state, content, facts)
        if (
            delta.refusal
            or delta.tool_calls
            or delta.function_call is not None
            or delta.images
            or delta.annotations
        ):
            self._rare_fields(index, state, delta, facts)

    def _reasoning(self, index: int, state: _ChoiceState, delta: Delta, facts: list[Fact]) -> None:
        reasoning = delta.reasoning_content or delta.reasoning
        details = delta.reasoning_details
        if not reasoning and details:
            # One delta may carry the same thought in several fields (OpenRouter sends both
            # `reasoning` and `reasoning_details`): take the first that is present.
            reasoning = "".join(d.text or d.summary or "" for d in details)
        alone = False
        if details:
            # An entry of another upstream block (its ``index``) starts a reasoning block of
            # its own, so that each keeps its own signature.
            first, last = details[0].index, details[-1].index
            if state.detail_index is not None and first is not None and first != state.detail_index:
                facts.append(ReasoningEnd(index))
                alone = not reasoning  # (a signature with no text: an omitted thought)
            if last is not None:
                state.detail_index = last
        if reasoning:
            facts.append(TextFact(index, "reasoning", reasoning))
        for detail in details or ():
            # Opaque parts a host sends back upstream on the next turn: kept byte-exact.
            if detail.signature:
                facts.append(ReasoningSignature(index, detail.signature, alone))
            if detail.type == "reasoning.encrypted" and detail.data:
                # From Anthropic it is a redacted_thinking block; from OpenAI, the encrypted
                # content of the reasoning just streamed.
                redacted = (detail.format or "").startswith("anthropic")
                facts.append(ReasoningEncrypted(index, detail.data, redacted))

    def _rare_fields(
        self, index: int, state: _ChoiceState, delta: Delta, facts: list[Fact]
    ) -> None:
        if delta.refusal:
            facts.append(TextFact(index, "refusal", delta.refusal))
        if delta.tool_calls:
            self._tool_calls(index, state, delta, facts)
        elif delta.function_call is not None:
            fn = delta.function_call
            self._tool_fragment(index, state, 0, None, fn.name, fn.arguments, facts)
        if delta.images:
            for image in delta.images:
                if image.image_url is not None and image.image_url.url:
                    facts.append(ImageFact(index, image.image_url.url))
        if delta.annotations:
            for note in delta.annotations:
                cite = note.url_citation
                if cite is not None and cite.url:
                    self._source(
                        index, state, cite.url, cite.title, facts, cite.start_index, cite.end_index
                    )

    def _content(self, index: int, state: _ChoiceState, text: str, facts: list[Fact]) -> None:
        if state.harmony is None and not self._harmony_check(state, text):
            return  # held: it may still become harmony markup
        if state.harmony_held:
            text = state.harmony_held + text
            state.harmony_held = ""
        splitter = state.splitter
        if splitter.idle and "<" not in text:
            facts.append(TextFact(index, "text", text))
            return
        self._pieces(index, state, splitter.feed(text), facts)

    def _harmony_check(self, state: _ChoiceState, text: str) -> bool:
        """Decide whether this choice's content is harmony markup; False: wait for more."""
        start = starts_harmony(state.harmony_held + text)
        if start is None:
            state.harmony_held += text
            state.splitter.idle = False  # plain text must come here too until decided
            return False
        state.harmony = start
        if start:
            state.splitter = HarmonySplitter()
        return True

    def _pieces(
        self, index: int, state: _ChoiceState, pieces: list[tuple[str, str]], facts: list[Fact]
    ) -> None:
        for kind, piece in pieces:
            if kind == "tool_call":  # harmony: a message addressed to a function
                key = self._next_key
                self._next_key += 1
                state.call_ids[key] = None
                state.harmony_key = key
                facts.append(ToolCallStarted(index, key, None, piece))
            elif kind == "arguments":
                if state.harmony_key is not None:
                    facts.append(ToolCallArguments(index, state.harmony_key, piece))
            else:
                if kind == "reasoning":
                    self.content_reasoning = True
                facts.append(TextFact(index, kind, piece))

    def _content_parts(
        self, index: int, state: _ChoiceState, parts: list[ContentPart], facts: list[Fact]
    ) -> None:
        for part in parts:
            if part.type == "thinking" and part.thinking:
                thinking = part.thinking
                if not isinstance(thinking, str):
                    thinking = "".join(p.text or "" for p in thinking)
                if thinking:
                    self.content_reasoning = True
                    facts.append(TextFact(index, "reasoning", thinking))
            elif part.text:
                self._content(index, state, part.text, facts)

    def _tool_calls(self, index: int, state: _ChoiceState, delta: Delta, facts: list[Fact]) -> None:
        for call in delta.tool_calls or ():
            fn = call.function
            name = fn.name if fn is not None else None
            args = fn.arguments if fn is not None else None
            self._tool_fragment(index, state, call.index, call.id, name, args, facts)

    def _tool_fragment(
        self,
        index: int,
        state: _ChoiceState,
        upstream_index: int | None,
        call_id: str | None,
        name: str | None,
        arguments: str | None,
        facts: list[Fact],
    ) -> None:
        if upstream_index is None:
            # Gemini: no index; an entry with an id or name is a new call, anything else
            # continues the latest one.
            key = state.last_key
            if key is None or call_id or name:
                key = self._new_call(index, state, call_id, name, facts)
        else:
            key = state.by_index.get(upstream_index)
            known_id = state.call_ids.get(key) if key is not None else None
            if key is None or (call_id and known_id and call_id != known_id):
                # Ollama reuses index 0 for every call; a different id means a new call.
                key = self._new_call(index, state, call_id, name, facts)
                state.by_index[upstream_index] = key
            elif call_id and known_id is None:
                state.call_ids[key] = call_id
        state.last_key = key
        if arguments:
            facts.append(ToolCallArguments(index, key, arguments))

    def _new_call(
        self,
        index: int,
        state: _ChoiceState,
        call_id: str | None,
        name: str | None,
        facts: list[Fact],
    ) -> int:
        key = self._next_key
        self._next_key += 1
        state.call_ids[key] = call_id
        self._flush(index, state, facts)  # text held before the call comes first
        facts.append(ToolCallStarted(index, key, call_id, name))
        return key

    def _source(
        self,
        index: int,
        state: _ChoiceState,
        url: str,
        title: str | None,
        facts: list[Fact],
        start: int | None = None,
        end: int | None = None,
    ) -> None:
        if state.sources is None:
            state.sources = set()
        # A URL is listed once; a URL cited at several spans is one source per span.
        key = url if start is None or end is None else (url, start, end)
        if key not in state.sources:
            state.sources.add(key)
            if start is None or end is None:
                facts.append(SourceFact(index, url, title))
            else:
                facts.append(SourceFact(index, url, title, start, end))

    def _flush(self, index: int, state: _ChoiceState, facts: list[Fact]) -> None:
        if state.harmony_held:  # never became markup: it is text
            held, state.harmony_held = state.harmony_held, ""
            state.harmony = False
            self._pieces(index, state, state.splitter.feed(held), facts)
        self._pieces(index, state, state.splitter.flush(), facts)

    def _flush_all(self) -> list[Fact]:
        facts: list[Fact] = []
        for index, state in self._choices.items():
            self._flush(index, state, facts)
        return facts


def _other_api_event(kind: str) -> bool:
    """An event of the Anthropic Messages or OpenAI Responses API (its ``type``); their
    error events are errors in any API, so they are not among these."""
    return kind in ANTHROPIC_EVENTS or kind.startswith("response.")
