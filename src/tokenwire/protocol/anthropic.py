"""Anthropic Messages API streaming events (and whole ``message`` objects) -> facts.

The stream is ``message_start``, then per content block ``content_block_start`` /
``content_block_delta``\\* / ``content_block_stop``, then ``message_delta`` (stop reason,
cumulative usage) and ``message_stop``; ``ping`` may come anywhere and ``error`` may end it.

Mapping (see docs/upstreams.md): ``text_delta`` -> text; ``thinking_delta`` -> reasoning, its
``signature_delta`` -> the reasoning block's signature; ``redacted_thinking`` -> a redacted
reasoning block holding the opaque data; ``tool_use`` / ``server_tool_use`` /
``mcp_tool_use`` + ``input_json_delta`` -> tool calls; ``*_tool_result`` blocks -> tool
results (JSON-encoded content; ``error`` when the content is an error); ``citations_delta`` ->
sources whose span is the text block they were cited in; unknown block types -> data blocks.
Stop reasons: end_turn/stop_sequence -> ``stop``, max_tokens/model_context_window_exceeded ->
``length``, tool_use -> ``tool_calls``, refusal -> ``content_filter``; others as sent
(``pause_turn``). Usage is the message's usage dict as Anthropic sends it, with the
``message_delta`` counts merged in.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tokenwire.protocol._events import ABSENT, DECODE_ERRORS, EventNormalizer, TokenShortcut
from tokenwire.protocol.facts import (
    DataFact,
    Done,
    Fact,
    Finished,
    ReasoningEncrypted,
    ReasoningEnd,
    ReasoningSignature,
    SourceFact,
    Started,
    TextFact,
    ToolCallArguments,
    ToolCallStarted,
    ToolResultEnd,
    ToolResultOutput,
    ToolResultStarted,
    UpstreamError,
    UsageFact,
)

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
EVENT_TYPES = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
    }
)
_CALL_TYPES = ("tool_use", "server_tool_use", "mcp_tool_use")


class _Delta(msgspec.Struct, gc=False):
    type: str | None = None
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    partial_json: str | None = None
    citation: dict[str, Any] | None = None
    stop_reason: str | None = None


class _Block(msgspec.Struct, gc=False):
    type: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None
    text: str | None = None
    thinking: str | None = None
    signature: str | None = None
    data: str | None = None
    tool_use_id: str | None = None
    content: Any = None
    is_error: bool | None = None
    citations: list[dict[str, Any]] | None = None


class _Message(msgspec.Struct, gc=False):
    type: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    content: list[msgspec.Raw] | None = None
    stop_reason: str | None = None


class _Error(msgspec.Struct, gc=False):
    type: str | None = None
    message: str | None = None


class _Event(msgspec.Struct, gc=False):
    type: str = ""
    index: int | None = None
    delta: _Delta | None = None
    content_block: msgspec.Raw = ABSENT  # (msgspec.Raw cannot be in a union with None)
    message: _Message | None = None
    usage: dict[str, Any] | None = None
    error: _Error | None = None


class _Body(msgspec.Struct, gc=False):
    type: str | None = None
    model: str | None = None
    usage: dict[str, Any] | None = None
    content: list[msgspec.Raw] | None = None
    stop_reason: str | None = None
    error: _Error | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_block = msgspec.json.Decoder(_Block).decode
_decode_body = msgspec.json.Decoder(_Body).decode
_decode_any = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
# A plain text token as Anthropic sends it (and the anthropic SDK's tests record it), up to
# its text's JSON string, and how it ends (see ``TokenShortcut``).
_TOKEN_PREFIX = (
    b"event: content_block_delta\ndata: "
    b'{"type":"content_block_delta","index":%d,"delta":{"type":"text_delta","text":"'
)
_TOKEN_ENDS = frozenset({b'"}}\n\n'})


class _Open:
    """One upstream content block between its start and stop."""

    __slots__ = ("args", "call_id", "citations", "key", "kind", "start", "thought")

    def __init__(self, kind: str) -> None:
        self.kind = kind  # "text", "thinking", "call", "result", "other"
        self.key = 0  # tool-call key
        self.args = False  # input_json_delta text was sent
        self.start = 0  # text: its offset in the current text block
        self.citations: list[dict[str, Any]] | None = None
        self.call_id = ""
        self.thought = False  # thinking: thinking text was sent


class AnthropicNormalizer(EventNormalizer):
    """Stateful: feed Messages SSE events (or whole message objects) in order, get facts."""

    __slots__ = ("_blocks", "_next_key", "_token_index", "_tool_names", "_usage")

    def __init__(self) -> None:
        super().__init__()
        self._blocks: dict[int | None, _Open] = {}
        self._token_index: int | None = None  # the ``index`` of the last plain text token
        self._next_key = 0
        self._tool_names: dict[str, str | None] = {}  # tool-use id -> name
        self._usage: dict[str, Any] | None = None

    # -- input ---------------------------------------------------------------------------
    def feed_token(self, data: bytes | str) -> str | list[Fact]:
        try:
            event = _decode_event(data)
        except DECODE_ERRORS as exc:
            if data == b"[DONE]" or data == "[DONE]":  # some servers end with it anyway
                return []
            repaired = self._repaired(data)
            return self._skip(str(exc)) if repaired is None else self.feed_data(repaired)
        delta = event.delta
        if (
            event.type == "content_block_delta"
            and delta is not None
            and delta.type == "text_delta"
            and delta.text
            and self.saw_chunk
        ):  # the per-token case
            text = delta.text
            pos = self._pos
            if pos.open:
                pos.length += len(text)
            else:
                pos.text(text)
            self._token_index = event.index
            return text
        return self._structural(event, data)

    def token_shortcut(self) -> TokenShortcut | None:
        # (the index of the last token: the next one is at it; any index gives the same facts)
        index = self._token_index
        if index is None or not self.saw_chunk or not self._pos.open:
            return None
        return TokenShortcut(_TOKEN_PREFIX % index, None, _TOKEN_ENDS, None, self._pos)

    API = "Anthropic Messages"
    IDLE_TYPES = frozenset({"ping"})

    def _is_event_type(self, kind: str) -> bool:
        return (kind in EVENT_TYPES and kind != "ping") or kind == "error"

    def _decode(self, data: bytes) -> _Event:
        return _decode_event(data)

    def _model(self, event: _Event) -> str | None:
        message = event.message
        return message.model if message is not None else None

    def feed_body(self, data: bytes) -> list[Fact]:
        """A whole (non-streamed) ``message`` object, or an ``{"type": "error"}`` body."""
        body = _decode_body(data)  # errors propagate: the caller reports them
        self.saw_chunk = True
        facts: list[Fact] = [Started(body.model)]
        if body.type == "error" or body.error is not None:
            err = body.error or _Error()
            facts.append(UpstreamError(err.message or "upstream error", err.type, None))
            return facts
        for index, raw in enumerate(body.content or ()):
            try:
                self._block_start(index, _decode_block(raw), raw, facts, whole=True)
            except DECODE_ERRORS:
                self.skipped += 1
            self._block_stop(index, facts)
        if body.usage is not None:
            facts.append(UsageFact(body.usage))
        if body.stop_reason:  # (without one the message never finished: truncated)
            facts.append(Finished(0, STOP_REASONS.get(body.stop_reason, body.stop_reason)))
            self.saw_done = True
            facts.append(Done())
        return facts

    # -- events --------------------------------------------------------------------------
    def _event(self, event: _Event, facts: list[Fact]) -> None:
        kind = event.type
        if kind == "content_block_delta":
            if event.delta is not None:
                self._delta(event.index, event.delta, facts)
        elif kind == "content_block_start":
            if event.content_block:
                raw = event.content_block
                self._block_start(event.index, _decode_block(raw), raw, facts, whole=False)
        elif kind == "content_block_stop":
            self._block_stop(event.index, facts)
        elif kind == "message_start":
            message = event.message
            if message is not None and message.usage is not None:
                self._usage = dict(message.usage)
                facts.append(UsageFact(dict(self._usage)))
        elif kind == "message_delta":
            if event.usage:
                usage = self._usage if self._usage is not None else {}
                # (counts are cumulative; a null one means "not counted here", as the
                # anthropic SDK's own accumulator reads it)
                usage.update((k, v) for k, v in event.usage.items() if v is not None)
                self._usage = usage
                facts.append(UsageFact(dict(usage)))
            reason = event.delta.stop_reason if event.delta is not None else None
            if reason:
                facts.append(Finished(0, STOP_REASONS.get(reason, reason)))
        elif kind == "message_stop":
            self.saw_done = True
            facts.append(Done())
        elif kind == "error":
            err = event.error or _Error()
            facts.append(UpstreamError(err.message or "upstream error", err.type, None))
        # ping and unknown event types: nothing

    def _delta(self, index: int | None, delta: _Delta, facts: list[Fact]) -> None:
        kind = delta.type
        if kind == "text_delta":
            if delta.text:
                self._text("text", delta.text, facts)
        elif kind == "thinking_delta":
            if delta.thinking:
                self._thought(index)
                self._text("reasoning", delta.thinking, facts)
        elif kind == "signature_delta":
            if delta.signature:
                block = self._blocks.get(index)
                alone = block is not None and block.kind == "thinking" and not block.thought
                facts.append(ReasoningSignature(0, delta.signature, alone))
        elif kind == "input_json_delta":
            block = self._blocks.get(index)
            if block is not None and block.kind == "call" and delta.partial_json:
                block.args = True
                facts.append(ToolCallArguments(0, block.key, delta.partial_json))
        elif kind == "citations_delta":
            block = self._blocks.get(index)
            if block is not None and delta.citation is not None:
                if block.citations is None:
                    block.citations = []
                block.citations.append(delta.citation)

    def _block_start(
        self, index: int | None, block: _Block, raw: msgspec.Raw, facts: list[Fact], whole: bool
    ) -> None:
        kind = block.type or ""
        if kind == "text":
            state = self._blocks[index] = _Open("text")
            state.start = self._pos.next_start()
            if block.citations:
                state.citations = list(block.citations)
            if block.text:
                self._text("text", block.text, facts)
        elif kind == "thinking":
            self._blocks[index] = _Open("thinking")
            if block.thinking:
                self._thought(index)
                self._text("reasoning", block.thinking, facts)
            if block.signature:
                facts.append(ReasoningSignature(0, block.signature, not block.thinking))
        elif kind == "redacted_thinking":
            self._blocks[index] = _Open("other")
            self._pos.other()
            facts.append(ReasoningEncrypted(0, block.data or "", redacted=True))
        elif kind in _CALL_TYPES:
            state = self._blocks[index] = _Open("call")
            state.key = self._next_key
            self._next_key += 1
            if block.id is not None:
                self._tool_names[block.id] = block.name
            self._pos.other()
            server = kind != "tool_use"
            facts.append(ToolCallStarted(0, state.key, block.id, block.name, server))
            if block.input or (whole and block.input is not None):
                # A whole body has the parsed input; a stream's start has {} and deltas follow.
                state.args = True
                facts.append(ToolCallArguments(0, state.key, _encode(block.input).decode()))
        elif kind.endswith("tool_result"):
            state = self._blocks[index] = _Open("result")
            call_id = state.call_id = block.tool_use_id or ""
            content = block.content
            error = bool(block.is_error) or (
                isinstance(content, dict) and str(content.get("type", "")).endswith("_error")
            )
            self._pos.other()
            facts.append(ToolResultStarted(0, call_id, self._tool_names.get(call_id), error))
            if content is not None:
                output = content if isinstance(content, str) else _encode(content).decode()
                facts.append(ToolResultOutput(0, call_id, output))
        else:
            self._blocks[index] = _Open("other")
            self._pos.other()
            value = _decode_any(raw)
            ident = block.id if isinstance(block.id, str) else None
            facts.append(DataFact(0, kind or "block", value, ident))

    def _block_stop(self, index: int | None, facts: list[Fact]) -> None:
        state = self._blocks.pop(index, None)
        if state is None:
            return
        if state.kind == "text" and state.citations:
            end = self._pos.length if self._pos.open else state.start
            for cite in state.citations:
                url = cite.get("url")
                if cite.get("type") == "search_result_location":  # (a search result the
                    url = cite.get("source")  # request gave: its source names it)
                title = cite.get("title")
                if not isinstance(url, str) or not url:
                    # Document citations name a document of the request, not a URL.
                    url = f"document:{cite.get('document_index', 0)}"
                    title = cite.get("document_title")
                cited = cite.get("cited_text")
                facts.append(
                    SourceFact(
                        0,
                        url,
                        title if isinstance(title, str) else None,
                        state.start,
                        end,
                        cited if isinstance(cited, str) else None,
                    )
                )
        elif state.kind == "call" and not state.args:
            facts.append(ToolCallArguments(0, state.key, "{}"))  # a call without input
        elif state.kind == "result":
            facts.append(ToolResultEnd(0, state.call_id))
        elif state.kind == "thinking":
            facts.append(ReasoningEnd(0))  # (the next thinking block is a block of its own)

    def _thought(self, index: int | None) -> None:
        block = self._blocks.get(index)
        if block is not None:
            block.thought = True

    def _text(self, kind: str, text: str, facts: list[Fact]) -> None:
        if kind == "text":
            self._pos.text(text)
        else:
            self._pos.other()
        facts.append(TextFact(0, kind, text))
