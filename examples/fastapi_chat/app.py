"""A FastAPI chat backend with its own users and database, streaming answers with tokenwire.

- Users log in (cookie ``session``, or ``Authorization: Bearer`` with the same token).
- An answer is built in the backend's own code: retrieved sources, a first model call piped in,
  the tool calls it asked for run here, a second model call piped in.
- ``on_end`` saves the final message in the backend's own SQLite table before any reader sees
  the end, so a page that sees the end can load it from ``/api/chats/{id}/messages``.
- The page reads the stream with a read token (``?token=``): it never holds the user's
  session for the stream routes, and the token reads only that one answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel
from starlette.requests import HTTPConnection

from tokenwire import Streams, StreamWriter
from tokenwire.protocol import Message
from tokenwire.streams import StoredStream

STATIC = Path(__file__).parent / "static"
USERS = {"alice": "wonderland", "bob": "builder"}  # (a real app checks hashed passwords)
DOCS = [
    ("https://docs.example/streaming", "Streaming answers"),
    ("https://docs.example/resume", "Resuming after a reload"),
]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    stream_id TEXT PRIMARY KEY,
    chat_id TEXT NOT NULL,
    user TEXT NOT NULL,
    status TEXT NOT NULL,
    message TEXT NOT NULL,
    finished_at REAL NOT NULL
)
"""


class Login(BaseModel):
    user: str
    password: str


class Question(BaseModel):
    question: str
    pace_tps: float | None = None  # (demo/test knob: the mock model's tokens per second)


def run_tool(name: str | None, arguments: str) -> dict[str, Any]:
    """The toy tool: whatever it is asked, it answers with the arguments it understood."""
    try:
        args = json.loads(arguments or "{}")
    except json.JSONDecodeError:
        return {"error": "arguments are not JSON"}
    return {"tool": name, "ok": True, "echo": args}


def create_app(upstream: str, db_path: str, *, secret: str | None = None) -> FastAPI:
    """``upstream``: an OpenAI-compatible base URL (``tokenwire mock`` here)."""
    sessions: dict[str, str] = {}
    state: dict[str, Any] = {}

    def db() -> sqlite3.Connection:
        return sqlite3.connect(db_path)

    def save_row(info: StoredStream, message: Message) -> None:
        with contextlib.closing(db()) as conn, conn:
            conn.execute(
                "INSERT OR REPLACE INTO messages VALUES (?, ?, ?, ?, ?, ?)",
                (
                    info.id,
                    (info.metadata or {}).get("chat_id", ""),
                    info.owner,
                    info.status,
                    message.to_json().decode(),
                    info.finished_at,
                ),
            )

    async def save_message(info: StoredStream, message: Message) -> None:
        await asyncio.to_thread(save_row, info, message)

    streams = Streams(coalesce_ms=20, on_end=save_message, secret=secret)

    def current_user(conn: HTTPConnection) -> str:
        token = conn.cookies.get("session")
        header = conn.headers.get("authorization", "")
        if header.lower().startswith("bearer "):
            token = header[7:].strip()
        user = sessions.get(token or "")
        if user is None:
            raise HTTPException(401, "log in first")
        return user

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        with contextlib.closing(db()) as conn:
            conn.execute(_SCHEMA)
        async with streams, httpx.AsyncClient(timeout=httpx.Timeout(60, connect=5)) as http:
            state["http"] = http
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/tw", streams.asgi(authorize=current_user))

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.post("/login")
    async def login(body: Login, response: Response) -> dict[str, str]:
        if USERS.get(body.user) != body.password:
            raise HTTPException(401, "wrong user or password")
        token = secrets.token_urlsafe(24)
        sessions[token] = body.user
        response.set_cookie("session", token, httponly=True, samesite="lax")
        return {"user": body.user, "token": token}

    async def model_call(w: StreamWriter, body: dict[str, Any]):  # type: ignore[no-untyped-def]
        http: httpx.AsyncClient = state["http"]
        async with http.stream("POST", f"{upstream}/chat/completions", json=body) as response:
            return await w.pipe(response)

    @app.post("/api/chats/{chat_id}/answer")
    async def answer(chat_id: str, body: Question, request: Request) -> dict[str, str]:
        user = current_user(request)
        history = [{"role": "user", "content": body.question}]
        mock = {"tps": body.pace_tps} if body.pace_tps else {}

        async def produce(w: StreamWriter) -> None:
            for url, title in DOCS:  # the backend's own retrieval
                await w.source(url, title)
            first = await model_call(
                w,
                {
                    "model": "mock-tools",
                    "messages": history,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "mock": mock,
                },
            )
            results = []
            for call in first.tool_calls:  # the backend runs the tools itself
                output = run_tool(call.name, call.arguments)
                results.append({"role": "tool", "tool_call_id": call.id, "content": output})
                await w.tool_result(call.id or "", output, name=call.name)
            await model_call(
                w,
                {
                    "model": "mock",
                    "messages": [
                        *history,
                        *({**r, "content": json.dumps(r["content"])} for r in results),
                    ],
                    "stream": True,
                    "stream_options": {"include_usage": True},
                    "mock": mock,
                },
            )

        stream = await streams.start(produce, owner=user, metadata={"chat_id": chat_id})
        base = request.scope.get("root_path", "")
        return {
            "id": stream.id,
            "events_url": f"{base}/tw/{stream.id}/events",
            "token": streams.read_token(stream.id, ttl_s=3600),
        }

    @app.get("/api/chats/{chat_id}/messages")
    async def messages(chat_id: str, request: Request) -> list[dict[str, Any]]:
        user = current_user(request)

        def load() -> list[tuple[str, str, str]]:
            with contextlib.closing(db()) as conn:
                return conn.execute(
                    "SELECT stream_id, status, message FROM messages"
                    " WHERE chat_id = ? AND user = ? ORDER BY finished_at",
                    (chat_id, user),
                ).fetchall()

        rows = await asyncio.to_thread(load)
        return [{"id": i, "status": s, "message": json.loads(m)} for i, s, m in rows]

    @app.post("/api/streams/{stream_id}/cancel")
    async def cancel(stream_id: str, request: Request) -> dict[str, str]:
        user = current_user(request)
        info, row = await streams.lookup(stream_id)
        owner = info.owner if info is not None else row.owner  # type: ignore[union-attr]
        if owner != user:
            raise HTTPException(404, "no such stream")
        return {"id": stream_id, "status": await streams.cancel(stream_id)}

    app.state.streams = streams
    return app


def app_from_env() -> FastAPI:
    """``uvicorn examples.fastapi_chat.app:app_from_env --factory``."""
    return create_app(
        os.environ.get("CHAT_UPSTREAM", "http://127.0.0.1:8900/v1"),
        os.environ.get("CHAT_DB", "fastapi_chat.sqlite3"),
        secret=os.environ.get("TOKENWIRE_SECRET"),
    )
