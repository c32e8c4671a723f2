"""Coarse timeouts for many long waits: one loop timer per time slot, not one per wait.

Every idle open stream waits twice for seconds to minutes: its SSE reader for the next
keep-alive ping, and its upstream connection for the read timeout. A ``TimerHandle`` per wait
costs about 600 bytes per stream for as long as it waits (measured with tracemalloc under the
bench's "RSS per idle open stream"). Here a long wait costs one dict entry in the slot it
expires in, and fires up to ``RESOLUTION_S`` late. Short waits keep an exact timer of their own.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

log = logging.getLogger("tokenwire")

RESOLUTION_S = 0.25
"""Long waits expire at the end of the quarter second they fall in."""
EXACT_BELOW_S = 2.0
"""Waits shorter than this get an exact timer (a slot's lateness would be felt)."""

T = TypeVar("T")
Timeout = asyncio.TimerHandle | int
"""What ``call_later`` returns, for ``cancel`` (an exact timer's handle, or a slot key)."""

_Slots = dict[int, dict[Any, Callable[[Any], None]]]
# Per event loop (tests run many). A loop's entry goes when its last slot fired; a loop
# closed with waits still pending stays referenced by them (and lives as long as the process).
_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slots] = weakref.WeakKeyDictionary()


def call_later(delay: float, callback: Callable[[T], None], arg: T) -> Timeout | None:
    """Call ``callback(arg)`` about ``delay`` seconds from now on the running loop.

    ``arg`` identifies the wait within its slot: one pending timeout per ``arg`` (a second one
    for the same ``arg`` and slot replaces the first). Keep the result for ``cancel``. An
    infinite ``delay`` never fires (``None``).
    """
    loop = asyncio.get_running_loop()
    if delay < EXACT_BELOW_S:
        return loop.call_later(delay, callback, arg)
    if delay == math.inf:
        return None  # (NaN still fails below, as loop.call_later would)
    slots = _by_loop.get(loop)
    if slots is None:
        slots = _by_loop[loop] = {}
    key = math.ceil((loop.time() + delay) / RESOLUTION_S)
    slot = slots.get(key)
    if slot is None:
        slot = slots[key] = {}
        loop.call_at(key * RESOLUTION_S, _fire, loop, slots, key)
    slot[arg] = callback
    return key


def cancel(timeout: Timeout | None, arg: object) -> None:
    """Cancel what ``call_later(..., arg)`` returned (no-op if it fired or was cancelled)."""
    if timeout is None:
        return
    if not isinstance(timeout, int):  # an exact timer (uvloop's handles are their own type)
        timeout.cancel()
        return
    try:
        slots = _by_loop.get(asyncio.get_running_loop())
    except RuntimeError:  # no loop running: its slots can no longer fire anyway
        return
    slot = slots.get(timeout) if slots is not None else None
    if slot is not None:
        slot.pop(arg, None)


def _fire(loop: asyncio.AbstractEventLoop, slots: _Slots, key: int) -> None:
    slot = slots.get(key)
    # The slot stays listed while it fires, so a callback may still cancel a later entry.
    # (Entries fire newest first: within a quarter second the order carries no meaning.)
    while slot:
        arg, callback = slot.popitem()
        try:
            callback(arg)
        except Exception:  # one failing callback must not keep the others from firing
            log.exception("a timeout callback failed")
    slots.pop(key, None)
    if not slots:
        _by_loop.pop(loop, None)
