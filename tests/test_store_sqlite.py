"""The SQLite store keeps ``StoredStream.metadata`` and migrates a file made before it did."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tokenwire import Streams, StreamWriter
from tokenwire.gateway.store import Store, StoredStream

# The table as the previous version created it (no metadata column).
_OLD_SCHEMA = """
CREATE TABLE streams (
    id TEXT PRIMARY KEY,
    owner TEXT,
    status TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message BLOB NOT NULL,
    created_at REAL NOT NULL,
    finished_at REAL NOT NULL
);
CREATE INDEX streams_finished_at ON streams (finished_at);
"""


def row(stream_id: str, **changes) -> StoredStream:
    values = {
        "id": stream_id,
        "owner": "alice",
        "status": "completed",
        "seq": 4,
        "message": '{"blocks":[{"type":"text","text":"h\u00e9"}]}'.encode(),
        "created_at": 1.5,
        "finished_at": 2.25,
    }
    values.update(changes)
    return StoredStream(**values)


async def test_metadata_round_trips(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.open()
    try:
        with_meta = row("st_m", metadata={"chat": "c1", "n": [1, 2.5, None], "é": {"x": True}})
        await store.save(with_meta)
        await store.save(row("st_none", owner=None))
        assert await store.get("st_m") == with_meta
        assert (await store.get("st_none")) == row("st_none", owner=None)
        assert (await store.get("st_none")).metadata is None  # type: ignore[union-attr]
    finally:
        await store.close()
    reopened = Store(tmp_path)  # what was written is on disk, not only in the connection
    await reopened.open()
    try:
        assert (await reopened.get("st_m")).metadata["é"] == {"x": True}  # type: ignore[union-attr]
    finally:
        await reopened.close()


async def test_a_file_of_the_previous_schema_is_migrated(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "tokenwire.sqlite3")
    db.executescript(_OLD_SCHEMA)
    db.execute(
        "INSERT INTO streams VALUES (?, ?, ?, ?, ?, ?, ?)",
        ("st_old", "bob", "failed", 9, b'{"blocks":[]}', 1.0, 2.0),
    )
    db.commit()
    db.close()

    for _ in range(2):  # the second open finds the column already there
        store = Store(tmp_path)
        await store.open()
        try:
            assert await store.get("st_old") == StoredStream(
                "st_old", "bob", "failed", 9, b'{"blocks":[]}', 1.0, 2.0, None
            )
            await store.save(row("st_new", metadata={"k": 1}))
            assert (await store.get("st_new")).metadata == {"k": 1}  # type: ignore[union-attr]
        finally:
            await store.close()
    columns = [
        r[1]
        for r in sqlite3.connect(tmp_path / "tokenwire.sqlite3").execute(
            "PRAGMA table_info(streams)"
        )
    ]
    assert columns[-1] == "metadata" and columns.count("metadata") == 1


async def test_streams_with_the_sqlite_store_keep_the_starters_metadata(tmp_path: Path) -> None:
    store = Store(tmp_path)
    async with Streams(store=store) as streams:

        async def produce(w: StreamWriter) -> None:
            await w.text("hi")

        handle = await streams.start(produce, owner="u1", metadata={"chat_id": "c9"})
        assert await streams.wait(handle.id, 5) == "completed"
        saved = await store.get(handle.id)
        assert saved is not None and saved.metadata == {"chat_id": "c9"}
        assert saved.owner == "u1" and saved.status == "completed"
