"""The Vercel AI SDK "UI message stream" v1 view: what ``useChat`` / ``readUIMessageStream``
read (SSE ``data: {part}`` events, response header ``x-vercel-ai-ui-message-stream: v1``,
ending with ``data: [DONE]``).

Mapping (blocks of choice 0 only; other choices have no place in a UI message):
- ``message.start`` -> ``start`` (``messageId``: the given one, else the stream id).
- a block whose ``step`` is higher than the open step's -> ``finish-step`` + ``start-step``
  (the first block opens the first step; ``message.end`` closes the last).
- text / refusal -> ``text-start`` / ``text-delta`` / ``text-end`` (id ``t<index>``);
  reasoning -> ``reasoning-*`` (id ``r<index>``).
- tool_call -> ``tool-input-start`` / ``tool-input-delta`` / ``tool-input-available`` (the
  parsed arguments; ``tool-input-error`` when they are not JSON).
- tool_result -> ``tool-output-available`` with ``preliminary: true`` for each streamed
  output delta (the output so far; past ``PRELIMINARY_EVERY_DELTA`` characters only when it
  has doubled since the last one), the final one without it; ``tool-output-error`` when
  the result is an error (also when ``error`` arrives by ``block.update``). The output is
  sent parsed when it is JSON, else as the string. A result for a call not in this message
  first gets a ``tool-input-available`` (input ``null``) so the client has a part for it.
- source -> ``source-url`` (id ``s<index>``); file -> ``file``; image -> ``file`` (media type
  from the data URL, else ``image/*``).
- data -> ``data-<name>`` with ``id`` (the block's id, else ``d<index>``); a ``block.update``
  of its value sends the part again with the same id, which the client replaces in place.
- ``transient`` -> ``data-<name>`` with ``transient: true`` (not logged: no index).
- ``step.reset`` -> ``reset-step`` (``ai`` 7's part: the client drops the parts of its current
  step, after its ``step-start``; the retry's parts follow in the same step). A resume
  (``catch_up``) rebuilds the message from state, without the dropped step, and the client
  replaces its copy (``DefaultChatTransport`` resets on a replayed ``start``). (``ai`` 6's
  schema has no ``reset-step``: an ``ai`` 6 client meets a validation error at a reset.)
- ``message.end`` -> ``finish-step``, then ``error`` (``errorText``) when failed or ``abort``
  when cancelled, then always ``finish`` (``finishReason``; ``error`` when failed: the
  Workflow transport reconnects until it sees a finish), then ``data: [DONE]``. ``finish``
  carries ``messageMetadata`` ``{"model", "usage"}`` unless disabled.

Indexes: every part is one chunk, indexed 0, 1, 2, ... over the log, as the Workflow
transport counts them (``startIndex=N`` resumes at chunk N); ``[DONE]`` is not a chunk
there, so it has no index and closes the frames of an ended stream.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tokenwire.protocol.views.base import (
    DEFAULT_MAX_FRAME_BYTES,
    Frame,
    OpLike,
    View,
    encode_json,
)

HEADERS = {
    "content-type": "text/event-stream",
    "cache-control": "no-cache",
    "x-vercel-ai-ui-message-stream": "v1",
    "x-accel-buffering": "no",
}

DONE = b"data: [DONE]\n\n"

FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
    "error": "error",
}


def _finish_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    return FINISH_REASONS.get(reason, "other")


def _parse_json(text: str) -> tuple[bool, Any]:
    try:
        return True, msgspec.json.decode(text)
    except msgspec.DecodeError:
        return False, text


def _media_type(url: str) -> str:
    if url.startswith("data:"):
        head = url[5:].split(",", 1)[0].split(";", 1)[0]
        if head:
            return head
    return "image/*"


PRELIMINARY_EVERY_DELTA = 1024
"""A tool output shorter than this (characters) gets a preliminary part for every delta."""


class AISDKView(View):
    """Ops -> UI message stream v1 parts. ``message_id`` overrides the stream id as the UI
    message id; ``metadata`` puts ``{"model", "usage"}`` in ``finish.messageMetadata``."""

    WHOLE_BLOCKS = frozenset({"tool_result"})  # (its output goes whole in every part)

    def __init__(
        self,
        message_id: str | None = None,
        *,
        metadata: bool = True,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        super().__init__(max_frame_bytes)
        self.message_id = message_id
        self.metadata = metadata
        self.step: int | None = None  # the open step; None when none is open
        self.tool_ids: set[str] = set()
        self.server_calls: set[str] = set()  # calls the upstream ran itself (providerExecuted)
        self.shown: dict[int, int] = {}  # tool_result index -> length of its last preliminary

    def fork(self) -> AISDKView:
        return AISDKView(
            self.message_id, metadata=self.metadata, max_frame_bytes=self.max_frame_bytes
        )

    def render(self, frame: Frame) -> bytes:
        if frame.body is None:
            return DONE
        return b"data: %s\n\n" % encode_json(frame.body)

    # -- ops -----------------------------------------------------------------------------
    def _on(self, op: dict[str, Any], seq: int) -> None:
        kind = op.get("type")
        blocks = self.state.blocks
        if kind == "block.delta":
            index = int(op.get("index", -1)) % len(blocks)
            self._delta(index, blocks[index], op.get("text", ""))
        elif kind == "block.start":
            self._start(len(blocks), op["block"])
        elif kind == "block.end":
            self._end(int(op["index"]))
        elif kind == "block.update":
            self._update(int(op["index"]), op.get("set") or {})
        elif kind == "message.start":
            self._emit({"type": "start", "messageId": self.message_id or op.get("id") or ""})
        elif kind == "message.end":
            self._message_end(op)
        elif kind == "step.reset":
            # Only the client's current step can be dropped (``reset-step`` removes what
            # follows its last ``step-start``): a reset of a step that sent no part yet has
            # nothing there, and would take the previous step's parts with it.
            if self.step is not None and int(op.get("step") or 0) == self.step:
                self._emit({"type": "reset-step"})
        elif kind == "transient":
            self._emit(
                {"type": f"data-{op.get('name')}", "data": op.get("value"), "transient": True}
            )

    def _start(self, index: int, block: dict[str, Any]) -> None:
        if block.get("choice"):
            return
        step = int(block.get("step") or 0)
        if self.step is None:
            self._emit({"type": "start-step"})
        elif step > self.step:
            self._emit({"type": "finish-step"})
            self._emit({"type": "start-step"})
        self.step = step if self.step is None else max(step, self.step)
        kind = block.get("type")
        if kind in ("text", "refusal"):
            self._emit({"type": "text-start", "id": f"t{index}"})
            if block.get("text"):
                self._text_delta("text-delta", f"t{index}", block["text"])
        elif kind == "reasoning":
            self._emit({"type": "reasoning-start", "id": f"r{index}"})
            if block.get("text"):
                self._text_delta("reasoning-delta", f"r{index}", block["text"])
        elif kind == "tool_call":
            call_id = block.get("id") or self._fallback_id("call_", index)
            self.tool_ids.add(call_id)
            part = {
                "type": "tool-input-start",
                "toolCallId": call_id,
                "toolName": block.get("name") or "unknown",
            }
            if block.get("server"):
                self.server_calls.add(call_id)
                part["providerExecuted"] = True
            self._emit(part)
            if block.get("arguments"):
                self._tool_delta(call_id, block["arguments"])
        elif kind == "tool_result":
            self.shown.pop(index, None)  # (an index a reset step had is a new block now)
            call_id = block.get("call_id") or self._fallback_id("call_", index)
            if call_id not in self.tool_ids:
                self.tool_ids.add(call_id)
                self._emit(
                    {
                        "type": "tool-input-available",
                        "toolCallId": call_id,
                        "toolName": block.get("name") or "unknown",
                        "input": None,
                    }
                )
        elif kind == "source":
            part = {"type": "source-url", "sourceId": f"s{index}", "url": block.get("url") or ""}
            if block.get("title") is not None:
                part["title"] = block["title"]
            self._emit(part)
        elif kind == "file":
            self._emit(
                {
                    "type": "file",
                    "url": block.get("url") or "",
                    "mediaType": block.get("media_type") or "application/octet-stream",
                }
            )
        elif kind == "image":
            url = block.get("url") or ""
            self._emit({"type": "file", "url": url, "mediaType": _media_type(url)})
        elif kind == "data":
            self._data(index, block)

    def _text_delta(self, kind: str, part_id: str, text: str) -> None:
        self._emit({"type": kind, "id": part_id, "delta": text}, (kind, part_id), ("delta",))

    def _tool_delta(self, call_id: str, text: str) -> None:
        self._emit(
            {"type": "tool-input-delta", "toolCallId": call_id, "inputTextDelta": text},
            ("tool-input-delta", call_id),
            ("inputTextDelta",),
        )

    def _delta(self, index: int, block: Any, text: str) -> None:
        if block.choice:
            return
        if block.type in ("text", "refusal"):
            self._text_delta("text-delta", f"t{index}", text)
        elif block.type == "reasoning":
            self._text_delta("reasoning-delta", f"r{index}", text)
        elif block.type == "tool_call":
            self._tool_delta(block.attrs.get("id") or self._fallback_id("call_", index), text)
        elif block.type == "tool_result" and not block.attrs.get("error"):
            # A preliminary output is the whole output so far (it replaces the previous one):
            # one per delta would cost the square of the output. Past a small size it is sent
            # when the output has at least doubled since the last one, so that those together
            # stay under twice the final output (and a function of the log, as chunk indexes
            # must be).
            # (the length first: joining the output per delta would cost the square too)
            length = block.length + len(text)
            if length < PRELIMINARY_EVERY_DELTA or length >= 2 * self.shown.get(index, 0):
                self.shown[index] = length
                self._output(index, block, block.text + text, preliminary=True)

    def _output(self, index: int, block: Any, output: str, *, preliminary: bool) -> None:
        call_id = block.attrs.get("call_id") or self._fallback_id("call_", index)
        if block.attrs.get("error"):
            error = {"type": "tool-output-error", "toolCallId": call_id, "errorText": output}
            if call_id in self.server_calls:
                error["providerExecuted"] = True
            self._emit(error)
            return
        part = {"type": "tool-output-available", "toolCallId": call_id}
        part["output"] = _parse_json(output)[1]
        if call_id in self.server_calls:
            part["providerExecuted"] = True
        if preliminary:
            part["preliminary"] = True
        self._emit(part)

    def _end(self, index: int) -> None:
        block = self.state.blocks[index]
        if block.choice:
            return
        if block.type in ("text", "refusal"):
            self._emit({"type": "text-end", "id": f"t{index}"})
        elif block.type == "reasoning":
            self._emit({"type": "reasoning-end", "id": f"r{index}"})
        elif block.type == "tool_call":
            call_id = block.attrs.get("id") or self._fallback_id("call_", index)
            name = block.attrs.get("name") or "unknown"
            ok, value = _parse_json(block.text or "{}")
            part = {"type": "tool-input-available", "toolCallId": call_id, "toolName": name}
            part["input"] = value
            if call_id in self.server_calls:
                part["providerExecuted"] = True
            if not ok:
                part["type"] = "tool-input-error"
                part["errorText"] = "the tool call's arguments are not valid JSON"
            self._emit(part)
        elif block.type == "tool_result":
            self._output(index, block, block.text, preliminary=False)

    def _update(self, index: int, changes: dict[str, Any]) -> None:
        block = self.state.blocks[index]
        if block.choice:
            return
        if block.type == "data" and "value" in changes:
            self._data(index, {**block.attrs, "value": changes["value"]})
        elif block.type == "tool_result" and changes.get("error") and block.ended:
            call_id = block.attrs.get("call_id") or self._fallback_id("call_", index)
            self._emit(
                {"type": "tool-output-error", "toolCallId": call_id, "errorText": block.text}
            )

    def _data(self, index: int, block: dict[str, Any]) -> None:
        self._emit(
            {
                "type": f"data-{block.get('name') or 'data'}",
                "id": block.get("id") or self._fallback_id("d", index),
                "data": block.get("value"),
            }
        )

    def _fallback_id(self, kind: str, index: int) -> str:
        """An id for a part whose block has none: unique across the streams that build one
        UI message (a tool round's continuation starts its block indexes at 0 again, and
        the client would replace the earlier round's part of the same id)."""
        stream = self.state.id
        return f"{kind}{index}-{stream}" if stream else f"{kind}{index}"

    def _message_end(self, op: dict[str, Any]) -> None:
        if self.step is not None:
            self._emit({"type": "finish-step"})
            self.step = None
        status = op.get("status")
        part: dict[str, Any] = {"type": "finish"}
        reason = _finish_reason(op.get("finish_reason"))
        if status == "failed":
            error = op.get("error") or {}
            self._emit({"type": "error", "errorText": str(error.get("message") or "failed")})
            reason = "error"
        elif status == "cancelled":
            self._emit({"type": "abort", "reason": "cancelled"})
        if reason is not None:
            part["finishReason"] = reason
        if self.metadata:
            part["messageMetadata"] = {"model": self.state.model, "usage": op.get("usage")}
        # Always a finish, even after error/abort: the Workflow transport reconnects until
        # it has seen one.
        self._emit(part)
        self._emit_done(indexed=False)  # the AI SDK's parser does not count [DONE] as a chunk
        self.done = True

    # -- resume --------------------------------------------------------------------------
    def compacted(
        self, frames: list[Frame], after: int, after_seq: int | None, max_frame_bytes: int
    ) -> list[Frame]:
        """From the start (``after=-1``: the useChat resume) the message is rebuilt from
        state, so a dropped step is not replayed; at a cursor (the Workflow transport's
        ``startIndex``) the log's frames are merged, keeping every index exact."""
        if after >= 0 or after_seq is not None:
            return self.compact(frames, max_frame_bytes)
        rebuilt = self.state_frames(max_frame_bytes)
        # Live parts go on from the step the client was sent, not the log's: a step that was
        # reset and has no block is not in the rebuilt message (the next block of that step
        # must open it, and a later reset-step must not reach into the step before).
        steps = [b.step for b in self.state.blocks if not b.choice]
        self.step = max(steps) if steps else None
        return rebuilt


def resume(
    ops: list[OpLike],
    message_id: str | None = None,
    *,
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    metadata: bool = True,
) -> tuple[list[Frame], AISDKView]:
    """``GET {api}/{chatId}/stream``: the message so far, compacted, from its ``start`` (same
    ``messageId``, so the client replaces its copy), and the view to feed the live ops."""
    view = AISDKView(message_id, metadata=metadata, max_frame_bytes=max_frame_bytes)
    return view.catch_up(ops, max_frame_bytes=max_frame_bytes), view
