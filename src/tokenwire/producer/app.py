"""The ASGI side: serve a generator-returning handler as an OpenAI-compatible endpoint."""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import time
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from tokenwire.producer.encoder import CompletionBuilder, StreamEncoder
from tokenwire.producer.framing import ChunkFramer, error_event
from tokenwire.producer.parts import Part
from tokenwire.producer.request import ChatRequest, RequestError, error_body, parse_request

log = logging.getLogger("tokenwire.producer")

Parts = AsyncIterable[Part] | Iterable[Part]
Handler = Callable[[ChatRequest], Parts | Awaitable[Parts]]
Outcome = Literal["completed", "disconnected", "failed"]

# A streamed response buffers at most this much before waiting for the client to read it.
HIGH_WATER = 64 * 1024
# A generator that never suspends is paused this often so the socket gets written in batches.
BATCH_PARTS = 64

_SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
_END = object()
_FAILED = "The model server failed while generating."
_threads: concurrent.futures.ThreadPoolExecutor | None = None


def _executor() -> concurrent.futures.ThreadPoolExecutor:
    global _threads
    if _threads is None:
        _threads = concurrent.futures.ThreadPoolExecutor(thread_name_prefix="tokenwire-producer")
    return _threads


def create_app(
    handler: Handler,
    models: Sequence[str] = (),
    *,
    reasoning_field: str = "reasoning_content",
    max_body_bytes: int = 8 * 1024 * 1024,
    on_stream_start: Callable[[ChatRequest], None] | None = None,
    on_stream_end: Callable[[ChatRequest, Outcome], None] | None = None,
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """An ASGI app serving ``POST /v1/chat/completions`` and ``GET /v1/models``.

    ``handler(request)`` returns (or, if async, resolves to) an async or sync iterable of parts:
    ``str`` tokens or the typed parts of ``tokenwire.producer.parts``. Sync iterators other
    than lists and tuples are advanced in a worker thread, so they may block. With ``models``
    given, other model names get a 404. ``on_stream_start``/``on_stream_end`` observe streamed
    responses; ``routes`` are extra Starlette routes.
    """
    model_list = list(models)
    known = frozenset(model_list)
    models_body = msgspec.json.encode(
        {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "tokenwire"}
                for m in model_list
            ],
        }
    )

    async def list_models(request: Request) -> Response:
        return Response(models_body, media_type="application/json")

    async def chat_completions(request: Request) -> Response:
        try:
            chat = parse_request(await _read_body(request, max_body_bytes))
            if chat.n != 1:
                raise RequestError(
                    "This server supports only n=1.", param="n", code="unsupported_value"
                )
            if known and chat.model not in known:
                raise RequestError(
                    f"The model `{chat.model}` does not exist.",
                    status=404,
                    param="model",
                    code="model_not_found",
                )
            result = handler(chat)
            if inspect.isawaitable(result):
                result = await result
        except RequestError as exc:
            return _error_response(exc)
        parts = _aiter(result)
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        created = int(time.time())
        prompt_tokens = _estimate_prompt_tokens(chat)
        if not chat.stream:
            return await _complete(
                chat, parts, response_id, created, prompt_tokens, reasoning_field
            )
        framer = ChunkFramer(response_id, chat.model, created, reasoning_field)
        encoder = StreamEncoder(
            framer,
            limit=chat.token_limit,
            include_usage=chat.include_usage,
            prompt_tokens=prompt_tokens,
        )
        return ChunkStreamResponse(chat, parts, encoder, on_stream_start, on_stream_end)

    return Starlette(
        routes=[
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/models", list_models, methods=["GET"]),
            *routes,
        ]
    )


class ChunkStreamResponse(Response):
    """Streams the encoder's output; stops and closes the generator when the client leaves."""

    def __init__(
        self,
        chat: ChatRequest,
        parts: AsyncIterator[Part],
        encoder: StreamEncoder,
        on_start: Callable[[ChatRequest], None] | None,
        on_end: Callable[[ChatRequest, Outcome], None] | None,
    ) -> None:
        # Not Response.__init__: that would declare a Content-Length for an empty body.
        self.status_code = 200
        self.background = None
        self.raw_headers = list(_SSE_HEADERS)
        self.chat = chat
        self.parts = parts
        self.encoder = encoder
        self.on_start = on_start
        self.on_end = on_end

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.on_start is not None:
            self.on_start(self.chat)
        outcome: Outcome = "completed"
        try:
            outcome = await self._stream(receive, send)
        except BaseException:
            outcome = "failed"
            raise
        finally:
            if self.on_end is not None:
                self.on_end(self.chat, outcome)

    async def _stream(self, receive: Receive, send: Send) -> Outcome:
        encoder = self.encoder
        parts = self.parts
        buf: list[bytes] = [encoder.start()]
        size = 0
        finished = False
        failed = False
        ready = asyncio.Event()
        ready.set()
        room = asyncio.Event()
        room.set()

        async def pump() -> None:
            nonlocal size, finished, failed
            feed = encoder.feed
            since_pause = 0
            tail = b""
            try:
                async for part in parts:
                    chunk = feed(part)
                    if chunk:
                        buf.append(chunk)
                        size += len(chunk)
                        ready.set()
                    if encoder.done:
                        break
                    if size >= HIGH_WATER:
                        room.clear()
                        await room.wait()
                        since_pause = 0
                    else:
                        since_pause += 1
                        if since_pause >= BATCH_PARTS:
                            since_pause = 0
                            await asyncio.sleep(0)
                tail = encoder.finish()
            except Exception:
                log.exception("producer generator failed")
                failed = True
                tail = error_event(_FAILED, "server_error", None)
            except BaseException:
                # A cancel raised inside the generator (or ours, on disconnect): the response
                # must still end, so the writer below is woken either way.
                failed = True
                tail = error_event(_FAILED, "server_error", None)
                raise
            finally:
                await _close(parts)
                buf.append(tail)
                finished = True
                ready.set()

        disconnected = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()
            ready.set()

        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        pump_task = asyncio.create_task(pump())
        watch_task = asyncio.create_task(watch())
        try:
            while True:
                await ready.wait()
                ready.clear()
                if disconnected.is_set():
                    return "disconnected"
                last = finished
                if buf:
                    data = buf[0] if len(buf) == 1 else b"".join(buf)
                    buf.clear()
                    size = 0
                    room.set()
                elif not last:
                    continue
                else:
                    data = b""
                try:
                    await send({"type": "http.response.body", "body": data, "more_body": not last})
                except OSError:
                    return "disconnected"
                if last:
                    return "failed" if failed or encoder.failed else "completed"
        finally:
            watch_task.cancel()
            if not pump_task.done():
                pump_task.cancel()
            await asyncio.gather(pump_task, watch_task, return_exceptions=True)


async def _complete(
    chat: ChatRequest,
    parts: AsyncIterator[Part],
    response_id: str,
    created: int,
    prompt_tokens: int,
    reasoning_field: str,
) -> Response:
    builder = CompletionBuilder(
        response_id,
        chat.model,
        created,
        limit=chat.token_limit,
        prompt_tokens=prompt_tokens,
        reasoning_field=reasoning_field,
    )
    try:
        async for part in parts:
            builder.feed(part)
            if builder.done:
                break
    except Exception:
        log.exception("producer generator failed")
        return _json_error(error_body(_FAILED, type="server_error"), 500)
    finally:
        await _close(parts)
    if builder.error is not None:
        err = builder.error
        return _json_error(error_body(err.message, type=err.type, code=err.code), err.status)
    return Response(builder.to_json(), media_type="application/json")


def _json_error(body: bytes, status: int) -> Response:
    return Response(body, status_code=status, media_type="application/json")


def _error_response(exc: RequestError) -> Response:
    return _json_error(exc.body(), exc.status)


async def _read_body(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(
                f"The request body is larger than {limit} bytes.",
                status=413,
                code="request_too_large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _estimate_prompt_tokens(chat: ChatRequest) -> int:
    # A stand-in for a tokenizer: about four characters per token.
    return max(1, sum(len(m.text()) for m in chat.messages) // 4)


def _aiter(result: Any) -> AsyncIterator[Part]:
    if isinstance(result, str):
        return _from_list([result])
    if isinstance(result, (list, tuple)):
        return _from_list(result)
    if hasattr(result, "__aiter__"):
        return aiter(result)
    if hasattr(result, "__iter__"):
        return _from_thread(iter(result))
    raise TypeError(f"a producer handler returned {type(result).__name__!r}, not an iterable")


async def _from_list(items: Sequence[Part]) -> AsyncIterator[Part]:
    for item in items:
        yield item


async def _from_thread(it: Any) -> AsyncIterator[Part]:
    """Advance a (possibly blocking) sync iterator in a worker thread, one item per hop."""
    pending: concurrent.futures.Future[Any] | None = None
    try:
        while True:
            pending = _executor().submit(next, it, _END)
            item = await asyncio.wrap_future(pending)
            pending = None
            if item is _END:
                return
            yield item
    finally:
        # A generator cannot be closed while another thread runs it: wait for that step first.
        close = getattr(it, "close", None)
        if pending is not None:
            try:
                await asyncio.wrap_future(pending)
            except BaseException:
                pass
        if close is not None:
            close()


async def _close(parts: AsyncIterator[Part]) -> None:
    aclose = getattr(parts, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:
            log.exception("closing a producer generator failed")
