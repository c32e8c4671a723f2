"""One computation for readers that catch up on the same finished stream together.

A finished stream's log never changes, so the frames a view gives for it depend only on the
log and the request's cursor and options. When many clients resume one long finished answer
at once (a fan-out page reloaded by its viewers, clients reconnecting after a deploy), each
catch-up used to be computed on its own: pure CPU on the one catch-up thread, so the last of
20 readers of a 100,000-op log waited about 12 s. Readers asking with the same key now share
one computation, and its result is kept a few seconds for readers that come just after.

Only results of logs that end with ``message.end`` are shared: their view is done, so no
reader feeds or closes it (a shared view must never change).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

KEEP_S = 10.0
"""How long a shared result stays for readers that come after it was computed."""
KEEP_ENTRIES = 8
KEEP_BYTES = 4 << 20
"""A bigger result (an exact replay of a long log) is shared only while it is computed."""


class SharedCatchUps:
    """Single flight plus a small, short-lived memo of finished streams' catch-ups."""

    __slots__ = ("_kept", "_running")

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[Any]] = {}
        self._kept: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()

    async def get(
        self, key: Hashable, compute: Callable[[], Awaitable[Any]], size: Callable[[Any], int]
    ) -> Any:
        """``await compute()``, or the result of the same key's running or recent computation.
        ``size(result)`` is its bytes, to decide whether it is kept once done."""
        now = time.monotonic()
        self._expire(now)
        kept = self._kept.get(key)
        if kept is not None:
            return kept[1]
        task = self._running.get(key)
        if task is None:
            task = asyncio.ensure_future(compute())
            self._running[key] = task
            task.add_done_callback(lambda done: self._finished(key, done, size))
        # (shielded: a reader that goes away does not cancel the others' computation)
        return await asyncio.shield(task)

    def _finished(self, key: Hashable, task: asyncio.Task[Any], size: Callable[[Any], int]) -> None:
        self._running.pop(key, None)
        self._expire(time.monotonic())
        if task.cancelled() or task.exception() is not None:
            return
        result = task.result()
        if size(result) > KEEP_BYTES:
            return
        self._kept[key] = (time.monotonic(), result)
        while len(self._kept) > KEEP_ENTRIES:
            self._kept.popitem(last=False)
        # Dropped when its time is up, not first when another catch-up comes along (a result
        # of a few MiB would stay as long as the process is otherwise idle).
        asyncio.get_running_loop().call_later(KEEP_S + 0.05, self._expire_later)

    def _expire_later(self) -> None:
        self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        kept = self._kept
        while kept:
            key, (at, _) = next(iter(kept.items()))
            if now - at < KEEP_S:
                break
            del kept[key]

    def clear(self) -> None:
        self._kept.clear()
