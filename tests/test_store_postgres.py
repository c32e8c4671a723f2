"""PostgresStore against a real PostgreSQL server (see pg_server.py), and store_from_url."""

from __future__ import annotations

import asyncio
import secrets
import time

import pytest

from tokenwire.gateway.store import Store, StoredStream
from tokenwire.stores import StoreConflict, StoreUnavailable, sqlite_dir, store_from_url

asyncpg = pytest.importorskip("asyncpg")

from tokenwire.store_postgres import PostgresStore  # noqa: E402


def row(stream_id: str, *, owner: str | None = "alice", seq: int = 3, **changes) -> StoredStream:
    now = time.time()
    values = {
        "id": stream_id,
        "owner": owner,
        "status": "completed",
        "seq": seq,
        "message": f'{{"id":"{stream_id}","blocks":[{{"type":"text","text":"h\u00e9"}}]}}'.encode(),
        "created_at": now - 1.5,
        "finished_at": now,
    }
    values.update(changes)
    return StoredStream(**values)


def table() -> str:
    return f"tw_{secrets.token_hex(5)}"


@pytest.fixture
async def store(pg_server):
    s = PostgresStore(pg_server.url, table=table(), max_connections=4)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


async def count(url: str, table_name: str) -> int:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(f'SELECT count(*) FROM "{table_name}"')
    finally:
        await conn.close()


async def test_round_trip_is_exact(store: PostgresStore) -> None:
    saved = row("st_a", owner=None, message=b'{"x":"\xc3\xa9 \\u0000 {}"}')
    await store.save(saved)
    got = await store.get("st_a")
    assert got == saved  # bytes and floats exactly, owner None kept as None
    assert await store.get("st_missing") is None


async def test_metadata_round_trip(store: PostgresStore) -> None:
    saved = row("st_m", metadata={"chat": "c1", "n": [1, 2.5, None], "é": {"x": True}})
    await store.save(saved)
    assert await store.get("st_m") == saved
    await store.save(row("st_n"))
    got = await store.get("st_n")
    assert got is not None and got.metadata is None


async def test_one_row_per_stream_and_saves_only_move_forward(
    store: PostgresStore, pg_server
) -> None:
    await store.save(row("st_u", seq=5, status="failed", message=b"five"))
    await store.save(row("st_u", seq=5, status="failed", message=b"five"))  # a retried save
    await store.save(row("st_u", seq=3, message=b"three"))  # older: ignored
    got = await store.get("st_u")
    assert got is not None and (got.seq, got.status, got.message) == (5, "failed", b"five")
    await store.save(row("st_u", seq=9, message=b"nine"))
    got = await store.get("st_u")
    assert got is not None and (got.seq, got.status, got.message) == (9, "completed", b"nine")
    assert await count(pg_server.url, store.table) == 1


async def test_replace_stores_the_hubs_version_whatever_the_seq(
    store: PostgresStore, pg_server
) -> None:
    """A producer stored its own final message (seq 14) but the hub ended the stream at
    seq 12 ("producer lost", what readers saw): ``replace`` (``replace_row``) puts the hub's
    version in, where ``save`` would keep the row; never for another owner."""
    from tokenwire.streams.store import replace_row

    await store.save(row("st_r", seq=14, status="completed", message=b"own"))
    await store.save(row("st_r", seq=12, status="failed", message=b"hub"))  # (save: kept)
    got = await store.get("st_r")
    assert got is not None and (got.seq, got.message) == (14, b"own")
    await replace_row(store, row("st_r", seq=12, status="failed", message=b"hub"))
    got = await store.get("st_r")
    assert got is not None and (got.seq, got.status, got.message) == (12, "failed", b"hub")
    with pytest.raises(StoreConflict):
        await store.replace(row("st_r", owner="mallory", seq=1, message=b"stolen"))
    assert await count(pg_server.url, store.table) == 1


async def test_owner_is_returned_and_never_changes(store: PostgresStore) -> None:
    await store.save(row("st_o", owner="alice"))
    got = await store.get("st_o")
    assert got is not None and got.owner == "alice"
    with pytest.raises(StoreConflict):
        await store.save(row("st_o", owner="mallory", seq=99, message=b"stolen"))
    with pytest.raises(StoreConflict):
        await store.save(row("st_o", owner=None, seq=99, message=b"stolen"))
    got = await store.get("st_o")
    assert got is not None and (got.owner, got.message) != ("mallory", b"stolen")
    assert got.owner == "alice" and got.seq == 3


async def test_three_stores_create_the_schema_at_once(pg_server) -> None:
    for _ in range(3):  # several rounds: a race that loses sometimes must show
        name = table()
        stores = [PostgresStore(pg_server.url, table=name, max_connections=2) for _ in range(3)]
        try:
            await asyncio.gather(*(s.open() for s in stores))
            await asyncio.gather(*(s.save(row(f"st_{i}")) for i, s in enumerate(stores)))
            for s in stores:
                assert [(await s.get(f"st_{i}")) is not None for i in range(3)] == [True] * 3
        finally:
            await asyncio.gather(*(s.close() for s in stores))


async def test_two_machines_see_each_others_messages(pg_server) -> None:
    name = table()
    a = PostgresStore(pg_server.url, table=name)
    b = PostgresStore(pg_server.url, table=name)
    await a.open()
    await b.open()
    try:
        await a.save(row("st_from_a", owner="k1"))
        await b.save(row("st_from_b", owner="k2"))
        from_a = await b.get("st_from_a")
        from_b = await a.get("st_from_b")
        assert from_a is not None and from_a.owner == "k1"
        assert from_b is not None and from_b.owner == "k2"
    finally:
        await a.close()
        await b.close()


async def test_cleanup_by_age(store: PostgresStore) -> None:
    now = time.time()
    for i in range(7):
        await store.save(row(f"st_old{i}", finished_at=now - 1000 - i))
    await store.save(row("st_new", finished_at=now))
    assert await store.delete_finished_before(now - 500, batch=3) == 7  # three batches
    assert await store.get("st_new") is not None
    assert await store.get("st_old0") is None
    assert await store.delete_finished_before(now - 500) == 0


async def test_the_postgres_store_cleans_up_by_itself(pg_server) -> None:
    """With ``retention_s`` the store deletes old rows itself: at open, then every
    ``cleanup_interval_s`` (before, only the SQLite store did, and only without a store URL)."""
    store = PostgresStore(
        pg_server.url, table=table(), max_connections=2, retention_s=0.3, cleanup_interval_s=0.1
    )
    await store.open()
    try:
        now = time.time()
        await store.save(row("st_kept", finished_at=now + 3600))
        await store.save(row("st_gone", finished_at=now))
        for _ in range(60):
            if await store.get("st_gone") is None:
                break
            await asyncio.sleep(0.05)
        assert await store.get("st_gone") is None
        assert await store.get("st_kept") is not None
        assert await store.cleanup(now + 7200) == 1  # one pass on demand, too
    finally:
        await store.close()
    assert store._retention._task is None
    assert await PostgresStore(pg_server.url, table=table()).cleanup() == 0  # keeps by default


async def saves_during(store: PostgresStore, fault, caplog, n: int = 120) -> list[StoredStream]:
    """Save rows, 8 at a time, for as long as ``fault`` (a blocking callable) runs in a thread
    and until at least ``n`` are saved; checks that the fault did hit some saves (they retried).
    The store's 4 connections are always busy meanwhile (8 savers, no pause), so a killed
    connection is one with a save on it, not an idle one the pool replaces unseen."""
    rows: list[StoredStream] = []
    faulting = True

    async def worker() -> None:
        while faulting or len(rows) < n:
            i = len(rows)
            rows.append(row(f"st_r{i}", seq=i + 1, message=f"m{i}".encode()))
            await store.save(rows[i])

    workers = [asyncio.create_task(worker()) for _ in range(8)]
    await asyncio.sleep(0.05)  # saves are under way
    try:
        await asyncio.to_thread(fault)
    finally:
        faulting = False
    await asyncio.wait_for(asyncio.gather(*workers), 60)
    retried = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert retried, "the fault hit no save: the test proved nothing"
    return rows


async def test_saves_survive_killed_connections(store: PostgresStore, pg_server, caplog) -> None:
    def kill_until_saves_retried() -> None:
        # At least 3 kills; more while none has hit a save yet: on a loaded machine a kill can
        # find every connection between two saves, and asyncpg replaces those unseen.
        for i in range(40):
            pg_server.kill_connections()
            time.sleep(0.1)
            if i >= 2 and any("retrying" in r.getMessage() for r in list(caplog.records)):
                return

    rows = await saves_during(store, kill_until_saves_retried, caplog)
    for saved in rows:
        assert await store.get(saved.id) == saved
    assert await count(pg_server.url, store.table) == len(rows)


async def test_saves_survive_a_server_restart(caplog) -> None:
    from pg_server import PgServer, pg_bin_dir

    if pg_bin_dir() is None:
        pytest.skip("initdb/pg_ctl not installed (Debian's postgresql package)")
    server = await asyncio.to_thread(PgServer, "throwaway")
    await asyncio.to_thread(server.start)
    try:
        store = PostgresStore(server.url, max_connections=4)
        await store.open()
        try:
            # Down for a while: saves keep failing and retrying meanwhile.
            rows = await saves_during(store, lambda: server.restart(down_s=0.5), caplog)
            for saved in rows:
                assert await store.get(saved.id) == saved
            assert await count(server.url, store.table) == len(rows)
        finally:
            await store.close()
    finally:
        await asyncio.to_thread(server.close)


async def test_unreachable_server_fails_after_the_retry_bound() -> None:
    from conftest import free_port

    store = PostgresStore(
        f"postgresql://postgres@127.0.0.1:{free_port()}/x", open_retry_s=0.3, connect_timeout_s=1
    )
    started = time.monotonic()
    with pytest.raises(StoreUnavailable, match="could not connect"):
        await store.open()
    assert 0.25 < time.monotonic() - started < 5


async def test_a_store_that_is_not_open_refuses() -> None:
    store = PostgresStore("postgresql://postgres@127.0.0.1:1/x", read_retry_s=0.2)
    with pytest.raises(StoreUnavailable, match="not open"):
        await store.get("st_x")


def test_store_from_url(tmp_path) -> None:
    assert isinstance(store_from_url("sqlite://"), Store)
    sqlite = store_from_url(f"sqlite:///{tmp_path}")
    assert isinstance(sqlite, Store) and sqlite.path == f"{tmp_path}/tokenwire.sqlite3"
    assert sqlite_dir("sqlite:///rel/dir") == "rel/dir"
    assert sqlite_dir("sqlite:////abs/dir") == "/abs/dir"
    assert sqlite_dir("sqlite:///:memory:") is None
    pg = store_from_url("postgresql://u:pw@db.example:5433/tw", table="t2", max_connections=3)
    assert isinstance(pg, PostgresStore) and (pg.table, pg.max_connections) == ("t2", 3)
    assert isinstance(store_from_url("postgres://db/tw"), PostgresStore)
    with pytest.raises(ValueError, match="sqlite:// or postgresql://"):
        store_from_url("mysql://db/tw")
    with pytest.raises(ValueError):
        store_from_url("sqlite://host/dir")
    kept = store_from_url("sqlite://", retention_s=60.0, cleanup_interval_s=5.0)
    assert (kept.retention_s, kept.cleanup_interval_s) == (60.0, 5.0)
    with pytest.raises(ValueError, match="only retention_s and cleanup_interval_s"):
        store_from_url("sqlite://", table="t2")
    with pytest.raises(ValueError, match="retention_s"):
        store_from_url("postgresql://db/tw", retention_s=-1)
    with pytest.raises(ValueError):
        PostgresStore("postgresql://db/tw", table="x; DROP TABLE y")


async def test_sqlite_store_cleanup_by_age(tmp_path) -> None:
    store = Store(tmp_path)
    await store.open()
    try:
        now = time.time()
        await store.save(row("st_old", finished_at=now - 100))
        await store.save(row("st_new", finished_at=now))
        assert await store.delete_finished_before(now - 50) == 1
        assert await store.get("st_old") is None and await store.get("st_new") is not None
    finally:
        await store.close()


def test_store_url_setting_and_flag(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenwire.cli import CommandError, build_parser
    from tokenwire.commands import serve
    from tokenwire.gateway import Settings

    url = "postgresql://tw:secret@db:5432/tw"
    settings = Settings.from_env({"TOKENWIRE_STORE_URL": url})
    assert settings.store_url == url and "secret" not in repr(settings)
    assert Settings.from_env(settings.to_env()).store_url == url  # handed to workers
    monkeypatch.delenv("TOKENWIRE_STORE_URL", raising=False)

    def build(*flags: str) -> Settings:
        argv = ["serve", "--upstream", "http://u/v1", *flags]
        return serve.build_settings(build_parser().parse_args(argv))

    assert build().store_url is None
    assert build("--store-url", url).store_url == url
    assert build("--store-url", "sqlite:///var/tw").store_url == "sqlite:///var/tw"
    with pytest.raises(CommandError, match="sqlite:/// or postgresql://"):
        build("--store-url", "mysql://db/tw")
    with pytest.raises(CommandError, match="no host"):
        build("--store-url", "sqlite://host/dir")
    monkeypatch.setenv("TOKENWIRE_STORE_URL", url)
    assert build().store_url == url
