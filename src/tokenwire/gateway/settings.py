"""Gateway settings: one typed place, filled from defaults, ``TOKENWIRE_*`` variables and flags."""

from __future__ import annotations

import dataclasses
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tokenwire.errors import InvalidArgument


@dataclass(slots=True)
class Settings:
    """Everything the gateway can be told. Field ``name`` is read from ``TOKENWIRE_<NAME>``."""

    upstream: str = "http://127.0.0.1:8000/v1"
    """Base URL of the OpenAI-compatible model server, including ``/v1``."""
    upstream_api: str = "chat"
    """The upstream's API: ``chat`` (``/chat/completions``), ``responses`` (``/responses``) or
    ``anthropic`` (``/messages``, ``x-api-key`` auth). See gateway/upstream_api.py."""
    upstream_api_key: str | None = field(default=None, repr=False)
    """Sent upstream as ``Authorization: Bearer``; never logged or returned."""
    upstream_api_key_env: str | None = None
    """Name of the environment variable holding the upstream key (read at startup)."""
    host: str = "127.0.0.1"
    port: int = 8787
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    """Client keys. Empty: no auth. Otherwise every route but /healthz and the page needs one."""
    coalesce_ms: float = 20.0
    """Default delta coalescing window; a request may override it (``tokenwire.coalesce_ms``)."""
    data_dir: str | None = None
    """Where the SQLite store lives. ``None``: an in-memory store (lost on exit)."""
    store_url: str | None = field(default=None, repr=False)
    """Where final messages are kept: ``sqlite:///DIR`` or ``postgresql://…`` (shared by every
    machine). ``None``: the SQLite store in ``data_dir``. (Not in repr: it may hold a password.)"""
    retention_s: float = 600.0
    """How long a finished stream's op log stays resumable."""
    store_retention_s: float | None = None
    """How long finished messages stay in the SQLite store. ``None``: kept forever."""
    store_cleanup_interval_s: float = 3600.0
    """How often rows past ``store_retention_s`` are deleted."""
    max_log_ops: int | None = None
    """Keep at most about this many ops of a live stream (older readers get a snapshot)."""
    max_body_bytes: int = 1 << 20
    """Largest accepted request body (413 above)."""
    max_request_head_bytes: int = 64 * 1024
    """Largest request head (request line + headers) ``tokenwire serve`` reads (431 above)."""
    request_head_timeout_s: float = 10.0
    """Time a client has to send a whole request head (408 and closed after)."""
    keepalive_s: float = 15.0
    """Idle time before an SSE ``: ping`` comment / WebSocket ping."""
    ws_hello_timeout_s: float = 1.0
    """How long a WebSocket waits for an optional ``{"after": N}`` first message."""
    cancel_wait_s: float = 1.0
    """How long ``POST .../cancel`` waits for the stream to end before answering 202."""
    catchup_threshold: int = 64
    """Frames a view reader (``?format=``) may be behind before it gets a compacted catch-up."""
    max_frame_bytes: int = 64 * 1024
    """Largest frame of a compacted catch-up (longer texts are split over several)."""
    chat_ttl_s: float = 3600.0
    """How long an AI SDK chat remembers its active stream (``/v1/aisdk/chat``)."""
    upstream_connect_timeout_s: float = 10.0
    upstream_read_timeout_s: float = 300.0
    """Longest silence tolerated between upstream bytes."""
    upstream_head_timeout_s: float = 60.0
    """Longest wait for the response head of a streamed request (a non-streamed passthrough
    request waits up to the read timeout: its answer only comes once it is whole)."""
    upstream_idle_timeout_s: float = 30.0
    """A pooled upstream connection unused this long is closed."""
    upstream_ca_file: str | None = None
    """PEM file of CA certificates trusted for an ``https`` upstream, besides the system's."""
    upstream_max_body_bytes: int = 32 * 1024 * 1024
    """Largest non-streamed upstream body read whole (``/v1/models``, non-streamed relays)."""
    max_event_bytes: int = 16 * 1024 * 1024
    """Largest upstream SSE event; a bigger one ends the stream ``failed`` (``event_too_large``)."""
    max_stream_bytes: int = 256 * 1024 * 1024
    """Most bytes read from one upstream stream; past it the stream ends ``failed``
    (``stream_too_large``), what came before kept."""
    upstream_retries: int = 2
    """Retries of a request that failed before any response byte (connect errors, 502-504)."""
    upstream_backoff_s: float = 0.25
    """First retry delay; doubles per retry."""
    static_dir: str | None = None
    """Directory of the browser page (``index.html`` + assets). Default: the packaged one."""
    redis_url: str | None = None
    """Redis for the shared hub (``redis://…``). ``None``: the in-process hub (one process)."""
    redis_prefix: str = "tw"
    """Prefix of every Redis key, so several deployments can share one Redis."""
    redis_lease_s: float = 5.0
    """Producer lease: a stream whose process died ends ``failed`` about this long after."""
    redis_grace_s: float = 5.0
    """How long producers and readers wait for a lost Redis before giving up on a stream."""
    continuation: str = "none"
    """With Redis: how a process that took over a stream whose producer died continues it:
    ``vllm`` (``continue_final_message``), ``prefix`` (assistant ``prefix: true``) or ``none``
    (no output yet: the request again; else the step is regenerated, or the stream fails)."""
    workers: int = 1
    """Gateway processes ``tokenwire serve`` runs on one port (more than one needs Redis)."""
    secret: str | None = field(default=None, repr=False)
    """Signs read tokens and keys the owner tags of API keys. Every process of a deployment
    needs the same one. ``None``: kept in ``data_dir/secret`` (made on first start), else
    random per process (``tokenwire serve --workers N`` hands its workers one)."""
    cors_origins: tuple[str, ...] = ()
    """Origins allowed by CORS (``*``: any, without credentials). Empty: no CORS headers."""

    def __post_init__(self) -> None:
        # The named choices are checked here, not first when the app starts (a lifespan
        # traceback): ``Settings(upstream_api="foo")`` and the CLI fail alike, at once.
        for name, choices in _CHOICES.items():
            value = getattr(self, name)
            if value not in choices:
                raise InvalidArgument(
                    f"{name} (TOKENWIRE_{name.upper()}) must be one of {', '.join(choices)}, "
                    f"got {value!r}"
                )

    def resolved_upstream_key(self) -> str | None:
        if self.upstream_api_key:
            return self.upstream_api_key
        if self.upstream_api_key_env:
            return os.environ.get(self.upstream_api_key_env) or None
        return None

    def resolved_secret(self) -> str | None:
        """``secret``, else the one kept in ``data_dir`` (created there on first use)."""
        if self.secret:
            return self.secret
        if self.data_dir is None:
            return None
        path = Path(self.data_dir) / "secret"
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        value = secrets.token_urlsafe(32)
        try:  # (exclusive create: concurrent workers agree on the first one written)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return path.read_text().strip() or None
        with os.fdopen(fd, "w") as f:
            f.write(value)
        return value

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``TOKENWIRE_*`` variables, then ``overrides`` (ignored when ``None``)."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            raw = env.get(f"TOKENWIRE_{f.name.upper()}")
            if raw is None and f.name == "upstream":
                raw = env.get("TOKENWIRE_UPSTREAM_URL")
            if raw is not None and raw != "":
                values[f.name] = _parse(f.name, raw, f.type)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def to_env(self) -> dict[str, str | None]:
        """``TOKENWIRE_*`` variables that ``from_env`` turns back into these settings.

        ``None`` means "unset the variable". Used to hand the settings to worker processes.
        """
        env: dict[str, str | None] = {"TOKENWIRE_UPSTREAM_URL": None}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = ",".join(value) or None
            env[f"TOKENWIRE_{f.name.upper()}"] = None if value is None else str(value)
        return env


class WorkerSetupError(ValueError):
    """Several gateway processes were asked for without a shared (Redis) hub."""


def declared_workers(argv: list[str] | None = None, env: Mapping[str, str] | None = None) -> int:
    """How many processes the server running us was told to start: uvicorn's and gunicorn's
    ``--workers N`` / ``-w N`` on their command line (a spawned worker sees its supervisor's
    ``sys.argv``), else ``WEB_CONCURRENCY`` (both servers' default), else 1."""
    argv = sys.argv if argv is None else argv
    env = os.environ if env is None else env
    program = os.path.basename(argv[0]) if argv else ""
    if program == "__main__.py":  # ``python -m uvicorn``: .../uvicorn/__main__.py
        program = os.path.basename(os.path.dirname(argv[0]))
    if program.startswith(("uvicorn", "gunicorn")):
        for i, arg in enumerate(argv):
            value = None
            if arg in ("--workers", "-w") and i + 1 < len(argv):
                value = argv[i + 1]
            elif arg.startswith("--workers="):
                value = arg.partition("=")[2]
            if value is not None and value.isdigit():
                return int(value)
    raw = env.get("WEB_CONCURRENCY", "")
    return int(raw) if raw.isdigit() else 1


def check_worker_setup(
    settings: Settings, argv: list[str] | None = None, env: Mapping[str, str] | None = None
) -> None:
    """Refuse several processes without Redis: each would only know its own streams (a reader
    landing on another process gets 404). Raises :class:`WorkerSetupError`."""
    workers = max(settings.workers, declared_workers(argv, env))
    if workers > 1 and not settings.redis_url:
        raise WorkerSetupError(
            f"{workers} gateway worker processes need a shared hub: set TOKENWIRE_REDIS_URL "
            "(or run `tokenwire serve --workers N --redis URL`); without Redis each process "
            "only knows its own streams"
        )


_CHOICES: dict[str, tuple[str, ...]] = {
    "upstream_api": ("chat", "responses", "anthropic"),
    "continuation": ("none", "vllm", "prefix"),
}

WORKER_BOOT_FAILURE = 3
"""Exit status of a worker that refuses to start: uvicorn's and gunicorn's supervisors both stop
(rather than restart it forever) when a worker exits with 3."""


def enforce_worker_setup(settings: Settings) -> None:
    """``check_worker_setup`` for an app factory: on a refusal, print the reason as one line on
    stderr and exit with :data:`WORKER_BOOT_FAILURE`, which stops the whole server."""
    try:
        check_worker_setup(settings)
    except WorkerSetupError as exc:
        print(f"tokenwire: error: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(WORKER_BOOT_FAILURE) from None


def _parse(name: str, raw: str, type_: Any) -> Any:
    kind = str(type_)
    try:
        if "tuple" in kind:
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
    except ValueError:
        raise ValueError(f"TOKENWIRE_{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw
