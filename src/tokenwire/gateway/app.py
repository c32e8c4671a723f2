"""The gateway's ASGI app: ``Streams`` + the upstream client + the op routes + passthrough.

``tokenwire serve`` runs it. The parts live by concept: ``service`` (the shared state and its
lifespan), ``routes`` (starting streams, page, health, metrics), ``producer`` (one upstream
generation piped into a writer), ``passthrough`` (the raw relay); the op routes (snapshot,
SSE, WebSocket, cancel) are the library's (``tokenwire.streams.asgi``).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from tokenwire.errors import StoreUnavailable
from tokenwire.gateway.aisdk import aisdk_chat
from tokenwire.gateway.errors import ApiError, handle_api_error
from tokenwire.gateway.passthrough import chat_completions, list_models, messages, responses
from tokenwire.gateway.producer import ProducerFactory, StreamRequest
from tokenwire.gateway.routes import create_stream, healthz, index, metrics, read_token
from tokenwire.gateway.service import STREAM_ID, Gateway, default_hub
from tokenwire.gateway.settings import Settings, enforce_worker_setup
from tokenwire.hub import Hub, HubUnavailable
from tokenwire.streams.asgi import StreamRoutes, http_error, unavailable_error

_EVENTS_PATH = re.compile(r"/v1/streams/([^/]+)/events")
DEFAULT_STATIC_DIR = Path(__file__).resolve().parent.parent / "static"


def app_from_env() -> GatewayApp:
    """App factory for worker processes: settings from ``TOKENWIRE_*``, a hub of its own.

    ``tokenwire serve --workers N`` runs ``uvicorn --factory`` on this; it works the same with
    ``uvicorn tokenwire.gateway.app:app_from_env --factory --workers N`` or gunicorn.
    """
    settings = Settings.from_env()
    enforce_worker_setup(settings)  # several workers need a shared hub: refuse, one line
    return create_app(settings)


class GatewayApp(Starlette):
    """The Starlette app, plus a direct path for the long-lived ``GET .../events`` requests."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # (Only without user middleware: the direct path would skip it.)
        if scope["type"] == "http" and scope["method"] == "GET" and not self.user_middleware:
            match = _EVENTS_PATH.fullmatch(scope["path"])
            if match is not None:
                scope["app"] = self
                response = await self.state.stream_routes.events_direct(match[1], scope)
                del match  # (this frame lives as long as the stream)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def cors_middleware(origins: tuple[str, ...]) -> list[Middleware]:
    """CORS on every route (preflight included). ``*``: any origin, without credentials."""
    if not origins:
        return []
    any_origin = "*" in origins
    return [
        Middleware(
            CORSMiddleware,  # type: ignore[arg-type]
            allow_origins=["*"] if any_origin else list(origins),
            allow_credentials=not any_origin,
            allow_methods=["GET", "HEAD", "POST", "OPTIONS"],
            # Any request header: browser SDKs (OpenAI's, Anthropic's) send their own x-* ones.
            allow_headers=["*"],
            expose_headers=[
                "Location",
                "Retry-After",
                "X-Tokenwire-Stream",
                "X-Workflow-Run-Id",
                "X-Workflow-Stream-Tail-Index",
                "X-Vercel-AI-UI-Message-Stream",
            ],
            max_age=600,
        )
    ]


def create_app(
    settings: Settings | None = None,
    hub: Hub | None = None,
    *,
    producers: Mapping[str, ProducerFactory] | None = None,
) -> GatewayApp:
    """The gateway app. ``hub`` defaults to ``default_hub(settings)``.

    ``producers`` maps a model name to the host's own ``factory(StreamRequest) -> produce``:
    ``POST /v1/streams`` with that model runs it (e.g. a tool round between two model calls,
    app data, retries) instead of piping the one upstream call. Other models: the plain pipe.
    """
    settings = settings or Settings()
    hub = hub if hub is not None else default_hub(settings)  # (an empty hub is falsy)
    gateway = Gateway(settings, hub)
    gateway.producers = dict(producers or {})
    static_dir = Path(settings.static_dir) if settings.static_dir else DEFAULT_STATIC_DIR
    stream_routes = StreamRoutes(
        gateway.streams,
        gateway.auth.authorize,
        owns=gateway.auth.owns,
        metrics=gateway.metrics,
        keepalive_s=settings.keepalive_s,
        cancel_wait_s=settings.cancel_wait_s,
        ws_hello_timeout_s=settings.ws_hello_timeout_s,
        stream_id_pattern=STREAM_ID,
        catchup_threshold=settings.catchup_threshold,
        max_frame_bytes=settings.max_frame_bytes,
        chat_ttl_s=settings.chat_ttl_s,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.startup()
        try:
            yield
        finally:
            await gateway.shutdown()

    routes: list[Any] = [
        Route("/", index),
        Route("/healthz", healthz),
        Route("/metrics", metrics),
        Route("/v1/streams", create_stream, methods=["POST"]),
        *stream_routes.routes("/v1/streams", chats=False),
        Route("/v1/aisdk/chat", aisdk_chat, methods=["POST"]),
        *stream_routes.chat_routes("/v1/aisdk/chat"),
        Route("/v1/streams/{stream_id}/token", read_token, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/v1/messages", messages, methods=["POST"]),
        Route("/v1/models", list_models),
    ]
    if static_dir.is_dir():
        routes.append(Mount("/static", StaticFiles(directory=static_dir), name="static"))
    app = GatewayApp(
        routes=routes,
        lifespan=lifespan,
        middleware=cors_middleware(settings.cors_origins),
        exception_handlers={
            ApiError: handle_api_error,
            HTTPException: http_error,
            HubUnavailable: unavailable_error,
            StoreUnavailable: unavailable_error,
        },
    )
    app.state.gateway = gateway
    app.state.stream_routes = stream_routes
    app.state.static_dir = str(static_dir)
    return app


__all__ = [
    "Gateway",
    "GatewayApp",
    "ProducerFactory",
    "StreamRequest",
    "app_from_env",
    "create_app",
    "default_hub",
]
