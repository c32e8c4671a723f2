"""Raw passthrough: ``POST /v1/chat/completions``, ``POST /v1/responses``, ``POST /v1/messages``
and ``GET /v1/models`` relayed untouched (bodies byte for byte, streamed as they arrive)."""

from __future__ import annotations

import contextlib

from starlette.datastructures import Headers
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from tokenwire.gateway.errors import ApiError
from tokenwire.gateway.service import Gateway
from tokenwire.gateway.streaming import RelayResponse
from tokenwire.gateway.upstream import UpstreamBroken, UpstreamUnavailable
from tokenwire.streams.asgi import raw_response

# Upstream response headers that describe the hop, not the content; never relayed.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "date",
        "server",
        "proxy-authenticate",
        "trailer",
        "upgrade",
    }
)


def _gw(request: Request) -> Gateway:
    return request.app.state.gateway


async def read_body(request: Request, limit: int) -> bytes:
    too_large = ApiError(
        413, f"request body over {limit} bytes", "invalid_request_error", "body_too_large"
    )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise too_large
            chunks.append(chunk)
    except ClientDisconnect:
        # The client left mid-upload: nothing was started. An error answer (to nobody) rather
        # than a traceback in the log.
        raise ApiError(
            400,
            "the client disconnected before sending the whole body",
            "invalid_request_error",
            "client_disconnected",
        ) from None
    return b"".join(chunks)


def _relay_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [(k.lower(), v) for k, v in headers if k.lower().decode() not in HOP_HEADERS]


async def chat_completions(request: Request) -> Response:
    """Relay to the upstream untouched; streamed bodies go out chunk by chunk as they arrive."""
    gw = _gw(request)
    gw.auth.owner(request.headers, request.query_params)
    body = await read_body(request, gw.settings.max_body_bytes)
    if request.headers.get("x-tokenwire-detach"):
        from tokenwire.gateway.aisdk import detached_chat_completions, wants_detach

        if wants_detach(request):
            return await detached_chat_completions(request, body)
    return await _relay(request, body, *_endpoint(gw, "chat"))


async def responses(request: Request) -> Response:
    """``POST /v1/responses`` relayed to the upstream's ``responses`` endpoint."""
    gw = _gw(request)
    gw.auth.owner(request.headers, request.query_params)
    body = await read_body(request, gw.settings.max_body_bytes)
    return await _relay(request, body, *_endpoint(gw, "responses"))


async def messages(request: Request) -> Response:
    """``POST /v1/messages`` (Anthropic) relayed to the upstream's ``messages`` endpoint, with
    its ``x-api-key`` auth and the client's ``anthropic-version`` (else the default) and
    ``anthropic-beta``. The gateway key may come as ``x-api-key`` too (the Anthropic SDKs'
    default), not only as ``Authorization: Bearer``."""
    gw = _gw(request)
    auth_headers = request.headers
    key = request.headers.get("x-api-key")
    if key and "authorization" not in request.headers:
        auth_headers = Headers({"authorization": f"Bearer {key}"})
    gw.auth.owner(
        auth_headers, request.query_params, how="x-api-key: KEY or Authorization: Bearer KEY"
    )
    body = await read_body(request, gw.settings.max_body_bytes)
    path, headers = _endpoint(gw, "anthropic")
    for name in ("anthropic-version", "anthropic-beta"):
        value = request.headers.get(name)
        if value:
            headers[name] = value
    return await _relay(request, body, path, headers)


def _endpoint(gw: Gateway, api: str) -> tuple[str, dict[str, str]]:
    """The upstream path of ``api`` and the auth headers it wants that the upstream client
    does not already send (it sends ``Authorization: Bearer`` unless the gateway's own
    upstream API is Anthropic's)."""
    path, headers = gw.endpoint(api)
    del headers["Content-Type"], headers["Accept"]  # (the client's own are relayed)
    return path, headers


async def _relay(request: Request, body: bytes, path: str, extra: dict[str, str]) -> Response:
    gw = _gw(request)
    gw.metrics.passthrough.inc()
    headers = {
        "Content-Type": request.headers.get("content-type", "application/json"),
        "Accept": request.headers.get("accept", "*/*"),
        **extra,
    }
    upstream_client = gw.require_started()
    stack = contextlib.AsyncExitStack()
    try:
        upstream = await stack.enter_async_context(
            upstream_client.request("POST", path, content=body, headers=headers)
        )
    except UpstreamUnavailable as exc:
        await stack.aclose()
        gw.metrics.upstream_errors.labels("unreachable").inc()
        raise ApiError(502, str(exc), "upstream_error", "upstream_unreachable") from None
    if upstream.status_code >= 400:
        gw.metrics.upstream_errors.labels("http_status").inc()
    relay_headers = _relay_headers(upstream.headers.raw)
    if upstream.headers.get("content-type", "").startswith("text/event-stream"):
        if "x-accel-buffering" not in upstream.headers:
            relay_headers.append((b"x-accel-buffering", b"no"))
        return RelayResponse(  # type: ignore[return-value]
            upstream.status_code, relay_headers, upstream.poll, stack.aclose
        )
    try:
        content = await upstream.aread()
    except UpstreamBroken as exc:
        gw.metrics.upstream_errors.labels("broken_stream").inc()
        raise ApiError(502, str(exc), "upstream_error", "upstream_broken") from None
    finally:
        await stack.aclose()
    return raw_response(upstream.status_code, relay_headers, content)


async def list_models(request: Request) -> Response:
    gw = _gw(request)
    gw.auth.owner(request.headers, request.query_params)
    upstream_client = gw.require_started()
    try:
        # The key as the configured API wants it (Anthropic's lists its models too).
        _, headers = _endpoint(gw, gw.settings.upstream_api)
        async with upstream_client.request("GET", "models", headers=headers) as upstream:
            content = await upstream.aread()
            headers = _relay_headers(upstream.headers.raw)
            status = upstream.status_code
    except UpstreamUnavailable as exc:
        gw.metrics.upstream_errors.labels("unreachable").inc()
        raise ApiError(502, str(exc), "upstream_error", "upstream_unreachable") from None
    except UpstreamBroken as exc:
        gw.metrics.upstream_errors.labels("broken_stream").inc()
        raise ApiError(502, str(exc), "upstream_error", "upstream_broken") from None
    return raw_response(status, headers, content)


__all__ = ["HOP_HEADERS", "chat_completions", "list_models", "messages", "read_body", "responses"]
