"""Run the gateway: detached generations with resumable op streams (SSE, WebSocket), a JSON
snapshot, cancel, and an OpenAI-compatible passthrough. Every flag can also be set with a
TOKENWIRE_* environment variable (e.g. TOKENWIRE_UPSTREAM, TOKENWIRE_PORT, TOKENWIRE_API_KEYS
comma-separated, TOKENWIRE_COALESCE_MS, TOKENWIRE_DATA_DIR, TOKENWIRE_RETENTION_S,
TOKENWIRE_REDIS_URL, TOKENWIRE_STORE_URL, TOKENWIRE_WORKERS). With --redis, several processes
(--workers N, or separate machines) share streams: create on one, read, resume or cancel on
any; with --store-url postgresql://… every machine also reads every finished message."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from tokenwire.cli import finite_float
from tokenwire.logredact import redact_text

if TYPE_CHECKING:
    from tokenwire.gateway import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--upstream",
        metavar="URL",
        help="base URL of the OpenAI-compatible model server, with /v1 (TOKENWIRE_UPSTREAM)",
    )
    parser.add_argument(
        "--upstream-api",
        choices=("chat", "responses", "anthropic"),
        help="the upstream's API: chat (/chat/completions, default), responses (/responses) or "
        "anthropic (/messages, x-api-key auth); request bodies are forwarded as they are "
        "(TOKENWIRE_UPSTREAM_API)",
    )
    parser.add_argument(
        "--upstream-api-key-env",
        metavar="NAME",
        help="environment variable holding the upstream API key (TOKENWIRE_UPSTREAM_API_KEY_ENV)",
    )
    parser.add_argument("--host", help="address to bind (default 127.0.0.1; TOKENWIRE_HOST)")
    parser.add_argument("--port", type=int, help="port to bind (default 8787; TOKENWIRE_PORT)")
    parser.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="client API key; repeat for several (TOKENWIRE_API_KEYS, comma-separated)",
    )
    parser.add_argument(
        "--coalesce-ms",
        type=finite_float,
        help="merge deltas of a block within this window (default 20; TOKENWIRE_COALESCE_MS)",
    )
    parser.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the SQLite store of final messages lives "
        "(default $XDG_DATA_HOME/tokenwire; TOKENWIRE_DATA_DIR)",
    )
    parser.add_argument(
        "--store-url",
        metavar="URL",
        help="where final messages are kept: sqlite:///DIR, or postgresql://… to share them "
        "between machines (default: SQLite in --data-dir; TOKENWIRE_STORE_URL)",
    )
    parser.add_argument(
        "--retention-s",
        type=finite_float,
        help="how long finished streams stay resumable (default 600; TOKENWIRE_RETENTION_S)",
    )
    parser.add_argument(
        "--store-retention-s",
        type=finite_float,
        metavar="S",
        help="delete stored final messages this long after they finished (default: keep; "
        "TOKENWIRE_STORE_RETENTION_S)",
    )
    parser.add_argument(
        "--upstream-ca-file",
        metavar="PEM",
        help="CA certificates to trust for an https upstream, besides the system's "
        "(TOKENWIRE_UPSTREAM_CA_FILE)",
    )
    parser.add_argument(
        "--upstream-head-timeout-s",
        type=finite_float,
        metavar="S",
        help="longest wait for a streamed request's response head (default 60; "
        "TOKENWIRE_UPSTREAM_HEAD_TIMEOUT_S)",
    )
    parser.add_argument(
        "--redis",
        metavar="URL",
        help="share streams between processes through Redis, e.g. redis://127.0.0.1:6379/0 "
        "(TOKENWIRE_REDIS_URL)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="run N gateway processes on the port; N > 1 needs --redis (default 1; "
        "TOKENWIRE_WORKERS)",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        metavar="ORIGIN",
        help="allow browser pages from ORIGIN (e.g. https://app.example) to call the gateway; "
        "repeatable; '*' allows any origin, without credentials (TOKENWIRE_CORS_ORIGINS, "
        "comma-separated)",
    )
    parser.add_argument(
        "--continuation",
        choices=("none", "vllm", "prefix"),
        help="with --redis, how a process that takes over a stream whose producer died asks "
        "the upstream to continue the partial answer: vllm (continue_final_message), prefix "
        "(DeepSeek/Mistral assistant prefix: true) or none (regenerate); default none "
        "(TOKENWIRE_CONTINUATION)",
    )
    parser.add_argument(
        "--log-level",
        default=os.environ.get("TOKENWIRE_LOG_LEVEL", "info"),
        choices=LOG_LEVELS,
        help="server log level (default info; TOKENWIRE_LOG_LEVEL)",
    )


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def default_data_dir() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "tokenwire")


def build_settings(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    """Flags over ``TOKENWIRE_*`` over defaults; user errors as ``CommandError``."""
    from tokenwire.cli import CommandError
    from tokenwire.errors import InvalidArgument
    from tokenwire.gateway import Settings
    from tokenwire.streams.views_http import view_options

    if not (args.upstream or os.environ.get("TOKENWIRE_UPSTREAM")):
        raise CommandError("no upstream: pass --upstream URL or set TOKENWIRE_UPSTREAM")
    if args.log_level not in LOG_LEVELS:  # (argparse checks the flag, not its env default)
        raise CommandError(
            f"TOKENWIRE_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {args.log_level!r}"
        )
    try:
        settings = Settings.from_env(
            upstream=args.upstream,
            upstream_api=getattr(args, "upstream_api", None),
            upstream_api_key_env=args.upstream_api_key_env,
            host=args.host,
            port=args.port,
            api_keys=tuple(args.api_key) if args.api_key else None,
            coalesce_ms=args.coalesce_ms,
            data_dir=args.data_dir,
            store_url=args.store_url,
            retention_s=args.retention_s,
            redis_url=args.redis,
            workers=args.workers,
            cors_origins=tuple(args.cors_origin) if args.cors_origin else None,
            upstream_ca_file=getattr(args, "upstream_ca_file", None),
            store_retention_s=getattr(args, "store_retention_s", None),
            upstream_head_timeout_s=getattr(args, "upstream_head_timeout_s", None),
            continuation=getattr(args, "continuation", None),
        )
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    for item in dataclasses.fields(settings):  # (nan passes every "< 0" check below)
        value = getattr(settings, item.name)
        if type(value) is float and math.isnan(value):  # (inf may mean "never": a timeout)
            env = f"TOKENWIRE_{item.name.upper()}"
            raise CommandError(f"{item.name} ({env}) must be a number, got nan")
    upstream = urlsplit(settings.upstream)
    if upstream.scheme not in ("http", "https") or not upstream.hostname:
        shown = redact_text(settings.upstream)
        raise CommandError(f"--upstream must be an http(s) URL with a host, got {shown!r}")
    if settings.upstream_api_key_env and not os.environ.get(settings.upstream_api_key_env):
        raise CommandError(f"environment variable {settings.upstream_api_key_env} is not set")
    if not 0 <= settings.port < 65536:
        raise CommandError(f"invalid port {settings.port}")
    if not 0 <= settings.coalesce_ms < 1e6 or not 0 <= settings.retention_s < math.inf:
        raise CommandError(
            "--coalesce-ms must be 0 to 999999 and --retention-s finite and not negative"
        )
    if settings.max_body_bytes <= 0 or settings.upstream_max_body_bytes <= 0:
        raise CommandError(
            "TOKENWIRE_MAX_BODY_BYTES and TOKENWIRE_UPSTREAM_MAX_BODY_BYTES must be positive"
        )
    if settings.workers < 1:
        raise CommandError(f"--workers must be at least 1, got {settings.workers}")
    if settings.workers > 1 and not settings.redis_url:
        raise CommandError(
            f"--workers {settings.workers} needs --redis URL: without Redis each process "
            "would only know its own streams"
        )
    if settings.redis_url and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise CommandError(
            "--redis must be a redis://, rediss:// or unix:// URL, got "
            f"{settings.redis_url.split(':', 1)[0]!r}"
        )
    if settings.redis_lease_s <= 0 or settings.redis_grace_s < 0:
        raise CommandError(
            "TOKENWIRE_REDIS_LEASE_S must be positive, TOKENWIRE_REDIS_GRACE_S not negative"
        )
    for origin in settings.cors_origins:
        if origin != "*" and not re.fullmatch(r"https?://[^/\s]+", origin):
            raise CommandError(
                f"--cors-origin must be '*' or scheme://host[:port] (no path), got {origin!r}"
            )
    if settings.store_url:
        check_store_url(settings.store_url)
    if settings.max_request_head_bytes < 1024 or settings.request_head_timeout_s <= 0:
        raise CommandError(
            "TOKENWIRE_MAX_REQUEST_HEAD_BYTES must be at least 1024 and "
            "TOKENWIRE_REQUEST_HEAD_TIMEOUT_S positive"
        )
    if settings.store_retention_s is not None and settings.store_retention_s < 0:
        raise CommandError("--store-retention-s must not be negative")
    if settings.upstream_ca_file and not Path(settings.upstream_ca_file).is_file():
        raise CommandError(f"--upstream-ca-file {settings.upstream_ca_file}: no such file")
    if (
        settings.upstream_head_timeout_s <= 0
        or settings.max_event_bytes <= 0
        or settings.max_stream_bytes <= 0
    ):
        raise CommandError(
            "--upstream-head-timeout-s, TOKENWIRE_MAX_EVENT_BYTES and "
            "TOKENWIRE_MAX_STREAM_BYTES must be positive"
        )
    try:
        view_options(settings)
    except InvalidArgument as exc:
        raise CommandError(str(exc)) from None
    if settings.data_dir is None:
        settings.data_dir = default_data_dir()
    try:  # (SQLite and the secret are kept there, made on first start: an unusable dir
        # is one line here, not a traceback per worker)
        if not (settings.secret and settings.store_url):
            Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
            settings.resolved_secret()
    except OSError as exc:
        raise CommandError(f"--data-dir {settings.data_dir}: {exc.strerror or exc}") from None
    return settings


def check_store_url(url: str) -> None:
    """A usable ``--store-url``, or ``CommandError`` (checked before any worker starts)."""
    import importlib.util

    from tokenwire.cli import CommandError
    from tokenwire.stores import sqlite_dir

    scheme = url.split(":", 1)[0].lower()
    if scheme == "sqlite":
        try:
            sqlite_dir(url)
        except ValueError as exc:
            raise CommandError(f"--store-url: {exc}") from None
    elif scheme in ("postgresql", "postgres"):
        if importlib.util.find_spec("asyncpg") is None:
            raise CommandError(
                "--store-url postgresql://… needs asyncpg: pip install 'tokenwire[postgres]'"
            )
    else:
        raise CommandError(f"--store-url must be a sqlite:/// or postgresql:// URL, got {scheme!r}")


def check_redis(url: str) -> None:
    """Fail fast, with one line, when Redis cannot be reached (before any worker starts)."""
    import redis
    from redis.exceptions import RedisClusterException, RedisError

    from tokenwire.cli import CommandError
    from tokenwire.hub.redis import redact
    from tokenwire.hub.redis_keys import is_cluster_url, parse_cluster_url

    if is_cluster_url(url):  # a URL that cannot be right is not a connection failure
        try:
            parse_cluster_url(url)
        except ValueError as exc:
            raise CommandError(f"invalid Redis Cluster URL {redact(url)}: {exc}") from None
    try:
        if is_cluster_url(url):  # redis://h1:p1,h2:p2/?cluster=true: any node will do
            nodes, options = parse_cluster_url(url)
            client = redis.RedisCluster(
                startup_nodes=[redis.cluster.ClusterNode(h, p) for h, p in nodes],
                socket_connect_timeout=2,
                socket_timeout=2,
                **options,
            )
        else:
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        try:
            client.ping()
            clustered = not is_cluster_url(url) and _cluster_enabled(client)
        finally:
            client.close()
    except (RedisError, RedisClusterException, OSError, ValueError) as exc:
        raise CommandError(f"cannot reach Redis at {redact(url)}: {exc}") from None
    if clustered:
        raise CommandError(
            f"Redis at {redact(url)} is a Redis Cluster node: add ?cluster=true to the URL "
            "(docs/operations.md, Redis Cluster)"
        )


def _cluster_enabled(client: object) -> bool:
    from redis.exceptions import RedisError

    try:
        info = client.info("cluster")  # type: ignore[attr-defined]
    except RedisError:  # (a server or proxy without INFO cluster: not a cluster node)
        return False
    return bool(info.get("cluster_enabled"))


def check_store(settings: Settings) -> None:
    """Open the ``--store-url`` store once (with its own retry budget while the server is
    unreachable), so a wrong URL, database, role or an unreachable server is one line and exit
    2 before any worker starts, not a traceback per worker."""
    import asyncio

    from tokenwire.cli import CommandError
    from tokenwire.gateway.service import make_store
    from tokenwire.stores import redact_store_url

    async def probe() -> None:
        store = make_store(settings)
        await store.open()  # type: ignore[attr-defined]
        await store.close()  # type: ignore[attr-defined]

    try:
        asyncio.run(probe())
    except Exception as exc:  # (asyncpg's errors, OSError, StoreUnavailable, ...)
        reason = str(exc).strip() or type(exc).__name__
        raise CommandError(
            f"cannot use the store at {redact_store_url(settings.store_url or '')}: {reason}"
        ) from None


SHUTDOWN_GRACE_S = 5.0
"""How long a stopping ``tokenwire serve`` waits for open connections (docs/operations.md)."""


def uvicorn_options(settings: Settings, log_level: str) -> dict[str, Any]:
    """The ``uvicorn`` options of a gateway process (``serve`` and ``demo``): its address,
    logging, and the bounds on what a client may send."""
    from tokenwire.gateway.limits import configure
    from tokenwire.gateway.ws_protocol import BoundedWebSocketProtocol
    from tokenwire.logredact import uvicorn_log_config

    return {
        "host": settings.host,
        "port": settings.port,
        "log_level": log_level,
        # The gateway never uses the client's address; without uvicorn's proxy-headers
        # wrapper each open stream holds one coroutine frame less.
        "proxy_headers": False,
        # Credentials never reach a log line (access log query strings, debug headers).
        "log_config": uvicorn_log_config(log_level),
        # uvicorn's httptools protocol plus a size and time bound on request heads (the
        # workers of ``serve --workers`` read them from the TOKENWIRE_* variables ``run``
        # exports).
        "http": configure(settings.max_request_head_bytes, settings.request_head_timeout_s),
        # uvicorn's WebSocket protocol, minus a pile of pongs for a client that sends pings
        # and never reads (gateway/ws_protocol.py).
        "ws": BoundedWebSocketProtocol,
        # On SIGTERM, open readers (SSE, WebSocket) would keep uvicorn waiting until their
        # streams end: after this long they are cut, and the lifespan's shutdown ends the
        # streams still running ("shut down"; readers resume elsewhere with Redis).
        "timeout_graceful_shutdown": SHUTDOWN_GRACE_S,
    }


def run(args: argparse.Namespace) -> int:
    import uvicorn

    from tokenwire.commands._ports import require_free_port
    from tokenwire.gateway import create_app

    settings = build_settings(args)
    hub = "in-process hub"
    if settings.redis_url:
        from tokenwire.hub.redis import redact

        check_redis(settings.redis_url)
        hub = f"Redis hub at {redact(settings.redis_url)}"
    if settings.store_url:
        check_store(settings)
    require_free_port(settings.host, settings.port)
    auth = f"{len(settings.api_keys)} API key(s)" if settings.api_keys else "no auth"
    data = f"data in {settings.data_dir}"
    if settings.store_url:
        from tokenwire.stores import redact_store_url

        data = f"messages in {redact_store_url(settings.store_url)}"
    workers = f", {settings.workers} workers" if settings.workers > 1 else ""
    print(
        f"tokenwire serve: http://{settings.host}:{settings.port} -> "
        f"{redact_text(settings.upstream)} "
        f"[{settings.upstream_api}] "
        f"({auth}, {hub}{workers}, {data})",
        flush=True,
    )
    options = uvicorn_options(settings, args.log_level)
    if settings.workers == 1:
        uvicorn.run(create_app(settings), lifespan="on", **options)
    else:
        # uvicorn's supervisor binds the socket, spawns the workers and replaces dead ones;
        # each worker builds its own app (and Redis hub) from the TOKENWIRE_* vars.
        for name, value in settings.to_env().items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        uvicorn.run(
            "tokenwire.gateway.app:app_from_env",
            factory=True,
            workers=settings.workers,
            lifespan="on",
            **options,
        )
    return 0
