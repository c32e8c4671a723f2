"""One final message per stream, even after a hub outage: the hub's version wins.

A producer that loses its (Redis) hub can still end its message locally and store it, with one
more op than the hub has (its end, type ``hub_unavailable``), while the hub's watchdog ends the
stream there as ``producer lost``. Readers saw, and resume from, the hub's log; so the stored
row must hold the hub's final message too, or ``GET`` would change its answer once the hub's
retention expires.

:func:`settle_with_hub` is what a producer runs (in the background) after its end did not reach
the hub: it waits for the hub to end the stream (the watchdog does, once the producer's lease
is released or has run out), then overwrites the stored row with the hub's message. The
producer's own row stays only if the hub no longer has the stream at all.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from typing import Protocol

from tokenwire.gateway.store import StoredStream
from tokenwire.hub.base import Hub, HubUnavailable
from tokenwire.protocol.message import END_STATUSES
from tokenwire.streams.store import replace_row

log = logging.getLogger("tokenwire.gateway")


class _Store(Protocol):
    async def get(self, stream_id: str) -> StoredStream | None: ...
    async def save(self, row: StoredStream) -> None: ...


async def settle_with_hub(
    hub: Hub,
    store: _Store,
    stream_id: str,
    *,
    wait_s: float,
    poll_s: float = 0.5,
    max_poll_s: float = 5.0,
) -> str:
    """Make the stored final row of ``stream_id`` the hub's. Returns what happened:

    - ``"hub"``: the hub had ended the stream; its message is stored (replacing the row);
    - ``"gone"``: the hub no longer knows the stream; the stored row stays as it is;
    - ``"timeout"``: the hub did not end it (or could not be reached) within ``wait_s``.

    Retries while the hub is unreachable, backing off from ``poll_s`` to ``max_poll_s``.
    """
    deadline = time.monotonic() + wait_s
    delay = poll_s
    while True:
        try:
            found = await hub.message(stream_id)
        except HubUnavailable:
            found = ()  # (try again)
        if found is None:
            return "gone"
        if found:
            info, message = found
            if info.status in END_STATUSES:
                row = await store.get(stream_id)
                final = message.to_json()
                if row is not None and row.message == final and row.seq == info.seq:
                    return "hub"  # (already the same)
                if row is None:
                    settled = StoredStream(
                        id=stream_id,
                        owner=info.owner,
                        status=info.status,
                        seq=info.seq,
                        message=final,
                        created_at=info.created_at,
                        finished_at=time.time(),
                    )
                else:  # (replace: keeps any field a newer StoredStream adds)
                    settled = dataclasses.replace(
                        row, status=info.status, seq=info.seq, message=final
                    )
                await replace_row(store, settled)  # (its seq may be below the stored one's)
                if row is not None and row.message != final:
                    log.warning(
                        "stream %s: stored the hub's final message (%s at seq %d) instead of "
                        "this process's (%s at seq %d)",
                        stream_id,
                        info.status,
                        info.seq,
                        row.status,
                        row.seq,
                    )
                return "hub"
        left = deadline - time.monotonic()
        if left <= 0:
            return "timeout"
        await asyncio.sleep(min(delay, left))
        delay = min(delay * 2, max_poll_s)
