"""Choosing the store of final messages by URL, and the errors every store may raise.

``sqlite:///DIR`` (relative) or ``sqlite:////abs/DIR`` (absolute, as SQLAlchemy spells it):
the SQLite ``Store`` keeping ``DIR/tokenwire.sqlite3``; ``sqlite://`` or ``sqlite:///:memory:``:
an in-memory SQLite store. ``postgresql://…`` / ``postgres://…``: ``PostgresStore`` (needs the
``postgres`` extra, i.e. asyncpg), shared by every process on every machine.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from tokenwire.errors import StoreConflict, StoreUnavailable

if TYPE_CHECKING:
    from tokenwire.gateway.store import Store
    from tokenwire.store_postgres import PostgresStore

__all__ = [
    "StoreConflict",
    "StoreUnavailable",
    "redact_store_url",
    "store_from_url",
]

log = logging.getLogger("tokenwire.store")

SCHEMES = ("sqlite", "postgresql", "postgres")


class Retention:
    """Deletes a store's rows that finished more than ``retention_s`` ago: once when the store
    opens, then every ``interval_s``, in a task the store owns (``start`` / ``stop``). Both the
    SQLite and the Postgres store use it; ``retention_s=None`` keeps every row."""

    def __init__(
        self,
        delete_finished_before: Callable[[float], Awaitable[int]],
        retention_s: float | None,
        interval_s: float,
        errors: tuple[type[BaseException], ...],
    ) -> None:
        self.retention_s = retention_s
        self.interval_s = interval_s
        self._delete = delete_finished_before
        self._errors = errors  # what a pass may fail with and be tried again next time
        self._task: asyncio.Task[None] | None = None

    @property
    def retention_s(self) -> float | None:
        return self._retention_s

    @retention_s.setter
    def retention_s(self, value: float | None) -> None:
        if value is not None and not value >= 0:
            raise ValueError(f"retention_s must be a non-negative number, got {value!r}")
        self._retention_s = value

    @property
    def interval_s(self) -> float:
        return self._interval_s

    @interval_s.setter
    def interval_s(self, value: float) -> None:
        if not value > 0:
            raise ValueError(f"cleanup_interval_s must be positive, got {value!r}")
        self._interval_s = value

    async def once(self, now: float | None = None) -> int:
        """One pass: how many rows went (none without ``retention_s``)."""
        if self.retention_s is None:
            return 0
        return await self._delete((time.time() if now is None else now) - self.retention_s)

    def start(self) -> None:
        if self.retention_s is not None and self._task is None:
            self._task = asyncio.create_task(self._forever(), name="tokenwire-store-gc")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # (the caller is being cancelled itself: not ours to swallow)

    async def _forever(self) -> None:
        while True:
            try:
                deleted = await self.once()
                if deleted:
                    log.info("store: deleted %d message(s) past retention", deleted)
            except self._errors as exc:  # (a busy disk, a database away: try again later)
                log.warning("store: cleanup failed: %s", exc)
            except Exception:  # (anything else: logged, and the next pass still runs)
                log.exception("store: cleanup failed")
            await asyncio.sleep(self.interval_s)


class RetainsRows:
    """A store's retention settings and ``cleanup()``, kept in its ``Retention`` (set them
    before ``open()``, which starts the task)."""

    _retention: Retention

    @property
    def retention_s(self) -> float | None:
        """Rows finished longer ago than this are deleted (``None``: kept forever)."""
        return self._retention.retention_s

    @retention_s.setter
    def retention_s(self, value: float | None) -> None:
        self._retention.retention_s = value

    @property
    def cleanup_interval_s(self) -> float:
        """How often the store deletes expired rows."""
        return self._retention.interval_s

    @cleanup_interval_s.setter
    def cleanup_interval_s(self, value: float) -> None:
        self._retention.interval_s = value

    async def cleanup(self, now: float | None = None) -> int:
        """Delete rows finished more than ``retention_s`` before ``now``; how many went.
        Without ``retention_s`` nothing is deleted."""
        return await self._retention.once(now)


def store_from_url(url: str, **options: Any) -> Store | PostgresStore:
    """An unopened store for ``url`` (call ``await store.open()``). Both stores take
    ``retention_s`` and ``cleanup_interval_s``; the other ``options`` go to ``PostgresStore``
    (pool sizes, retry bounds, table name)."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from tokenwire.gateway.store import Store

        other = sorted(set(options) - {"retention_s", "cleanup_interval_s"})
        if other:
            raise ValueError(
                f"the SQLite store takes only retention_s and cleanup_interval_s, got {other}"
            )
        return Store(sqlite_dir(url), **options)
    if scheme in ("postgresql", "postgres"):
        from tokenwire.store_postgres import PostgresStore

        return PostgresStore(url, **options)
    raise ValueError(
        f"store URL must start with sqlite:// or postgresql://, got {scheme or url[:12]!r}"
    )


def sqlite_dir(url: str) -> str | None:
    """The data directory of a ``sqlite:`` URL; ``None`` for an in-memory store."""
    parts = urlsplit(url)
    if parts.netloc:
        raise ValueError(f"a sqlite URL has no host: use sqlite:///DIR, got {url!r}")
    path = parts.path[1:] if parts.path.startswith("/") else parts.path
    if path in ("", ":memory:"):
        return None
    return path


def redact_store_url(url: str) -> str:
    """``url`` without its password, for logs and the startup line."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
