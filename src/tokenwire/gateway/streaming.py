"""ASGI responses that stream: op streams over SSE, and raw byte relays.

Both watch for the client going away while they write, and always release what they hold
(cursor, upstream response) however they end. A client disconnecting never touches the
generation: producers are independent of readers.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.types import Receive, Scope, Send

from tokenwire.gateway.metrics import Metrics
from tokenwire.hub import Cursor
from tokenwire.protocol import EncodedOp

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_PING = b": ping\n\n"


class _StreamingResponse(abc.ABC):
    """Base of the streaming responses: ``_write`` runs in the request's own task until it
    ends or the client disconnects, then ``_release`` runs, however it ended.

    One watcher task cancels the writer on ``http.disconnect``: a task less per open stream
    than racing two tasks, and the race lives in ``__call__`` itself, so an idle stream holds
    two coroutine frames (``__call__`` and ``_write``), not three. Streams are long-lived, so
    per-stream objects add up (measured in bench: RSS per idle open stream).
    """

    status = 200
    headers: list[tuple[bytes, bytes]] = SSE_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        gone = False

        async def watch() -> None:
            nonlocal gone
            try:
                while (await receive())["type"] != "http.disconnect":
                    pass
            except Exception:
                pass  # the server cannot tell us more: treat the connection as gone
            gone = True
            task.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send(
                {"type": "http.response.start", "status": self.status, "headers": self.headers}
            )
            await self._write(send)
        except asyncio.CancelledError:
            if not gone or task.cancelling() > 1:
                raise  # cancelled by someone else too (e.g. server shutdown)
            task.uncancel()
        except OSError:
            pass  # a reset socket: a disconnect
        else:
            if gone and task.cancelling() == 1:
                task.uncancel()  # _write swallowed our cancel (e.g. inside a relayed iterator)
        finally:
            watcher.cancel()
            await self._release()

    @abc.abstractmethod
    async def _write(self, send: Send) -> None:
        """Send the response body (the start was sent already)."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Let go of what the response holds (runs however it ended)."""


class OpStreamResponse(_StreamingResponse):
    """SSE: one event per op (the op's pre-encoded ``sse`` bytes), ``: ping`` while idle."""

    def __init__(
        self,
        cursor: Cursor,
        *,
        metrics: Metrics,
        keepalive_s: float,
    ) -> None:
        self.cursor = cursor
        self.metrics = metrics
        self.keepalive_s = keepalive_s

    async def _write(self, send: Send) -> None:
        cursor = self.cursor
        ops_out = self.metrics.ops_out
        bytes_out = self.metrics.bytes_out
        gauge = self.metrics.subscribers.labels("sse")
        gauge.inc()
        try:
            pending: list[EncodedOp] = []
            while True:
                if not pending:
                    if cursor.done:
                        break
                    pending = await cursor.read(self.keepalive_s)
                    if not pending:
                        if not cursor.done:
                            await send(
                                {"type": "http.response.body", "body": _PING, "more_body": True}
                            )
                        continue
                body = pending[0].sse if len(pending) == 1 else b"".join(op.sse for op in pending)
                await send({"type": "http.response.body", "body": body, "more_body": True})
                ops_out.inc(len(pending))
                bytes_out.inc(len(body))
                pending = []
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gauge.dec()

    async def _release(self) -> None:
        await self.cursor.aclose()


class RelayResponse(_StreamingResponse):
    """Relay a byte stream as it arrives, then run ``close`` (also on disconnect)."""

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        chunks: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.status = status
        self.headers = headers
        self.chunks = chunks
        self.close = close

    async def _write(self, send: Send) -> None:
        async for chunk in self.chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _release(self) -> None:
        with contextlib.suppress(Exception):
            await self.close()
