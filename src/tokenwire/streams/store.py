"""Where final messages go when a stream ends: the store protocol and an in-memory store.

A store keeps a finished stream's final message for longer than the hub keeps its op log
(the hub forgets a finished stream after its retention time). ``Streams`` saves the row
before ``message.end`` becomes visible, and reads it back when the hub no longer knows the
stream. Any object with ``get`` and ``save`` (and optionally ``open`` / ``close``) will do:
the SQLite store (``tokenwire.gateway.store.Store``), this in-memory one, or the host's own
table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True, frozen=True)
class StoredStream:
    """A finished stream, as a store keeps it."""

    id: str
    owner: str | None
    status: str
    seq: int
    """The seq of its ``message.end`` (the last op)."""
    message: bytes
    """The canonical message JSON (``Message.to_json()``)."""
    created_at: float
    finished_at: float
    metadata: dict[str, Any] | None = None
    """What the producer's starter passed to ``Streams.start(metadata=...)``."""


@runtime_checkable
class StreamStore(Protocol):
    """The store protocol. ``open``/``close`` are optional (called by ``Streams`` if present)."""

    async def get(self, stream_id: str) -> StoredStream | None: ...

    async def save(self, row: StoredStream) -> None: ...

    # Optional: ``async def replace(row)`` stores ``row`` even if the stored one has a higher
    # ``seq`` (the hub's final message, which readers saw, replacing a process's own version);
    # without it ``save`` is used (``replace_row``).


async def replace_row(store: Any, row: StoredStream) -> None:
    """Store the hub's version of a final message in ``store`` (its ``replace``, else ``save``)."""
    replace = getattr(store, "replace", None)
    await (replace(row) if replace is not None else store.save(row))


class MemoryStore:
    """Final messages in a dict, for one process (the default store of ``Streams``).

    ``max_rows`` bounds memory: the oldest rows are dropped first.
    """

    def __init__(self, max_rows: int = 10_000) -> None:
        self.max_rows = max_rows
        self._rows: dict[str, StoredStream] = {}

    async def get(self, stream_id: str) -> StoredStream | None:
        return self._rows.get(stream_id)

    async def save(self, row: StoredStream) -> None:
        self._rows.pop(row.id, None)
        self._rows[row.id] = row
        while len(self._rows) > self.max_rows:
            del self._rows[next(iter(self._rows))]


__all__ = ["MemoryStore", "StoredStream", "StreamStore", "replace_row"]
