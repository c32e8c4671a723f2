"""SQLite store of finished streams' final messages (outlives the hub's retention).

Rows are kept forever by default. With ``retention_s`` set, ``open()`` starts a background
task owned by the store that deletes rows finished more than ``retention_s`` ago, once at
start and then every ``cleanup_interval_s`` (``cleanup()`` does one pass on demand).

Implements the store protocol of ``tokenwire.streams.store``; ``metadata`` is kept as JSON text
(a database file made before that column existed gets it on ``open``; its rows read back ``None``).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec

from tokenwire.stores import RetainsRows, Retention
from tokenwire.streams.store import StoredStream

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    owner TEXT,
    status TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message BLOB NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL NOT NULL,
    metadata TEXT
);
CREATE INDEX IF NOT EXISTS streams_finished_at ON streams (finished_at);
"""


def _add_metadata_column(db: sqlite3.Connection) -> None:
    """Migrate a file made before ``metadata`` was kept (``CREATE TABLE IF NOT EXISTS`` left
    its table as it was)."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(streams)")}
    if "metadata" in columns:
        return
    try:
        db.execute("ALTER TABLE streams ADD COLUMN metadata TEXT")
    except sqlite3.OperationalError as exc:
        # Another process sharing the file migrated it between our check and the ALTER.
        if "duplicate column" not in str(exc):
            raise


def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenwire-store")


class Store(RetainsRows):
    """Final messages by stream id. All SQLite work runs on one private thread."""

    def __init__(
        self,
        data_dir: str | Path | None,
        *,
        retention_s: float | None = None,
        cleanup_interval_s: float = 3600.0,
    ) -> None:
        self._retention = Retention(
            self.delete_finished_before, retention_s, cleanup_interval_s, (sqlite3.Error,)
        )
        self.path = ":memory:" if data_dir is None else str(Path(data_dir) / "tokenwire.sqlite3")
        self._data_dir = data_dir
        self._executor = _executor()
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._executor._shutdown:  # type: ignore[attr-defined]  # reopened after close
            self._executor = _executor()
        await self._run(self._open)
        self._retention.start()

    def _open(self) -> None:
        if self._data_dir is not None:
            Path(self._data_dir).mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False)
        if self.path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        _add_metadata_column(db)
        db.commit()
        self._db = db

    async def close(self) -> None:
        await self._retention.stop()
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        self._executor.shutdown(wait=True)

    async def _run(self, fn, *args):  # type: ignore[no-untyped-def]
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def save(self, row: StoredStream) -> None:
        await self._run(self._save, row)

    def _save(self, row: StoredStream) -> None:
        assert self._db is not None
        self._db.execute(
            "INSERT OR REPLACE INTO streams"
            " (id, owner, status, seq, message, created_at, finished_at, metadata)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.owner,
                row.status,
                row.seq,
                row.message,
                row.created_at,
                row.finished_at,
                None if row.metadata is None else msgspec.json.encode(row.metadata).decode(),
            ),
        )
        self._db.commit()

    async def get(self, stream_id: str) -> StoredStream | None:
        return await self._run(self._get, stream_id)

    def _get(self, stream_id: str) -> StoredStream | None:
        assert self._db is not None
        row = self._db.execute(
            "SELECT id, owner, status, seq, message, created_at, finished_at, metadata"
            " FROM streams WHERE id = ?",
            (stream_id,),
        ).fetchone()
        if row is None:
            return None
        metadata: dict[str, Any] | None = None if row[7] is None else msgspec.json.decode(row[7])
        return StoredStream(row[0], row[1], row[2], row[3], bytes(row[4]), row[5], row[6], metadata)

    async def delete_finished_before(self, ts: float) -> int:
        """Delete the rows finished before ``ts`` (epoch seconds); returns how many."""
        return await self._run(self._delete_finished_before, ts)

    def _delete_finished_before(self, ts: float) -> int:
        assert self._db is not None
        deleted = self._db.execute("DELETE FROM streams WHERE finished_at < ?", (ts,)).rowcount
        self._db.commit()
        return deleted
