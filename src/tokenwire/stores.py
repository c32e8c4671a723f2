"""Choosing the store of final messages by URL, and the errors every store may raise.

``sqlite:///DIR`` (relative) or ``sqlite:////abs/DIR`` (absolute, as SQLAlchemy spells it):
the SQLite ``Store`` keeping ``DIR/tokenwire.sqlite3``; ``sqlite://`` or ``sqlite:///:memory:``:
an in-memory SQLite store. ``postgresql://…`` / ``postgres://…``: ``PostgresStore`` (needs the
``postgres`` extra, i.e. asyncpg), shared by every process on every machine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    from tokenwire.gateway.store import Store
    from tokenwire.store_postgres import PostgresStore

__all__ = ["StoreConflict", "StoreUnavailable", "redact_store_url", "store_from_url"]

SCHEMES = ("sqlite", "postgresql", "postgres")


class StoreUnavailable(RuntimeError):
    """The store's database cannot be reached, even after the store's bounded retries."""


class StoreConflict(RuntimeError):
    """A final message was saved for a stream id the store already holds for another owner."""


def store_from_url(url: str, **options: Any) -> Store | PostgresStore:
    """An unopened store for ``url`` (call ``await store.open()``). ``options`` go to
    ``PostgresStore`` (pool sizes, retry bounds, table name); SQLite takes none."""
    scheme = url.split(":", 1)[0].lower() if ":" in url else ""
    if scheme == "sqlite":
        from tokenwire.gateway.store import Store

        if options:
            raise ValueError(f"the SQLite store takes no options, got {sorted(options)}")
        return Store(sqlite_dir(url))
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
