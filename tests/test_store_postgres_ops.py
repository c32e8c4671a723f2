"""PostgresStore in operation, on a throwaway PostgreSQL server of this module's own (it creates
a role and stops the server, which the shared one must never see):

- a role that may only read and write a table its owner made can start the store (``open``
  runs no DDL on an existing table);
- while the database is down, a read that falls through to the store answers the documented
  ``503`` (``store_unavailable``, ``Retry-After``) on every route, never a 500.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import httpx
import pytest
from conftest import serve_asgi

asyncpg = pytest.importorskip("asyncpg")

from pg_server import PgServer, pg_bin_dir  # noqa: E402

from tokenwire.gateway import Settings, create_app  # noqa: E402
from tokenwire.store_postgres import PostgresStore  # noqa: E402
from tokenwire.streams.store import StoredStream  # noqa: E402


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    if pg_bin_dir() is None:
        pytest.skip("initdb/pg_ctl not installed (Debian's postgresql package)")
    with PgServer("throwaway") as pg:
        yield pg


def _role_url(url: str, role: str) -> str:
    scheme, rest = url.split("://", 1)
    return f"{scheme}://{role}@{rest.split('@', 1)[1]}"


async def test_a_role_that_may_only_read_and_write_the_table_opens_the_store(
    server: PgServer,
) -> None:
    table = f"tw_{secrets.token_hex(4)}"
    role = f"tw_app_{secrets.token_hex(4)}"
    owner = PostgresStore(server.url, table=table, max_connections=1)
    await owner.open()  # the owner makes the table (as operations.md's SQL would)
    await owner.close()
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute(f'CREATE ROLE "{role}" LOGIN')
        await admin.execute(f'GRANT SELECT, INSERT, UPDATE, DELETE ON "{table}" TO "{role}"')
        await admin.execute(f'REVOKE CREATE ON SCHEMA public FROM "{role}", PUBLIC')
    finally:
        await admin.close()
    store = PostgresStore(_role_url(server.url, role), table=table, max_connections=1)
    await store.open()  # before: "permission denied for schema public"
    try:
        row = StoredStream("st_role", "alice", "completed", 3, b"{}", 1.0, 2.0)
        await store.save(row)
        assert await store.get("st_role") == row
    finally:
        await store.close()


@pytest.fixture
def gateway_on(server: PgServer) -> Iterator[str]:
    store = PostgresStore(
        server.url, table=f"tw_{secrets.token_hex(4)}", max_connections=2, read_retry_s=0.3
    )
    app = create_app(Settings(upstream="http://127.0.0.1:9/v1"))
    app.state.gateway.store = store
    with serve_asgi(app) as url:
        yield url


UNKNOWN = "/v1/streams/st_unknownstream0000000"  # (a well-formed id no stream has)


def test_reads_answer_503_while_the_database_is_down(server: PgServer, gateway_on: str) -> None:
    url = gateway_on
    assert httpx.get(f"{url}{UNKNOWN}").status_code == 404  # (up: not found)
    server.stop()
    try:
        for path in (UNKNOWN, f"{UNKNOWN}/events"):
            r = httpx.get(f"{url}{path}", timeout=10)
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.json()["error"]["code"] == "store_unavailable"
            assert r.headers["retry-after"] == "1"
    finally:
        server.restart()
    assert asyncio.run(_answers(server.url))
    assert httpx.get(f"{url}{UNKNOWN}", timeout=10).status_code == 404  # back


async def _answers(url: str) -> bool:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval("SELECT 1") == 1
    finally:
        await conn.close()


@pytest.mark.parametrize("what", ["database", "role"])
def test_serve_with_an_unusable_store_url_is_one_line_and_exit_2(server: PgServer, what) -> None:
    """A missing database or role: one line naming the URL (password hidden), before any
    worker starts (with ``--workers 2`` the workers' failures used to exit 0)."""
    from conftest import refused_serve

    base, _, _ = server.url.rpartition("/")
    url = f"{base}/tw_missing_db" if what == "database" else _role_url(server.url, "tw_nobody")
    said = refused_serve("--store-url", url)
    assert "cannot use the store at postgresql" in said and "does not exist" in said
