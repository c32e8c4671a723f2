"""SQLite store of finished streams' final messages (outlives the hub's retention).

Implements the store protocol of ``tokenwire.streams.store`` (``metadata`` is not kept).
"""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tokenwire.streams.store import StoredStream

_SCHEMA = """
CREATE TABLE IF NOT EXISTS streams (
    id TEXT PRIMARY KEY,
    owner TEXT,
    status TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message BLOB NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL NOT NULL
)
"""


def _executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="tokenwire-store")


class Store:
    """Final messages by stream id. All SQLite work runs on one private thread."""

    def __init__(self, data_dir: str | Path | None) -> None:
        self.path = ":memory:" if data_dir is None else str(Path(data_dir) / "tokenwire.sqlite3")
        self._data_dir = data_dir
        self._executor = _executor()
        self._db: sqlite3.Connection | None = None

    async def open(self) -> None:
        if self._executor._shutdown:  # type: ignore[attr-defined]  # reopened after close
            self._executor = _executor()
        await self._run(self._open)

    def _open(self) -> None:
        if self._data_dir is not None:
            Path(self._data_dir).mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False)
        if self.path != ":memory:":
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        db.commit()
        self._db = db

    async def close(self) -> None:
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
            "INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                row.id,
                row.owner,
                row.status,
                row.seq,
                row.message,
                row.created_at,
                row.finished_at,
            ),
        )
        self._db.commit()

    async def get(self, stream_id: str) -> StoredStream | None:
        return await self._run(self._get, stream_id)

    def _get(self, stream_id: str) -> StoredStream | None:
        assert self._db is not None
        row = self._db.execute(
            "SELECT id, owner, status, seq, message, created_at, finished_at"
            " FROM streams WHERE id = ?",
            (stream_id,),
        ).fetchone()
        if row is None:
            return None
        return StoredStream(row[0], row[1], row[2], row[3], bytes(row[4]), row[5], row[6])
