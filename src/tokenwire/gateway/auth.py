"""Client API keys. Streams are tagged with a hash of the key that created them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from starlette.datastructures import Headers, QueryParams

from tokenwire.gateway.errors import ApiError


def owner_tag(key: str) -> str:
    """A stable, non-reversible tag for a key (stored with streams instead of the key)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Auth:
    """``Authorization: Bearer KEY`` (or ``?api_key=KEY``, for EventSource and WebSocket)."""

    def __init__(self, keys: Iterable[str]) -> None:
        # Look keys up by hash so comparison time says nothing about the key itself.
        self._tags = frozenset(owner_tag(k) for k in keys if k)

    @property
    def enabled(self) -> bool:
        return bool(self._tags)

    def owner(self, headers: Headers, query: QueryParams) -> str | None:
        """The caller's owner tag (``None`` with auth off). Raises a 401 ``ApiError``."""
        if not self._tags:
            return None
        key: str | None = None
        header = headers.get("authorization")
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() == "bearer":
                key = value.strip()
        if key is None:
            key = query.get("api_key")
        if not key:
            raise ApiError(
                401,
                "missing API key (send Authorization: Bearer KEY)",
                "authentication_error",
                "missing_api_key",
            )
        tag = owner_tag(key)
        if tag not in self._tags:
            raise ApiError(401, "invalid API key", "authentication_error", "invalid_api_key")
        return tag
