"""Baseline for bench/producer.py: the common way to serve a token stream.

A Starlette endpoint that builds a pydantic chunk object per token and serializes it with
``model_dump_json``. Tokens come from the same deterministic source as ``tokenwire mock``.
Run: ``uvicorn bench.pydantic_server:app``.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import AsyncIterator

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from tokenwire.mock import markdown_tokens


class Delta(BaseModel):
    role: str | None = None
    content: str | None = None


class Choice(BaseModel):
    index: int = 0
    delta: Delta
    logprobs: None = None
    finish_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: str = "chat.completion.chunk"
    created: int
    model: str
    choices: list[Choice]


def frame(chunk: ChatCompletionChunk) -> bytes:
    return b"data: " + chunk.model_dump_json(exclude_none=True).encode() + b"\n\n"


async def chat_completions(request: Request) -> StreamingResponse:
    body = await request.json()
    model = body["model"]
    limit = int(body.get("max_tokens") or 256)
    response_id = f"chatcmpl-{uuid.uuid4().hex}"
    created = int(time.time())

    async def events() -> AsyncIterator[bytes]:
        for token in itertools.islice(markdown_tokens(0), limit):
            chunk = ChatCompletionChunk(
                id=response_id,
                created=created,
                model=model,
                choices=[Choice(delta=Delta(content=token))],
            )
            yield frame(chunk)
        last = ChatCompletionChunk(
            id=response_id,
            created=created,
            model=model,
            choices=[Choice(delta=Delta(), finish_reason="length")],
        )
        yield frame(last)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


app = Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])])
