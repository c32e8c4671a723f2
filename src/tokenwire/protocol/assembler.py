"""Facts -> sequenced ops, with optional coalescing of consecutive deltas.

Sans-IO: the caller passes the current time (``now``, seconds, monotonic) and asks
``next_deadline()`` when to call ``poll()`` so a held delta goes out even if upstream pauses.
The assembler's ``message`` is always the result of the ops emitted so far (held deltas are not
in it yet), because every op is applied to it the moment it is emitted.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import MappingProxyType
from typing import Any

import msgspec

from tokenwire.protocol.facts import (
    DataFact,
    Done,
    Fact,
    FileFact,
    Finished,
    ImageFact,
    ReasoningEncrypted,
    ReasoningEnd,
    ReasoningSignature,
    SourceFact,
    Started,
    StepReset,
    StepStarted,
    TextFact,
    ToolCallArguments,
    ToolCallEnded,
    ToolCallStarted,
    ToolResultEnd,
    ToolResultOutput,
    ToolResultStarted,
    UpstreamError,
    UsageFact,
)
from tokenwire.protocol.message import CANCELLED, COMPLETED, FAILED, Message
from tokenwire.protocol.ops import (
    BlockDelta,
    BlockEnd,
    BlockStart,
    BlockUpdate,
    EncodedOp,
    MessageEnd,
    MessageStart,
    Op,
    Transient,
    apply_op,
    encode,
    sse_frame,
)
from tokenwire.protocol.ops import StepReset as StepResetOp

TRUNCATED = "truncated"
TRUNCATED_CHAT = "upstream stream ended without finish_reason or [DONE]"
"""Why a chat stream that stopped before its end is ``truncated`` (other APIs' words:
``formats.truncated_message``)."""
INVALID_UTF8 = "invalid_utf8"  # the type of the warning of an answer whose bytes were repaired
_EMPTY: Any = MappingProxyType({})  # stands in for a table nothing was written to yet
_encode = msgspec.json.Encoder().encode
_DELTA_JSON = b'{"type":"block.delta","text":%s}'  # (text_delta: see there)
_SSE = b"id:%d\ndata:%s\n\n"  # sse_frame's format, inline on the per-token path


def error_info(
    message: str, type: str | None = None, code: str | int | None = None, status: int | None = None
) -> dict:
    """The ``error`` object of a failed message (``status``: the upstream's HTTP error status,
    only when it answered with one)."""
    error: dict = {"message": message, "type": type, "code": code}
    if status is not None:
        error["status"] = status
    return error


class _Pending:
    __slots__ = ("deadline", "index", "parts")

    def __init__(self, index: int, text: str, deadline: float) -> None:
        self.index = index
        self.parts = [text]
        self.deadline = deadline


class Assembler:
    """Turns facts into ops for one stream (one assistant answer)."""

    __slots__ = (
        "_data_ids",
        "_finish",
        "_finish_step",
        "_last_delta_at",
        "_last_of",
        "_now",
        "_open",
        "_open_of",
        "_out",
        "_pending",
        "_plain_since",
        "_result_block",
        "_step",
        "_text_block",
        "_tool_block",
        "_tool_meta",
        "_usage",
        "done",
        "message",
        "model",
        "seq",
        "stream_id",
        "warning",
        "window",
    )

    def __init__(
        self,
        stream_id: str | None = None,
        *,
        model: str | None = None,
        coalesce_ms: float = 0.0,
    ) -> None:
        self.stream_id = stream_id
        self.model = model
        self.window = max(0.0, coalesce_ms) / 1000.0
        self.message = Message.empty()
        self.seq = 0
        self.done = False
        self._out: list[EncodedOp] = []
        self._pending: _Pending | None = None
        self._last_delta_at = -float("inf")  # when the last delta op went out
        self._now = 0.0  # the time of the call in progress
        self._open: dict[int, int] = {}  # open block index -> choice
        # choice -> its open block indexes, in order: ending one choice's blocks never scans
        # every choice's (a chunk of 50,000 choices made that quadratic)
        self._open_of: dict[int, dict[int, None]] = {}
        self._text_block: dict[int, tuple[str, int]] = {}  # choice -> (kind, index) of open text
        # (read-only _EMPTY until first written, as the v1.1 tables below: an idle stream
        # has no tool call and no finish yet)
        self._tool_block: dict[int, int] = _EMPTY  # tool-call key -> block index
        self._tool_meta: dict[int, dict[str, Any]] = _EMPTY  # key -> {"id", "name"[, ...]}
        self._finish: dict[int, str] = _EMPTY
        self._usage: dict[str, Any] | None = None
        # v1.1 (all empty for a plain answer, so they cost nothing there):
        self._step = 0  # the step new blocks belong to
        # (Shared and read-only until first written: a plain answer allocates none of them,
        # and every open stream holds an assembler.)
        self._finish_step: dict[int, int] = _EMPTY  # choice -> step its finish reason came in
        self._result_block: dict[str, int] = _EMPTY  # tool_result call id -> open block index
        self._data_ids: dict[str, int] = _EMPTY  # data block id -> block index
        # choice -> the blocks (not tool results) it started since its last tool result began:
        # all that a new result may have to end (rescanning every open result instead made
        # thousands of never-ended results quadratic)
        self._plain_since: dict[int, list[int]] = _EMPTY
        # (kind, choice) -> (its last block of that kind, blocks looked at): citations and
        # signatures look back only over blocks added since (else quadratic: see _last_block)
        self._last_of: dict[tuple[str, int], tuple[int | None, int]] = _EMPTY
        # Set when the answer is complete but not as sent (e.g. invalid UTF-8 replaced):
        # a message that does not fail carries it as its ``error`` (docs/protocol.md).
        self.warning: dict[str, Any] | None = None

    # -- public API ------------------------------------------------------------------------
    def resume(self, message: Message, seq: int, open_blocks: Iterable[int]) -> None:
        """Position a fresh assembler at ``message`` as of ``seq`` (a takeover: another process
        wrote the ops so far). Open text/reasoning/refusal blocks take further text of their
        kind, as if this assembler had started them; new blocks continue the latest step."""
        self.message = message
        self.seq = seq
        blocks = message.blocks
        self._open = {i: blocks[i].choice for i in sorted(open_blocks) if i < len(blocks)}
        self._open_of = {}
        for index, choice in self._open.items():
            self._open_of.setdefault(choice, {})[index] = None
        for index, choice in self._open.items():
            kind = blocks[index].type
            if kind in ("text", "reasoning", "refusal"):
                self._text_block[choice] = (kind, index)
        self._step = max((block.step for block in blocks), default=0)
        # What later facts refer to by id: data blocks (a later value replaces the block's
        # value in place) and open tool results (more output for the same call).
        data_ids = {
            block.attrs["id"]: i
            for i, block in enumerate(blocks)
            if block.type == "data" and isinstance(block.attrs.get("id"), str)
        }
        if data_ids:
            self._data_ids = data_ids
        results = {
            blocks[i].attrs.get("call_id"): i for i in self._open if blocks[i].type == "tool_result"
        }
        if results:
            self._result_block = results  # type: ignore[assignment]

    def feed(self, facts: Iterable[Fact], now: float = 0.0) -> list[EncodedOp]:
        self._now = now
        text_block = self._text_block
        for fact in facts:
            if self.done:
                break
            if type(fact) is TextFact and not self.window:
                current = text_block.get(fact.choice)
                if current is not None and current[0] == fact.kind:
                    # Hot path: more text for the open block, sent at once.
                    self._out.append(self.text_delta(current[1], fact.text))
                    continue
            self._fact(fact, now)
        if self._pending is None:
            out = self._out
            if not out:
                return []
            self._out = []
            return out
        return self._take(now)

    def text_block(self, choice: int) -> tuple[str, int] | None:
        """``(kind, index)`` of the open text-like block of ``choice``, if any."""
        return self._text_block.get(choice)

    def text_delta(self, index: int, text: str, quoted: bytes | None = None) -> EncodedOp:
        """Emit a delta for open block ``index`` now. Builds the ``EncodedOp`` in place rather
        than through ``_emit``/``encode``: it is the per-token path (bench/core.py).
        ``quoted``: ``text`` as JSON, when the caller already has it."""
        seq = self.seq = self.seq + 1
        blocks = self.message.blocks
        block = blocks[index]
        block._parts.append(text)
        block.length += len(text)
        if index == len(blocks) - 1:
            op = BlockDelta(text=text)
            if text:
                # The bytes ``_encode(op)`` gives (tests/test_assembler.py checks they match),
                # spelled out: a quarter off the op's encoding cost.
                data = _DELTA_JSON % (quoted or _encode(text))
                return EncodedOp(op, seq, data, _SSE % (seq, data))
        else:
            op = BlockDelta(index=index, text=text)
        data = _encode(op)
        return EncodedOp(op, seq, data, sse_frame(seq, data))

    def poll(self, now: float) -> list[EncodedOp]:
        """Emit a held delta whose coalescing window has passed."""
        return self._take(now)

    def next_deadline(self) -> float | None:
        """When ``poll`` must be called next (``None``: nothing is held)."""
        pending = self._pending
        return pending.deadline if pending is not None else None

    def close(
        self,
        now: float = 0.0,
        truncated: str = TRUNCATED_CHAT,
    ) -> list[EncodedOp]:
        """The upstream stream ended; end the message per the status rules (``truncated``:
        the error message when it ended before its end, in its upstream API's words)."""
        self._now = now
        if not self.done:
            if self._finish:  # ([DONE] ends the message as soon as it arrives)
                self._end(COMPLETED, None)
            else:
                self._end(FAILED, error_info(truncated, TRUNCATED))
        return self._take(now)

    def cancel(self, now: float = 0.0) -> list[EncodedOp]:
        self._now = now
        if not self.done:
            self._end(CANCELLED, None)
        return self._take(now)

    def fail(
        self,
        message: str,
        *,
        error_type: str | None = "upstream_error",
        code: str | int | None = None,
        status: int | None = None,
        now: float = 0.0,
    ) -> list[EncodedOp]:
        self._now = now
        if not self.done:
            self._end(FAILED, error_info(message, error_type, code, status))
        return self._take(now)

    # -- facts -----------------------------------------------------------------------------
    def _fact(self, fact: Fact, now: float) -> None:
        if isinstance(fact, TextFact):
            self._text(fact, now)
        elif isinstance(fact, ToolCallArguments):
            index = self._tool_block.get(fact.key)
            if index is None or index not in self._open:
                # A fragment for a call whose block was closed by other output: continue it
                # in a new block rather than drop it.
                meta = self._tool_meta.get(fact.key, {"id": None, "name": None})
                index = self._start_tool(fact.choice, fact.key, meta)
            self._delta(index, fact.text, now)
        elif isinstance(fact, ToolCallStarted):
            self._close_text(fact.choice)
            meta = {"id": fact.id, "name": fact.name}
            if fact.server:  # (the upstream runs it and gives its result: not the caller's)
                meta["server"] = True
            if self._tool_meta is _EMPTY:
                self._tool_meta = {}
            self._tool_meta[fact.key] = meta
            self._start_tool(fact.choice, fact.key, meta)
        elif isinstance(fact, Started):
            self._ensure_started(fact.model)
        elif isinstance(fact, Finished):
            # The first finish of a choice counts, unless a later step finishes it again
            # (a multi-step answer ends with its last model call's reason).
            choice = fact.choice
            if choice not in self._finish or self._finish_step.get(choice, 0) < self._step:
                if self._finish is _EMPTY:
                    self._finish = {}
                self._finish[choice] = fact.reason
                if self._step:
                    if self._finish_step is _EMPTY:
                        self._finish_step = {}
                    self._finish_step[choice] = self._step
            for index in list(self._open_of.get(fact.choice, ())):
                self._end_block(index)
            self._text_block.pop(fact.choice, None)
        elif isinstance(fact, UsageFact):
            self._usage = fact.usage
        elif isinstance(fact, SourceFact):
            self._source(fact)
        elif isinstance(fact, ImageFact):
            self._close_text(fact.choice)
            index = self._start_block(fact.choice, {"type": "image", "url": fact.url})
            self._end_block(index)
        elif isinstance(fact, UpstreamError):
            self._end(FAILED, error_info(fact.message, fact.type, fact.code))
        elif isinstance(fact, Done):
            self._end(COMPLETED, None)
        else:
            self._fact_v11(fact)

    # -- v1.1 facts (kept out of ``_fact``'s common branches) -------------------------------
    def _fact_v11(self, fact: Fact) -> None:
        if self._result_block is _EMPTY and isinstance(
            fact, ToolResultOutput | ToolResultStarted | ToolResultEnd
        ):
            self._result_block = {}
        if isinstance(fact, ToolResultOutput):
            index = self._result_block.get(fact.call_id)
            if index is None or index not in self._open:
                index = self._start_result(fact.choice, fact.call_id, None, False)
            self._delta(index, fact.text, now=self._now)
        elif isinstance(fact, ToolResultStarted):
            self._start_result(fact.choice, fact.call_id, fact.name, fact.error)
        elif isinstance(fact, ToolResultEnd):
            index = self._result_block.pop(fact.call_id, None)
            if index is None or index not in self._open:
                index = self._start_result(fact.choice, fact.call_id, None, False)
                del self._result_block[fact.call_id]
            if fact.error and not self.message.blocks[index].attrs.get("error"):
                self._flush()
                self._emit(BlockUpdate(self.seq + 1, index, {"error": True}))
            self._end_block(index)
        elif isinstance(fact, ToolCallEnded):
            index = self._tool_block.get(fact.key)
            if index is not None and index in self._open:
                self._end_block(index)
        elif isinstance(fact, DataFact):
            self._data(fact)
        elif isinstance(fact, StepStarted):
            self._step_started(fact.step)
        elif isinstance(fact, StepReset):
            self._step_reset(fact.step)
        elif isinstance(fact, ReasoningSignature):
            index = None if fact.alone else self._reasoning_block(fact.choice)
            if index is None:
                index = self._start_block(
                    fact.choice, {"type": "reasoning", "signature": fact.signature, "text": ""}
                )
                self._end_block(index)
            else:
                self._flush()
                self._emit(BlockUpdate(self.seq + 1, index, {"signature": fact.signature}))
        elif isinstance(fact, ReasoningEncrypted):
            self._encrypted(fact)
        elif isinstance(fact, ReasoningEnd):
            current = self._text_block.get(fact.choice)
            if current is not None and current[0] == "reasoning":
                self._close_text(fact.choice)
        elif isinstance(fact, FileFact):
            self._close_text(fact.choice)
            block = {"type": "file", "url": fact.url, "media_type": fact.media_type}
            block["name"] = fact.name
            self._end_block(self._start_block(fact.choice, block))

    def _source(self, fact: SourceFact) -> None:
        block: dict[str, Any] = {"type": "source", "url": fact.url, "title": fact.title}
        if fact.start is not None and fact.end is not None:
            cited = self._cited_block(fact.choice)
            if cited is not None:
                block["span"] = {"block": cited, "start": fact.start, "end": fact.end}
        if fact.cited_text is not None:
            block["cited_text"] = fact.cited_text
        self._end_block(self._start_block(fact.choice, block))

    def cited_length(self, choice: int) -> int | None:
        """The length of the text a span of a source of ``choice`` would cite now (held,
        coalesced text included); ``None`` if the choice has no text block (no span)."""
        index = self._cited_block(choice)
        if index is None:
            return None
        length = self.message.blocks[index].length
        pending = self._pending
        if pending is not None and pending.index == index:
            length += sum(map(len, pending.parts))
        return length

    def _cited_block(self, choice: int) -> int | None:
        """The choice's open text block, else its last one (the text a span points into)."""
        current = self._text_block.get(choice)
        if current is not None and current[0] == "text":
            return current[1]
        return self._last_block("text", choice)

    def _reasoning_block(self, choice: int) -> int | None:
        """The choice's open reasoning block, else its last one in the current step."""
        current = self._text_block.get(choice)
        if current is not None and current[0] == "reasoning":
            return current[1]
        index = self._last_block("reasoning", choice)
        if index is None or self.message.blocks[index].step < self._step:
            return None  # (an earlier step's thought is not this one's)
        return index

    def _last_block(self, kind: str, choice: int) -> int | None:
        """The index of the choice's last block of ``kind``. Looks back only over the blocks
        added since it was last asked: thousands of citations after their text has closed
        (or signatures after other blocks) would otherwise each rescan every block."""
        blocks = self.message.blocks
        size = len(blocks)
        if self._last_of is _EMPTY:
            self._last_of = {}
        found, seen = self._last_of.get((kind, choice), (None, 0))
        for index in range(size - 1, seen - 1, -1):
            block = blocks[index]
            if block.type == kind and block.choice == choice:
                found = index
                break
        self._last_of[kind, choice] = (found, size)
        return found

    def _encrypted(self, fact: ReasoningEncrypted) -> None:
        attrs: dict[str, Any] = {"encrypted": fact.data}
        if fact.redacted:
            attrs["redacted"] = True
        current = self._text_block.get(fact.choice)
        # Redacted thinking is a whole block of its own (Anthropic's redacted_thinking), never
        # merged into the readable thought before it.
        if current is not None and current[0] == "reasoning" and not fact.redacted:
            self._flush()
            self._emit(BlockUpdate(self.seq + 1, current[1], attrs))
            return
        self._close_text(fact.choice)
        self._end_open(fact.choice)
        index = self._start_block(fact.choice, {"type": "reasoning", **attrs, "text": ""})
        if fact.redacted:  # redacted thinking is a whole block of its own
            self._end_block(index)
        else:  # encrypted reasoning whose readable summary may follow
            self._text_block[fact.choice] = ("reasoning", index)

    def _start_result(self, choice: int, call_id: str, name: str | None, error: bool) -> int:
        self._close_text(choice)
        # Output moved on from this choice's tool calls (results of other calls stay open:
        # parallel tools may stream their results interleaved).
        if self._plain_since is _EMPTY:
            self._plain_since = {}
        since = self._plain_since.get(choice)
        if since is None:  # (its first result: any open block; after that, the newer ones)
            results = set(self._result_block.values())
            since = [i for i in self._open_of.get(choice, ()) if i not in results]
        for index in sorted(since):  # (in index order, as ``_end_open``)
            if index in self._open:
                self._end_block(index)
        self._plain_since[choice] = []
        block: dict[str, Any] = {"type": "tool_result", "call_id": call_id, "name": name}
        if error:
            block["error"] = True
        block["output"] = ""
        index = self._start_block(choice, block)
        replaced = self._result_block.get(call_id)
        if replaced is not None and replaced in self._open:  # (the call's id, given twice)
            # No longer a result anyone can name: ended by its choice's next result, as before
            # (a choice without a list yet looks at all its open blocks then).
            since = self._plain_since.get(self._open[replaced])
            if since is not None:
                since.append(replaced)
        self._result_block[call_id] = index
        return index

    def _data(self, fact: DataFact) -> None:
        if fact.transient:
            # Delivered, not kept: not applied to the message and not advancing the seq.
            self._flush()
            self._out.append(encode(Transient(self.seq, fact.name, fact.value)))
            return
        if fact.id is not None:
            index = self._data_ids.get(fact.id)
            if index is not None:
                self._flush()
                self._emit(BlockUpdate(self.seq + 1, index, {"value": fact.value}))
                return
        self._close_text(fact.choice)
        block = {"type": "data", "name": fact.name, "id": fact.id, "value": fact.value}
        index = self._start_block(fact.choice, block)
        self._end_block(index)
        if fact.id is not None:
            if self._data_ids is _EMPTY:
                self._data_ids = {}
            self._data_ids[fact.id] = index

    def _step_started(self, step: int) -> None:
        if step < self._step:
            raise ValueError(f"step {step} after step {self._step}: steps only go up")
        if step == self._step:
            return
        self._end_open(None)  # the previous step's output is over
        self._step = step

    def _step_reset(self, step: int) -> None:
        if step != self._step:
            raise ValueError(f"only the latest step ({self._step}) can be reset, not {step}")
        self._ensure_started()
        self._end_open(None)
        self._emit(StepResetOp(self.seq + 1, step))
        # What pointed into the dropped blocks is gone with them; the retry starts clean.
        size = len(self.message.blocks)
        if self._plain_since is not _EMPTY:  # (nothing is open now; indexes may be reused)
            self._plain_since = {choice: [] for choice in self._plain_since}
        self._last_of = _EMPTY
        for table in (self._tool_block, self._result_block, self._data_ids):
            for key in [key for key, index in table.items() if index >= size]:
                del table[key]
                if table is self._tool_block and self._tool_meta is not _EMPTY:
                    self._tool_meta.pop(key, None)  # (a retried call names itself again)
        for choice in [c for c, s in self._finish_step.items() if s == step]:
            del self._finish_step[choice]
            del self._finish[choice]
        if not step:  # step 0's finishes are not tracked per step
            self._finish = _EMPTY

    def _end_open(self, choice: int | None) -> None:
        """End the open blocks of ``choice`` (of every choice for ``None``)."""
        for index in sorted(self._open if choice is None else self._open_of.get(choice, ())):
            self._end_block(index)
        if choice is None:
            self._text_block.clear()
        else:
            self._text_block.pop(choice, None)

    def _text(self, fact: TextFact, now: float) -> None:
        current = self._text_block.get(fact.choice)
        if current is not None and current[0] == fact.kind:
            self._delta(current[1], fact.text, now)
            return
        self._close_text(fact.choice)
        for index in list(self._open_of.get(fact.choice, ())):
            self._end_block(index)  # output moved on from this choice's tool calls
        index = self._start_block(fact.choice, {"type": fact.kind, "text": ""})
        self._text_block[fact.choice] = (fact.kind, index)
        self._delta(index, fact.text, now)

    def _close_text(self, choice: int) -> None:
        current = self._text_block.pop(choice, None)
        if current is not None and current[1] in self._open:
            self._end_block(current[1])

    def _start_tool(self, choice: int, key: int, meta: dict[str, Any]) -> int:
        index = self._start_block(choice, {"type": "tool_call", **meta, "arguments": ""})
        if self._tool_block is _EMPTY:
            self._tool_block = {}
        self._tool_block[key] = index
        return index

    # -- ops -------------------------------------------------------------------------------
    def _ensure_started(self, model: str | None = None) -> None:
        if self.seq == 0:
            self._emit(MessageStart(1, self.stream_id, model or self.model))

    def _start_block(self, choice: int, block: dict[str, Any]) -> int:
        self._ensure_started()
        self._flush()
        if choice or self._step:
            head: dict[str, Any] = {"type": block["type"]}
            if choice:
                head["choice"] = choice
            if self._step:
                head["step"] = self._step
            block = head | block
        index = len(self.message.blocks)
        self._emit(BlockStart(self.seq + 1, index, block))
        self._open[index] = choice
        if self._plain_since and block["type"] != "tool_result":
            since = self._plain_since.get(choice)
            if since is not None:
                since.append(index)
        opens = self._open_of.get(choice)
        if opens is None:
            opens = self._open_of[choice] = {}
        opens[index] = None
        return index

    def _delta(self, index: int, text: str, now: float) -> None:
        if not text:
            return
        if not self.window:
            self._out.append(self.text_delta(index, text))
            return
        # Leading-edge coalescing: a delta goes out at once unless one went out less than a
        # window ago; then it is held until the window has passed, merged with what follows
        # for the same block. A slow stream thus pays no added latency; a fast one gets at
        # most one delta op per window.
        pending = self._pending
        if pending is not None:
            if pending.index == index:
                pending.parts.append(text)
                return
            self._flush()  # another block's held text goes first
        next_free = self._last_delta_at + self.window
        if now >= next_free:
            self._out.append(self.text_delta(index, text))
            self._last_delta_at = now
        else:
            self._pending = _Pending(index, text, next_free)

    def _end_block(self, index: int) -> None:
        self._flush()
        del self._open_of[self._open.pop(index)][index]
        self._emit(BlockEnd(self.seq + 1, index))

    def _end(self, status: str, error: dict | None) -> None:
        if error is None:
            error = self.warning
        self._ensure_started()
        self._flush()
        for index in sorted(self._open):
            self._end_block(index)
        # No text block is open any more: ``text_block()`` answers ``None``, so no per-token
        # shortcut (``Pipeline``) can add to the ended message.
        self._text_block.clear()
        finish = self._finish.get(0)
        if finish is None and self._finish:
            finish = self._finish[min(self._finish)]
        self._emit(MessageEnd(self.seq + 1, status, finish, self._usage, error))
        self.done = True

    def _flush(self) -> None:
        pending = self._pending
        if pending is not None:
            self._pending = None
            text = pending.parts[0] if len(pending.parts) == 1 else "".join(pending.parts)
            self._out.append(self.text_delta(pending.index, text))
            self._last_delta_at = self._now

    def _emit(self, op: Op) -> None:
        seq = self.seq = self.seq + 1
        apply_op(self.message, op)
        self._out.append(encode(op, seq))

    def _take(self, now: float) -> list[EncodedOp]:
        self._now = now
        pending = self._pending
        if pending is not None and now >= pending.deadline:
            self._flush()
        out = self._out
        if not out:
            return []
        self._out = []
        return out
