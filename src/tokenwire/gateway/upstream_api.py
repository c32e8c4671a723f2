"""Which upstream API the gateway speaks: its endpoint, auth headers and stream format.

tokenwire never translates requests: ``POST /v1/streams`` forwards the client's body as it is
to the endpoint of the configured API, with that API's auth, and decodes the answer with that
API's decoder (``Pipeline(format=...)``).
"""

from __future__ import annotations

from typing import Literal, get_args

UpstreamAPI = Literal["chat", "responses", "anthropic"]
UPSTREAM_APIS: tuple[str, ...] = get_args(UpstreamAPI)
ANTHROPIC_VERSION = "2023-06-01"
"""The ``anthropic-version`` header sent when the client did not choose one."""

_PATHS = {"chat": "chat/completions", "responses": "responses", "anthropic": "messages"}


def upstream_endpoint(api: str, api_key: str | None = None) -> tuple[str, dict[str, str]]:
    """``(path, headers)`` of a request to ``api``: the path is relative to the upstream base
    URL (which includes ``/v1``); the headers carry the key the way that API wants it
    (``Authorization: Bearer`` for OpenAI's APIs, ``x-api-key`` + ``anthropic-version`` for
    Anthropic's) plus the content type. Raises ``ValueError`` for an unknown API."""
    path = _PATHS.get(api)
    if path is None:
        raise ValueError(f"unknown upstream API {api!r} (one of {', '.join(UPSTREAM_APIS)})")
    headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
    if api == "anthropic":
        headers["anthropic-version"] = ANTHROPIC_VERSION
        if api_key:
            headers["x-api-key"] = api_key.strip()
    elif api_key:
        headers["Authorization"] = f"Bearer {api_key.strip()}"
    return path, headers


def stream_format(api: str) -> str:
    """The ``Pipeline`` format that decodes ``api``'s streams (and whole bodies)."""
    if api not in _PATHS:
        raise ValueError(f"unknown upstream API {api!r} (one of {', '.join(UPSTREAM_APIS)})")
    return api
