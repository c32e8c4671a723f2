"""The OpenAI Responses streaming view: ``response.*`` events, each with a ``sequence_number``
(the frame's dense index over the log, from 0), sent as SSE ``id:<n>`` / ``event:<type>`` /
``data:<event>`` so both ``starting_after=N`` and ``Last-Event-ID: N`` resume after event N.

Mapping (blocks of choice 0): ``message.start`` -> ``response.created`` +
``response.in_progress``; each text block -> a ``message`` output item with one ``output_text``
part (``output_item.added``, ``content_part.added``, ``output_text.delta``...,
``output_text.done``, ``content_part.done``, ``output_item.done``); refusal -> the same with a
``refusal`` part and ``refusal.delta``; reasoning -> a ``reasoning`` item with one summary part
(``reasoning_summary_part.added``, ``reasoning_summary_text.delta``/``.done``, ...; an
``encrypted`` attr becomes the item's ``encrypted_content``); tool_call -> a ``function_call``
item (``function_call_arguments.delta``/``.done``; not a ``server`` call, run upstream); a
source with a ``span`` -> ``output_text.annotation.added`` (``url_citation``) on the cited text
block's item (a source without a span cites the latest text item, at its end). ``message.end``
-> ``response.completed``; ``response.incomplete`` for finish reasons ``length`` /
``content_filter`` and for a cancelled stream (status ``cancelled``); ``response.failed`` for a
failed one. The Responses API sends no ``[DONE]``. Other blocks have no Responses event here.
"""

from __future__ import annotations

import contextlib
from typing import Any

from tokenwire.protocol.views.base import DEFAULT_MAX_FRAME_BYTES, Frame, View, encode_json
from tokenwire.protocol.views.usage import responses_usage

# The codes of a Responses ``response.failed`` error (openai's ``ResponseError.code``).
_ERROR_CODES = frozenset(
    {
        "server_error",
        "rate_limit_exceeded",
        "invalid_prompt",
        "data_residency_mismatch",
        "bio_policy",
        "misalignment_policy_violation",
        "vector_store_timeout",
        "invalid_image",
        "invalid_image_format",
        "invalid_base64_image",
        "invalid_image_url",
        "image_too_large",
        "image_too_small",
        "image_parse_error",
        "image_content_policy_violation",
        "invalid_image_mode",
        "image_file_too_large",
        "unsupported_image_media_type",
        "empty_image_file",
        "failed_to_download_image",
        "image_file_not_found",
    }
)


class ResponsesView(View):
    """Ops -> Responses stream events. ``response_id`` defaults to ``resp_<stream id>``;
    ``created_at`` is the stream's creation time (unix seconds)."""

    def __init__(
        self,
        *,
        response_id: str | None = None,
        created_at: int = 0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        super().__init__(max_frame_bytes)
        self.response_id = response_id
        self.created_at = created_at
        self.items: dict[int, int] = {}  # block index -> output_index
        self.next_out = 0  # the next output_index (never reused: a reset's retry gets new ones)
        self.done_items: dict[int, dict[str, Any]] = {}  # output_index -> its final item
        self.annotations: dict[int, int] = {}  # output_index -> annotations so far
        # What would otherwise be scans of every block or item per op (quadratic on long
        # answers): source blocks by the block their span names (plus any source a
        # ``block.update`` touched, checked again at the end), the text items in order, and the
        # items of each step.
        self.cited: dict[Any, list[int]] = {}
        self.updated_sources: set[int] = set()
        self.text_items: list[int] = []
        self.items_of_step: dict[int, list[int]] = {}

    def fork(self) -> ResponsesView:
        return ResponsesView(
            response_id=self.response_id,
            created_at=self.created_at,
            max_frame_bytes=self.max_frame_bytes,
        )

    def render(self, frame: Frame) -> bytes:
        body = frame.body
        if frame.index is not None:
            body = {**body, "sequence_number": frame.index}
            frame.body = body
            return b"id:%d\nevent:%s\ndata:%s\n\n" % (
                frame.index,
                body["type"].encode(),
                encode_json(body),
            )
        return b"event:%s\ndata:%s\n\n" % (body["type"].encode(), encode_json(body))

    def _response(self, status: str, **extra: Any) -> dict[str, Any]:
        output = self._final_items() if self.done_items else []
        response: dict[str, Any] = {
            "id": self.response_id or f"resp_{self.state.id or ''}",
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.state.model or "",
            "output": output,
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "error": None,
            "incomplete_details": None,
            "usage": None,
        }
        response.update(extra)
        return response

    def _on(self, op: dict[str, Any], seq: int) -> None:
        kind = op.get("type")
        blocks = self.state.blocks
        if kind == "block.delta":
            index = int(op.get("index", -1)) % len(blocks)
            if index in self.items:
                self._delta(index, blocks[index].type, op.get("text", ""))
        elif kind == "block.start":
            block = op["block"]
            if block.get("type") == "source":
                span = block.get("span")
                if isinstance(span, dict):
                    with contextlib.suppress(TypeError):  # (an unhashable "block" names none)
                        self.cited.setdefault(span.get("block"), []).append(len(blocks))
            self._start(len(blocks), block)
        elif kind == "block.end":
            if int(op["index"]) in self.items:
                self._end(int(op["index"]))
        elif kind == "block.update":
            index = int(op["index"])
            if index in self.items and blocks[index].ended:
                pass  # a late signature/encrypted: the item is done; it shows in the final output
            elif blocks[index].type == "source":
                self.updated_sources.add(index)  # (its span may name another block now)
        elif kind == "message.start":
            self.state.id, self.state.model = op.get("id"), op.get("model")
            self._emit({"type": "response.created", "response": self._response("in_progress")})
            self._emit({"type": "response.in_progress", "response": self._response("in_progress")})
        elif kind == "message.end":
            self._finish(op)
        elif kind == "step.reset":
            self._reset(int(op.get("step") or 0))

    def _reset(self, step: int) -> None:
        """A step was superseded: the Responses events cannot take back what was sent, so its
        open items are finished as they stand, then left out of the final output; the retry's
        items get new output indexes and ids (the openai SDK refuses a reused item id)."""
        blocks = self.state.blocks  # (still with the reset step's blocks: _on runs first)
        of_step = self.items_of_step.pop(step, ())
        for index in sorted(i for i in of_step if i in self.items and i < len(blocks)):
            block = blocks[index]
            if not block.ended:
                self._end(index)
            self.done_items.pop(self.items.pop(index), None)

    def _ids(self, index: int) -> tuple[str, int]:
        out = self.items[index]
        return f"item_{self.state.id or ''}_{out}", out

    def _start(self, index: int, block: dict[str, Any]) -> None:
        if block.get("choice"):
            return
        kind = block.get("type")
        if kind == "source":
            self._source(block)
            return
        if kind not in ("text", "refusal", "reasoning", "tool_call") or block.get("server"):
            return  # (a server tool's call is no function_call item: the caller runs none)
        self.items[index] = self.next_out
        self.next_out += 1
        self.items_of_step.setdefault(int(block.get("step") or 0), []).append(index)
        if kind == "text":
            self.text_items.append(index)
        item_id, out = self._ids(index)
        if kind in ("text", "refusal"):
            item = {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "status": "in_progress",
                "content": [],
            }
            self._emit({"type": "response.output_item.added", "output_index": out, "item": item})
            self._emit(
                {
                    "type": "response.content_part.added",
                    "item_id": item_id,
                    "output_index": out,
                    "content_index": 0,
                    "part": self._part(kind, ""),
                }
            )
        elif kind == "reasoning":
            item = {"id": item_id, "type": "reasoning", "summary": [], "status": "in_progress"}
            self._emit({"type": "response.output_item.added", "output_index": out, "item": item})
            self._emit(
                {
                    "type": "response.reasoning_summary_part.added",
                    "item_id": item_id,
                    "output_index": out,
                    "summary_index": 0,
                    "part": {"type": "summary_text", "text": ""},
                }
            )
        else:
            item = {
                "id": item_id,
                "type": "function_call",
                "call_id": block.get("id") or f"call_{index}",
                "name": block.get("name") or "",
                "arguments": "",
                "status": "in_progress",
            }
            self._emit({"type": "response.output_item.added", "output_index": out, "item": item})
        text = block.get("arguments" if kind == "tool_call" else "text")
        if text:
            self._delta(index, kind, text)

    @staticmethod
    def _part(kind: str, text: str) -> dict[str, Any]:
        if kind == "refusal":
            return {"type": "refusal", "refusal": text}
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}

    def _delta(self, index: int, kind: str, text: str) -> None:
        item_id, out = self._ids(index)
        if kind == "text":
            event = {
                "type": "response.output_text.delta",
                "item_id": item_id,
                "output_index": out,
                "content_index": 0,
                "delta": text,
                "logprobs": [],
            }
        elif kind == "refusal":
            event = {
                "type": "response.refusal.delta",
                "item_id": item_id,
                "output_index": out,
                "content_index": 0,
                "delta": text,
            }
        elif kind == "reasoning":
            event = {
                "type": "response.reasoning_summary_text.delta",
                "item_id": item_id,
                "output_index": out,
                "summary_index": 0,
                "delta": text,
            }
        else:
            event = {
                "type": "response.function_call_arguments.delta",
                "item_id": item_id,
                "output_index": out,
                "delta": text,
            }
        self._emit(event, (event["type"], item_id), ("delta",))

    def _end(self, index: int) -> None:
        block = self.state.blocks[index]
        item_id, out = self._ids(index)
        text = block.text
        base = {"item_id": item_id, "output_index": out}
        if block.type in ("text", "refusal"):
            part = self._part(block.type, text)
            if block.type == "text":
                self._emit(
                    {
                        "type": "response.output_text.done",
                        **base,
                        "content_index": 0,
                        "text": text,
                        "logprobs": [],
                    }
                )
                part["annotations"] = self._cites(index)
            else:
                self._emit(
                    {"type": "response.refusal.done", **base, "content_index": 0, "refusal": text}
                )
            self._emit(
                {"type": "response.content_part.done", **base, "content_index": 0, "part": part}
            )
            item = {
                "id": item_id,
                "type": "message",
                "role": "assistant",
                "status": "completed",
                "content": [part],
            }
        elif block.type == "reasoning":
            summary = {"type": "summary_text", "text": text}
            self._emit(
                {
                    "type": "response.reasoning_summary_text.done",
                    **base,
                    "summary_index": 0,
                    "text": text,
                }
            )
            self._emit(
                {
                    "type": "response.reasoning_summary_part.done",
                    **base,
                    "summary_index": 0,
                    "part": summary,
                }
            )
            item = {"id": item_id, "type": "reasoning", "summary": [summary], "status": "completed"}
            if block.attrs.get("encrypted") is not None:
                item["encrypted_content"] = block.attrs["encrypted"]
        else:
            name = block.attrs.get("name") or ""
            self._emit(
                {
                    "type": "response.function_call_arguments.done",
                    **base,
                    "name": name,
                    "arguments": text,
                }
            )
            item = {
                "id": item_id,
                "type": "function_call",
                "call_id": block.attrs.get("id") or f"call_{index}",
                "name": name,
                "arguments": text,
                "status": "completed",
            }
        self.done_items[out] = item
        self._emit({"type": "response.output_item.done", "output_index": out, "item": item})

    def _final_items(self) -> list[dict[str, Any]]:
        """The items done so far, each text item with every citation of its text, also those
        that came after the item was done (their ``annotation.added`` followed its
        ``output_item.done``): the final response lists what the events announced."""
        blocks = self.state.blocks
        at = {out: index for index, out in self.items.items()}
        final = []
        for out in sorted(self.done_items):
            item = self.done_items[out]
            index = at.get(out)
            content = item.get("content")
            if (
                index is not None
                and index < len(blocks)
                and blocks[index].type == "text"
                and content
                and content[0].get("type") == "output_text"
            ):
                cites = self._cites(index)
                if cites != content[0].get("annotations"):
                    item = {**item, "content": [{**content[0], "annotations": cites}]}
            final.append(item)
        return final

    def _cites(self, index: int) -> list[dict[str, Any]]:
        """The url citations of text block ``index`` (for its final part)."""
        out = []
        blocks = self.state.blocks
        for source in sorted({*self.cited.get(index, ()), *self.updated_sources}):
            if source >= len(blocks) or blocks[source].type != "source":
                continue  # (dropped by a step reset, its index maybe taken by another block)
            block = blocks[source]
            span = block.attrs.get("span")
            if isinstance(span, dict) and span.get("block") == index:
                out.append(self._citation(block.attrs, span.get("start", 0), span.get("end", 0)))
        return out

    @staticmethod
    def _citation(attrs: dict[str, Any], start: int, end: int) -> dict[str, Any]:
        return {
            "type": "url_citation",
            "url": attrs.get("url") or "",
            "title": attrs.get("title") or "",
            "start_index": start,
            "end_index": end,
        }

    def _source(self, block: dict[str, Any]) -> None:
        span = block.get("span")
        if isinstance(span, dict) and span.get("block") in self.items:
            target, start, end = span["block"], span.get("start", 0), span.get("end", 0)
        else:
            texts = self.text_items  # (the newest text item still shown: reset ones are gone)
            blocks = self.state.blocks
            while texts and (texts[-1] not in self.items or blocks[texts[-1]].type != "text"):
                texts.pop()
            if not texts:
                return
            target = texts[-1]
            start = end = self.state.blocks[target].length
        item_id, out = self._ids(target)
        count = self.annotations.get(out, 0)
        self.annotations[out] = count + 1
        self._emit(
            {
                "type": "response.output_text.annotation.added",
                "item_id": item_id,
                "output_index": out,
                "content_index": 0,
                "annotation_index": count,
                "annotation": self._citation(block, start, end),
            }
        )

    def _finish(self, op: dict[str, Any]) -> None:
        status = op.get("status")
        usage = responses_usage(op.get("usage"))
        reason = op.get("finish_reason")
        if status == "failed":
            error = op.get("error") or {}
            given = str(error.get("code") or error.get("type") or "server_error")
            message = str(error.get("message") or "failed")
            # The Responses API's error codes are an enum (the SDKs validate it): any other
            # code (an upstream's own, tokenwire's "truncated") is a server error, named in
            # the message so that it is not lost.
            code = given if given in _ERROR_CODES else "server_error"
            if code != given:
                message = f"{message} ({given})"
            err = {"code": code, "message": message}
            response = self._response("failed", error=err, usage=usage)
            self._emit({"type": "response.failed", "response": response})
        elif status == "cancelled":
            response = self._response("cancelled", usage=usage)
            self._emit({"type": "response.incomplete", "response": response})
        elif reason in ("length", "content_filter"):
            details = {"reason": "max_output_tokens" if reason == "length" else "content_filter"}
            response = self._response("incomplete", incomplete_details=details, usage=usage)
            self._emit({"type": "response.incomplete", "response": response})
        else:
            response = self._response("completed", usage=usage)
            self._emit({"type": "response.completed", "response": response})
        self.done = True
