"""``StreamWriter``: the one producer of a stream's ops.

Every write turns into facts for the stream's ``Assembler``; the ops it returns go to the hub
in seq order, under one lock shared with the coalescing timer. Text written (or piped) faster
than the coalescing window is held and merged; anything structural (a new block, the end)
flushes the held text first, as the assembler guarantees. ``pipe`` feeds an upstream chat
completions stream through the ``Pipeline``'s decoder with its per-token fast path: this is
the gateway's hot path.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import math
import re
import time
from collections.abc import AsyncIterable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from tokenwire.errors import (
    HubUnavailable,
    InvalidArgument,
    OutOfOrder,
    StreamEnded,
    StreamFailed,
    StreamNotFound,
    TokenwireError,
)
from tokenwire.protocol import Assembler, EncodedOp, Message, Pipeline
from tokenwire.protocol.assembler import TRUNCATED
from tokenwire.protocol.facts import (
    DataFact,
    Done,
    Fact,
    FileFact,
    Finished,
    ImageFact,
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
from tokenwire.protocol.formats import truncated_message
from tokenwire.streams.store import StoredStream

if TYPE_CHECKING:
    from tokenwire.streams.core import Streams

log = logging.getLogger("tokenwire.streams")

_ERROR_BODY_LIMIT = 64 * 1024
_json = msgspec.json.Encoder()
ON_END_GRACE_S = 5.0
"""How long ``Streams.close`` lets an ``on_end`` hook already running finish before it cuts
the hook off (the stream's end goes to readers after either)."""


class HubLost(TokenwireError):
    """The hub no longer takes this stream's ops (unreachable past its grace, or the stream is
    gone or already ended there). The writer stops writing to it. ``refused``: the stream was
    ended or taken over by another process while this one stalled (fenced off)."""

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


class State(enum.Enum):
    """Where a writer is in its life (one state instead of a set of flags)."""

    OPEN = "open"
    """Writes go to the hub."""
    CANCEL_PENDING = "cancel_pending"
    """A cancel was requested while the producer's hub append was in flight, or by the
    producer itself: delivered (as ``CancelledError``) once that append is through (never in
    its middle), at the producer's next write, or at its next await, whichever comes first."""
    CANCELLING = "cancelling"
    """A cancel was requested and delivered: the producer task was cancelled."""
    HUB_LOST = "hub_lost"
    """The hub refused or could not be reached past its grace: one last attempt to end it."""
    FENCED = "fenced"
    """Another process ended or took over the stream while this writer stalled: this one
    writes, stores and reports nothing more (that process does)."""
    ENDED = "ended"
    """``message.end`` was handed to the hub (or given up): every write raises ``StreamEnded``."""


@dataclass(slots=True)
class ToolCall:
    """A tool call the model asked for, as learned by ``pipe``."""

    id: str | None
    name: str | None
    arguments: str = ""


@dataclass(slots=True)
class PipeResult:
    """What ``StreamWriter.pipe`` learned from one upstream response."""

    finish_reason: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    model: str | None = None


_FORMATS = {
    "auto": "auto",
    "chat": "chat",
    "chat_completions": "chat",
    "chat.completions": "chat",
    "responses": "responses",
    "anthropic": "anthropic",
}
_OPEN = State.OPEN  # (module constants: the per-append checks are identity tests)
_ENDED = State.ENDED
_CANCEL_PENDING = State.CANCEL_PENDING
_PIPE_SPECIAL = frozenset({Done, UpstreamError, Started, Finished, UsageFact})
_TOOL_FACTS = (ToolCallStarted, ToolCallArguments)


class _PipeFacts:
    """Wraps one pipe's ``ChunkNormalizer``: records what the pipe learned and keeps what ends
    the whole message (``[DONE]``, an error event) from reaching the shared assembler; tool-call
    keys are shifted so each response's calls stay distinct in the message."""

    # (Lives as long as the pipe, for every open stream: what it learned is kept in slots and
    # becomes a ``PipeResult`` only at the end.)
    __slots__ = (
        "_calls",
        "_inner",
        "_server_calls",
        "error",
        "finish_reason",
        "key_base",
        "model",
        "stop",
        "usage",
    )

    def __init__(self, inner: Any, key_base: int) -> None:
        self._inner = inner
        self.key_base = key_base
        # by key, in order of appearance: the call and its argument fragments (joined once, at
        # the end: appending to the call's string copied all of it per fragment, quadratic)
        self._calls: dict[int, tuple[ToolCall, list[str]]] | None = None
        # keys of calls the upstream runs itself (made on the first: an empty set is 216 B)
        self._server_calls: set[int] | None = None
        self.stop = False
        self.error: UpstreamError | None = None
        self.finish_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.model: str | None = None

    def result(self) -> PipeResult:
        # (the calls the host must run: not those the upstream ran itself)
        server = self._server_calls or ()
        calls = []
        for key, (call, parts) in (self._calls or {}).items():
            if key not in server:
                call.arguments = "".join(parts)
                calls.append(call)
        return PipeResult(self.finish_reason, calls, self.usage, self.model)

    def __getattr__(self, name: str) -> Any:  # (saw_chunk, last_skip_reason, ...)
        return getattr(self._inner, name)

    def passes_plain_text(self, choice: int) -> bool:
        return self._inner.passes_plain_text(choice)

    def feed_event(self, event: Any) -> list[Fact]:
        return self._filter(self._inner.feed_event(event))

    def feed_chunk(self, chunk: Any) -> list[Fact]:
        return self._filter(self._inner.feed_chunk(chunk))

    def feed_data(self, data: Any) -> list[Fact]:
        return self._filter(self._inner.feed_data(data))

    def feed_token(self, data: Any) -> str | list[Fact]:
        out = self._inner.feed_token(data)  # (a plain text token needs no filtering)
        return out if type(out) is str else self._filter(out)

    def close(self) -> list[Fact]:
        return self._filter(self._inner.close())

    def _filter(self, facts: list[Fact]) -> list[Fact]:
        out = facts
        for i, fact in enumerate(facts):
            kind = type(fact)
            if kind is TextFact:
                continue
            if kind in _PIPE_SPECIAL:
                if kind is Done or kind is UpstreamError:
                    self.stop = True
                    if kind is UpstreamError:
                        self.error = fact  # type: ignore[assignment]
                    return out[:i] if out is facts else out
                if kind is Started:
                    self.model = self.model or fact.model  # type: ignore[union-attr]
                elif kind is Finished:
                    if fact.choice == 0 or self.finish_reason is None:  # type: ignore[union-attr]
                        self.finish_reason = fact.reason  # type: ignore[union-attr]
                elif kind is UsageFact:
                    self.usage = fact.usage  # type: ignore[union-attr]
            elif kind is ToolCallStarted or kind is ToolCallArguments or kind is ToolCallEnded:
                if out is facts and self.key_base:
                    out = list(facts)
                fact = self._tool(fact)  # type: ignore[arg-type]
                if out is not facts:
                    out[i] = fact
        return out

    def _tool(self, fact: ToolCallStarted | ToolCallArguments | ToolCallEnded) -> Fact:
        key = fact.key + self.key_base
        if type(fact) is ToolCallEnded:
            return ToolCallEnded(fact.choice, key) if self.key_base else fact
        calls = self._calls
        if calls is None:
            calls = self._calls = {}
        if type(fact) is ToolCallStarted:
            calls[key] = (ToolCall(fact.id, fact.name), [])
            if fact.server:
                if self._server_calls is None:
                    self._server_calls = set()
                self._server_calls.add(key)
            if self.key_base:
                return ToolCallStarted(fact.choice, key, fact.id, fact.name)
            return fact
        call = calls.get(key)
        if call is None:  # (fragments of a call whose start we never saw)
            call = calls[key] = (ToolCall(None, None), [])
        call[1].append(fact.text)
        if self.key_base:
            return ToolCallArguments(fact.choice, key, fact.text)
        return fact

    @property
    def content_reasoning(self) -> bool:
        """Reasoning came inside the upstream's content (see ``ChunkNormalizer``)."""
        return getattr(self._inner, "content_reasoning", False)

    def rewrap(self, pipeline: Pipeline) -> None:
        """``"auto"`` detected the format and put its own normalizer in: filter that one."""
        self._inner = pipeline.normalizer
        pipeline.normalizer = self  # type: ignore[assignment]

    def next_key(self) -> int:
        return max(self._calls or (), default=self.key_base - 1) + 1


class StreamWriter:
    """Writes one stream. Obtained from ``Streams.start``: ``produce(writer)`` gets it.

    Every method is a coroutine that returns once its ops are in the hub (held, coalesced text
    goes out when its window passes). After the stream ended (``end``, ``fail``, a cancel, the
    producer returned) every write raises ``StreamEnded``.
    """

    __slots__ = (
        "_asm",
        "_first_token_at",
        "_flush_handle",
        "_flush_task",
        "_flushing",
        "_lock",
        "_mark_inexact",
        "_piped_in_step",
        "_pipes",
        "_refusal",
        "_state",
        "_step",
        "_streams",
        "_task",
        "_tool_key",
        "_transient",
        "_unsent",
        "_usage",
        "created_at",
        "metadata",
        "owner",
        "stream_id",
    )

    def __init__(
        self,
        streams: Streams,
        stream_id: str,
        owner: str | None,
        metadata: dict[str, Any] | None,
        *,
        model: str | None,
        coalesce_ms: float,
    ) -> None:
        self._streams = streams
        self.stream_id = stream_id
        self.owner = owner
        self.metadata = metadata
        self.created_at = time.time()
        self._asm = Assembler(stream_id, model=model, coalesce_ms=coalesce_ms)
        self._lock = asyncio.Lock()  # orders (assembler step + append): writer vs flush timer
        # A held (coalesced) delta is flushed by a timer armed only while one is held, so an
        # idle or slow stream costs no extra task.
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._unsent: list[EncodedOp] = []  # ops produced but not in the hub yet
        self._state = State.OPEN
        self._flushing = False  # the flush timer's task holds the lock (not the producer)
        self._first_token_at: float | None = time.monotonic()  # None once the first token left
        self._task: asyncio.Task[Any] | None = None
        self._tool_key = 0  # the next free tool-call key (the assembler's per-call identity)
        self._step = 0
        self._pipes = 0
        # The hub's word that the stream was ended or taken over elsewhere, when a coalesced
        # flush (a timer's task, not the producer) heard it: the producer's next write must
        # hear it too, not a seq mismatch that would read as a lost hub.
        self._refusal: HubLost | None = None
        self._piped_in_step = False  # a pipe wrote into the current step
        self._usage: dict[str, Any] | None = None
        self._transient = False  # transient data was written: batches are filtered
        # A stream that can be taken over tells the hub once its emitted text stops being the
        # upstream's raw text (reasoning split out of content): a taker must not continue it.
        self._mark_inexact = False

    def _resume_at(self, message: Message, seq: int, open_blocks: Iterable[int]) -> None:
        """A takeover: continue ``message`` (as of ``seq``) written by a process that died."""
        self._asm.resume(message, seq, open_blocks)
        self._step = max((block.step for block in message.blocks), default=0)
        self._tool_key = sum(1 for block in message.blocks if block.type == "tool_call")
        self._first_token_at = None  # (its first token was the dead process's)

    # -- state -----------------------------------------------------------------------------
    @property
    def id(self) -> str:
        """The stream's id (as ``stream_id``)."""
        return self.stream_id

    @property
    def state(self) -> State:
        """Where the writer is in its life (a ``tokenwire.streams.State``)."""
        return self._state

    @property
    def message(self) -> Message:
        """The message as written so far (held, coalesced text not included yet)."""
        return self._asm.message

    @property
    def seq(self) -> int:
        """The seq of the last op written (0 before ``start``)."""
        return self._asm.seq

    @property
    def ended(self) -> bool:
        """Whether the stream has ended (``end``, ``fail``, ``cancel`` or its upstream)."""
        return self._state is State.ENDED

    # -- writing ---------------------------------------------------------------------------
    async def text(self, text: str, *, choice: int = 0) -> None:
        """Append text to the open text block (or start one)."""
        await self._write([_text_fact("text", text, choice)])

    async def reasoning(self, text: str, *, choice: int = 0) -> None:
        """Append to the open reasoning block (or start one)."""
        await self._write([_text_fact("reasoning", text, choice)])

    async def refusal(self, text: str, *, choice: int = 0) -> None:
        """Append ``text`` to the model's refusal (a ``refusal`` block)."""
        await self._write([_text_fact("refusal", text, choice)])

    async def tool_call(
        self, id: str | None, name: str | None, arguments: str | Any = "", *, choice: int = 0
    ) -> None:
        """A whole tool call block. ``arguments``: the JSON text, or a value to encode."""
        _check_optional_str("tool_call", id=id, name=name)
        _check_choice(choice)
        if not isinstance(arguments, str):
            arguments = _json_text(f"tool call {name!r}: the arguments", arguments)
        _check_unicode("tool_call", "arguments", arguments)
        key = self._tool_key
        self._tool_key += 1
        facts: list[Fact] = [ToolCallStarted(choice, key, id, name)]
        if arguments:
            facts.append(ToolCallArguments(choice, key, arguments))
        facts.append(ToolCallEnded(choice, key))  # (whole: readers see it complete at once)
        await self._write(facts)

    async def source(
        self,
        url: str,
        title: str | None = None,
        *,
        start: int | None = None,
        end: int | None = None,
        cited_text: str | None = None,
        choice: int = 0,
    ) -> None:
        """A source (a retrieved document, a citation); with ``start``/``end`` it cites a span
        of the current text block (protocol v1.1)."""
        _check_str("source", url=url)
        _check_optional_str("source", title=title, cited_text=cited_text)
        _check_choice(choice)
        if (start is None) != (end is None) or (
            start is not None
            and not (type(start) is int and type(end) is int and 0 <= start <= end)
        ):
            raise InvalidArgument(f"a cited span needs 0 <= start <= end, got {start}..{end}")
        if end is not None:
            length = self._asm.cited_length(choice)
            if length is None:
                raise InvalidArgument(
                    f"a cited span {start}..{end} needs a text block to point into: write the "
                    "text first, or leave start/end out"
                )
            if end > length:
                raise InvalidArgument(
                    f"a cited span {start}..{end} goes past the end of its text ({length} "
                    "characters so far)"
                )
        await self._write([SourceFact(choice, url, title, start, end, cited_text)])

    async def image(self, url: str, *, choice: int = 0) -> None:
        """An image the model made, as a URL (``data:`` URLs too): an ``image`` block."""
        _check_str("image", url=url)
        _check_choice(choice)
        await self._write([ImageFact(choice, url)])

    async def file(
        self, url: str, media_type: str, name: str | None = None, *, choice: int = 0
    ) -> None:
        """A file block (protocol v1.1)."""
        _check_str("file", url=url, media_type=media_type)
        _check_optional_str("file", name=name)
        _check_choice(choice)
        await self._write([FileFact(choice, url, media_type, name)])

    async def data(
        self,
        name: str,
        value: Any,
        *,
        id: str | None = None,
        transient: bool = False,
        choice: int = 0,
    ) -> None:
        """App data (protocol v1.1): a block; with an ``id`` already written, updated in place;
        ``transient`` goes to live readers only."""
        _check_str("data", name=name)
        _check_optional_str("data", id=id)
        _check_choice(choice)
        # Checked before the assembler moves, and kept as JSON gives it back: a value the host
        # changes later cannot change the message (readers got the JSON of this one).
        value = msgspec.json.decode(check_json(f"data {name!r}: the value", value, kept=True))
        if transient:
            self._transient = True
        await self._write([DataFact(choice, name, value, id, transient)])

    async def tool_result(
        self,
        call_id: str,
        output: Any,
        *,
        name: str | None = None,
        error: bool = False,
        choice: int = 0,
    ) -> None:
        """A tool's result (protocol v1.1) for the call ``call_id``. A non-string ``output``
        is JSON-encoded."""
        _check_optional_str("tool_result", call_id=call_id, name=name)  # (harmony calls: no id)
        _check_choice(choice)
        if not isinstance(output, str):
            output = _json_text(f"tool result {call_id!r}: the output", output)
        _check_unicode("tool_result", "output", output)
        facts: list[Fact] = [ToolResultStarted(choice, call_id, name, error)]
        if output:
            facts.append(ToolResultOutput(choice, call_id, output))
        facts.append(ToolResultEnd(choice, call_id, None))
        await self._write(facts)

    async def step(self) -> int:
        """Start a new step (a model call or tool round); returns its number."""
        self._check_open()
        self._step += 1
        self._piped_in_step = False
        await self._write([StepStarted(self._step)])
        return self._step

    async def supersede(self) -> None:
        """Drop every block of the current step (a failed attempt); its retry reuses it (the
        next ``pipe`` writes into this step again)."""
        self._piped_in_step = False
        await self._write([StepReset(self._step)])

    async def end(self) -> None:
        """End the message ``completed`` (its finish reason: the last one piped in)."""
        self._check_open()
        await self._finish(lambda now: self._asm.feed([Done()], now))

    async def fail(
        self, message: str, *, type: str | None = "error", code: str | int | None = None
    ) -> None:
        """End the message ``failed`` with this error (what was written stays)."""
        _check_str("fail", message=message)
        _check_optional_str("fail", type=type)
        if code is not None and not isinstance(code, (str, int)):
            raise InvalidArgument(f"fail: code must be a string or an int, got {code!r}")
        self._check_open()
        await self._end_failed(message, type, code)

    # -- piping ----------------------------------------------------------------------------
    async def pipe(
        self,
        source: Any,
        format: str = "auto",
        *,
        max_event_bytes: int | None = None,
        max_stream_bytes: int | None = None,
    ) -> PipeResult:
        """Pipe an upstream chat completions stream into the message; returns what it learned.

        ``source``: an async iterable of bytes (raw SSE body), an ``httpx.Response`` opened with
        ``stream=True``, the OpenAI SDK's raw response (``with_raw_response``, or the object of
        ``with_streaming_response``), an ``AsyncStream`` not iterated yet, an async context
        manager giving one of these (``httpx.AsyncClient.stream(...)``,
        ``with_streaming_response.create(...)``: entered and exited here), or the gateway's
        ``UpstreamResponse``. A second pipe continues the same message in a new step.
        ``max_event_bytes`` (default: the ``Streams``' own) caps one upstream SSE event: a bigger
        one ends the stream ``failed`` (error type ``event_too_large``, what came before kept)
        and the pipe raises ``StreamEnded``. ``max_stream_bytes`` (default: the ``Streams``'
        own) caps the bytes read from the upstream: past it the stream ends ``failed`` (error
        type ``stream_too_large``, what came before kept; the upstream is not read further)
        and the pipe raises ``StreamEnded``.

        Raises ``StreamFailed`` for an upstream error (HTTP status >= 400, an error event, a
        stream cut short without a finish reason); left uncaught, it fails the stream with it.
        """
        fmt = _FORMATS.get(format)
        if fmt is None:
            raise InvalidArgument(
                f"unsupported pipe format {format!r} (one of: auto, chat, responses, anthropic)"
            )
        if max_event_bytes is not None:
            check_byte_limit(max_event_bytes, "max_event_bytes")
        if max_stream_bytes is not None:
            check_byte_limit(max_stream_bytes, "max_stream_bytes")
        self._check_open()
        # One coroutine frame for the whole pipe, the context manager included, with as few
        # locals as it takes: this frame lives as long as the upstream answers, for every open
        # stream (docs/benchmarks.md: memory per idle stream).
        manager = source if hasattr(source, "__aenter__") and not hasattr(source, "poll") else None
        if manager is not None:
            source = await manager.__aenter__()
        try:
            source = _unwrap(source)
            _check_source(source)
            pipeline, facts = await self._pipe_start(source, fmt, max_event_bytes)
            # Bytes the upstream may still send (an upstream that never ends must not grow
            # this process without bound).
            room = max_stream_bytes = max_stream_bytes or self._streams.max_stream_bytes
            poll = getattr(source, "poll", None)
            if poll is not None:
                # The hot path (the gateway's ``UpstreamResponse``): no coroutine per read.
                while (chunk := poll()) is not None:
                    if isinstance(chunk, asyncio.Future):
                        await chunk
                        continue
                    room -= len(chunk)
                    if room < 0:
                        await self._too_large(pipeline, max_stream_bytes)
                        break
                    async with self._lock:
                        if self._state is not _OPEN:  # (cancelled: nothing more is read in)
                            self._check_open()
                        ops = pipeline.feed(chunk, time.monotonic())
                        if ops:
                            if self._mark_inexact and facts.content_reasoning:
                                await self._inexact()
                            await self._append(ops)
                    if self._flush_handle is None and (
                        self._flush_task is None or self._flush_task.done()
                    ):
                        self._arm_flush()  # (a running flush re-arms by itself)
                    if facts.stop or pipeline.assembler.done:
                        break
                    if pipeline.normalizer is not facts:
                        facts.rewrap(pipeline)  # ("auto" picked its normalizer)
            else:
                async for chunk in _chunks(source):
                    if not chunk:
                        continue
                    room -= len(chunk)
                    if room < 0:
                        await self._too_large(pipeline, max_stream_bytes)
                        break
                    async with self._lock:
                        if self._state is not _OPEN:
                            self._check_open()
                        ops = pipeline.feed(bytes(chunk), time.monotonic())
                        if ops:
                            if self._mark_inexact and facts.content_reasoning:
                                await self._inexact()
                            await self._append(ops)
                    if self._flush_handle is None and (
                        self._flush_task is None or self._flush_task.done()
                    ):
                        self._arm_flush()
                    if facts.stop or pipeline.assembler.done:
                        break
                    if pipeline.normalizer is not facts:
                        facts.rewrap(pipeline)
            if not facts.stop and not self._asm.done:  # EOF without [DONE]: release held text
                pipeline.decoder.close()
                await self._feed(facts.close())
        except BaseException as exc:
            if manager is not None and await manager.__aexit__(type(exc), exc, exc.__traceback__):
                return PipeResult()  # (the context manager swallowed the error)
            raise
        if manager is not None:
            await manager.__aexit__(None, None, None)
        return await self._pipe_result(facts, pipeline)

    async def _too_large(self, pipeline: Pipeline, limit: int) -> None:
        """The upstream passed ``max_stream_bytes``: end the message ``failed`` with what came
        (the read that passed it is not used)."""
        async with self._lock:
            self._check_open()
            ops = pipeline.fail(
                f"upstream stream passed max_stream_bytes ({limit} bytes); what came before "
                "it is kept",
                error_type="stream_too_large",
                now=time.monotonic(),
            )
            await self._append(ops)

    async def _pipe_start(
        self, source: Any, fmt: str, max_event_bytes: int | None
    ) -> tuple[Pipeline, _PipeFacts]:
        """Refuse an error response; open a step for a later model call; the pipe's decoder."""
        status = getattr(source, "status_code", None)
        if isinstance(status, int) and status >= 400:
            self._streams._upstream_error("http_status")
            raise await _upstream_error(source)
        if self._piped_in_step:
            # A later model call: its own step (unless ``step()`` started one since).
            self._step += 1
            await self._write([StepStarted(self._step)])
        self._pipes += 1
        self._piped_in_step = True
        if max_event_bytes is None:
            max_event_bytes = self._streams.max_event_bytes
        pipeline = Pipeline(
            self.stream_id, coalesce_ms=0.0, format=fmt, max_event_bytes=max_event_bytes
        )
        pipeline.assembler = self._asm  # the pipe's decoder + normalizer feed the writer's
        facts = _PipeFacts(pipeline.normalizer, self._tool_key)
        pipeline.normalizer = facts  # type: ignore[assignment]
        return pipeline, facts

    async def _pipe_result(self, facts: _PipeFacts, pipeline: Pipeline) -> PipeResult:
        self._tool_key = facts.next_key()
        if self._asm.done:  # the pipeline itself ended the message (e.g. an oversized event)
            raise StreamEnded(f"stream {self.stream_id!r} was ended by its upstream's stream")
        if facts.error is not None:
            raise StreamFailed(facts.error.message, facts.error.type, facts.error.code)
        result = facts.result()
        if not facts.stop and result.finish_reason is None:
            if not facts.saw_chunk and not facts.saw_done:  # say what the 200 answer was
                why = pipeline.why_nothing()
                if why is not None:
                    raise StreamFailed(*why)
            raise StreamFailed(truncated_message(pipeline.format), TRUNCATED)
        if result.usage is not None:
            if self._pipes > 1:  # the message's usage: over all its model calls
                self._usage = _add_usage(self._usage, result.usage)
                await self._write([UsageFact(self._usage)])
            else:
                self._usage = result.usage
        return result

    # -- internals -------------------------------------------------------------------------
    async def _inexact(self) -> None:
        """Before the first op whose text is not the upstream's raw text: say so in the hub."""
        self._mark_inexact = False
        try:
            await self._streams.hub.mark_inexact(self.stream_id)  # type: ignore[attr-defined]
        except HubUnavailable as exc:  # (the append that follows meets the outage too)
            log.warning("stream %s: could not mark it inexact: %s", self.stream_id, exc)

    def _check_open(self) -> None:
        state = self._state
        if state is State.ENDED or state is State.FENCED:
            raise StreamEnded(f"stream {self.stream_id!r} has ended: nothing more can be written")
        if (state is State.CANCELLING or state is _CANCEL_PENDING) and (
            asyncio.current_task() is self._task
        ):
            # The cancel reached the producer (or is due): it writes nothing more, and this
            # write, which raises, wrote nothing (one that swallowed it gets it again here).
            self._state = State.CANCELLING
            raise asyncio.CancelledError

    async def _write(self, facts: list[Fact]) -> None:
        self._check_open()
        await self._feed(facts)

    async def _feed(self, facts: list[Fact]) -> None:
        async with self._lock:
            self._check_open()
            ops = self._asm.feed(facts, time.monotonic())
            if ops:
                await self._append(ops)
        if (
            self._asm.next_deadline() is not None
            and self._flush_handle is None
            and (self._flush_task is None or self._flush_task.done())
        ):
            self._arm_flush()

    def _arm_flush(self) -> None:
        deadline = self._asm.next_deadline()
        if deadline is not None and not self._asm.done:
            delay = max(0.0, deadline - time.monotonic())
            self._flush_handle = asyncio.get_running_loop().call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._flush_handle = None
        self._flush_task = asyncio.ensure_future(self._flush_due())

    async def _flush_due(self) -> None:
        """Emit a coalesced delta when its window passes, even if nothing else is written."""
        try:
            async with self._lock:
                if self._state is State.ENDED:
                    return
                ops = self._asm.poll(time.monotonic())
                if ops:
                    self._flushing = True
                    try:
                        await self._append(ops)
                    finally:
                        self._flushing = False
        except HubLost as exc:
            # (the producer's next write or its ending sees the hub's state again)
            log.warning("stream %s: a coalesced flush failed: %s", self.stream_id, exc)
            if exc.refused and self._streams._shared_hub:  # (what fences it: Streams._fenced)
                self._refusal = exc
            return
        if self._flush_handle is None:
            self._arm_flush()  # the timer fired a hair early, or more text is held

    async def _append(self, ops: Sequence[EncodedOp]) -> None:
        """Hand ops to the hub (caller holds the lock). Stores the final message first."""
        state = self._state
        if state is _ENDED:
            raise StreamEnded(f"stream {self.stream_id!r} has ended: nothing more can be written")
        if self._refusal is not None:
            raise HubLost(str(self._refusal), refused=True)
        if self._unsent:  # ops the hub has not taken yet go first, so the seqs stay dense
            ops = [*self._unsent, *ops]
            self._unsent = []
        if self._transient and any(op.type == "transient" for op in ops):
            ops = await self._send_transients(ops, state is State.HUB_LOST)
            if not ops:
                self._cancel_if_pending()
                return
        ending = ops[-1].type == "message.end"
        if (
            state is not _OPEN
            and not ending
            and state is not State.HUB_LOST
            and asyncio.current_task() is self._task
        ):
            # Cancelled, but the cancel has not landed (nothing suspended since): now, with
            # these ops kept for the cancel's ending.
            self._unsent = list(ops)
            self._state = State.CANCELLING
            raise asyncio.CancelledError
        if self._first_token_at is not None:
            for op in ops:
                if op.type in ("block.start", "block.delta"):
                    self._streams._first_token(time.monotonic() - self._first_token_at)
                    self._first_token_at = None
                    break
        shutdown = False
        if ending:
            still = getattr(self._streams.hub, "still_producing", None)
            if still is not None and state is not State.HUB_LOST and not await still(self.id):
                # Ended or taken over elsewhere while this producer stalled: that process
                # stores and reports it, not this one.
                raise HubLost("the stream was ended or taken over by another process", refused=True)
            self._state = State.ENDED
            shutdown = await self._store_final()
        try:
            await self._hub_append(ops, state is State.HUB_LOST)
        except HubLost:
            self._unsent = list(ops)  # for the one last attempt to end the stream
            raise
        if shutdown:
            raise asyncio.CancelledError  # (the cancel that came during the hook: the end is out)
        self._cancel_if_pending()

    def _cancel_if_pending(self) -> None:
        if self._state is _CANCEL_PENDING and asyncio.current_task() is self._task:
            # The cancel arrived while the producer's own append was in flight: now.
            self._state = State.CANCELLING
            raise asyncio.CancelledError

    async def _send_transients(self, ops: Sequence[EncodedOp], lost: bool) -> list[EncodedOp]:
        """Hand the batch to the hub in order, each ``transient`` op to its live readers only
        (never the log: best-effort, a hub outage drops it); returns the real ops after the
        last transient, for ``_append`` to finish (the end, first-token and cancel rules)."""
        hub = self._streams.hub
        run: list[EncodedOp] = []
        for op in ops:
            if op.type != "transient":
                run.append(op)
                continue
            if run:
                try:
                    await self._hub_append(run, lost)
                except HubLost:
                    self._unsent = [
                        *run,
                        *(o for o in ops if o.type != "transient" and o.seq > run[-1].seq),
                    ]
                    raise
                run = []
            with contextlib.suppress(HubUnavailable):
                await hub.publish_transient(self.stream_id, op)
        return run

    async def _hub_append(self, ops: Sequence[EncodedOp], lost: bool) -> None:
        """``hub.append``, retried while the hub is unreachable (up to its grace time)."""
        hub = self._streams.hub
        deadline = time.monotonic() + (0.0 if lost else hub.unavailable_grace_s)
        delay = 0.05
        while True:
            try:
                await hub.append(self.stream_id, ops)
                return
            except HubUnavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HubLost(str(exc)) from None
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
            except (StreamNotFound, StreamEnded, OutOfOrder) as exc:
                # Gone (Redis lost its data) or ended elsewhere (e.g. declared lost meanwhile).
                # (``refused``: ended or taken over elsewhere; not a seq mismatch, which a
                # lost reply to an append that went through can also give)
                refused = isinstance(exc, StreamEnded)
                raise HubLost(f"the hub refused the ops: {exc}", refused=refused) from None

    async def _store_final(self) -> bool:
        """Store the final message and run the host's hook, before the hub sees message.end
        (so the message is findable once a reader sees the end, however short the hub's
        retention). Whatever happens here, the end goes out after it: failures are logged
        (``_ended``), and a cancel (``Streams.close``) lets a hook already running finish for
        up to ``ON_END_GRACE_S`` first. Returns whether this task was cancelled meanwhile."""
        message = self._asm.message
        try:
            encoded = message.to_json()
        except Exception:  # (the writer's checks keep this from happening: never hang readers)
            log.exception("stream %s: could not encode the final message", self.stream_id)
            return False
        row = StoredStream(
            id=self.stream_id,
            owner=self.owner,
            status=message.status,
            seq=self._asm.seq,
            message=encoded,
            created_at=self.created_at,
            finished_at=time.time(),
            metadata=self.metadata,
        )
        settle = asyncio.ensure_future(self._streams._ended(row, message))
        try:
            await asyncio.shield(settle)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is None or not task.cancelling():
                return False  # the hook itself was cancelled (logged), not this task
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(settle, ON_END_GRACE_S)
            return True
        return False

    async def _send_unsent(self) -> None:
        """Hand the hub the ops it has not taken (an end already stored), one attempt."""
        ops, self._unsent = self._unsent, []
        if ops:
            await self._hub_append(ops, True)

    async def _end_failed(
        self, message: str, type: str | None, code: str | int | None, status: int | None = None
    ) -> None:
        await self._finish(
            lambda now: self._asm.fail(message, error_type=type, code=code, status=status, now=now)
        )

    async def _finish(self, end: Callable[[float], list[EncodedOp]]) -> None:
        """Run an ending step (end / cancel / fail) unless the message already ended.

        After a cancel request every ending is a cancel (a producer that caught the
        ``CancelledError`` and returned, or failed on its way out, was still cancelled)."""
        async with self._lock:
            if self._state is State.ENDED or self._state is State.FENCED:
                return
            if self._state is State.CANCELLING or self._state is State.CANCEL_PENDING:
                end = self._asm.cancel
            ops = end(time.monotonic())
            if ops or self._unsent:
                await self._append(ops)

    def _on_cancel(self) -> None:
        """A cancel was requested (from any process): cancel the producer task, unless its own
        hub append is in flight (never interrupted: ``_append`` raises once it is through)."""
        if self._state is not State.OPEN:
            return
        task = self._task
        if task is None or task.done():
            return
        self._state = State.CANCEL_PENDING
        if task is asyncio.current_task():
            # The producer cancelled its own stream: the cancel reaches it once, at its next
            # write (``_check_open``) or, if it awaits something else first, there.
            asyncio.get_running_loop().call_soon(self._deliver_pending_cancel)
        else:
            self._deliver_pending_cancel()

    def _deliver_pending_cancel(self) -> None:
        """Cancel the producer task for a pending cancel, unless it holds the lock: then it is
        suspended inside its hub append (or the store / on_end before the end), which delivers
        the cancel once through, never in its middle."""
        task = self._task
        if self._state is not _CANCEL_PENDING or task is None or task.done():
            return
        if self._lock.locked() and not self._flushing:
            return
        self._state = State.CANCELLING
        task.cancel()

    def _stop_timers(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None


async def _chunks(source: Any) -> AsyncIterable[bytes]:
    """The raw body pieces of a supported source."""
    if isinstance(source, bytes | bytearray | memoryview):
        yield bytes(source)
        return
    reader = getattr(source, "aiter_bytes", None) or getattr(source, "aiter_raw", None)
    if reader is not None:  # httpx.Response: aiter_bytes undoes a gzip content coding
        async for chunk in reader():
            yield chunk
        return
    if hasattr(source, "__aiter__"):
        async for chunk in source:
            yield chunk.encode() if isinstance(chunk, str) else chunk
        return
    if isinstance(source, Iterable):
        for chunk in source:
            yield chunk.encode() if isinstance(chunk, str) else chunk
        return
    _check_source(source)


def _check_source(source: Any) -> None:
    """``InvalidArgument`` for what ``_chunks`` cannot read (before the pipe writes a step)."""
    if (
        isinstance(source, bytes | bytearray | memoryview | Iterable)
        or hasattr(source, "poll")
        or hasattr(source, "__aiter__")
        or hasattr(source, "aiter_bytes")
        or hasattr(source, "aiter_raw")
    ):
        return
    raise InvalidArgument(
        f"cannot pipe a {type(source).__name__}: pass an async iterable of bytes, an httpx "
        "streaming response or the OpenAI SDK's raw streaming response"
    )


def _unwrap(source: Any) -> Any:
    """The HTTP response underneath an OpenAI SDK object (raw / streaming response, stream)."""
    http_response = getattr(source, "http_response", None)  # (Async)APIResponse, Legacy*
    if http_response is not None:
        return http_response
    response = getattr(source, "response", None)  # openai.AsyncStream
    if response is not None and hasattr(response, "aiter_raw") and hasattr(source, "_iterator"):
        return response
    return source


async def _upstream_error(response: Any) -> StreamFailed:
    """The ``StreamFailed`` (message, type, code, the HTTP status) of an upstream's error
    response, for ``message.end``."""
    body = b""
    reader = getattr(response, "aiter_bytes", None) or getattr(response, "aiter_raw", None)
    if reader is not None:
        async for chunk in reader():
            body += chunk
            if len(body) >= _ERROR_BODY_LIMIT:
                break
    status = response.status_code
    detail: str | None = None
    etype: str | None = None
    code: str | int | None = status
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail"))
        if isinstance(err, dict):
            detail = _str_or_none(err.get("message"))
            etype = _str_or_none(err.get("type"))
            if isinstance(err.get("code"), str | int):
                code = err["code"]
        elif isinstance(err, str):
            detail = err
    if detail is None:
        reason = getattr(response, "reason_phrase", "") or ""
        detail = body[:500].decode("utf-8", "replace").strip() or reason
    message = f"upstream returned HTTP {status}: {detail}"
    return StreamFailed(message, etype or "upstream_error", code, status=status)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _add_usage(total: dict[str, Any] | None, usage: dict[str, Any]) -> dict[str, Any]:
    """Usage over several model calls: numbers (also nested ones) are summed."""
    if total is None:
        return dict(usage)
    out = dict(total)
    for key, value in usage.items():
        old = out.get(key)
        if isinstance(value, int | float) and isinstance(old, int | float):
            out[key] = old + value
        elif isinstance(value, dict) and isinstance(old, dict):
            out[key] = _add_usage(old, value)
        else:
            out[key] = value
    return out


__all__ = ["HubLost", "PipeResult", "State", "StreamWriter", "ToolCall"]


# -- argument checks (a bad argument is an ``InvalidArgument`` and writes nothing) ------------
# A lone UTF-16 surrogate (from ``surrogateescape`` decoding, or a JSON "\ud83d" escape) is a
# str that UTF-8 cannot encode: refused before it reaches the log (where it would fail the
# op after the stream's state moved on, and then every later op and the end).
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_unicode(what: str, name: str, value: str) -> None:
    if not value.isascii() and _SURROGATE.search(value) is not None:
        raise InvalidArgument(
            f"{what}: {name} holds a lone surrogate (not valid Unicode text); decode the "
            "bytes it came from with errors='replace'"
        )


def _text_fact(kind: str, text: str, choice: int) -> TextFact:
    # (a plain function, not a coroutine: it runs per token for a host writing text)
    if not isinstance(text, str):
        raise InvalidArgument(f"{kind}: the text must be a string, got {type(text).__name__}")
    if not text.isascii():  # (the usual token is ASCII: one fast check)
        _check_unicode(kind, "the text", text)
    _check_choice(choice)
    return TextFact(choice, kind, text)


def check_byte_limit(value: object, name: str) -> None:
    """``max_event_bytes`` / ``max_stream_bytes`` (of ``Streams`` and of one ``pipe``) is a
    positive int."""
    if type(value) is not int or value <= 0:
        raise InvalidArgument(f"{name} must be a positive int, got {value!r}")


def _check_choice(choice: object) -> None:
    if type(choice) is not int or choice < 0:  # type: ignore[operator]
        raise InvalidArgument(f"choice must be an int >= 0, got {choice!r}")


def _check_str(what: str, **values: object) -> None:
    for name, value in values.items():
        if not isinstance(value, str):
            raise InvalidArgument(f"{what}: {name} must be a string, got {type(value).__name__}")
        _check_unicode(what, name, value)


def _check_optional_str(what: str, **values: object) -> None:
    for name, value in values.items():
        if value is not None and not isinstance(value, str):
            raise InvalidArgument(
                f"{what}: {name} must be a string or None, got {type(value).__name__}"
            )
        if value is not None:
            _check_unicode(what, name, value)


def _json_text(what: str, value: object) -> str:
    return check_json(what, value).decode()


def check_json(what: str, value: object, *, kept: bool = False) -> bytes:
    """``value`` as JSON, or ``InvalidArgument``: also for what the encoder would change
    silently (``inf``/``nan`` become ``null``, an int key becomes a string), so the message
    a host reads back is the one readers and the store get. ``kept``: the value itself is
    kept (data, metadata), so only JSON's own types are taken: a ``datetime`` or a ``set``
    would come back from the store as something else (tool arguments and outputs become
    text, where the encoder's conversions are welcome)."""
    why = _not_json(value, 0, kept)
    if why is not None:
        raise InvalidArgument(f"{what} is not JSON: {why}")
    try:
        return _json.encode(value)
    except (TypeError, ValueError, OverflowError, RecursionError) as exc:
        raise InvalidArgument(f"{what} is not JSON-encodable: {exc}") from None


_JSON_LEAVES = (str, int, bool, type(None))


def _not_json(value: object, depth: int, kept: bool) -> str | None:
    kind = type(value)
    if kind in _JSON_LEAVES:
        return None
    if kind is float:
        return None if math.isfinite(value) else f"{value!r} (JSON has no such number)"  # type: ignore[arg-type]
    if depth > 64:
        return "nested deeper than 64 levels"
    if isinstance(value, dict):
        for key, item in value.items():
            if type(key) is not str:
                return f"a {type(key).__name__} key {key!r} (JSON keys are strings)"
            why = _not_json(item, depth + 1, kept)
            if why is not None:
                return why
    elif isinstance(value, list | tuple):
        for item in value:
            why = _not_json(item, depth + 1, kept)
            if why is not None:
                return why
    elif kept and not isinstance(value, str | int):  # (str / int enums: JSON keeps them)
        # bytes, sets, Decimal, datetime, UUID, ...: JSON would give back something else
        return (
            f"a {kind.__name__} value (JSON has strings, numbers, booleans, null, arrays "
            "and objects)"
        )
    return None
