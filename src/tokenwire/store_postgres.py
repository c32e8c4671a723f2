"""PostgreSQL store of finished streams' final messages, shared by every gateway process on
every machine (the SQLite ``Store`` is one file per machine).

Same interface as ``tokenwire.gateway.store.Store``: ``open``, ``close``, ``get``, ``save`` on
``StoredStream`` rows, plus ``delete_finished_before(ts)`` for retention. Through asyncpg (the
``postgres`` extra), with a connection pool.

- Schema: one table (default ``tokenwire_streams``) with ``id`` as primary key, created on
  ``open`` with ``CREATE ... IF NOT EXISTS`` under a transaction-scoped advisory lock, so any
  number of processes may start at once against an empty database.
- ``message`` is ``bytea``: the canonical message JSON byte for byte (``jsonb`` would reorder
  keys); ``created_at`` / ``finished_at`` are epoch seconds as ``double precision``, exactly the
  floats of ``StoredStream``; ``metadata`` is ``jsonb`` (``NULL`` for ``None``).
- One final message per stream: ``save`` is an upsert that only ever moves a row forward. A save
  with a ``seq`` not above the stored one changes nothing (so a retried save whose first attempt
  did commit is harmless), a higher ``seq`` replaces it, and a row is never taken over by another
  owner (``StoreConflict``). The store returns the owner; callers check it, as with SQLite.
  ``replace`` stores a row whatever the stored ``seq`` (same owner): the hub's final message,
  which readers saw, replacing a process's own (a producer that lost the hub or its lease).
- Connection loss (a Postgres restart, a failover, a killed backend): every call retries with
  exponential backoff and jitter, from 50 ms up to 2 s between attempts, for at most
  ``save_retry_s`` (saves, default 60 s: a restart while streams finish loses nothing) or
  ``read_retry_s`` (reads, default 3 s: a reader would rather get a 503 than hang); then
  ``StoreUnavailable``. Each attempt is one statement in its own implicit transaction, so a retry
  never sees half of an earlier attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg
import msgspec

from tokenwire.gateway.store import StoredStream
from tokenwire.stores import (
    RetainsRows,
    Retention,
    StoreConflict,
    StoreUnavailable,
    redact_store_url,
)

__all__ = ["PostgresStore", "StoreConflict", "StoreUnavailable"]

log = logging.getLogger("tokenwire.store.postgres")
T = TypeVar("T")

_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,50}")
# Errors after which the same statement may succeed on a fresh connection: the server went
# away, restarts, refuses connections for now, or killed our backend (57P01/57P02/57P03).
_TRANSIENT: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TooManyConnectionsError,
)
_FIRST_DELAY_S = 0.05
_MAX_DELAY_S = 2.0


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, _TRANSIENT):
        return True
    if isinstance(exc, asyncpg.InternalClientError):
        return True  # a connection the server killed, caught mid-state (see _with_connection)
    # asyncpg reports a connection that died under a call as an InterfaceError.
    return isinstance(exc, asyncpg.InterfaceError) and "connection is closed" in str(exc)


class PostgresStore(RetainsRows):
    """Final messages by stream id in one PostgreSQL table. See the module docstring."""

    def __init__(
        self,
        url: str,
        *,
        table: str = "tokenwire_streams",
        min_connections: int = 1,
        max_connections: int = 10,
        connect_timeout_s: float = 5.0,
        command_timeout_s: float = 10.0,
        save_retry_s: float = 60.0,
        read_retry_s: float = 3.0,
        open_retry_s: float = 30.0,
        retention_s: float | None = None,
        cleanup_interval_s: float = 3600.0,
        **connect_options: Any,
    ) -> None:
        if not _TABLE.fullmatch(table):
            raise ValueError(f"table must match {_TABLE.pattern}, got {table!r}")
        if not 0 <= min_connections <= max_connections or max_connections < 1:
            raise ValueError("need 0 <= min_connections <= max_connections, max_connections >= 1")
        self.url = url
        self.table = table
        self.min_connections = min_connections
        self.max_connections = max_connections
        self.connect_timeout_s = connect_timeout_s
        self.command_timeout_s = command_timeout_s
        self.save_retry_s = save_retry_s
        self.read_retry_s = read_retry_s
        self.open_retry_s = open_retry_s
        # Every process sharing the table runs it: the batched deletes are idempotent.
        self._retention = Retention(
            self.delete_finished_before,
            retention_s,
            cleanup_interval_s,
            (StoreUnavailable, asyncpg.PostgresError, OSError),
        )
        # e.g. statement_cache_size=0 behind PgBouncer in transaction mode, or ssl=...
        self.connect_options = connect_options
        self._pool: asyncpg.Pool | None = None
        t = f'"{table}"'
        self._sql_schema = f"""
CREATE TABLE IF NOT EXISTS {t} (
    id text PRIMARY KEY,
    owner text,
    status text NOT NULL,
    seq bigint NOT NULL,
    message bytea NOT NULL,
    created_at double precision NOT NULL,
    finished_at double precision NOT NULL,
    metadata jsonb
);
CREATE INDEX IF NOT EXISTS "{table}_finished_at" ON {t} (finished_at);
"""
        self._sql_save = f"""
INSERT INTO {t} AS s (id, owner, status, seq, message, created_at, finished_at, metadata)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)
ON CONFLICT (id) DO UPDATE SET
    status = EXCLUDED.status, seq = EXCLUDED.seq, message = EXCLUDED.message,
    created_at = EXCLUDED.created_at, finished_at = EXCLUDED.finished_at,
    metadata = EXCLUDED.metadata
WHERE s.seq < EXCLUDED.seq AND s.owner IS NOT DISTINCT FROM EXCLUDED.owner
RETURNING 1"""
        self._sql_replace = self._sql_save.replace("s.seq < EXCLUDED.seq AND ", "")
        self._sql_owner = f"SELECT owner FROM {t} WHERE id = $1"
        self._sql_get = (
            "SELECT id, owner, status, seq, message, created_at, finished_at, metadata"
            f" FROM {t} WHERE id = $1"
        )
        # Batched, so retention never holds one huge delete's locks and WAL at once.
        self._sql_delete = (
            f"DELETE FROM {t} WHERE id IN (SELECT id FROM {t} WHERE finished_at < $1 LIMIT $2)"
        )

    # -- lifecycle -----------------------------------------------------------------------
    async def open(self) -> None:
        """Create the pool and the schema, retrying for ``open_retry_s`` while the server is
        unreachable (e.g. the gateway starts before Postgres)."""
        if self._pool is not None:
            return
        self._pool = await self._retry(
            self._create_pool, self.open_retry_s, "connect", pooled=False
        )
        try:
            await self._retry(self._create_schema, self.open_retry_s, "create the schema")
        except BaseException:
            await self.close()
            raise
        self._retention.start()

    async def _create_pool(self) -> asyncpg.Pool:
        return await asyncpg.create_pool(
            self.url,
            min_size=self.min_connections,
            max_size=self.max_connections,
            timeout=self.connect_timeout_s,
            command_timeout=self.command_timeout_s,
            **self.connect_options,
        )

    async def _create_schema(self, conn: asyncpg.Connection) -> None:
        # A table that exists is used as it is, without DDL: a role that may only read and
        # write it (the table made by its owner) can start; CREATE is needed only to make it.
        exists = await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_class WHERE oid = to_regclass($1) AND relkind = 'r')",
            f'"{self.table}"',
        )
        if exists:  # (create-only: a table made elsewhere is not altered, nor its index added)
            return
        async with conn.transaction():
            # Concurrent CREATE TABLE IF NOT EXISTS can still fail on the catalog's unique
            # indexes: starters queue on one advisory lock instead (released at commit).
            await conn.execute(
                "SELECT pg_advisory_xact_lock(hashtext($1))", f"tokenwire-schema:{self.table}"
            )
            await conn.execute(self._sql_schema)

    async def close(self) -> None:
        await self._retention.stop()
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), self.command_timeout_s)
        except (TimeoutError, *_TRANSIENT):
            pool.terminate()

    # -- rows ----------------------------------------------------------------------------
    async def save(self, row: StoredStream) -> None:
        """Store the final message (see the module docstring for the upsert rule)."""
        await self._upsert(row, self._sql_save)

    async def replace(self, row: StoredStream) -> None:
        """Store ``row`` whatever the stored ``seq`` (the hub's version of a final message)."""
        await self._upsert(row, self._sql_replace)

    async def _upsert(self, row: StoredStream, sql: str) -> None:
        metadata = row.metadata
        args = (
            row.id,
            row.owner,
            row.status,
            row.seq,
            row.message,
            row.created_at,
            row.finished_at,
            None if metadata is None else msgspec.json.encode(metadata).decode(),
        )

        async def attempt(conn: asyncpg.Connection) -> None:
            for _ in range(3):
                if await conn.fetchval(sql, *args) is not None:
                    return
                stored = await conn.fetchrow(self._sql_owner, row.id)
                if stored is not None:
                    break
                # (the row was deleted between the two statements, by retention: save again)
            else:
                raise StoreUnavailable(f"stream {row.id!r}: its row keeps vanishing")
            if stored["owner"] != row.owner:
                raise StoreConflict(f"stream {row.id!r} is already stored for another owner")
            # Same owner, stored seq >= ours: a retry of a save that went through, or older.

        await self._retry(attempt, self.save_retry_s, f"save stream {row.id}")

    async def get(self, stream_id: str) -> StoredStream | None:
        async def attempt(conn: asyncpg.Connection) -> asyncpg.Record | None:
            return await conn.fetchrow(self._sql_get, stream_id)

        record = await self._retry(attempt, self.read_retry_s, f"read stream {stream_id}")
        if record is None:
            return None
        raw = record["metadata"]
        return StoredStream(
            id=record["id"],
            owner=record["owner"],
            status=record["status"],
            seq=record["seq"],
            message=bytes(record["message"]),
            created_at=record["created_at"],
            finished_at=record["finished_at"],
            metadata=None if raw is None else msgspec.json.decode(raw),
        )

    async def delete_finished_before(self, ts: float, *, batch: int = 10_000) -> int:
        """Delete the rows finished before ``ts`` (epoch seconds); returns how many."""
        total = 0
        while True:

            async def attempt(conn: asyncpg.Connection) -> str:
                return await conn.execute(self._sql_delete, ts, batch)

            status = await self._retry(attempt, self.save_retry_s, "delete old streams")
            deleted = int(status.rsplit(" ", 1)[1])  # "DELETE <n>"
            total += deleted
            if deleted < batch:
                return total

    # -- plumbing ------------------------------------------------------------------------
    async def _with_connection(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        """``fn`` on a pooled connection. A connection that failed under ``fn`` is closed
        rather than handed back: after the server killed it, asyncpg may still hold it in a
        half-failed state ("cannot switch to state …; another operation is in progress",
        asyncpg issues 784/1069) and would fail the next caller too."""
        pool = self._pool
        if pool is None:
            raise StoreUnavailable("the Postgres store is not open")
        conn = await pool.acquire(timeout=self.connect_timeout_s + self.command_timeout_s)
        try:
            return await fn(conn)
        except BaseException as exc:
            if _transient(exc) or not isinstance(exc, Exception):
                # (also on cancellation: its protocol state is unknown). A connection the
                # server closed may already be back in the pool: then there is nothing to do.
                with contextlib.suppress(asyncpg.InterfaceError):
                    conn.terminate()
            raise
        finally:
            try:
                await pool.release(conn)
            except Exception as exc:
                # fn's statement completed (each runs in its own transaction); the pool has
                # already dropped the connection that failed to reset.
                log.debug("Postgres: dropped a connection that failed to reset: %s", exc)

    async def _retry(
        self, fn: Callable[..., Awaitable[T]], budget_s: float, what: str, *, pooled: bool = True
    ) -> T:
        """Run ``fn`` (on a pooled connection unless ``pooled`` is false) until it succeeds,
        retrying transient connection errors with backoff for at most ``budget_s``; then
        ``StoreUnavailable``."""
        deadline = time.monotonic() + budget_s
        delay = _FIRST_DELAY_S
        attempts = 0
        while True:
            attempts += 1
            try:
                return await (self._with_connection(fn) if pooled else fn())
            except Exception as exc:
                if not _transient(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StoreUnavailable(
                        f"Postgres at {redact_store_url(self.url)}: could not {what}"
                        f" after {attempts} attempts: {exc}"
                    ) from exc
                log.warning("Postgres: could not %s (%s); retrying", what, exc)
                await asyncio.sleep(min(left, random.uniform(delay / 2, delay)))
                delay = min(delay * 2, _MAX_DELAY_S)
