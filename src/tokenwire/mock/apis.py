"""The mock's scenarios in the OpenAI Responses and Anthropic Messages wire formats.

``POST /v1/responses`` and ``POST /v1/messages`` serve the same deterministic part sequences
as ``/v1/chat/completions`` (see scenarios.py), streamed (``"stream": true``) or whole, each in
that API's own format: Responses events (``event:`` + ``data:`` with ``type`` and
``sequence_number``, output items, ``response.completed`` / ``incomplete`` / ``failed``) and
Anthropic events (``message_start``, ``content_block_*``, ``message_delta``, ``message_stop``,
``error``). The official SDKs parse them (tests/test_mock_apis.py).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from tokenwire.producer.parts import (
    Finish,
    Part,
    RawDelta,
    Reasoning,
    StreamError,
    Text,
    ToolCallDelta,
    ToolCallStart,
    Truncate,
    Usage,
)

_encode = msgspec.json.Encoder().encode


class Step(msgspec.Struct, frozen=True):
    """One normalized step of an answer: ``kind`` is text, reasoning, call (``text``: the
    name, ``ident``: the call id), arguments, cite (``note``: an OpenAI chat ``url_citation``
    object, sent after the text it cites), end (``text``: the finish reason: stop, length,
    tool_calls), error (``text``: the message, ``ident``: the code) or truncate."""

    kind: str
    text: str = ""
    ident: str = ""
    note: dict[str, Any] | None = None


def steps(parts: Iterable[Part], limit: int | None) -> Iterator[Step]:
    """The parts as steps, ended at ``limit`` tokens (then ``end`` says ``length``), as the
    chat-completions producer counts them."""
    tokens = 0
    finish: str | None = None
    saw_tools = False
    for part in parts:
        if type(part) is str or isinstance(part, Text | Reasoning):
            text = part if type(part) is str else part.text  # type: ignore[union-attr]
            tokens += 1
            yield Step("reasoning" if isinstance(part, Reasoning) else "text", text)
            if limit is not None and tokens >= limit:  # (as the chat producer counts)
                yield Step("end", "length")
                return
        elif isinstance(part, ToolCallStart):
            saw_tools = True
            yield Step("call", part.name, part.id)
        elif isinstance(part, ToolCallDelta):
            tokens += 1  # (a chunk of arguments is a token, as the chat producer counts)
            yield Step("arguments", part.arguments)
            if limit is not None and tokens >= limit:
                yield Step("end", "length")
                return
        elif isinstance(part, RawDelta):  # (only the chat-specific tool styles use it)
            tokens += 1
            content = part.delta.get("content")
            if isinstance(content, str) and content:
                yield Step("text", content)
            for note in part.delta.get("annotations") or ():
                cite = note.get("url_citation") if isinstance(note, dict) else None
                if isinstance(cite, dict):
                    yield Step("cite", note=cite)
            if limit is not None and tokens >= limit:
                yield Step("end", "length")
                return
        elif isinstance(part, Finish):
            finish = part.reason
        elif isinstance(part, StreamError):
            yield Step("error", part.message, str(part.code or part.type))
            return
        elif isinstance(part, Truncate):
            yield Step("truncate")
            return
        elif isinstance(part, Usage):
            continue
    yield Step("end", finish or ("tool_calls" if saw_tools else "stop"))


def _ident(prefix: str, *seeds: object) -> str:
    digest = hashlib.sha256(repr(seeds).encode()).hexdigest()[:24]
    return f"{prefix}_{digest}"


# -- OpenAI Responses ------------------------------------------------------------------------
class ResponsesEncoder:
    """Steps -> Responses SSE events (``events``) or the whole ``response`` object."""

    def __init__(self, model: str, seed: int, prompt_tokens: int = 12) -> None:
        self.model = model
        self.id = _ident("resp", model, seed)
        self.seed = seed
        self.prompt_tokens = prompt_tokens
        self.output: list[dict[str, Any]] = []
        self.tokens = 0
        self.reasoning_tokens = 0
        self.error_code: str | None = None
        self.seq = 0
        self._open: dict[str, Any] | None = None  # the output item being streamed
        self._parts: list[str] = []
        self._notes: list[dict[str, Any]] = []  # the open message's annotations

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": 1_700_000_000,
            "status": status,
            "error": None,
            "incomplete_details": None,
            "model": self.model,
            "output": self.output if status != "in_progress" else [],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": None,
            **extra,
        }

    def _event(self, kind: str, **fields: Any) -> bytes:
        body = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), _encode(body))

    def _usage(self) -> dict[str, Any]:
        return {
            "input_tokens": self.prompt_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": self.tokens,
            "output_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
            "total_tokens": self.prompt_tokens + self.tokens,
        }

    def events(self, answer: Iterable[Step]) -> Iterator[bytes]:
        yield self._event("response.created", response=self._response("in_progress"))
        yield self._event("response.in_progress", response=self._response("in_progress"))
        for step in answer:
            kind = step.kind
            if kind in ("text", "reasoning"):
                self.tokens += 1
                self.reasoning_tokens += kind == "reasoning"
                yield from self._open_item(kind)
                self._parts.append(step.text)
                index = len(self.output)
                if kind == "text":
                    yield self._event(
                        "response.output_text.delta",
                        item_id=self._open["id"],  # type: ignore[index]
                        output_index=index,
                        content_index=0,
                        delta=step.text,
                        logprobs=[],
                    )
                else:
                    yield self._event(
                        "response.reasoning_summary_text.delta",
                        item_id=self._open["id"],  # type: ignore[index]
                        output_index=index,
                        summary_index=0,
                        delta=step.text,
                    )
            elif kind == "call":
                yield from self._close_item()
                item = {
                    "id": _ident("fc", self.id, len(self.output)),
                    "type": "function_call",
                    "status": "in_progress",
                    "arguments": "",
                    "call_id": step.ident,
                    "name": step.text,
                }
                self._open = item
                yield self._event(
                    "response.output_item.added", output_index=len(self.output), item=item
                )
            elif kind == "cite" and self._open is not None and step.note is not None:
                # Responses' url_citation is flat; offsets are into the output_text part.
                note = {"type": "url_citation", **step.note}
                self._notes.append(note)
                yield self._event(
                    "response.output_text.annotation.added",
                    item_id=self._open["id"],
                    output_index=len(self.output),
                    content_index=0,
                    annotation_index=len(self._notes) - 1,
                    annotation=note,
                )
            elif kind == "arguments" and self._open is not None:
                self.tokens += 1
                self._parts.append(step.text)
                yield self._event(
                    "response.function_call_arguments.delta",
                    item_id=self._open["id"],
                    output_index=len(self.output),
                    delta=step.text,
                )
            elif kind == "end":
                yield from self._close_item()
                if step.text == "length":
                    done = self._response(
                        "incomplete",
                        incomplete_details={"reason": "max_output_tokens"},
                        usage=self._usage(),
                    )
                    yield self._event("response.incomplete", response=done)
                else:
                    done = self._response("completed", usage=self._usage())
                    yield self._event("response.completed", response=done)
                return
            elif kind == "error":
                yield from self._close_item()
                # (the Responses API's error codes are an enum: a server failure is this one)
                error = {"code": "server_error", "message": step.text}
                self.error_code = step.ident  # (a whole body's error is free-form, as chat's)
                failed = self._response("failed", error=error, usage=self._usage())
                yield self._event("response.failed", response=failed)
                return
            elif kind == "truncate":
                return

    def _open_item(self, kind: str) -> Iterator[bytes]:
        item_type = "message" if kind == "text" else "reasoning"
        if self._open is not None and self._open["type"] == item_type:
            return
        yield from self._close_item()
        index = len(self.output)
        if item_type == "message":
            item: dict[str, Any] = {
                "id": _ident("msg", self.id, index),
                "type": "message",
                "status": "in_progress",
                "content": [],
                "role": "assistant",
            }
            self._open = item
            yield self._event("response.output_item.added", output_index=index, item=item)
            part = {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}
            yield self._event(
                "response.content_part.added",
                item_id=item["id"],
                output_index=index,
                content_index=0,
                part=part,
            )
        else:
            item = {"id": _ident("rs", self.id, index), "type": "reasoning", "summary": []}
            self._open = item
            yield self._event("response.output_item.added", output_index=index, item=item)
            yield self._event(
                "response.reasoning_summary_part.added",
                item_id=item["id"],
                output_index=index,
                summary_index=0,
                part={"type": "summary_text", "text": ""},
            )

    def _close_item(self) -> Iterator[bytes]:
        item = self._open
        if item is None:
            return
        self._open = None
        text = "".join(self._parts)
        self._parts = []
        notes, self._notes = self._notes, []
        index = len(self.output)
        ident = item["id"]
        if item["type"] == "message":
            yield self._event(
                "response.output_text.done",
                item_id=ident,
                output_index=index,
                content_index=0,
                text=text,
                logprobs=[],
            )
            part = {"type": "output_text", "annotations": notes, "logprobs": [], "text": text}
            yield self._event(
                "response.content_part.done",
                item_id=ident,
                output_index=index,
                content_index=0,
                part=part,
            )
            item = {**item, "status": "completed", "content": [part]}
        elif item["type"] == "reasoning":
            summary = {"type": "summary_text", "text": text}
            yield self._event(
                "response.reasoning_summary_text.done",
                item_id=ident,
                output_index=index,
                summary_index=0,
                text=text,
            )
            yield self._event(
                "response.reasoning_summary_part.done",
                item_id=ident,
                output_index=index,
                summary_index=0,
                part=summary,
            )
            item = {**item, "summary": [summary]}
        else:
            yield self._event(
                "response.function_call_arguments.done",
                item_id=ident,
                output_index=index,
                arguments=text,
            )
            item = {**item, "status": "completed", "arguments": text}
        self.output.append(item)
        yield self._event("response.output_item.done", output_index=index, item=item)

    def body(self, answer: Iterable[Step]) -> tuple[int, dict[str, Any]]:
        """``(status, body)`` of the non-streamed answer (an error is an HTTP error)."""
        last: bytes = b""
        for last in self.events(answer):  # noqa: B007 (the events build the output)
            pass
        if b"response.failed" in last[:40]:
            event = msgspec.json.decode(last.split(b"data: ", 1)[1])
            error = event["response"]["error"]
            body = {"error": {"message": error["message"], "type": "server_error",
                              "param": None, "code": self.error_code}}  # fmt: skip
            return 500, body
        if b"response.completed" in last[:40] or b"response.incomplete" in last[:40]:
            return 200, msgspec.json.decode(last.split(b"data: ", 1)[1])["response"]
        # Truncated: never finished; what was generated so far, as chat's body has it.
        for _ in self._close_item():
            pass
        return 200, self._response("in_progress", output=self.output, usage=self._usage())


# -- Anthropic Messages ----------------------------------------------------------------------
STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


class AnthropicEncoder:
    """Steps -> Anthropic Messages SSE events (``events``) or the whole message."""

    def __init__(self, model: str, seed: int, prompt_tokens: int = 12) -> None:
        self.model = model
        self.id = _ident("msg", model, seed)
        self.prompt_tokens = prompt_tokens
        self.content: list[dict[str, Any]] = []
        self.tokens = 0
        self._open: dict[str, Any] | None = None
        self._parts: list[str] = []

    @staticmethod
    def _event(kind: str, **fields: Any) -> bytes:
        return b"event: %s\ndata: %s\n\n" % (kind.encode(), _encode({"type": kind, **fields}))

    def _message(self, stop_reason: str | None, content: list[dict[str, Any]]) -> dict:
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": self.prompt_tokens, "output_tokens": self.tokens},
        }

    def events(self, answer: Iterable[Step]) -> Iterator[bytes]:
        start = self._message(None, [])
        start["usage"] = {"input_tokens": self.prompt_tokens, "output_tokens": 1}
        yield self._event("message_start", message=start)
        answer = list(answer)
        cites = _anthropic_citations(answer)
        position = 0  # code points of text so far: where a cited span starts or ends
        for step in answer:
            kind = step.kind
            if kind in ("text", "reasoning"):
                self.tokens += 1
                block_type = "text" if kind == "text" else "thinking"
                pieces = _split(step.text, position, cites) if kind == "text" else [step.text]
                for piece in pieces:
                    # Anthropic cites whole text blocks: a cited span is a block of its own.
                    if kind == "text" and position in cites and self._parts:
                        yield from self._close_block()
                    if self._open is None or self._open["type"] != block_type:
                        yield from self._close_block()
                        yield from self._open_block(block_type, cites.get(position))
                    self._parts.append(piece)
                    delta = (
                        {"type": "text_delta", "text": piece}
                        if block_type == "text"
                        else {"type": "thinking_delta", "thinking": piece}
                    )
                    yield self._event("content_block_delta", index=len(self.content), delta=delta)
                    if kind == "text":
                        position += len(piece)
            elif kind == "call":
                yield from self._close_block()
                block = {"type": "tool_use", "id": step.ident, "name": step.text, "input": {}}
                self._open = block
                yield self._event(
                    "content_block_start", index=len(self.content), content_block=block
                )
            elif kind == "arguments" and self._open is not None:
                self.tokens += 1
                self._parts.append(step.text)
                delta = {"type": "input_json_delta", "partial_json": step.text}
                yield self._event("content_block_delta", index=len(self.content), delta=delta)
            elif kind == "end":
                yield from self._close_block()
                reason = STOP_REASONS.get(step.text, step.text)
                yield self._event(
                    "message_delta",
                    delta={"stop_reason": reason, "stop_sequence": None},
                    usage={"output_tokens": self.tokens},
                )
                yield self._event("message_stop")
                self.stop_reason = reason
                return
            elif kind == "error":
                # The Messages API reports a failure mid-stream as an `error` event.
                error = {"type": "api_error", "message": step.text}
                yield self._event("error", error=error)
                return
            elif kind == "truncate":
                return

    def _open_block(self, block_type: str, cite: dict[str, Any] | None) -> Iterator[bytes]:
        block: dict[str, Any] = (
            {"type": "text", "text": ""}
            if block_type == "text"
            else {"type": "thinking", "thinking": "", "signature": ""}
        )
        self._open = block
        index = len(self.content)
        yield self._event("content_block_start", index=index, content_block=block)
        if cite is not None:
            self._open = {**block, "citations": [cite]}
            delta = {"type": "citations_delta", "citation": cite}
            yield self._event("content_block_delta", index=index, delta=delta)

    def _close_block(self) -> Iterator[bytes]:
        block = self._open
        if block is None:
            return
        self._open = None
        text = "".join(self._parts)
        self._parts = []
        index = len(self.content)
        if block["type"] == "thinking":
            # A stable, opaque signature (the real one is Anthropic's; clients keep it as is).
            signature = _ident("sig", self.id, index, text)
            delta = {"type": "signature_delta", "signature": signature}
            yield self._event("content_block_delta", index=index, delta=delta)
            block = {"type": "thinking", "thinking": text, "signature": signature}
        elif block["type"] == "text":
            cites = block.get("citations")
            block = {"type": "text", "text": text, **({"citations": cites} if cites else {})}
        else:
            try:
                arguments = msgspec.json.decode(text or "{}")
            except msgspec.DecodeError:  # (cut by the token limit mid-JSON)
                arguments = {}
            block = {**block, "input": arguments}
        self.content.append(block)
        yield self._event("content_block_stop", index=index)

    def body(self, answer: Iterable[Step]) -> tuple[int, dict[str, Any]]:
        self.stop_reason: str | None = None
        last = b""
        for last in self.events(answer):  # noqa: B007 (the events build the content)
            pass
        if last.startswith(b"event: error"):
            error = msgspec.json.decode(last.split(b"data: ", 1)[1])
            return 500, error
        for _ in self._close_block():  # (truncated: the block cut short, as generated so far)
            pass
        return 200, self._message(self.stop_reason, self.content)


def _anthropic_citations(answer: list[Step]) -> dict[int, dict[str, Any] | None]:
    """The text offsets where a cited span starts (-> its Anthropic web search citation) or
    ends (-> None), from the answer's ``cite`` steps."""
    text = "".join(step.text for step in answer if step.kind == "text")
    cuts: dict[int, dict[str, Any] | None] = {}
    for step in answer:
        note = step.note
        if step.kind != "cite" or note is None:
            continue
        start, end = note.get("start_index"), note.get("end_index")
        if type(start) is not int or type(end) is not int or not 0 <= start < end <= len(text):
            continue
        cuts.setdefault(end, None)
        cuts[start] = {
            "type": "web_search_result_location",
            "url": note.get("url"),
            "title": note.get("title"),
            "encrypted_index": _ident("idx", note.get("url"), start, end),
            "cited_text": text[start:end],
        }
    return cuts


def _split(text: str, position: int, cuts: dict[int, Any]) -> list[str]:
    """``text`` (starting at ``position``) split at the offsets in ``cuts``."""
    inside = sorted(c - position for c in cuts if position < c < position + len(text))
    if not inside:
        return [text]
    bounds = [0, *inside, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]
