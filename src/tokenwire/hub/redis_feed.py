"""Local fan-out for the Redis hub: one in-memory window per stream, cursors pull from it.

A process keeps one ``Feed`` per stream it serves. A single reader task (in ``RedisHub``)
appends what its blocking ``XREAD`` returns; every local cursor reads from the window, so a
batch costs one Redis read however many local subscribers there are. A cursor that is behind
the window (it resumed from an old seq, or is slow) reads from Redis directly until it catches
up; a cursor behind the retained Redis log gets a snapshot.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from tokenwire.hub.base import MAX_BATCH, HubUnavailable, PositionCursor, Signal, TransientBuffer
from tokenwire.protocol import EncodedOp, MessageEnd


def reader_only_end(last_seq: int, message: str, error_type: str) -> EncodedOp:
    """A ``message.end`` (``failed``) made for one reader that gives up, not for the stream:
    it exists only for this reader; the shared log is not touched.

    It must never take a seq a real op will have: its ``seq`` is the last real op's (it does
    not advance the position) and its SSE frame has no ``id:`` line, so an ``EventSource``
    that reconnects sends the last real seq as ``Last-Event-ID`` and misses nothing. Clients
    recognize it as a ``message.end`` whose seq is not above the last one they applied.
    """
    error = {"message": message, "type": error_type, "code": None}
    op = MessageEnd(last_seq, "failed", None, None, error)
    json = msgspec.json.encode(op)
    return EncodedOp(op, last_seq, json, b"data:%s\n\n" % json)


class Feed:
    """The recent ops of one stream in this process, plus the wake-up signal."""

    __slots__ = (
        "base",
        "cursors",
        "ended",
        "failure",
        "id",
        "ops",
        "task",
        "tid",
        "transients",
        "wake",
        "window",
    )

    def __init__(self, stream_id: str, seq: int, *, ended: bool, window: int) -> None:
        self.id = stream_id
        self.ops: list[EncodedOp] = []  # seqs base+1, base+2, ...
        self.base = seq
        self.ended = ended  # message.end is in ``ops`` (or was before this feed started)
        self.failure: dict[str, Any] | None = None  # why this feed stopped early
        self.window = window
        self.cursors = 0
        self.task: asyncio.Task[None] | None = None
        self.wake = Signal()  # fired on every push
        # v1.1 transient ops read from the stream's transient key (made on the first one),
        # and the entry id read up to (None: not looked up yet).
        self.transients: TransientBuffer | None = None
        self.tid: bytes | str | None = None

    @property
    def hi(self) -> int:
        return self.base + len(self.ops)

    def push(self, ops: list[EncodedOp]) -> None:
        if ops[0].seq != self.hi + 1:
            # The reader fell behind the retained Redis log: restart the window there;
            # cursors behind it catch up from Redis (and get a snapshot).
            self.ops = []
            self.base = ops[0].seq - 1
        self.ops.extend(ops)
        if ops[-1].type == "message.end":
            self.ended = True
        elif len(self.ops) > 2 * self.window:  # amortized: trim in big steps
            drop = len(self.ops) - self.window
            del self.ops[:drop]
            self.base += drop
        self._notify()

    def push_transients(self, ops: list[EncodedOp]) -> None:
        if self.transients is None:
            self.transients = TransientBuffer()
        for op in ops:
            self.transients.add(op)
        self._notify()

    def fail(self, message: str, error_type: str) -> None:
        self.failure = {"message": message, "type": error_type, "code": None}
        self._notify()

    def _notify(self) -> None:
        self.wake.fire()


# Between catch-up attempts while Redis is unreachable (growing with the outage).
_RETRY_MIN_S = 0.05
_RETRY_MAX_S = 1.0

CatchUp = Callable[[str, int], Awaitable[list[EncodedOp]]]
"""Reads the ops after a seq from Redis (a snapshot first if they are gone). Raises
``LookupError`` if the stream is gone from Redis, ``HubUnavailable`` if Redis is down."""


class RedisCursor(PositionCursor):
    """A cursor on a ``Feed``; behind the window it reads from Redis via ``catch_up``."""

    __slots__ = ("_catch_up", "_closed", "_failed_at", "_failing_since", "_feed", "_grace_s")

    def __init__(self, feed: Feed, after: int, catch_up: CatchUp, *, grace_s: float) -> None:
        super().__init__(after, feed.transients)
        self._feed = feed
        self._closed = False
        self._catch_up = catch_up
        self._grace_s = grace_s  # how long a catch-up read waits for a lost Redis
        self._failing_since: float | None = None  # the current outage began (as seen here)
        self._failed_at: float | None = None  # the last catch-up that failed
        feed.cursors += 1

    async def read(self, timeout: float | None = None) -> list[EncodedOp]:
        feed = self._feed
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._done:
            pos = self._pos
            if pos < feed.base:
                ops = await self._read_behind(pos, deadline)
                if ops is None:
                    continue  # time to try Redis again
                return ops
            if pos < feed.hi:
                start = pos - feed.base
                batch = feed.ops[start : start + MAX_BATCH]
                return self._deliver(self._with_transients(feed.transients, batch))
            if feed.transients is not None:
                batch = self._with_transients(feed.transients, [])
                if batch:
                    return self._deliver(batch)
            if feed.ended:
                self._done = True
                break
            if feed.failure is not None:
                return self._end_failed(feed.failure["message"], feed.failure["type"])
            if not await feed.wake.wait(timeout):
                return []
        return []

    async def _read_behind(self, pos: int, deadline: float | None) -> list[EncodedOp] | None:
        """Catch up from Redis. While it is unreachable, retry for the grace (as the window's
        reader does, so a blip does not end a reader that is merely behind), and never past
        ``deadline``: ``[]`` then (time for the caller's keep-alive ping), ``None`` when it is
        time to try again."""
        feed = self._feed
        started = time.monotonic()
        limit = deadline
        if self._failing_since is not None:
            give_up = self._failing_since + self._grace_s
            limit = give_up if limit is None else min(limit, give_up)
        try:
            async with asyncio.timeout(None if limit is None else max(0.0, limit - started)):
                ops = await self._catch_up(feed.id, pos)
        except LookupError as exc:
            return self._end_failed(str(exc), "stream_lost")
        except (HubUnavailable, TimeoutError) as exc:
            now = time.monotonic()
            if self._failed_at is None or started - self._failed_at > 2 * _RETRY_MAX_S:
                self._failing_since = started  # a new outage, not the last one going on
            self._failed_at = now
            since = self._failing_since or started
            if feed.failure is not None:  # the window's reader already waited out its grace
                return self._end_failed(feed.failure["message"], feed.failure["type"])
            if now - since >= self._grace_s:
                return self._end_failed(str(exc) or "Redis did not answer", "hub_unavailable")
            if deadline is not None and now >= deadline:
                return []
            # Back off with the outage's length, jittered: many readers behind the window
            # share the command connections with the producers' appends.
            pause = min(_RETRY_MAX_S, max(_RETRY_MIN_S, (now - since) / 2))
            pause = min(pause * random.uniform(0.5, 1.0), since + self._grace_s - now)
            if deadline is not None:
                pause = min(pause, deadline - now)
            await asyncio.sleep(pause)
            return None
        self._failing_since = self._failed_at = None
        return self._deliver(self._with_transients(feed.transients, ops))

    def _end_failed(self, message: str, error_type: str) -> list[EncodedOp]:
        # The log cannot be reached: end this reader with a clear error rather than hang.
        return self._deliver([reader_only_end(self._pos, message, error_type)])

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._feed.cursors -= 1
