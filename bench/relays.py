"""The relays tokenwire is compared with, as ASGI apps (each run in its own uvicorn process).

- ``raw_relay_app``: the floor for any Python relay. Starlette + httpx, forwards the request
  body and the upstream's response bytes untouched.
- ``sdk_relay_app``: the common way. Iterates the official ``openai.AsyncOpenAI`` stream and
  re-serializes every chunk with ``model_dump_json``.
- ``whole_answer_app``: the pattern many chat UIs use: parse each chunk, append its text to
  the answer, and send the whole answer so far as one event per token.

The upstream (base URL with ``/v1``) comes from the ``BENCH_UPSTREAM`` environment variable.
Run: ``BENCH_UPSTREAM=http://127.0.0.1:8900/v1 uvicorn --factory bench.relays:raw_relay_app``.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

Handler = Callable[[Request], Awaitable[Response]]


def _upstream() -> str:
    return os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:8900/v1").rstrip("/")


def _app(handler: Handler, http: httpx.AsyncClient | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if http is not None:
            await http.aclose()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    routes = [
        Route("/healthz", healthz),
        Route("/v1/chat/completions", handler, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def _http_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(300, connect=10),
        # The same small keep-alive pool as the gateway's upstream client (see
        # tokenwire/gateway/upstream.py): with 100 slots httpcore's pool bookkeeping
        # dominates at 100 concurrent streams, which would make this floor unfairly low.
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
        trust_env=False,
    )


def raw_relay_app() -> Starlette:
    upstream = _upstream() + "/chat/completions"
    http = _http_client()

    async def chat(request: Request) -> Response:
        body = await request.body()
        req = http.build_request(
            "POST",
            upstream,
            content=body,
            headers={"content-type": "application/json", "accept-encoding": "identity"},
        )
        response = await http.send(req, stream=True)
        return StreamingResponse(
            response.aiter_raw(),
            status_code=response.status_code,
            media_type=response.headers.get("content-type"),
            background=BackgroundTask(response.aclose),
        )

    return _app(chat, http)


# Request fields the SDK's create() takes by name; anything else goes in extra_body.
_SDK_PARAMS = frozenset({"model", "messages", "stream", "max_tokens", "stream_options", "n"})


def sdk_relay_app() -> Starlette:
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=_upstream(), api_key="bench", max_retries=0, timeout=300)

    async def chat(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        known = {k: v for k, v in body.items() if k in _SDK_PARAMS}
        extra = {k: v for k, v in body.items() if k not in _SDK_PARAMS}
        known["stream"] = True
        stream = await client.chat.completions.create(**known, extra_body=extra or None)

        async def events() -> AsyncIterator[str]:
            try:
                async for chunk in stream:
                    yield f"data: {chunk.model_dump_json()}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                await stream.close()

        return StreamingResponse(events(), media_type="text/event-stream")

    return _app(chat)


def whole_answer_app() -> Starlette:
    upstream = _upstream() + "/chat/completions"
    http = _http_client()

    async def chat(request: Request) -> Response:
        body = await request.body()
        req = http.build_request(
            "POST", upstream, content=body, headers={"content-type": "application/json"}
        )
        response = await http.send(req, stream=True)

        async def events() -> AsyncIterator[str]:
            answer = ""
            try:
                async for line in response.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    for choice in json.loads(line[6:]).get("choices") or ():
                        text = (choice.get("delta") or {}).get("content")
                        if text:
                            answer += text
                            yield "data: " + json.dumps({"answer": answer}) + "\n\n"
                yield "data: [DONE]\n\n"
            finally:
                await response.aclose()

        return StreamingResponse(events(), media_type="text/event-stream")

    return _app(chat, http)


FACTORIES = {
    "raw": "bench.relays:raw_relay_app",
    "sdk": "bench.relays:sdk_relay_app",
    "whole": "bench.relays:whole_answer_app",
}
