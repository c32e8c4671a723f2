"""Client API keys: one ``authorize`` for the stream routes. Streams are tagged with a keyed
hash of the key that created them (HMAC with the server's secret)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

from starlette.datastructures import Headers, QueryParams
from starlette.requests import HTTPConnection

from tokenwire.gateway.errors import ApiError


def owner_tag(key: str) -> str:
    """The unkeyed tag earlier versions stored for a key (``sha256(key)[:32]``). New streams
    are tagged with ``Streams.owner_tag`` (an HMAC with the server's secret); this one is only
    recognized, so streams stored before keep their owner (``Auth.owns``)."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Auth:
    """``Authorization: Bearer KEY`` (or ``?api_key=KEY``, for EventSource and WebSocket).

    ``tag`` makes the owner tag a key's streams are stored with; ``legacy``, when given, the
    tag an earlier version stored, still recognized as the same owner."""

    def __init__(
        self,
        keys: Iterable[str],
        tag: Callable[[str], str] = owner_tag,
        legacy: Callable[[str], str] | None = None,
    ) -> None:
        # Look keys up by hash so comparison time says nothing about the key itself.
        self._tag = tag
        self._tags = frozenset(tag(k) for k in keys if k)
        self._aliases = {tag(k): legacy(k) for k in keys if k and legacy is not None}

    def owns(self, stream_owner: str | None, owner: str | None) -> bool:
        """Whether a stream tagged ``stream_owner`` is ``owner``'s (``owner`` as ``owner()``
        returns it): the same tag, or the legacy tag of the same key."""
        if stream_owner == owner:
            return True
        return owner is not None and stream_owner == self._aliases.get(owner)

    @property
    def enabled(self) -> bool:
        return bool(self._tags)

    def owner(
        self, headers: Headers, query: QueryParams, *, how: str = "Authorization: Bearer KEY"
    ) -> str | None:
        """The caller's owner tag (``None`` with auth off). Raises a 401 ``ApiError``; ``how``
        says in it how the route takes the key."""
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
                f"missing API key (send {how})",
                "authentication_error",
                "missing_api_key",
            )
        tag = self._tag(key)
        if tag not in self._tags:
            raise ApiError(401, "invalid API key", "authentication_error", "invalid_api_key")
        return tag

    def authorize(self, conn: HTTPConnection) -> str | None:
        """``authorize`` for ``StreamRoutes``: the caller's owner tag, or a 401 ``ApiError``."""
        return self.owner(conn.headers, conn.query_params)
