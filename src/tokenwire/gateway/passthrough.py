"""Raw passthrough: ``POST /v1/chat/completions`` and ``GET /v1/models`` relayed untouched."""

from __future__ import annotations

import contextlib

from starlette.requests import Request
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
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
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
    gw.metrics.passthrough.inc()
    headers = {
        "Content-Type": request.headers.get("content-type", "application/json"),
        "Accept": request.headers.get("accept", "*/*"),
    }
    upstream_client = gw.require_started()
    stack = contextlib.AsyncExitStack()
    try:
        upstream = await stack.enter_async_context(
            upstream_client.request("POST", "chat/completions", content=body, headers=headers)
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
        async with upstream_client.request("GET", "models") as upstream:
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


__all__ = ["HOP_HEADERS", "chat_completions", "list_models", "read_body"]
