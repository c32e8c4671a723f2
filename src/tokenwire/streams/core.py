"""``Streams``: detached generations (one task each), cancellation from any process, reads.

A host starts a stream with ``await streams.start(produce, owner=...)``: ``produce(writer)``
runs in its own task, independent of the HTTP request that started it, and the stream's ops
go to the hub, where any number of readers (in any process sharing the hub) follow them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import inspect
import logging
import os
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

import msgspec

from tokenwire.errors import (
    InvalidArgument,
    NotStarted,
    StreamEnded,
    StreamExists,
    StreamFailed,
    StreamNotFound,
    Unauthorized,
    UpstreamBroken,
    UpstreamUnavailable,
)
from tokenwire.hub import Hub, MemoryHub, StreamInfo
from tokenwire.protocol import EncodedOp, Message, snapshot_op
from tokenwire.protocol.sse import DEFAULT_MAX_EVENT_BYTES, DEFAULT_MAX_STREAM_BYTES
from tokenwire.streams.store import MemoryStore, StoredStream, StreamStore, replace_row
from tokenwire.streams.writer import (
    ON_END_GRACE_S,
    HubLost,
    State,
    StreamWriter,
    check_byte_limit,
    check_json,
)

log = logging.getLogger("tokenwire.streams")

Produce = Callable[[StreamWriter], Awaitable[Any]]
_HUB_METHODS = ("start", "close", "create", "append", "info", "subscribe")


@dataclass(slots=True, frozen=True)
class Resumed:
    """What a continuation gets when its stream is taken over (see ``register_continuation``)."""

    args: Any
    """``resume_args`` as given to ``start`` (after a JSON round trip)."""
    message: Message
    """The message as of ``seq``: everything readers have seen (a copy; held text that never
    reached the hub is not in it)."""
    seq: int
    """The last seq written before the takeover; the writer continues after it."""
    epoch: int
    """How many times this stream was taken over (1 for the first takeover)."""
    exact: bool
    """False when a ``pipe`` of the stream had split reasoning out of the upstream's content
    (``<think>`` tags, harmony): the blocks' text is then not the raw text the upstream sent,
    so an upstream cannot be asked to continue from it."""
    lease_lost_at: float
    """Wall-clock time (``time.time()``) the dead producer's lease ran out."""


Continuation = Callable[[StreamWriter, Resumed], Awaitable[Any]]
OnEnd = Callable[[StoredStream, Message], Awaitable[Any] | Any]


def owner_of(value: object) -> str | None:
    """A stream's owner as stored: a string (an int id, e.g. ``user.id``, becomes its
    decimal string, so every route and hub compares it alike), or ``None``."""
    if value is None:
        return None
    if type(value) is str:
        owner = value
    elif isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    elif isinstance(value, str):  # (a str enum: its value, not its name)
        owner = str.__str__(value)
    else:
        raise InvalidArgument(f"an owner must be a string or an int, got {type(value).__name__}")
    if "\x00" in owner:  # (PostgreSQL's text cannot hold it: the stream would not be stored)
        raise InvalidArgument("an owner must not contain a NUL character")
    return owner


def _has_nul(value: object) -> bool:
    """Whether a JSON value holds U+0000 in a string or key (PostgreSQL's jsonb cannot)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any("\x00" in key or _has_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_has_nul(item) for item in value)
    return False


def _coalesce_ms(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1e6:
        raise InvalidArgument(f"coalesce_ms must be a number of ms >= 0, got {value!r}")
    return float(value)


STREAM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")
"""What a caller-chosen stream id may look like (URL-safe, at most 128 characters)."""
SETTLE_WAIT_S = 600.0
"""How long a process that lost its hub waits for the hub to end the stream (see ``_settle``)."""
_NOT_STARTED = (
    "tokenwire Streams is not started: run the app with its lifespan "
    "(FastAPI(lifespan=streams.lifespan) / Starlette(lifespan=streams.lifespan)) or wrap the "
    "code in `async with streams:`"
)


class Observer(Protocol):
    """Optional hooks for metrics (the gateway's Prometheus counters implement them)."""

    def stream_started(self) -> None: ...
    def first_token(self, seconds: float) -> None: ...
    def stream_ended(self, status: str) -> None: ...
    def stream_closed(self) -> None: ...
    def upstream_error(self, kind: str) -> None:
        """``unreachable``, ``http_status`` or ``broken_stream``."""


@dataclass(slots=True, frozen=True)
class StreamHandle:
    """A started stream (what ``Streams.start`` returns)."""

    id: str
    owner: str | None
    metadata: dict[str, Any] | None
    created_at: float
    writer: StreamWriter

    @property
    def status(self) -> str:
        """The message's status: ``in_progress``, ``completed``, ``failed`` or ``cancelled``."""
        return self.writer.message.status


class Streams:
    """Live generations over a hub, final messages in a store. See docs/embedding.md.

    ``hub``: where ops go (default: an in-process ``MemoryHub``; a ``RedisHub`` to share streams
    between processes). ``store``: final messages (default: ``MemoryStore``; the SQLite
    ``tokenwire.gateway.store.Store`` or any object with async ``get``/``save``).
    ``coalesce_ms``: merge text deltas written faster than this into one op. ``on_end(info,
    message)``: awaited before ``message.end`` is visible to readers. ``secret``: signs read
    tokens (default: ``TOKENWIRE_SECRET``, else random per process — give every process of a
    deployment the same secret). ``max_event_bytes``: the largest upstream SSE event a
    ``writer.pipe`` accepts; a bigger one ends the stream ``failed`` (``event_too_large``).
    ``max_stream_bytes``: the most bytes one ``writer.pipe`` reads from its upstream; past it
    the stream ends ``failed`` (``stream_too_large``), what came before kept.
    """

    def __init__(
        self,
        hub: Hub | None = None,
        store: StreamStore | None = None,
        coalesce_ms: float = 20,
        on_end: OnEnd | None = None,
        secret: str | bytes | None = None,
        *,
        observer: Observer | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        max_stream_bytes: int = DEFAULT_MAX_STREAM_BYTES,
    ) -> None:
        check_byte_limit(max_event_bytes, "max_event_bytes")
        check_byte_limit(max_stream_bytes, "max_stream_bytes")
        # (a URL here is an easy slip: --store-url exists; tokenwire.stores.store_from_url
        # makes a store of one)
        if hub is not None and not all(callable(getattr(hub, m, None)) for m in _HUB_METHODS):
            raise InvalidArgument(f"hub must be a Hub (e.g. MemoryHub, RedisHub), got {hub!r:.60}")
        if store is not None and not all(
            callable(getattr(store, m, None)) for m in ("get", "save")
        ):
            raise InvalidArgument(
                f"store must be a StreamStore (get, save; e.g. store_from_url(url)), got "
                f"{store!r:.60}"
            )
        self.max_event_bytes = max_event_bytes
        self.max_stream_bytes = max_stream_bytes
        self.hub: Hub = hub if hub is not None else MemoryHub()
        self.store: StreamStore = store if store is not None else MemoryStore()
        self.coalesce_ms = _coalesce_ms(coalesce_ms)
        if on_end is not None and not callable(on_end):
            raise InvalidArgument(f"on_end must be callable, got {type(on_end).__name__}")
        self.on_end = on_end
        if secret is not None and not isinstance(secret, (str, bytes, bytearray, memoryview)):
            raise InvalidArgument(f"secret must be str or bytes, got {type(secret).__name__}")
        if secret is not None and not secret:
            raise InvalidArgument("secret must not be empty")
        secret = secret if secret is not None else os.environ.get("TOKENWIRE_SECRET") or None
        self.secret_generated = secret is None
        if secret is None:
            secret = secrets.token_bytes(32)
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._observer = observer
        self._users = 0  # open() calls not yet closed (lifespans may nest)
        self._tasks: set[asyncio.Task[None]] = set()
        self._settling: set[asyncio.Task[None]] = set()
        self._settling_ids: set[str] = set()  # streams whose end this process settles
        self._storing: set[asyncio.Task[None]] = set()  # lost streams being stored here
        self._closing = False
        self._continuations: dict[str, Continuation] = {}
        # The view settings of the last ``asgi()``: ``aisdk_response``'s defaults, so that the
        # POST answer and the resume routes split frames alike (chunk indexes must agree).
        self._view_options: Any = None

    # -- lifespan --------------------------------------------------------------------------
    @property
    def _shared_hub(self) -> bool:
        """Whether other processes watch this hub's streams (and end or continue those whose
        producer is lost): a Redis hub, not the in-process one."""
        return hasattr(self.hub, "on_lost")

    @property
    def started(self) -> bool:
        """Whether ``start()`` has run (and ``close()`` has not)."""
        return self._users > 0

    async def open(self) -> None:
        """Start the hub and the store (idempotent: nested opens need as many closes)."""
        if self._users == 0:
            self._closing = False
            opener = getattr(self.store, "open", None)
            if opener is not None:
                await opener()
            if hasattr(self.hub, "on_takeover"):  # a shared hub: streams can be taken over
                self.hub.on_takeover = self._take_over  # type: ignore[attr-defined]
            if hasattr(self.hub, "on_lost"):  # ... or ended by this process's watchdog
                self.hub.on_lost = self._lost  # type: ignore[attr-defined]
            await self.hub.start()
        self._users += 1

    async def close(self) -> None:
        """End every live generation (``failed``, type ``shutdown``), then stop hub and store."""
        if self._users == 0:
            return
        self._users -= 1
        if self._users:
            return
        self._closing = True
        # A task not yet started would be cancelled before its first line, never writing the
        # shutdown end (its stream would stay in_progress): let each reach its first await.
        await asyncio.sleep(0)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for task in list(self._settling):  # (they wait for the hub, which is closing)
            task.cancel()
        await asyncio.gather(*self._settling, return_exceptions=True)
        await self.hub.close()  # (its watchdog with it: no stream is found lost after this)
        if self._storing:  # lost streams still being stored: their rows, their on_end
            await asyncio.wait(self._storing, timeout=ON_END_GRACE_S)
            for task in list(self._storing):
                task.cancel()
            await asyncio.gather(*self._storing, return_exceptions=True)
        closer = getattr(self.store, "close", None)
        if closer is not None:
            await closer()

    async def __aenter__(self) -> Streams:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object = None) -> AsyncIterator[None]:
        """For ``FastAPI(lifespan=streams.lifespan)`` / ``Starlette(lifespan=...)``."""
        async with self:
            yield

    def _check_started(self) -> None:
        if not self._users:
            raise NotStarted(_NOT_STARTED)

    # -- generations -----------------------------------------------------------------------
    async def start(
        self,
        produce: Produce,
        *,
        owner: str | None = None,
        stream_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        model: str | None = None,
        coalesce_ms: float | None = None,
        resume: str | None = None,
        resume_args: Any = None,
    ) -> StreamHandle:
        """Run ``produce(writer)`` detached; returns at once with the new stream.

        ``produce`` returning ends the stream ``completed`` (unless it ended it itself); raising
        ends it ``failed`` (``StreamFailed`` sets the error object; other exceptions are logged
        and reported by type only); ``cancel(id)`` cancels it (``CancelledError``) and ends it
        ``cancelled``. What was written is kept in every case. Raises ``StreamExists`` when a
        caller-chosen ``stream_id`` is taken, ``NotStarted`` before ``open``.

        ``resume``: the name of a continuation (``register_continuation``) that another process
        sharing the hub runs if this process dies mid-stream, with ``resume_args`` (JSON-able,
        kept in the hub with the stream: never put credentials in it). Without it, or with the
        in-process hub, a stream whose process died ends ``failed`` ("producer lost").
        """
        self._check_started()
        if not callable(produce):
            raise InvalidArgument(f"produce must be callable, got {type(produce).__name__}")
        owner = owner_of(owner)
        if coalesce_ms is not None:
            coalesce_ms = _coalesce_ms(coalesce_ms)
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgument(f"metadata must be a dict, got {type(metadata).__name__}")
        if metadata is not None:  # (kept in the store as JSON: a copy, as JSON gives it back)
            metadata = msgspec.json.decode(check_json("metadata", metadata, kept=True))
            if _has_nul(metadata):  # (every store alike: PostgreSQL's jsonb cannot keep it)
                raise InvalidArgument("metadata must not contain a NUL character (U+0000)")
        if resume_args is not None:
            check_json("resume_args", resume_args, kept=True)  # (kept in the hub as JSON)
        if model is not None and not isinstance(model, str):
            raise InvalidArgument(f"model must be a string, got {type(model).__name__}")
        record: bytes | None = None
        if resume is not None and resume not in self._continuations:
            raise InvalidArgument(f"no continuation registered as {resume!r}")
        keeps = resume is not None and self.can_resume
        if resume is None and metadata is not None and hasattr(self.hub, "set_record"):
            # (without ``resume``: only so that a process that finds the stream's producer
            # dead stores it with its metadata; it is not continued)
            keeps = True
        if keeps:
            record = msgspec.json.encode(
                {
                    "v": 1,
                    "name": resume,
                    "args": resume_args,
                    "metadata": metadata,
                    "model": model,
                    "coalesce_ms": coalesce_ms,
                    "created_at": time.time(),
                }
            )
        if stream_id is None:
            stream_id = "st_" + secrets.token_urlsafe(18)  # 144 random bits
        else:
            if not isinstance(stream_id, str) or not STREAM_ID.fullmatch(stream_id):
                raise InvalidArgument(
                    f"invalid stream id {stream_id!r}: up to 128 of A-Z a-z 0-9 _ . : -"
                )
            if await self.store.get(stream_id) is not None:
                raise StreamExists(f"stream {stream_id!r} already exists")
        await self.hub.create(stream_id, owner=owner)
        if record is not None:
            try:
                if resume is not None:
                    await self.hub.set_resume(stream_id, record)  # type: ignore[attr-defined]
                else:  # (kept aside: a stream without ``resume`` is never taken over)
                    await self.hub.set_record(stream_id, record)  # type: ignore[attr-defined]
            except Exception as exc:  # (the stream runs; it just cannot be taken over)
                log.warning("stream %s: could not store its resume record: %s", stream_id, exc)
                record = None
        writer = StreamWriter(
            self,
            stream_id,
            owner,
            metadata,
            model=model,
            coalesce_ms=self.coalesce_ms if coalesce_ms is None else coalesce_ms,
        )
        writer._mark_inexact = record is not None and resume is not None
        # (``_run`` leaves ``_tasks`` itself: a done callback would cost memory per stream.)
        task = asyncio.create_task(self._run(writer, produce), name=f"stream-{stream_id}")
        self._tasks.add(task)
        return StreamHandle(stream_id, owner, metadata, writer.created_at, writer)

    @property
    def can_resume(self) -> bool:
        """Whether streams can be taken over by another process (a shared hub that keeps
        resume records: ``RedisHub``). With the in-process hub there is no other process."""
        return hasattr(self.hub, "set_resume") and hasattr(self.hub, "on_takeover")

    def register_continuation(self, name: str, fn: Continuation) -> None:
        """Register how to continue streams started with ``start(..., resume=name)`` when
        their process dies: ``await fn(writer, resumed)`` runs in the process that took the
        stream over, with a writer positioned after the last seq (see docs/embedding.md,
        "Continuing after a crash"). Every process of the deployment must register it."""
        if not callable(fn):
            raise InvalidArgument("a continuation must be callable")
        self._continuations[name] = fn

    async def _take_over(self, taken: Any) -> bool:
        """The hub's ``on_takeover``: run the stream's continuation here. False if none."""
        if self._closing or not self._users:
            return False
        record = msgspec.json.decode(taken.record)
        name = record.get("name") if isinstance(record, dict) else None
        fn = self._continuations.get(name) if isinstance(name, str) else None
        if fn is None:
            log.warning("stream %s: no continuation registered here", taken.info.id)
            return False
        coalesce = record.get("coalesce_ms")
        writer = StreamWriter(
            self,
            taken.info.id,
            taken.info.owner,
            record.get("metadata"),
            model=record.get("model"),
            coalesce_ms=self.coalesce_ms if coalesce is None else float(coalesce),
        )
        writer.created_at = float(record.get("created_at") or taken.info.created_at)
        resumed = Resumed(
            record.get("args"),
            taken.message.copy(),
            taken.info.seq,
            taken.epoch,
            taken.exact,
            taken.lease_lost_at,
        )
        writer._resume_at(taken.message, taken.info.seq, taken.open_blocks)
        writer._mark_inexact = taken.exact  # (it may be taken over again)

        def produce(w: StreamWriter) -> Awaitable[Any]:
            return fn(w, resumed)

        task = asyncio.create_task(self._run(writer, produce), name=f"stream-{taken.info.id}")
        self._tasks.add(task)
        return True

    async def _run(self, writer: StreamWriter, produce: Produce) -> None:
        task = asyncio.current_task()
        assert task is not None
        writer._task = task
        observer = self._observer
        if observer is not None:
            observer.stream_started()
        unwatch: Callable[[], None] | None = None
        try:
            unwatch = self.hub.watch_cancel(writer.stream_id, writer._on_cancel)
            try:
                step = produce(writer)
                del produce  # (a produce object need not live as long as its stream)
                await step
                if not writer.ended:
                    await writer.end()
            except asyncio.CancelledError:
                if self._closing or writer.state not in (State.CANCELLING, State.CANCEL_PENDING):
                    raise  # not (only) ours: shutting down
                while task.uncancel():
                    pass
                await writer._finish(writer._asm.cancel)
            except HubLost as exc:
                if not self._fenced(writer, exc):
                    await self._lost_the_hub(writer, exc)
            except StreamFailed as exc:
                await writer._end_failed(exc.message, exc.type, exc.code, exc.status)
            except StreamEnded:
                if not writer.ended:  # (another stream's writer: a bug in the producer)
                    log.exception("stream %s: producer error", writer.stream_id)
                    await writer._end_failed("producer error: StreamEnded", "internal_error", None)
            except UpstreamUnavailable as exc:  # (tokenwire's own upstream client)
                self._upstream_error("unreachable")
                log.warning("stream %s: %s", writer.stream_id, exc)
                await writer._end_failed(str(exc), "upstream_error", None)
            except UpstreamBroken as exc:
                self._upstream_error("broken_stream")
                log.warning("stream %s: upstream failed mid-stream: %s", writer.stream_id, exc)
                await writer._end_failed(
                    f"upstream failed after output started: {exc}", "upstream_error", None
                )
            except Exception as exc:
                log.exception("stream %s: producer error", writer.stream_id)
                await writer._end_failed(
                    f"producer error: {type(exc).__name__}", "internal_error", None
                )
        except HubLost as exc:
            if not self._fenced(writer, exc):  # (an ending after an error or a cancel)
                # Even the end could not be written: let the hub's other processes end it.
                log.error("stream %s: could not end it in the hub: %s", writer.stream_id, exc)
                writer._state = State.HUB_LOST
        except asyncio.CancelledError:
            # Shutdown: end the stream so nobody waits for it forever.
            with contextlib.suppress(BaseException):
                await asyncio.shield(writer._end_failed("shut down", "shutdown", None))
            raise
        finally:
            try:
                writer._stop_timers()
                if unwatch is not None:
                    unwatch()
                flush = writer._flush_task
                if flush is not None:
                    flush.cancel()
                    await asyncio.gather(flush, return_exceptions=True)
                if observer is not None:
                    observer.stream_closed()
                if writer._state is State.HUB_LOST:
                    writer._state = State.ENDED
                    await self.hub.release(writer.stream_id)
                    self._settle(writer.stream_id)
                elif writer._state is State.FENCED:
                    await self.hub.release(writer.stream_id)
                writer._state = State.ENDED
            finally:
                # Last, so shutdown waits for all of the above; and however that ended.
                self._tasks.discard(task)

    def _fenced(self, writer: StreamWriter, exc: HubLost) -> bool:
        """Whether ``exc`` fenced the writer off: its stream was ended or taken over by another
        process (whose watchdog or taker stores and reports it). Not if this writer already
        stored its own end (it settles to the hub's version), nor on a hub no other process
        watches. If so, the writer is ``FENCED``."""
        if not exc.refused or writer.state is State.ENDED or not self._shared_hub:
            return False
        log.warning("stream %s: %s; not producing it here", writer.stream_id, exc)
        writer._state = State.FENCED
        return True

    @staticmethod
    async def _lost_the_hub(writer: StreamWriter, exc: HubLost) -> None:
        """The hub no longer takes the writer's ops: one last attempt to end the stream, with
        the end it already stored (never stored twice) or a failed one."""
        stored = writer.state is State.ENDED  # (its end was stored before the append failed)
        writer._state = State.HUB_LOST
        if stored:
            log.error("stream %s: could not end it in the hub: %s", writer.stream_id, exc)
            if not exc.refused:
                with contextlib.suppress(HubLost):
                    await writer._send_unsent()
                    writer._state = State.ENDED
            return
        log.error("stream %s: %s", writer.stream_id, exc)
        await writer._end_failed(f"lost the hub: {exc}", "hub_unavailable", None)

    def _settle(self, stream_id: str) -> None:
        """After an end that did not reach the hub: once the hub ends the stream (its watchdog,
        when Redis is back), store the hub's final message, which readers saw (in the
        background, for up to ``SETTLE_WAIT_S``)."""
        from tokenwire.gateway.settle import settle_with_hub  # (no HTTP stack in there)

        async def settle() -> None:
            try:
                await settle_with_hub(self.hub, self.store, stream_id, wait_s=SETTLE_WAIT_S)
            except Exception:
                log.exception("stream %s: could not settle the stored message", stream_id)
            finally:
                self._settling_ids.discard(stream_id)

        self._settling_ids.add(stream_id)
        self._background(settle(), f"settle-{stream_id}", self._settling)

    @staticmethod
    def _background(work: Awaitable[None], name: str, tasks: set[asyncio.Task[None]]) -> None:
        """Run ``work`` beside the streams, kept in ``tasks`` (which ``close()`` ends)."""
        task = asyncio.get_running_loop().create_task(work, name=name)  # type: ignore[arg-type]
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _lost(self, info: StreamInfo, message: Message, record: bytes | None) -> None:
        """The hub's ``on_lost``: this process's watchdog ended a stream whose producer died
        (``failed``, "producer lost", what it produced kept). Its process can no longer store
        it: store it here (a shared store keeps it past the hub's retention) and run
        ``on_end``, with the metadata its resume record kept. In the background: the watchdog
        goes on (takeovers wait for it)."""
        if info.id in self._settling_ids:  # (this process ended it itself, and settles it)
            return
        # (also while closing: nobody else will store it, it has ended in the hub)
        self._background(self._store_lost(info, message, record), f"lost-{info.id}", self._storing)

    async def _store_lost(self, info: StreamInfo, message: Message, record: bytes | None) -> None:
        stored = None
        try:
            stored = await self.store.get(info.id)
        except Exception as exc:
            log.warning("stream %s: could not look it up in the store: %s", info.id, exc)
        kept: Any = None
        with contextlib.suppress(msgspec.DecodeError):
            kept = msgspec.json.decode(record) if record is not None else None
        kept = kept if isinstance(kept, dict) else {}
        metadata = kept.get("metadata")
        row = StoredStream(
            id=info.id,
            owner=info.owner,
            status=message.status,
            seq=info.seq,
            message=message.to_json(),
            created_at=float(kept.get("created_at") or info.created_at),
            finished_at=time.time(),
            metadata=metadata if isinstance(metadata, dict) else None,
        )
        if stored is None:
            await self._ended(row, message)
            return
        # Its producer stored it (and ran on_end) before it stopped: the hub's version, what
        # readers saw, replaces that row (as ``settle_with_hub`` does); on_end is not run again.
        try:
            await replace_row(self.store, replace(row, metadata=stored.metadata))
        except Exception:
            log.exception("stream %s: could not store the final message", row.id)

    async def _ended(self, row: StoredStream, message: Message) -> None:
        """A stream is about to end: save it and run the host's hook (errors only logged)."""
        if self._observer is not None:
            self._observer.stream_ended(row.status)
        try:
            await self.store.save(row)
        except Exception:
            log.exception("stream %s: could not store the final message", row.id)
        if self.on_end is not None:
            try:
                result = self.on_end(row, message)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("stream %s: on_end failed (the stream ends anyway)", row.id)

    def _upstream_error(self, kind: str) -> None:
        if self._observer is not None:
            self._observer.upstream_error(kind)

    def _first_token(self, seconds: float) -> None:
        if self._observer is not None:
            self._observer.first_token(seconds)

    async def cancel(self, stream_id: str) -> str:
        """Ask the stream's producer (in whichever process) to stop; returns the status now.

        Raises ``StreamNotFound`` for an unknown stream. Idempotent."""
        self._check_started()
        info = await self.hub.info(stream_id)
        if info is None:
            row = await self.store.get(stream_id)
            if row is None:
                raise StreamNotFound(f"no stream {stream_id!r}")
            return row.status
        if info.status == "in_progress":
            with contextlib.suppress(StreamNotFound):
                await self.hub.request_cancel(stream_id)
        return info.status

    async def wait(self, stream_id: str, timeout: float | None = None) -> str:
        """Wait until the stream ended (or ``timeout``); its status then."""
        self._check_started()
        info = await self.hub.info(stream_id)
        if info is not None and info.status == "in_progress":
            cursor = await self.hub.subscribe(stream_id, info.seq)
            try:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        while not cursor.done:
                            await cursor.read(None)
            finally:
                await cursor.aclose()
            info = await self.hub.info(stream_id)
        if info is not None:
            return info.status
        row = await self.store.get(stream_id)
        if row is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return row.status

    # -- reading ---------------------------------------------------------------------------
    async def lookup(self, stream_id: str) -> tuple[StreamInfo | None, StoredStream | None]:
        """The stream's hub info, or else its stored final row. ``StreamNotFound`` if neither."""
        self._check_started()
        info = await self.hub.info(stream_id)
        if info is not None:
            return info, None
        row = await self.store.get(stream_id)
        if row is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return None, row

    async def message(self, stream_id: str) -> Message:
        """The stream's message now (the final one once ended). ``StreamNotFound`` if unknown."""
        self._check_started()
        found = await self.hub.message(stream_id)
        if found is not None:
            return found[1]
        row = await self.store.get(stream_id)
        if row is None:
            raise StreamNotFound(f"no stream {stream_id!r}")
        return Message.from_dict(msgspec.json.decode(row.message))

    async def follow(self, stream_id: str, after: int = 0) -> AsyncIterator[EncodedOp]:
        """The stream's ops after seq ``after``, as they come, until ``message.end``.

        A stream the hub has forgotten yields one ``snapshot`` op of its stored message."""
        self._check_started()
        try:
            cursor = await self.hub.subscribe(stream_id, after)
        except StreamNotFound:
            row = await self.store.get(stream_id)
            if row is None:
                raise
            if after < row.seq:
                yield snapshot_op(Message.from_dict(msgspec.json.decode(row.message)), row.seq)
            return
        try:
            async for ops in cursor:
                for op in ops:
                    yield op
        finally:
            await cursor.aclose()

    # -- serving ---------------------------------------------------------------------------
    def asgi(self, authorize: Any = None, **options: Any) -> Any:
        """A mountable ASGI app (Starlette) serving these streams: snapshot, SSE (and its
        views, ``?format=``), WebSocket, cancel, and the AI SDK chat resume / stop routes.
        ``authorize(request) -> owner``, sync or async; see ``tokenwire.streams.asgi``.
        ``options``: ``keepalive_s``, ``cancel_wait_s``, ``ws_hello_timeout_s``, ``metrics``,
        ``catchup_threshold``, ``max_frame_bytes``, ``chat_ttl_s``."""
        from tokenwire.streams.asgi import build_app  # (the HTTP stack only when serving)

        app = build_app(self, authorize, **options)
        self._view_options = app.stream_routes.view_options
        return app

    def aisdk_response(
        self,
        stream_id: str,
        *,
        body: dict[str, Any] | None = None,
        chat_id: str | None = None,
        message_id: str | None = None,
        headers: dict[str, str] | None = None,
        keepalive_s: float = 15.0,
        max_frame_bytes: int | None = None,
        chat_ttl_s: float | None = None,
        transient: bool | None = None,
    ) -> Any:
        """A Starlette ``Response`` streaming the AI SDK UI message stream of ``stream_id``
        (one started with ``start``): what a host's own ``POST {api}`` handler returns to
        ``useChat``. ``chat_id`` records the stream as the chat's active one (in the hub, so
        ``GET {api}/{chatId}/stream`` and ``POST {api}/{chatId}/stop`` of ``asgi()`` find it
        from any process); ``message_id`` is the UI message id (default: the stream id; see
        ``ui_message_id``). ``max_frame_bytes`` and ``chat_ttl_s`` default to those given to
        ``asgi()`` (its resume routes must split frames as this answer does). Sends
        ``x-workflow-run-id: <stream id>`` too, and every chunk of
        the log from the first (exact, so the Workflow transport's chunk count is its resume
        index); ``transient=False`` leaves out transient parts, which the Workflow transport
        would count. ``body``: the POST's JSON body, from which the chat id (``id``), the
        message id (``messageId`` only when it names the last, assistant message: the AI SDK
        also sends the id of a user message it edits) and ``transient`` (not for the Workflow
        transport's body, which has no ``trigger``) are taken unless given. See
        docs/views.md."""
        from tokenwire.streams.views_http import (  # (the HTTP stack only when serving)
            CHAT_ID,
            CHAT_ID_RULE,
            AISDKStartResponse,
            ViewOptions,
            ui_message_id,
            workflow_body,
        )

        if body is not None:
            if not isinstance(body, dict):
                raise InvalidArgument(f"body must be the POST's JSON object, got {body!r:.40}")
            given = body.get("id")
            if chat_id is None and isinstance(given, str):
                if CHAT_ID.fullmatch(given):
                    chat_id = given
                else:  # (the stream is running: answer it, only not as a resumable chat)
                    log.warning(
                        "chat id %.60r cannot be resumed (a chat id is %s): the answer is not "
                        "recorded as the chat's",
                        given,
                        CHAT_ID_RULE,
                    )
            if message_id is None:
                message_id = ui_message_id(body)
            if transient is None:
                transient = not workflow_body(body)

        if chat_id is not None and (not isinstance(chat_id, str) or not CHAT_ID.fullmatch(chat_id)):
            # (an explicit one: the resume and stop routes could never find it)
            raise InvalidArgument(f"chat_id must be {CHAT_ID_RULE}, got {chat_id!r:.60}")
        defaults = self._view_options or ViewOptions()
        options = ViewOptions(
            defaults.threshold,
            defaults.max_frame_bytes if max_frame_bytes is None else max_frame_bytes,
            defaults.chat_ttl_s if chat_ttl_s is None else chat_ttl_s,
        )
        return AISDKStartResponse(
            self,
            stream_id,
            chat_id=chat_id,
            message_id=message_id,
            options=options,
            keepalive_s=keepalive_s,
            metrics=None,
            headers=headers,
            transient=True if transient is None else transient,
        )

    # -- read tokens -----------------------------------------------------------------------
    def read_token(self, stream_id: str, ttl_s: float = 3600) -> str:
        """A signed token that lets its bearer read (only read) ``stream_id`` for ``ttl_s``
        seconds: ``?token=`` on the SSE, WebSocket and snapshot routes of ``asgi()``."""
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, (int, float)) or not -1e9 < ttl_s < 1e9:
            raise InvalidArgument(f"ttl_s must be a finite number of seconds, got {ttl_s!r}")
        if not isinstance(stream_id, str):
            raise InvalidArgument(f"stream_id must be a string, got {type(stream_id).__name__}")
        expires = int(time.time() + ttl_s)
        payload = f"{expires}:{stream_id}".encode()
        return _b64(payload) + "." + _b64(self._sign(payload))

    def check_read_token(self, token: str, stream_id: str) -> None:
        """Raise ``Unauthorized`` unless ``token`` is a valid, unexpired token for the stream."""
        if not isinstance(token, str):
            raise Unauthorized("invalid read token")
        head, _, sig = token.partition(".")
        try:
            payload = _unb64(head)
            good = hmac.compare_digest(_unb64(sig), self._sign(payload))
        except ValueError:
            good = False
        if not good:
            raise Unauthorized("invalid read token")
        expires, _, token_stream = payload.decode("utf-8", "replace").partition(":")
        if not expires.isdigit() or int(expires) < time.time():
            raise Unauthorized("expired read token")
        if token_stream != stream_id:
            raise StreamNotFound(f"no stream {stream_id!r}")  # (the token is for another one)

    def owner_tag(self, credential: str) -> str:
        """A keyed, non-reversible tag for a credential (e.g. an API key) to use as owner."""
        return hmac.new(self._secret, b"owner:" + credential.encode(), hashlib.sha256).hexdigest()[
            :32
        ]

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, b"read:" + payload, hashlib.sha256).digest()[:20]

    @property
    def active(self) -> int:
        """Generations running in this process."""
        return len(self._tasks)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as exc:
        raise ValueError("bad base64") from exc


__all__ = ["STREAM_ID", "Observer", "StreamHandle", "Streams"]
