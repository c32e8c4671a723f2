"""A FastAPI backend for the Vercel AI SDK's ``useChat`` (``resume: true``) on tokenwire:
the answer runs detached, a reload resumes it, stop cancels it (from any worker with Redis).

    useChat({ id, resume: true, transport: new DefaultChatTransport({ api: '/api/chat' }) })

- ``POST /api/chat``: this app's own handler (its model call, its prompt) answers with
  ``streams.aisdk_response(...)``, which records the stream as the chat's active one.
- ``GET /api/chat/{chatId}/stream`` and ``POST /api/chat/{chatId}/stop``: tokenwire's, from
  ``streams.asgi(...)`` mounted at the same path.

Run: ``uvicorn examples.usechat.app:app`` with ``UPSTREAM_URL`` (OpenAI-compatible, with
``/v1``), ``UPSTREAM_API_KEY`` and ``MODEL``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from starlette.requests import HTTPConnection

from tokenwire import Streams, StreamWriter


def user_of(conn: HTTPConnection) -> str:
    """Who is asking (a real app reads its session here): chats are per user."""
    return conn.headers.get("x-user", "anonymous")


def as_chat_messages(ui_messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """useChat's UI messages -> chat-completion messages (text only, for brevity)."""
    out = []
    for m in ui_messages:
        text = "".join(p.get("text", "") for p in m.get("parts", []) if p.get("type") == "text")
        if m.get("role") in ("system", "user", "assistant") and text:
            out.append({"role": m["role"], "content": text})
    return out


def create_app(
    upstream: str | None = None, api_key: str | None = None, model: str | None = None
) -> FastAPI:
    upstream = upstream or os.environ.get("UPSTREAM_URL", "http://127.0.0.1:8000/v1")
    api_key = api_key or os.environ.get("UPSTREAM_API_KEY", "")
    model = model or os.environ.get("MODEL", "mock")
    streams = Streams()  # Streams(hub=RedisHub(url)) to serve from several workers
    state: dict[str, httpx.AsyncClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        async with streams, httpx.AsyncClient(headers=headers, timeout=60) as http:
            state["http"] = http
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/api/chat")
    async def chat(request: Request) -> Any:
        body = await request.json()  # {id, messages, trigger, messageId} from useChat
        request_body = {
            "model": model,
            "messages": as_chat_messages(body["messages"]),
            "stream": True,
            **body.get("options", {}),  # (tests pass the mock model's pacing here)
        }

        async def produce(w: StreamWriter) -> None:
            async with state["http"].stream(
                "POST", f"{upstream}/chat/completions", json=request_body
            ) as response:
                await w.pipe(response)

        handle = await streams.start(produce, owner=user_of(request), model=model)
        return streams.aisdk_response(handle.id, body=body)  # (its chat id and message id)

    # Resume and stop: {api}/{chatId}/stream and {api}/{chatId}/stop.
    app.mount("/api/chat", streams.asgi(authorize=user_of))
    return app


app = create_app()
