"""The gateway's own routes: start a stream (``POST /v1/streams``), the page, health, metrics.

The op routes (snapshot, events, WebSocket, cancel) are ``tokenwire.streams.asgi``'s, with the
gateway's API keys as their ``authorize``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from tokenwire.gateway.errors import ApiError, bad_request, json_object
from tokenwire.gateway.passthrough import read_body
from tokenwire.gateway.producer import RESUME, Generation, Produce, StreamRequest, resume_args
from tokenwire.gateway.service import Gateway
from tokenwire.hub import HubUnavailable
from tokenwire.protocol.jsonsafe import decode_json_body
from tokenwire.streams.asgi import json_response
from tokenwire.streams.core import StreamHandle

_json = msgspec.json.Encoder()
_MAX_COALESCE_MS = 10_000


def _gw(request: Request) -> Gateway:
    return request.app.state.gateway


async def index(request: Request) -> Response:
    page = Path(request.app.state.static_dir) / "index.html"
    if page.is_file():
        return FileResponse(page, headers={"Cache-Control": "no-cache"})
    return json_response(
        {
            "service": "tokenwire gateway",
            "hint": "no demo page is built; the HTTP API is under /v1 (see docs/http-api.md)",
            "endpoints": ["POST /v1/streams", "GET /v1/streams/{id}/events", "GET /healthz"],
        }
    )


async def healthz(request: Request) -> Response:
    """Liveness plus the hub's reachability: 503 while the hub (Redis) cannot be reached, or
    while the gateway is not started (mounted without its lifespan: it would fail every
    stream)."""
    gw = _gw(request)
    hub = gw.hub
    body: dict[str, Any] = {"status": "ok", "pid": os.getpid(), "hub": hub.kind}
    try:
        gw.require_started()
    except ApiError as exc:
        body.update(status="not_started", error=exc.message)
        return json_response(body, 503)
    try:
        await hub.ping()
    except HubUnavailable as exc:
        body.update(status="unavailable", error=str(exc))
        return json_response(body, 503)
    return json_response(body)


async def metrics(request: Request) -> Response:
    gw = _gw(request)
    gw.auth.owner(request.headers, request.query_params)
    return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")


def _with_usage(data: dict[str, Any]) -> None:
    """Ask the upstream for usage (a last chunk with ``usage``) unless the caller chose."""
    if "stream_options" not in data:
        data["stream_options"] = {"include_usage": True}


def _options(gw: Gateway, options: Any) -> tuple[float, bool]:
    """The request's ``tokenwire`` member: ``(coalesce_ms, supersede)``."""
    coalesce_ms = gw.settings.coalesce_ms
    if options is None:
        return coalesce_ms, True
    if not isinstance(options, dict):
        raise bad_request("'tokenwire' must be an object", "invalid_options")
    value = options.get("coalesce_ms", coalesce_ms)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if not number or not 0 <= value <= _MAX_COALESCE_MS:
        raise bad_request(
            f"'tokenwire.coalesce_ms' must be a number from 0 to {_MAX_COALESCE_MS}",
            "invalid_options",
        )
    supersede = options.get("supersede", True)
    if not isinstance(supersede, bool):
        raise bad_request("'tokenwire.supersede' must be true or false", "invalid_options")
    return float(value), supersede


async def start_generation(
    gw: Gateway, owner: str | None, data: dict[str, Any], api: str, *, ask_usage: bool = True
) -> StreamHandle:
    """Start a detached generation for ``data``, a request body in ``api``'s format (already
    checked by the caller): its ``tokenwire`` member's options, usage asked for (chat; unless
    ``ask_usage`` is false: an OpenAI client gets a usage chunk only if it asked), the
    host's producer for its model if one is registered, else the upstream, continued on
    another process if this one dies (with a shared hub). ``POST /v1/streams``,
    ``POST /v1/aisdk/chat`` and the detached ``POST /v1/chat/completions`` all start here."""
    upstream = gw.require_started()
    coalesce_ms, supersede = _options(gw, data.pop("tokenwire", None))
    data["stream"] = True
    if api == "chat" and ask_usage:  # (the other APIs report usage in their stream anyway)
        _with_usage(data)
    model = data.get("model")
    path, headers, fmt = gw.request_for(api)
    factory = gw.producers.get(model) if isinstance(model, str) else None
    produce: Produce
    # (a plain generation is continued by the gateway's ``Continue`` if this process dies; a
    # host's produce function is not: the gateway cannot know how to continue it)
    resume: str | None = None
    resume_record: dict[str, Any] | None = None
    if factory is not None:  # the host's own produce function for this model
        produce = factory(StreamRequest(data, model, owner, fmt, upstream, path, headers))
    else:
        request_body = _json.encode(data)
        produce = Generation(upstream, request_body, fmt, path=path, headers=headers)
        if gw.streams.can_resume:  # (kept only by a shared hub)
            resume = RESUME
            resume_record = resume_args(request_body, api, supersede)
    return await gw.streams.start(
        produce,
        owner=owner,
        model=model if isinstance(model, str) else None,
        coalesce_ms=coalesce_ms,
        resume=resume,
        resume_args=resume_record,
    )


async def create_stream(request: Request) -> Response:
    gw = _gw(request)
    owner = gw.auth.owner(request.headers, request.query_params)
    gw.require_started()
    data = json_object(await read_body(request, gw.settings.max_body_bytes))
    api = gw.settings.upstream_api
    if api == "responses":  # (the Responses API takes ``input``: a string or items)
        given = data.get("input")
        if not isinstance(given, str | list) or not given:
            raise bad_request("'input' must be a non-empty string or array", "missing_input")
    else:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise bad_request("'messages' must be a non-empty array", "missing_messages")
    handle = await start_generation(gw, owner, data, api)
    stream_id = handle.id
    # (URLs under the app's mount point, if it is mounted)
    url = f"{request.scope.get('root_path', '')}/v1/streams/{stream_id}"
    return json_response(
        {
            "id": stream_id,
            "status": "in_progress",
            "events_url": f"{url}/events",
            "ws_url": f"{url}/ws",
            "url": url,
        },
        201,
        headers={"Location": url},
    )


_MAX_TOKEN_TTL_S = 7 * 24 * 3600


async def read_token(request: Request) -> Response:
    """``POST /v1/streams/{id}/token``: a signed read token for one stream (its owner only),
    for a backend to hand a browser instead of its API key."""
    gw = _gw(request)
    stream_id = request.path_params["stream_id"]
    owner = gw.auth.owner(request.headers, request.query_params)
    gw.require_started()
    await gw.lookup(stream_id, owner)  # 404 unless it exists and is the caller's
    ttl_s: Any = 3600
    body = await read_body(request, 4096)
    if body.strip():
        try:
            data = decode_json_body(body)  # (depth-bounded: never a RecursionError)
        except ValueError:
            raise bad_request("request body is not valid JSON", "invalid_json") from None
        ttl_s = data.get("ttl_s", ttl_s) if isinstance(data, dict) else None
    if (
        isinstance(ttl_s, bool)
        or not isinstance(ttl_s, int | float)
        or not 1 <= ttl_s <= _MAX_TOKEN_TTL_S
    ):
        raise bad_request(
            f"'ttl_s' must be a number of seconds from 1 to {_MAX_TOKEN_TTL_S}", "invalid_ttl"
        )
    token = gw.streams.read_token(stream_id, ttl_s=ttl_s)
    return json_response({"token": token, "expires_in": ttl_s})


__all__ = ["create_stream", "healthz", "index", "metrics", "read_token"]
