"""The Hub interface: where producers append ops and subscribers read them.

A hub holds, per stream, an append-only log of encoded ops and a way to wake readers. The
gateway talks only to this interface, so the in-process hub (``MemoryHub``) and a shared one
(Redis Streams) are interchangeable. Everything that must cross processes in a scaled-out
deployment goes through here: stream metadata (owner), the op log, the current message, and
cancel requests.

Contract for implementations:

- ``create`` registers a stream before its first op; ``append`` adds ops in seq order (the
  producer guarantees density). When an appended op is ``message.end`` the stream is finished
  and stays readable for the retention time, after which the hub may forget it.
- ``subscribe(stream_id, after)`` returns a cursor that yields exactly the ops with
  ``seq > after``, in order, and ends after ``message.end``. If ops after ``after`` are no longer
  retained, the cursor first yields a ``snapshot`` op (``snapshot_op(message, seq)``) for the
  oldest retained position, then continues from there.
- Cursors pull: a slow reader never delays ``append`` or other readers.
- ``request_cancel`` may be called from any process; ``wait_cancel`` resolves (and
  ``watch_cancel`` calls back) on the process that runs the producer.
- A shared hub raises ``HubUnavailable`` from any call while its backend is unreachable; the
  in-process hub never does.
- ``publish_transient`` (protocol v1.1) hands a ``transient`` op to the cursors open at that
  moment, never to the log: a cursor yields it after the op whose seq it carries. It is
  best-effort live data: a reader subscribing later, or one so far behind that the recent
  transients were dropped, never sees it. ``publish`` appends a batch that may hold transient
  ops (an ``Assembler``'s output) in order.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tokenwire import timeouts
from tokenwire.errors import HubUnavailable, StreamNotFound
from tokenwire.protocol import EncodedOp, Message, Transient

log = logging.getLogger("tokenwire.hub")


@dataclass(slots=True, frozen=True)
class StreamInfo:
    """What the hub knows about a stream, without its ops."""

    id: str
    owner: str | None
    """Opaque owner tag (a hash of the creating API key), ``None`` when auth is off."""
    status: str
    """``in_progress`` until ``message.end``, then its status."""
    seq: int
    """The last seq appended (0 before the first op)."""
    created_at: float
    """Wall-clock time (``time.time()``) of ``create``."""


class Cursor(abc.ABC):
    """A subscriber's position in one stream's log."""

    __slots__ = ()  # so the implementations' own __slots__ take effect

    @abc.abstractmethod
    async def read(self, timeout: float | None = None) -> list[EncodedOp]:
        """Ops after the cursor, waiting up to ``timeout`` seconds for the next one.

        Returns every op available now (possibly many), or ``[]`` when the timeout expired or
        the stream is over (check ``done``).
        """

    @property
    @abc.abstractmethod
    def done(self) -> bool:
        """True once ``message.end`` has been returned by ``read``."""

    @property
    @abc.abstractmethod
    def position(self) -> int:
        """The seq of the last op returned by ``read`` (the starting ``after`` before that)."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Release resources held for this cursor (default: nothing)."""

    def __aiter__(self) -> Cursor:
        return self

    async def __anext__(self) -> list[EncodedOp]:
        while not self.done:
            ops = await self.read(None)
            if ops:
                return ops
        raise StopAsyncIteration


MAX_BATCH = 1024  # ops handed to one reader per read(), so one write never grows unbounded


class TransientBuffer:
    """The recent transient ops of one stream (protocol v1.1), numbered as published, so each
    cursor can tell which ones it has not handed out: those published after it opened."""

    __slots__ = ("count", "ops")
    SIZE = 256  # a reader further behind than this many transients misses the oldest

    def __init__(self) -> None:
        self.count = 0
        self.ops: deque[tuple[int, EncodedOp]] = deque(maxlen=self.SIZE)

    def add(self, op: EncodedOp) -> None:
        self.count += 1
        self.ops.append((self.count, op))

    def merge(self, seen: int, batch: list[EncodedOp], pos: int) -> tuple[list[EncodedOp], int]:
        """``batch`` (the real ops after ``pos``) with the transients after number ``seen``
        placed after the op whose seq they carry; and the new ``seen``. Transients for ops not
        in the batch yet stay for a later read."""
        hi = batch[-1].seq if batch else pos
        # Published in seq order, so the ones due now are a prefix of the unseen ones.
        due = [item for item in self.ops if item[0] > seen and item[1].seq <= hi]
        if not due:
            return batch, seen
        out: list[EncodedOp] = []
        i = 0
        for _, op in due:
            while i < len(batch) and batch[i].seq <= op.seq:
                out.append(batch[i])
                i += 1
            out.append(op)
        out.extend(batch[i:])
        return out, due[-1][0]


class PositionCursor(Cursor):
    """The part every cursor shares: a position, ``done``, delivering a batch, waiting."""

    __slots__ = ("_done", "_pos", "_tseen")

    def __init__(self, after: int, transients: TransientBuffer | None = None) -> None:
        self._pos = after
        self._done = False
        # Transients published before this cursor opened are not for it.
        self._tseen = transients.count if transients is not None else 0

    def _with_transients(
        self, transients: TransientBuffer | None, batch: list[EncodedOp]
    ) -> list[EncodedOp]:
        """``batch`` plus the transients due with it (the common case: none, one compare)."""
        if transients is None or transients.count <= self._tseen:
            return batch
        batch, self._tseen = transients.merge(self._tseen, batch, self._pos)
        return batch

    @property
    def done(self) -> bool:
        return self._done

    @property
    def position(self) -> int:
        return self._pos

    def _deliver(self, ops: list[EncodedOp]) -> list[EncodedOp]:
        """Hand ``ops`` to the reader: the position moves to the last one."""
        last = ops[-1]
        self._pos = last.seq
        if last.type == "message.end":
            self._done = True
        return ops


class Signal:
    """Wakes everyone waiting right now; each waiter may give up after its own timeout.

    Used instead of ``asyncio.Event`` (plus ``asyncio.timeout``) because every open stream
    holds one and every idle reader waits on one: a waiter here costs one future and one
    coarse timeout (``tokenwire.timeouts``), nothing while nobody waits, and the signal is
    never replaced or reset.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[bool]] | None = None

    def fire(self) -> None:
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(True)

    async def wait(self, timeout: float | None = None) -> bool:
        """True when fired; False if ``timeout`` seconds passed first."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bool] = loop.create_future()
        if self._waiters is None:
            self._waiters = [waiter]
        else:
            self._waiters.append(waiter)
        timer = None
        try:
            if timeout is not None:
                timer = timeouts.call_later(timeout, _time_out, waiter)
            return await waiter
        finally:
            timeouts.cancel(timer, waiter)
            fired = waiter.done() and not waiter.cancelled() and waiter.result()
            if not fired and self._waiters is not None:  # timed out or cancelled: unlist
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)


class CancelRequest:
    """One stream's cancel request as this process sees it: a latch that wakes its waiters
    (``wait_cancel``) and calls its watchers (``watch_cancel``) once, when set."""

    __slots__ = ("requested", "signal", "watchers")

    def __init__(self) -> None:
        self.requested = False
        self.signal = Signal()
        self.watchers: list[Callable[[], None]] = []

    def set(self) -> None:
        if self.requested:
            return
        self.requested = True
        self.signal.fire()
        watchers, self.watchers = self.watchers, []
        for callback in watchers:
            try:
                callback()
            except Exception:  # one broken watcher must not keep the others uncalled
                log.exception("a cancel watcher failed")

    async def wait(self) -> None:
        while not self.requested:
            await self.signal.wait()

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once set (soon, if it already is); returns "stop watching"."""
        if self.requested:
            return asyncio.get_running_loop().call_soon(callback).cancel
        self.watchers.append(callback)
        return _Unwatch(self, callback)


class _Unwatch:
    """``CancelRequest.watch``'s "stop watching" (a closure and its cell were 208 B per open
    stream; this is 48)."""

    __slots__ = ("callback", "request")

    def __init__(self, request: CancelRequest, callback: Callable[[], None]) -> None:
        self.request = request
        self.callback = callback

    def __call__(self) -> None:
        with contextlib.suppress(ValueError):
            self.request.watchers.remove(self.callback)


def _time_out(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(False)


class Hub(abc.ABC):
    """Op logs of live and recently finished streams, shared by producers and subscribers."""

    kind: str = "memory"
    """Short name of the backend, for ``/healthz``."""
    unavailable_grace_s: float = 0.0
    """How long callers keep retrying ``HubUnavailable`` before giving up (0: never raised)."""

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Connect / start background work (called from the app's lifespan)."""

    async def close(self) -> None:  # noqa: B027 (optional hook)
        """Stop background work and release connections."""

    async def ping(self) -> None:  # noqa: B027 (optional hook)
        """Raise ``HubUnavailable`` if the hub cannot serve requests right now."""

    async def release(self, stream_id: str) -> None:  # noqa: B027 (optional hook)
        """The producer of ``stream_id`` gives up without ending it (its hub was unreachable).

        A shared hub stops vouching for the stream (e.g. drops the producer lease), so the stream
        is ended ``failed`` by whoever can once the hub is reachable again.
        """

    @abc.abstractmethod
    async def create(self, stream_id: str, *, owner: str | None) -> None:
        """Register a new, empty stream. Raises ``StreamExists`` if the id already exists."""

    @abc.abstractmethod
    async def append(self, stream_id: str, ops: Sequence[EncodedOp]) -> None:
        """Append ops (dense seqs continuing the log) and wake the stream's readers."""

    async def publish_transient(self, stream_id: str, op: EncodedOp) -> None:  # noqa: B027
        """Hand a ``transient`` op to the stream's open cursors, without storing it. (This
        default drops it: transient data is best-effort and the log needs none of it.)"""

    async def publish(self, stream_id: str, ops: Sequence[EncodedOp]) -> None:
        """``append`` for a batch that may hold ``transient`` ops (an ``Assembler``'s output):
        the real ops go to the log and each transient to the live readers, in order."""
        if not any(type(op.op) is Transient for op in ops):
            await self.append(stream_id, ops)
            return
        run: list[EncodedOp] = []
        for op in ops:
            if type(op.op) is Transient:
                if run:
                    await self.append(stream_id, run)
                    run = []
                await self.publish_transient(stream_id, op)
            else:
                run.append(op)
        if run:
            await self.append(stream_id, run)

    @abc.abstractmethod
    async def info(self, stream_id: str) -> StreamInfo | None:
        """Metadata of a retained stream, or ``None``."""

    @abc.abstractmethod
    async def message(self, stream_id: str) -> tuple[StreamInfo, Message] | None:
        """The stream's info and its canonical message as of ``info.seq``, or ``None``."""

    @abc.abstractmethod
    async def subscribe(self, stream_id: str, after: int) -> Cursor:
        """A cursor yielding the ops with ``seq > after``. Raises ``StreamNotFound``."""

    @abc.abstractmethod
    async def request_cancel(self, stream_id: str) -> None:
        """Ask the stream's producer (wherever it runs) to stop. Idempotent."""

    @abc.abstractmethod
    async def wait_cancel(self, stream_id: str) -> None:
        """Return when a cancel was requested for the stream."""

    # -- active streams of chats (the AI SDK routes) -------------------------------------
    # A chat (``useChat``'s id, scoped by owner) names the stream answering it right now, so
    # ``GET {api}/{chatId}/stream`` and ``POST {api}/{chatId}/stop`` find it from any process.
    @abc.abstractmethod
    async def set_active(self, chat_key: str, stream_id: str, ttl_s: float) -> None:
        """Record ``stream_id`` as the active stream of ``chat_key`` for ``ttl_s`` seconds."""

    @abc.abstractmethod
    async def get_active(self, chat_key: str) -> str | None:
        """The active stream id of ``chat_key``, or ``None``."""

    @abc.abstractmethod
    async def clear_active(self, chat_key: str, stream_id: str) -> None:
        """Forget ``chat_key``'s active stream if it is still ``stream_id`` (a newer one
        recorded meanwhile stays)."""

    def watch_cancel(self, stream_id: str, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` once when a cancel is requested; returns "stop watching".

        Producers use this: every live stream has a watch, so hubs override it to hold no
        task while nothing happens. This default runs ``wait_cancel`` in a task, retrying
        while the hub is unreachable.
        """

        async def watch() -> None:
            delay = 0.1
            while True:
                try:
                    await self.wait_cancel(stream_id)
                except HubUnavailable:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                    continue
                except StreamNotFound:
                    return  # gone from the hub: nobody can cancel it
                try:
                    callback()
                except Exception:
                    log.exception("a cancel watcher failed")
                return

        return asyncio.get_running_loop().create_task(watch()).cancel
