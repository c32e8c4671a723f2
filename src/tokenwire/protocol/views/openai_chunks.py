"""The OpenAI ``chat.completion.chunk`` view: what the OpenAI SDKs (and LangChain) parse from
``POST /v1/chat/completions`` with ``stream: true``.

Each chunk is an SSE event ``data: {chunk}``; the last chunk of each op also carries
``id:<op seq>``, so ``Last-Event-ID`` resumes exactly after the op (an op's earlier chunks
have no id line, and a reconnect after one of them replays the op's remaining chunks).

Mapping: ``message.start`` -> the first chunk (``delta.role: "assistant"``, content ``""``);
text -> ``delta.content``, reasoning -> ``delta.reasoning_content`` (the DeepSeek/vLLM
spelling), refusal -> ``delta.refusal``, tool_call -> ``delta.tool_calls`` (not a ``server``
call, which the upstream ran itself; ``index`` = the call's place among its choice's calls; the
first chunk has ``id``, ``type`` and ``function.name``); ``choice`` -> ``choices[].index``;
``message.end`` -> one chunk per choice with its ``finish_reason``, a ``usage`` chunk
(``choices: []``, in chat completions' spelling whatever the upstream's) when usage is known,
then ``data: [DONE]``. A failed stream ends with ``data: {"error": {...}}`` (what the SDKs
raise as ``APIError``) and a cancelled one with an error of type ``cancelled``; neither has
``[DONE]``. Blocks with no chat-completion form (tool results, sources, files, images, data,
transient data, step resets) are not sent.
"""

from __future__ import annotations

from typing import Any

from tokenwire.protocol.views.base import (
    DEFAULT_MAX_FRAME_BYTES,
    Frame,
    View,
    _get,
    _set,
    encode_json,
)
from tokenwire.protocol.views.usage import chat_usage

DONE = b"data: [DONE]\n\n"

_DELTA_KEYS = {"text": "content", "reasoning": "reasoning_content", "refusal": "refusal"}


class OpenAIChunksView(View):
    """Ops -> ``chat.completion.chunk`` SSE events. ``completion_id`` defaults to
    ``chatcmpl-<stream id>``; ``created`` is the stream's creation time (unix seconds)."""

    _cursor_per_op = True

    def __init__(
        self,
        *,
        completion_id: str | None = None,
        created: int = 0,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        super().__init__(max_frame_bytes)
        self.completion_id = completion_id
        self.created = created
        self.tool_slots: dict[int, int] = {}  # block index -> tool_calls[].index
        self.tool_counts: dict[int, int] = {}  # choice -> tool calls so far
        self.roles_sent: set[int] = set()

    def fork(self) -> OpenAIChunksView:
        return OpenAIChunksView(
            completion_id=self.completion_id,
            created=self.created,
            max_frame_bytes=self.max_frame_bytes,
        )

    def compacted(
        self, frames: list[Frame], after: int, after_seq: int | None, max_frame_bytes: int
    ) -> list[Frame]:
        """Merged deltas, without the text of attempts a step reset superseded (a reader that
        far behind never saw it; a merged frame's id still covers the frames left out). A
        superseded tool call stays: chunks index calls by position, and a gap breaks SDKs."""
        kept = []
        for frame in frames:
            if frame.owner is None or not frame.owner.superseded:
                kept.append(frame)
            elif "role" in frame.body["choices"][0]["delta"]:
                kept.append(self._without_text(frame))  # (a choice's first chunk: its role)
        return self.compact(kept, max_frame_bytes)

    def _without_text(self, frame: Frame) -> Frame:
        """A choice's first chunk with its role only (its text was a superseded attempt's)."""
        choice = frame.body["choices"][0]
        delta = {k: (v if k == "role" else "") for k, v in choice["delta"].items()}
        body = {**frame.body, "choices": [{**choice, "delta": delta}]}
        bare = Frame(frame.index, frame.seq, b"", body, None, (), frame.cursor, frame.part)
        bare.data = self.render(bare)
        return bare

    def render(self, frame: Frame) -> bytes:
        data = DONE if frame.body is None else b"data: %s\n\n" % encode_json(frame.body)
        if frame.cursor and frame.index is not None:
            if frame.part:  # (more frames of the same op follow)
                return b"id:%d.%d\n%s" % (frame.seq, frame.part, data)
            return b"id:%d\n%s" % (frame.seq, data)
        return data

    def _chunk(self, choices: list[dict[str, Any]], usage: Any = None) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": self.completion_id or f"chatcmpl-{self.state.id or ''}",
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.state.model or "",
            "choices": choices,
        }
        if usage is not None:
            chunk["usage"] = usage
        return chunk

    def _delta_chunk(self, choice: int, delta: dict[str, Any], merge_key: Any = None) -> None:
        if choice not in self.roles_sent:
            self.roles_sent.add(choice)
            delta = {"role": "assistant", **delta}
            if merge_key is not None:
                # The role chunk merges with no other delta (a merged chunk takes its last
                # frame's body, which has no role), but a text past the bound is still split:
                # each piece keeps the role.
                merge_key = ("role", *merge_key)
        body = self._chunk([{"index": choice, "delta": delta, "finish_reason": None}])
        if merge_key is not None:
            key = next(k for k in delta if k != "role") if "tool_calls" not in delta else None
            path: tuple[Any, ...] = ("choices", 0, "delta", key)
            if key is None:
                path = ("choices", 0, "delta", "tool_calls", 0, "function", "arguments")
            self._emit(body, merge_key, path)
        else:
            self._emit(body)

    def _on(self, op: dict[str, Any], seq: int) -> None:
        kind = op.get("type")
        blocks = self.state.blocks
        if kind == "block.delta":
            index = int(op.get("index", -1)) % len(blocks)
            block = blocks[index]
            text = op.get("text", "")
            if block.type in _DELTA_KEYS:
                key = _DELTA_KEYS[block.type]
                first = len(self._out)
                self._delta_chunk(block.choice, {key: text}, (key, block.choice))
                # Each text frame names its block: a catch-up leaves out the text of blocks a
                # step reset dropped (the stored message does not have it either).
                for frame in self._out[first:]:
                    frame.owner = block
            elif block.type == "tool_call" and index in self.tool_slots:
                slot = self.tool_slots[index]
                call = {"index": slot, "function": {"arguments": text}}
                self._delta_chunk(block.choice, {"tool_calls": [call]}, ("tool", index))
        elif kind == "block.start":
            self._start(len(blocks), op["block"])
        elif kind == "message.start":
            self.state.id, self.state.model = op.get("id"), op.get("model")
            self._delta_chunk(0, {"content": ""})
        elif kind == "message.end":
            self._end(op)

    def _start(self, index: int, block: dict[str, Any]) -> None:
        choice = int(block.get("choice") or 0)
        kind = block.get("type")
        if kind in _DELTA_KEYS and block.get("text"):
            self._delta_chunk(choice, {_DELTA_KEYS[kind]: block["text"]})
        elif kind == "tool_call" and not block.get("server"):
            slot = self.tool_counts.get(choice, 0)
            self.tool_counts[choice] = slot + 1
            self.tool_slots[index] = slot
            call = {
                "index": slot,
                "id": block.get("id") or f"call_{index}",
                "type": "function",
                "function": {"name": block.get("name") or "", "arguments": ""},
            }
            if block.get("arguments"):
                call["function"]["arguments"] = block["arguments"]
            self._delta_chunk(choice, {"tool_calls": [call]})

    def _end(self, op: dict[str, Any]) -> None:
        status = op.get("status")
        if status in ("failed", "cancelled"):
            error = op.get("error") or {"message": "cancelled", "type": "cancelled", "code": None}
            self._emit({"error": error})
            self.done = True
            return
        choices = sorted({0, *(b.choice for b in self.state.blocks)})
        reason = op.get("finish_reason") or "stop"
        for choice in choices:
            self._emit(self._chunk([{"index": choice, "delta": {}, "finish_reason": reason}]))
        usage = chat_usage(op.get("usage"))
        if usage is not None:
            self._emit(self._chunk([], usage))
        self._emit_done()
        self.done = True

    # -- catch-up ----------------------------------------------------------------------------
    # An answer with several choices streams them interleaved (one chunk per choice per
    # token), so runs of one key are one frame long. A chunk may carry every choice: a
    # stretch of consecutive deltas of different choices becomes one chunk with an entry per
    # choice, and as it covers a contiguous stretch of frames, its id is a cursor like any.
    def _joins(self, keys: dict[Any, Frame], frame: Frame) -> int | None:
        if frame.merge in keys:
            return 0
        choice = frame.body["choices"][0]["index"]
        if any(first.body["choices"][0]["index"] == choice for first in keys.values()):
            return None  # (two entries of one choice: a chunk of its own)
        return len(encode_json(frame.body["choices"][0])) + 1

    def _merged(self, run: list[Frame], max_frame_bytes: int) -> list[Frame]:
        """``run`` as one chunk, or halves of it until each fits the bound."""
        first = run[0].merge
        if all(frame.merge == first for frame in run):
            return super()._merged(run, max_frame_bytes)
        texts: dict[Any, list[str]] = {}
        last_of: dict[Any, Frame] = {}
        for frame in run:
            texts.setdefault(frame.merge, []).append(_get(frame.body, frame.path))
            last_of[frame.merge] = frame
        choices = [
            _set(last.body, last.path, "".join(texts[key]))["choices"][0]
            for key, last in last_of.items()
        ]
        last = run[-1]
        body = {**last.body, "choices": choices}
        chunk = Frame(last.index, last.seq, b"", body, None, (), last.cursor, last.part)
        chunk.data = self.render(chunk)
        if len(chunk.data) <= max_frame_bytes:
            return [chunk]
        half = len(run) // 2
        return self._merged(run[:half], max_frame_bytes) + self._merged(run[half:], max_frame_bytes)
