"""JSON error bodies, shaped like OpenAI's: ``{"error": {"message", "type", "code"}}``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from tokenwire.errors import HubUnavailable, StoreUnavailable, TokenwireError
from tokenwire.protocol.jsonsafe import InvalidJSON, JSONTooDeep, decode_json_body

_encode = msgspec.json.Encoder().encode


class ApiError(TokenwireError):
    """Raised anywhere in a handler; rendered as a JSON error response."""

    def __init__(
        self,
        status: int,
        message: str,
        type: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = headers  # sent with the answer (e.g. a host's Retry-After, Location)

    def body(self) -> bytes:
        return error_body(self.message, self.type, self.code)


def error_body(message: str, type: str, code: str | None = None) -> bytes:
    return _encode({"error": {"message": message, "type": type, "code": code}})


def not_found(stream_id: str) -> ApiError:
    return ApiError(404, f"no stream {stream_id!r}", "not_found_error", "stream_not_found")


def hub_unavailable(exc: Exception) -> ApiError:
    return ApiError(503, str(exc), "service_unavailable", "hub_unavailable")


def store_unavailable(exc: Exception) -> ApiError:
    return ApiError(503, str(exc), "service_unavailable", "store_unavailable")


UNAVAILABLE = (HubUnavailable, StoreUnavailable)
"""A backing service (the hub's Redis, the store's database) that cannot be reached: 503."""


def unavailable(exc: Exception) -> ApiError:
    """The 503 for a hub (Redis) or a store (its database) that cannot be reached."""
    return store_unavailable(exc) if isinstance(exc, StoreUnavailable) else hub_unavailable(exc)


def bad_request(message: str, code: str) -> ApiError:
    return ApiError(400, message, "invalid_request_error", code)


def json_object(body: bytes) -> dict[str, Any]:
    """A request body that must be one JSON object; else the 400 (``invalid_json``)."""
    try:
        data = decode_json_body(body)
    except JSONTooDeep as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", "invalid_json") from None
    except InvalidJSON:
        raise bad_request("request body is not valid JSON", "invalid_json") from None
    if not isinstance(data, dict):
        raise bad_request("request body must be a JSON object", "invalid_json")
    return data


async def handle_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return api_error_response(exc)


def api_error_response(exc: ApiError) -> Response:
    headers = dict(exc.headers or {})
    if exc.status == 401 and not any(k.lower() == "www-authenticate" for k in headers):
        headers["WWW-Authenticate"] = "Bearer"
    return Response(exc.body(), exc.status, headers=headers, media_type="application/json")


def error_type_of(status: int) -> str:
    """The OpenAI-style error ``type`` of a status (for a refusal that names only a status)."""
    if status == 401:
        return "authentication_error"
    if status == 403:
        return "permission_error"
    if status == 404:
        return "not_found_error"
    if status == 429:
        return "rate_limit_error"
    return "server_error" if status >= 500 else "invalid_request_error"
