"""OpenAI Responses API streaming events (and whole ``response`` objects) -> facts.

The Responses API streams typed events (``{"type": "response.output_text.delta", ...}``, the
SSE ``event:`` line repeats the type) about output items: ``message`` (``output_text`` parts
with ``url_citation`` annotations, ``refusal`` parts), ``reasoning`` (summary parts, raw
reasoning text, ``encrypted_content``), ``function_call`` / ``custom_tool_call`` (argument
deltas), and hosted tool calls (``web_search_call``, ``code_interpreter_call``, …). OpenAI,
vLLM, Ollama, LM Studio and llama.cpp speak it.

Mapping (see docs/upstreams.md): text, refusal and reasoning deltas -> text facts; function
calls -> tool-call facts; annotations -> sources with spans; encrypted reasoning -> an opaque
attribute of the reasoning block; an image generation result -> an image; any other item ->
a data block named after its type, updated in place by its id. ``response.completed`` ->
usage + ``stop`` (``tool_calls`` when a function was called); ``response.incomplete`` ->
``length`` (max_output_tokens) or ``content_filter``; ``response.failed`` and ``error`` ->
an upstream error. Every event is decoded from the data alone: the ``event:`` line is optional.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import msgspec

from tokenwire.protocol._events import ABSENT, DECODE_ERRORS, EventNormalizer, TokenShortcut
from tokenwire.protocol.facts import (
    DataFact,
    Done,
    Fact,
    Finished,
    ImageFact,
    ReasoningEncrypted,
    ReasoningEnd,
    SourceFact,
    Started,
    TextFact,
    ToolCallArguments,
    ToolCallStarted,
    UpstreamError,
    UsageFact,
)

INCOMPLETE_REASONS = {"max_output_tokens": "length", "content_filter": "content_filter"}
_Key = int | str | None


class _Part(msgspec.Struct, gc=False):
    type: str | None = None
    text: str | None = None
    refusal: str | None = None
    annotations: list[dict[str, Any]] | None = None


class _Item(msgspec.Struct, gc=False):
    type: str | None = None
    id: str | None = None
    role: str | None = None
    call_id: str | None = None
    name: str | None = None
    arguments: str | None = None
    input: str | None = None  # custom_tool_call
    encrypted_content: str | None = None
    summary: list[_Part] | None = None
    content: list[_Part] | None = None
    result: str | None = None  # image_generation_call: base64
    output_format: str | None = None


class _Error(msgspec.Struct, gc=False):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class _Incomplete(msgspec.Struct, gc=False):
    reason: str | None = None


class _Response(msgspec.Struct, gc=False):
    object: str | None = None
    model: str | None = None
    status: str | None = None
    usage: dict[str, Any] | None = None
    error: _Error | None = None
    incomplete_details: _Incomplete | None = None
    output: list[msgspec.Raw] | None = None


class _Event(msgspec.Struct, gc=False):
    type: str = ""
    delta: str | None = None
    output_index: int | None = None
    content_index: int | None = None
    summary_index: int | None = None
    item_id: str | None = None
    item: msgspec.Raw = ABSENT  # (msgspec.Raw cannot be in a union with None)
    part: _Part | None = None
    annotation: dict[str, Any] | None = None
    call_id: str | None = None
    arguments: str | None = None
    input: str | None = None
    text: str | None = None
    response: _Response | None = None
    message: str | None = None
    code: str | int | None = None
    error: _Error | None = None


class _TextDelta(msgspec.Struct, gc=False):
    """What the per-token path reads of a ``response.output_text.delta`` event: a struct of
    four fields decodes in about half the time of ``_Event``'s seventeen (bench/core.py)."""

    type: str = ""
    delta: str | None = None
    output_index: int | None = None
    item_id: str | None = None
    content_index: int | None = None


_decode_event = msgspec.json.Decoder(_Event).decode
_decode_text_delta = msgspec.json.Decoder(_TextDelta).decode
_encode = msgspec.json.Encoder().encode
# A text delta's type, where servers put it: OpenAI first, pydantic-serialized events (vLLM
# and others built on the openai package's types, whose fields are alphabetical) last.
_TEXT_DELTA_FIRST = b'{"type":"response.output_text.delta",'
_TEXT_DELTA_LAST = b',"type":"response.output_text.delta"}'
# A plain text token in the real API's key order, around its sequence number and its text's
# JSON string (see ``TokenShortcut``).
_TOKEN_PREFIX = (
    b"event: response.output_text.delta\ndata: " + _TEXT_DELTA_FIRST + b'"sequence_number":'
)
_TOKEN_MIDDLE = b',"item_id":%s,"output_index":%d,"content_index":%d,"delta":"'
_TOKEN_ENDS = frozenset({b'"}\n\n', b'","logprobs":[]}\n\n'})
_TOKEN_PADDED = b'","logprobs":[],"obfuscation":"'


def _text_delta(data: bytes | str) -> _TextDelta | None:
    """The event as a text delta, if it is one whose own fields decode."""
    try:
        token = _decode_text_delta(data)
    except DECODE_ERRORS:
        return None
    return token if token.type == "response.output_text.delta" else None


_decode_item = msgspec.json.Decoder(_Item).decode
_decode_response = msgspec.json.Decoder(_Response).decode
_decode_any = msgspec.json.Decoder().decode
# Items whose ``output_item.added`` makes no block: their deltas or their done item do (an
# image generation's ``added`` has no result yet: a data block for it would stay behind).
_ITEM_KINDS = ("message", "reasoning", "function_call", "custom_tool_call", "image_generation_call")
# Events that say nothing of an output item.
_NOT_OUTPUT = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
        "error",
        "keepalive",  # (IDLE_TYPES: a proxy that waits for the whole answer may send them)
    }
)


class ResponsesNormalizer(EventNormalizer):
    """Stateful: feed Responses SSE events (or whole response objects) in order, get facts."""

    __slots__ = (
        "_annotated",
        "_any_output",
        "_calls",
        "_had_calls",
        "_held_args",
        "_last_token",
        "_next_key",
        "_notes",
        "_part_start",
        "_shortcut_cache",
        "_sources",
        "_streamed",
        "_streamed_args",
        "_streamed_reasoning",
        "_text_start",
    )

    def __init__(self) -> None:
        super().__init__()
        self._calls: dict[_Key, int] = {}  # output_index (or item id) -> tool-call key
        # Argument text that came before its function_call item: held until the item names
        # the call (its call_id and name), else sent at the end as a call of unknown name.
        self._held_args: dict[_Key, list[tuple[str | None, str | None, str]]] = {}
        self._next_key = 0
        self._had_calls = False
        # Items whose content came as deltas, one set per kind of content (a reasoning delta
        # must not hide a message's or a call's content): message text and refusals,
        # reasoning, tool-call arguments. ``None`` marks deltas that named no item.
        self._streamed: set[_Key] = set()
        # Items whose reasoning came as deltas -> the id of the part their last delta was in.
        self._streamed_reasoning: dict[_Key, tuple[str, int]] = {}
        self._streamed_args: set[_Key] = set()
        self._annotated: set[_Key] = set()  # message items that had annotation.added events
        # Where each message item's text starts in its text block: the base of its cited
        # spans when the server sent no ``content_part.added`` (which records it per part).
        self._text_start: dict[_Key, int] = {}
        self._part_start: dict[tuple[_Key, int | None], int] = {}  # text part -> its offset
        self._sources: set[tuple[str, int | None, int | None]] = set()
        # File citations and paths (kept as data blocks) wait for their message item's end:
        # a data block mid-text would split the text block its cited spans count in.
        self._notes: list[dict[str, Any]] = []
        # Whether any event spoke of an output item (text deltas are in ``_streamed``): a
        # stream without one (``response.created`` then ``response.completed``, as proxies
        # that cannot stream send) has its answer only in the final response's output.
        self._any_output = False
        # The last plain text token's item id, output index and part (its text is not kept).
        self._last_token: tuple[Any, Any, Any] | None = None
        self._shortcut_cache: tuple[tuple[Any, Any, Any], TokenShortcut] | None = None

    # -- input ---------------------------------------------------------------------------
    def feed_token(self, data: bytes | str) -> str | list[Fact]:
        # A text delta is used when its own fields (type, delta, output_index, item_id) decode,
        # whatever the rest holds, and whatever the key order: the per-token path decodes only
        # those, and the whole-event decode falls back to them when some other field is bad.
        token: _TextDelta | _Event | None = None
        if type(data) is bytes and (
            data.startswith(_TEXT_DELTA_FIRST) or data.endswith(_TEXT_DELTA_LAST)
        ):  # (``_text_delta`` inline: the per-token path)
            try:
                token = _decode_text_delta(data)
            except DECODE_ERRORS:
                pass
            else:
                if token.type != "response.output_text.delta":
                    token = None
        if token is None:
            try:
                event = _decode_event(data)
            except DECODE_ERRORS as exc:
                token = _text_delta(data)
                if token is None:
                    if data == b"[DONE]" or data == "[DONE]":  # some servers end with it anyway
                        return []
                    repaired = self._repaired(data)
                    if repaired is None:
                        return self._skip(str(exc))
                    return self.feed_data(repaired)
            else:
                if event.type != "response.output_text.delta":
                    return self._structural(event, data)
                token = event
        if not self.saw_chunk:
            return self._structural(token)  # the first event: it starts the message
        text = token.delta
        if not text:
            return []
        item = token.item_id or token.output_index
        pos = self._pos
        if item not in self._streamed:
            self._streamed.add(item)
            self._text_start[item] = pos.next_start()
        if token.content_index:
            self._later_part(token)
        if pos.open:
            pos.length += len(text)
        else:
            pos.text(text)
        self._last_token = (token.item_id, token.output_index, token.content_index)
        return text

    def token_shortcut(self) -> TokenShortcut | None:
        # The next token of the last one's item and part (the real API's key order); its
        # item is then already streamed and its part's start known: only the text position
        # moves, which the caller does.
        key = self._last_token
        if key is None or not self.saw_chunk or not self._pos.open:
            return None
        cached = self._shortcut_cache
        if cached is not None and cached[0] == key:
            return cached[1]
        item, out, part = key
        if type(item) is not str or type(out) is not int or type(part) is not int:
            return None
        middle = _TOKEN_MIDDLE % (_encode(item), out, part)
        shortcut = TokenShortcut(_TOKEN_PREFIX, middle, _TOKEN_ENDS, _TOKEN_PADDED, self._pos)
        self._shortcut_cache = (key, shortcut)
        return shortcut

    def _later_part(self, token: _TextDelta | _Event) -> None:
        """Where a message's second (third, ...) text part starts in its text block, from its
        first delta when no ``content_part.added`` said so: its citations' spans count from
        there."""
        key = token.output_index if token.output_index is not None else token.item_id
        part = (key, token.content_index)
        if part not in self._part_start:
            self._part_start[part] = self._pos.next_start()

    API = "Responses"
    IDLE_TYPES = frozenset({"keepalive"})

    def _is_event_type(self, kind: str) -> bool:
        return kind.startswith("response.") or kind == "error"

    def _decode(self, data: bytes) -> _Event:
        return _decode_event(data)

    def _model(self, event: _Event | _TextDelta) -> str | None:
        response = getattr(event, "response", None)  # (a _TextDelta has none)
        return response.model if response is not None else None

    def feed_body(self, data: bytes) -> list[Fact]:
        """A whole (non-streamed) ``response`` object, or an ``{"error": …}`` body."""
        response = _decode_response(data)  # errors propagate: the caller reports them
        facts: list[Fact] = [Started(response.model)]
        self.saw_chunk = True
        self._whole_output(response, facts)
        self._end(response, facts)
        return facts

    def _whole_output(self, response: _Response, facts: list[Fact]) -> None:
        for raw in response.output or ():
            try:
                self._whole_item(_decode_item(raw), raw, facts)
            except DECODE_ERRORS:
                self.skipped += 1

    # -- events --------------------------------------------------------------------------
    def _event(self, event: _Event, facts: list[Fact]) -> None:
        kind = event.type
        key: _Key = event.output_index if event.output_index is not None else event.item_id
        if kind not in _NOT_OUTPUT:
            self._any_output = True
        if kind == "response.output_text.delta":
            if event.delta:
                item = event.item_id or event.output_index
                if item not in self._streamed:
                    self._streamed.add(item)
                    self._text_start[item] = self._pos.next_start()
                if event.content_index:
                    self._later_part(event)
                self._text("text", event.delta, facts)
        elif kind == "response.reasoning_summary_text.delta" or kind in (
            "response.reasoning_text.delta",
            "response.reasoning.delta",
        ):
            if event.delta:
                item = event.item_id or key
                # Parts (summary parts, raw reasoning parts) are paragraphs: a blank line
                # before the first text of each part after the first that had text, as the
                # whole item joins them (told by the deltas' own indexes, whether or not
                # ``…part.added`` events came; an empty part adds nothing).
                part = (
                    ("summary", event.summary_index or 0)
                    if kind == "response.reasoning_summary_text.delta"
                    else ("content", event.content_index or 0)
                )
                last = self._streamed_reasoning.get(item)
                if last is not None and last != part:
                    self._text("reasoning", "\n\n", facts)
                self._streamed_reasoning[item] = part
                self._text("reasoning", event.delta, facts)
        elif kind == "response.refusal.delta":
            if event.delta:
                self._streamed.add(event.item_id or key)
                self._text("refusal", event.delta, facts)
        elif kind == "response.content_part.added":
            part = event.part
            if part is not None and part.type == "output_text":
                self._part_start[(key, event.content_index)] = self._pos.next_start()
        elif kind == "response.output_text.annotation.added":
            if event.annotation is not None:
                self._annotated.add(event.item_id or key)
                base = self._part_start.get((key, event.content_index))
                if base is None:
                    item = event.item_id or event.output_index
                    base = self._text_start.get(item, self._pos.next_start())
                self._annotation(event.annotation, base, facts)
        elif kind in (
            "response.function_call_arguments.delta",
            "response.custom_tool_call_input.delta",
        ):
            if event.delta:
                self._streamed_args.add(event.item_id or key)
                self._arguments(key, event, event.delta, facts)
        elif kind in (
            "response.function_call_arguments.done",
            "response.custom_tool_call_input.done",
        ):
            whole = event.arguments if event.arguments is not None else event.input
            if whole and not _was_streamed(self._streamed_args, key, event.item_id):
                self._streamed_args.add(event.item_id or key)
                self._arguments(key, event, whole, facts)
        elif kind == "response.output_item.added":
            if event.item:
                item = _decode_item(event.item)
                self._item_added(_item_key(key, item), item, event.item, facts)
        elif kind == "response.output_item.done":
            if event.item:
                item = _decode_item(event.item)
                self._item_done(_item_key(key, item), item, event.item, facts)
        elif kind in ("response.completed", "response.incomplete", "response.failed"):
            response = event.response
            if response is not None:
                if response.output and not self._any_output and not self._streamed:
                    self._whole_output(response, facts)
                self._end(response, facts, kind)
        elif kind == "error":
            err = event.error
            if err is not None:
                facts.append(UpstreamError(err.message or "upstream error", err.type, err.code))
            else:
                facts.append(UpstreamError(event.message or "upstream error", None, event.code))
        # Anything else (response.created, *.in_progress, *.done echoes, hosted tools'
        # progress events, audio) carries nothing the items and the final event do not.

    def _item_added(self, key: _Key, item: _Item, raw: msgspec.Raw, facts: list[Fact]) -> None:
        kind = item.type
        if kind in ("function_call", "custom_tool_call"):
            self._start_call(key, item, facts)
            self._release_held(key, facts)
            whole = item.arguments if kind == "function_call" else item.input
            if whole and not _was_streamed(self._streamed_args, key, item.id):
                self._streamed_args.add(item.id or key)
                facts.append(ToolCallArguments(0, self._calls[key], whole))
        elif kind not in _ITEM_KINDS:
            self._data(item, raw, facts)

    def _item_done(self, key: _Key, item: _Item, raw: msgspec.Raw, facts: list[Fact]) -> None:
        kind = item.type
        if kind in ("function_call", "custom_tool_call"):
            call = self._find_call(key, item.id, item.call_id)
            if call is None:
                self._start_call(key, item, facts)
                call = self._calls[key]
            self._release_held(key, facts)
            whole = item.arguments if kind == "function_call" else item.input
            if whole and not _was_streamed(self._streamed_args, key, item.id):
                self._streamed_args.add(item.id or key)
                facts.append(ToolCallArguments(0, call, whole))
        elif kind == "message":
            if not _was_streamed(self._streamed, key, item.id):  # only the whole item came
                self._whole_item(item, raw, facts)
            elif not (item.id in self._annotated or key in self._annotated):
                self._done_annotations(key, item, facts)
            self._release_notes(facts)
        elif kind == "reasoning":
            if not _was_streamed(self._streamed_reasoning, key, item.id):
                self._whole_item(item, raw, facts)
            else:
                self._reasoning_done(item, facts)
        else:
            self._whole_item(item, raw, facts)

    # -- whole items (non-streamed bodies, and items sent only when done) ------------------
    def _whole_item(self, item: _Item, raw: msgspec.Raw, facts: list[Fact]) -> None:
        kind = item.type
        if kind == "message":
            for part in item.content or ():
                if part.type == "refusal" and part.refusal:
                    self._text("refusal", part.refusal, facts)
                elif part.text:
                    base = self._pos.next_start()
                    self._text("text", part.text, facts)
                    for note in part.annotations or ():
                        self._annotation(note, base, facts)
            self._release_notes(facts)
        elif kind == "reasoning":
            texts = [p.text for p in item.content or () if p.text]
            if not texts:  # the raw reasoning if the server gave it, else the summary
                texts = [p.text for p in item.summary or () if p.text]
            if texts:
                self._text("reasoning", "\n\n".join(texts), facts)
            self._reasoning_done(item, facts)
        elif kind in ("function_call", "custom_tool_call"):
            key = item.id or item.call_id
            if self._find_call(key, item.id, item.call_id) is None:
                self._start_call(key, item, facts)
                whole = item.arguments if kind == "function_call" else item.input
                if whole:
                    facts.append(ToolCallArguments(0, self._calls[key], whole))
        elif kind == "image_generation_call" and item.result:
            self._pos.other()
            media = item.output_format or "png"
            facts.append(ImageFact(0, f"data:image/{media};base64,{item.result}"))
        else:
            self._data(item, raw, facts)

    # -- pieces --------------------------------------------------------------------------
    def _text(self, kind: str, text: str, facts: list[Fact]) -> None:
        if kind == "text":
            self._pos.text(text)
        else:
            self._pos.other()
        facts.append(TextFact(0, kind, text))

    def _start_call(self, key: _Key, item: _Item, facts: list[Fact]) -> None:
        call = self._next_key
        self._next_key += 1
        self._calls[key] = call
        if item.id is not None:
            self._calls.setdefault(item.id, call)
        if item.call_id is not None:
            self._calls.setdefault(item.call_id, call)
        self._had_calls = True
        self._pos.other()
        facts.append(ToolCallStarted(0, call, item.call_id or item.id, item.name))

    def _done_annotations(self, key: _Key, item: _Item, facts: list[Fact]) -> None:
        """A streamed message whose citations came only with its finished item (no
        ``annotation.added`` events): they are read from there, spans from its text's start."""
        start = self._text_start.get(item.id, self._text_start.get(key))
        for number, part in enumerate(item.content or ()):
            base = self._part_start.get((key, number))
            if base is None and number == 0:
                base = start
            for note in part.annotations or ():
                if base is None:  # where this part's text starts is unknown: no span
                    note = {k: v for k, v in note.items() if k not in ("start_index", "end_index")}
                self._annotation(note, base or 0, facts)

    def _find_call(self, key: _Key, item_id: str | None, call_id: str | None) -> int | None:
        calls = self._calls
        call = calls.get(key)
        if call is None and item_id is not None:
            call = calls.get(item_id)
        if call is None and call_id is not None:
            call = calls.get(call_id)
        return call

    def _arguments(self, key: _Key, event: _Event, text: str, facts: list[Fact]) -> None:
        item_id = event.item_id
        call = self._find_call(key, item_id, event.call_id)
        if call is None and key is None and item_id is None and self._next_key:
            call = self._next_key - 1  # a delta that names nothing continues the last call
        if call is None:  # arguments before their item: held until it names the call
            self._held_args.setdefault(key, []).append((item_id, event.call_id, text))
            return
        facts.append(ToolCallArguments(0, call, text))

    def _release_held(self, key: _Key, facts: list[Fact]) -> None:
        """The held arguments of the call just started (``key``)."""
        for _, _, text in self._held_args.pop(key, ()):
            facts.append(ToolCallArguments(0, self._calls[key], text))

    def _flush_held(self, facts: list[Fact]) -> None:
        """The end came and never named these calls: calls of unknown name, as they are."""
        for key, pieces in list(self._held_args.items()):
            item_id, call_id, _ = pieces[0]
            self._start_call(key, _Item(id=item_id, call_id=call_id), facts)
            self._release_held(key, facts)

    def close(self) -> list[Fact]:
        facts: list[Fact] = []
        self._flush_held(facts)
        self._release_notes(facts)
        return facts

    def _annotation(self, note: dict[str, Any], base: int, facts: list[Fact]) -> None:
        url = note.get("url")
        if note.get("type") == "url_citation" and isinstance(url, str) and url:
            title = note.get("title")
            start, end = note.get("start_index"), note.get("end_index")
            span = type(start) is int and type(end) is int and 0 <= start <= end
            first, last = (base + start, base + end) if span else (None, None)
            if (url, first, last) in self._sources:
                return
            self._sources.add((url, first, last))
            title = title if isinstance(title, str) else None
            facts.append(SourceFact(0, url, title, first, last))
        else:  # file citations, file paths: kept as data, after the item's text
            self._notes.append(note)

    def _reasoning_done(self, item: _Item, facts: list[Fact]) -> None:
        """A reasoning item ended: its encrypted content, and the end of its block (the next
        item's thought is a block of its own, with its own encrypted content)."""
        if item.encrypted_content:
            self._pos.other()
            facts.append(ReasoningEncrypted(0, item.encrypted_content))
        facts.append(ReasoningEnd(0))

    def _release_notes(self, facts: list[Fact]) -> None:
        if self._notes:
            self._pos.other()
            facts.extend(DataFact(0, "annotation", note) for note in self._notes)
            self._notes.clear()

    def _data(self, item: _Item, raw: msgspec.Raw, facts: list[Fact]) -> None:
        self._pos.other()
        facts.append(DataFact(0, item.type or "item", _decode_any(raw), item.id))

    def _end(self, response: _Response, facts: list[Fact], kind: str | None = None) -> None:
        self._flush_held(facts)
        self._release_notes(facts)
        if response.usage is not None:
            facts.append(UsageFact(response.usage))
        status = response.status
        if kind == "response.failed" or status == "failed" or response.error is not None:
            err = response.error or _Error()
            facts.append(UpstreamError(err.message or "response failed", err.type, err.code))
        elif kind == "response.incomplete" or status == "incomplete":
            details = response.incomplete_details
            reason = details.reason if details is not None else None
            facts.append(Finished(0, INCOMPLETE_REASONS.get(reason or "", reason or "length")))
            self.saw_done = True
            facts.append(Done())
        elif kind == "response.completed" or status == "completed":
            facts.append(Finished(0, "tool_calls" if self._had_calls else "stop"))
            self.saw_done = True
            facts.append(Done())
        elif status == "cancelled":  # (a background response cancelled upstream)
            facts.append(UpstreamError("the upstream cancelled the response", "cancelled", None))
        # queued / in_progress: a body cut off before its end (the assembler reports it)


def _item_key(key: _Key, item: _Item) -> _Key:
    """An item event's key: its output index, else (servers that send none, e.g. older
    llama.cpp) the item's own id, else its call id, which its argument deltas name."""
    if key is not None:
        return key
    return item.id if item.id is not None else item.call_id


def _was_streamed(streamed: Container[_Key], key: _Key, item_id: str | None) -> bool:
    """Did deltas already carry this item's content of this kind? Deltas are marked by item
    id, else output index; a server whose deltas name neither marks ``None``: every item."""
    return (item_id is not None and item_id in streamed) or key in streamed or None in streamed
