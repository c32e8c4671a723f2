"""The gateway service: its ``Streams``, upstream client, store, metrics and auth, shared by
the routes (and started / stopped by the app's lifespan)."""

from __future__ import annotations

import gc
import logging
import re
from typing import Any

from tokenwire.gateway.auth import Auth, owner_tag
from tokenwire.gateway.errors import ApiError, not_found
from tokenwire.gateway.metrics import Metrics
from tokenwire.gateway.settings import Settings
from tokenwire.gateway.store import Store, StoredStream
from tokenwire.gateway.upstream import UpstreamClient
from tokenwire.gateway.upstream_api import stream_format, upstream_endpoint
from tokenwire.hub import Hub, MemoryHub, StreamInfo
from tokenwire.streams import Streams, StreamStore

log = logging.getLogger("tokenwire.gateway")
STREAM_ID = re.compile(r"st_[A-Za-z0-9_-]{16,64}")
"""The ids the gateway hands out (``st_`` + 144 random bits)."""


class MetricsObserver:
    """``Streams``' hooks -> the gateway's Prometheus metrics."""

    __slots__ = ("metrics",)

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def stream_started(self) -> None:
        self.metrics.active_streams.inc()

    def first_token(self, seconds: float) -> None:
        self.metrics.ttft.observe(seconds)

    def stream_ended(self, status: str) -> None:
        self.metrics.streams.labels(status).inc()

    def stream_closed(self) -> None:
        self.metrics.active_streams.dec()

    def upstream_error(self, kind: str) -> None:
        self.metrics.upstream_errors.labels(kind).inc()


class Gateway:
    """Everything a request handler needs, shared by the app's routes."""

    def __init__(self, settings: Settings, hub: Hub) -> None:
        self.settings = settings
        self.hub = hub
        self.metrics = Metrics()
        secret = settings.resolved_secret()
        self.streams = Streams(
            hub,
            make_store(settings),
            coalesce_ms=settings.coalesce_ms,
            secret=secret,
            observer=MetricsObserver(self.metrics),
            max_event_bytes=settings.max_event_bytes,
            max_stream_bytes=settings.max_stream_bytes,
        )
        # Owner tags are keyed with the server's secret (configured, or kept in the data
        # directory), and the unkeyed tag earlier versions stored still names the same owner.
        # Without any secret (no data directory) a random one would change per process and
        # per restart, so the tag stays the unkeyed one there.
        self.auth = (
            Auth(settings.api_keys, self.streams.owner_tag, legacy=owner_tag)
            if secret
            else Auth(settings.api_keys)
        )
        from tokenwire.gateway.producer import RESUME, Continue

        # Streams of a process that died are continued by whichever process takes them over.
        self.streams.register_continuation(RESUME, Continue(self))
        self.upstream: UpstreamClient | None = None  # set in startup
        self.stream_request: tuple[str, dict[str, str], str] = ("", {}, "chat")  # (startup)
        # ``create_app(producers=...)``: model name -> the host's produce factory
        self.producers: dict[str, Any] = {}

    def request_for(self, api: str) -> tuple[str, dict[str, str], str]:
        """``(path, headers, format)`` of an upstream request whose body is in ``api``'s
        format: the configured API's (``stream_request``), or another API's endpoint on the
        same upstream (a chat-completions body sent to a gateway configured for another API)."""
        if api == self.settings.upstream_api:
            return self.stream_request
        return (*self.endpoint(api), stream_format(api))

    def endpoint(self, api: str) -> tuple[str, dict[str, str]]:
        """``(path, headers)`` of a request in ``api``'s format to the upstream: the headers
        carry the upstream key the way that API wants it, except the ``Authorization`` the
        upstream client already puts on every request (it does unless the configured API is
        Anthropic's, whose key goes in ``x-api-key``)."""
        path, headers = upstream_endpoint(api, self.settings.resolved_upstream_key())
        if self.settings.upstream_api != "anthropic":
            headers.pop("Authorization", None)
        return path, headers

    @property
    def store(self) -> StreamStore:
        """The store of final messages (the one ``streams`` uses; may be swapped before
        startup, e.g. for a ``PostgresStore``)."""
        return self.streams.store

    @store.setter
    def store(self, store: StreamStore) -> None:
        self.streams.store = store

    @property
    def tasks(self) -> set:
        """The running generations (tasks) of this process."""
        return self.streams._tasks

    async def startup(self) -> None:
        s = self.settings
        if s.api_keys and not s.secret and self.hub.kind != "memory":
            # A shared hub means several processes; each keys owner tags (and signs read
            # tokens) with its own data directory's secret unless they are given one.
            log.warning(
                "API keys with a shared hub but no TOKENWIRE_SECRET: give every process of "
                "the deployment the same secret, or streams are only visible to the key on "
                "the process (data directory) that created them"
            )
        key = s.resolved_upstream_key()
        anthropic = s.upstream_api == "anthropic"  # (its key goes in x-api-key, per request)
        self.upstream = UpstreamClient(
            s.upstream,
            api_key=None if anthropic else key,
            connect_timeout_s=s.upstream_connect_timeout_s,
            read_timeout_s=s.upstream_read_timeout_s,
            retries=s.upstream_retries,
            backoff_s=s.upstream_backoff_s,
            head_timeout_s=s.upstream_head_timeout_s,
            idle_timeout_s=s.upstream_idle_timeout_s,
            ca_file=s.upstream_ca_file,
            max_body_bytes=s.upstream_max_body_bytes,
        )
        # ``POST /v1/streams`` goes to the configured API's endpoint, decoded by its format.
        self.stream_request = (*self.endpoint(s.upstream_api), stream_format(s.upstream_api))
        await self.streams.open()
        # Everything alive now (modules, classes, the app) lives as long as the process:
        # moving it out of the collector's generations keeps full collections from walking
        # it. Measured: a 14.5 ms gen-2 pause under 200 paced streams, which alone is a p99
        # inter-token gap spike.
        gc.collect()  # (what is garbage now must not be frozen with the rest)
        gc.freeze()

    async def shutdown(self) -> None:
        await self.streams.close()
        if self.upstream is not None:
            await self.upstream.aclose()

    def require_started(self) -> UpstreamClient:
        """The upstream client, or a 503 saying how to start the gateway (its lifespan did
        not run: e.g. mounted in another app)."""
        if self.upstream is None or not self.streams.started:
            raise ApiError(
                503,
                "the tokenwire gateway is not started: run it with its lifespan (when mounting "
                "it, enter `app.router.lifespan_context(app)` in the host's lifespan), or embed "
                "tokenwire.Streams instead",
                "service_unavailable",
                "not_started",
            )
        return self.upstream

    async def lookup(
        self, stream_id: str, owner: str | None
    ) -> tuple[StreamInfo | None, StoredStream | None]:
        """The stream's hub info, or else its stored final row. 404 if neither or not yours."""
        if not STREAM_ID.fullmatch(stream_id):
            raise not_found(stream_id)
        info = await self.hub.info(stream_id)
        if info is not None:
            self.check_owner(stream_id, info.owner, owner)
            return info, None
        row = await self.store.get(stream_id)
        if row is None:
            raise not_found(stream_id)
        self.check_owner(stream_id, row.owner, owner)
        return None, row

    def check_owner(self, stream_id: str, stream_owner: str | None, owner: str | None) -> None:
        if self.auth.enabled and not self.auth.owns(stream_owner, owner):
            raise not_found(stream_id)  # (not 403: another key's streams do not exist for you)


def make_store(settings: Settings) -> StreamStore:
    """``store_url`` (``sqlite:…`` / ``postgres://…``) if set, else SQLite in ``data_dir``;
    rows older than ``store_retention_s`` are deleted (never, by default), by either store."""
    if settings.store_url:
        from tokenwire.stores import store_from_url  # (asyncpg only when asked for)

        return store_from_url(
            settings.store_url,
            retention_s=settings.store_retention_s,
            cleanup_interval_s=settings.store_cleanup_interval_s,
        )
    return Store(
        settings.data_dir,
        retention_s=settings.store_retention_s,
        cleanup_interval_s=settings.store_cleanup_interval_s,
    )


def default_hub(settings: Settings) -> Hub:
    """``RedisHub`` when ``settings.redis_url`` is set, else an in-process ``MemoryHub``."""
    if not settings.redis_url:
        return MemoryHub(retention_s=settings.retention_s, max_log_ops=settings.max_log_ops)
    from tokenwire.hub.redis import RedisHub  # only deployments with Redis import the client

    return RedisHub(
        settings.redis_url,
        retention_s=settings.retention_s,
        max_log_ops=settings.max_log_ops or 10_000,
        key_prefix=settings.redis_prefix,
        lease_ttl_s=settings.redis_lease_s,
        # The watchdog ticks often enough that detection stays near the lease TTL.
        watchdog_interval_s=min(1.0, settings.redis_lease_s / 4),
        unavailable_grace_s=settings.redis_grace_s,
    )


__all__ = ["STREAM_ID", "Gateway", "MetricsObserver", "default_hub", "make_store"]
