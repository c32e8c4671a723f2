"""ASGI responses that stream: op streams over SSE, and raw byte relays.

Both watch for the client going away while they write, and always release what they hold
(cursor, upstream response) however they end. A client disconnecting never touches the
generation: producers are independent of readers.
"""

from __future__ import annotations

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


async def _until_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


async def _race_disconnect(body: Awaitable[None], receive: Receive) -> None:
    """Run ``body`` in this task until it finishes or the client disconnects.

    The body runs inline and one watcher task cancels it on disconnect: a task less per open
    stream than racing two tasks (streams are long-lived, so per-stream objects add up).
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _until_disconnect(receive)
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        await body
    except asyncio.CancelledError:
        if not gone or task.cancelling() > 1:
            raise  # cancelled by someone else too (e.g. server shutdown)
        task.uncancel()
    except OSError:
        pass  # a reset socket: a disconnect
    else:
        if gone:  # the watcher's cancel arrived after the body finished: take it back
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                task.uncancel()
    finally:
        watcher.cancel()


class OpStreamResponse:
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gauge = self.metrics.subscribers.labels("sse")
        gauge.inc()
        try:
            await send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
            await _race_disconnect(self._write(send), receive)
        finally:
            gauge.dec()
            await self.cursor.aclose()

    async def _write(self, send: Send) -> None:
        cursor = self.cursor
        ops_out = self.metrics.ops_out
        bytes_out = self.metrics.bytes_out
        pending: list[EncodedOp] = []
        while True:
            if not pending:
                if cursor.done:
                    break
                pending = await cursor.read(self.keepalive_s)
                if not pending:
                    if not cursor.done:
                        await send({"type": "http.response.body", "body": _PING, "more_body": True})
                    continue
            body = pending[0].sse if len(pending) == 1 else b"".join(op.sse for op in pending)
            await send({"type": "http.response.body", "body": body, "more_body": True})
            ops_out.inc(len(pending))
            bytes_out.inc(len(body))
            pending = []
        await send({"type": "http.response.body", "body": b"", "more_body": False})


class RelayResponse:
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

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send(
                {"type": "http.response.start", "status": self.status, "headers": self.headers}
            )
            await _race_disconnect(self._write(send), receive)
        finally:
            with contextlib.suppress(Exception):
                await self.close()

    async def _write(self, send: Send) -> None:
        async for chunk in self.chunks:
            if chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
