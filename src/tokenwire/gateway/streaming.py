"""ASGI responses that stream: op streams over SSE, and raw byte relays.

Both watch for the client going away while they write, and always release what they hold
(cursor, upstream response) however they end. A client disconnecting never touches the
generation: producers are independent of readers.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from starlette.types import Message, Receive, Scope, Send

from tokenwire.gateway.metrics import Metrics
from tokenwire.hub import Cursor
from tokenwire.protocol import EncodedOp

SSE_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_PING = b": ping\n\n"
log = logging.getLogger("tokenwire.gateway")


class RelayAborted(Exception):
    """A passthrough relay's upstream broke off after the response had started. Raised so the
    server drops the client connection (the client sees a truncated body, as it should); it
    was already logged in one line, so ``logged`` tells log filters to drop the server's
    "Exception in ASGI application" traceback (``tokenwire.logredact.RedactingFilter`` does)."""

    logged = True


class _StreamingResponse(abc.ABC):
    """Base of the streaming responses: ``_write`` runs in the request's own task until it
    ends or the client disconnects, then ``_release`` runs, however it ended.

    A ``DisconnectWatch`` cancels the writer on ``http.disconnect``, and the race lives in
    ``__call__`` itself: an idle stream holds the request's task and two coroutine frames
    (``__call__`` and ``_write``), no task of its own for watching. Streams are long-lived, so
    per-stream objects add up (measured in bench: RSS per idle open stream).
    """

    __slots__ = ()
    status = 200
    headers: list[tuple[bytes, bytes]] = SSE_HEADERS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        watch = DisconnectWatch(receive, task)
        try:
            await send(
                {"type": "http.response.start", "status": self.status, "headers": self.headers}
            )
            await self._write(send)
        except asyncio.CancelledError:
            if not watch.gone or task.cancelling() > 1:
                raise  # cancelled by someone else too (e.g. server shutdown)
            task.uncancel()
        except OSError:
            pass  # a reset socket: a disconnect
        else:
            if watch.gone and task.cancelling() == 1:
                task.uncancel()  # _write ended without our cancel landing (it swallowed it)
        finally:
            watch.close()
            await self._release()

    @abc.abstractmethod
    async def _write(self, send: Send) -> None:
        """Send the response body (the start was sent already)."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Let go of what the response holds (runs however it ended)."""


class DisconnectWatch:
    """Waits on ASGI ``receive()`` for ``http.disconnect``, then cancels ``task``.

    With uvicorn's own ``receive()`` it needs no task: it steps the coroutine by hand,
    resuming it from the done callback of each future it awaits (what a Task does, minus the
    Task). Written by hand because a watcher task per open stream cost ~1 KiB of RSS (task,
    its registry entry, a coroutine frame and a closure) on a stream that may sit idle for
    minutes; ``receive()`` is stepped when a stream starts and when it ends, never per token.

    Only uvicorn's ``receive()`` is stepped so: it awaits nothing but its own
    ``asyncio.Event``. A ``receive`` wrapped by middleware (or from another server) may need
    to run inside a task or one context (task groups, ``asyncio.timeout``, context variables
    set and reset around the call), so it gets a watcher task, as before.
    """

    __slots__ = ("_coro", "_receive", "_stepped", "_task", "_watcher", "gone")

    def __init__(self, receive: Receive, task: asyncio.Task[Any]) -> None:
        self._receive = receive
        self._task: asyncio.Task[Any] | None = task
        self._stepped = False
        self.gone = False
        self._coro: Coroutine[Any, Any, Message] | None = None
        self._watcher: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        if _steppable(receive):
            self._coro = receive()
            # First step on the next turn, as a Task's: a disconnect seen at once must not
            # cancel the task while it is running this very line.
            loop.call_soon(self._step)
        else:
            self._watcher = loop.create_task(self._watch())

    async def _watch(self) -> None:
        try:
            while (await self._receive())["type"] != "http.disconnect":
                pass
        except Exception:
            pass  # the server cannot tell us more: treat the connection as gone
        self._gone()

    def _step(self, _: object = None) -> None:
        coro = self._coro
        if coro is None:
            return  # closed meanwhile
        while True:
            try:
                awaited = coro.send(None)
            except StopIteration as end:
                if end.value["type"] != "http.disconnect":
                    coro = self._coro = self._receive()  # (the request body): keep listening
                    continue
            except (Exception, asyncio.CancelledError):
                if not self._stepped:
                    # Failing at once is no disconnect: this receive() may need a task
                    # after all (a future uvicorn). Give it one.
                    self._coro = None
                    self._watcher = asyncio.get_running_loop().create_task(self._watch())
                    return
                # Otherwise the server cannot tell us more: treat the connection as gone.
            else:
                self._stepped = True
                if isinstance(awaited, asyncio.Future):
                    awaited._asyncio_future_blocking = False  # (as a Task does on taking it)
                    awaited.add_done_callback(self._step)
                else:  # a bare ``yield`` (``asyncio.sleep(0)``): step again on the next turn
                    asyncio.get_running_loop().call_soon(self._step)
                return
            break
        self._coro = None
        self._gone()

    def _gone(self) -> None:
        task = self._task
        if task is not None:  # (not after close: the response is releasing what it holds)
            self.gone = True
            task.cancel()

    def close(self) -> None:
        """Stop watching (the response ended): unwinds ``receive()`` where it waits."""
        self._task = None
        coro, self._coro = self._coro, None
        if coro is not None:
            coro.close()
        if self._watcher is not None:
            self._watcher.cancel()


def _steppable(receive: Receive) -> bool:
    """Is ``receive`` uvicorn's own (``RequestResponseCycle.receive``, httptools or h11)?"""
    owner = type(getattr(receive, "__self__", None))
    return owner.__name__ == "RequestResponseCycle" and owner.__module__.startswith(
        "uvicorn.protocols.http."
    )


class OpStreamResponse(_StreamingResponse):
    """SSE: one event per op (the op's pre-encoded ``sse`` bytes), ``: ping`` while idle."""

    __slots__ = ("cursor", "first", "keepalive_s", "metrics")

    def __init__(
        self,
        cursor: Cursor,
        *,
        metrics: Metrics,
        keepalive_s: float,
        first: bytes = b"",
    ) -> None:
        self.cursor = cursor
        self.metrics = metrics
        self.keepalive_s = keepalive_s
        self.first = first  # sent before the cursor's ops (a catch-up snapshot)

    async def _write(self, send: Send) -> None:
        cursor = self.cursor
        ops_out = self.metrics.ops_out
        bytes_out = self.metrics.bytes_out
        gauge = self.metrics.subscribers.labels("sse")
        gauge.inc()
        try:
            if self.first:
                first, self.first = self.first, b""
                await send({"type": "http.response.body", "body": first, "more_body": True})
                bytes_out.inc(len(first))
                ops_out.inc()  # (one snapshot op)
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
    """Relay a byte stream as it arrives, then run ``close`` (also on disconnect).

    ``poll()`` returns the next bytes, ``None`` at the end, or a future to await before
    polling again (``UpstreamResponse.poll``): no async generator or coroutine per chunk on
    the passthrough's per-token path.
    """

    __slots__ = ("close", "headers", "poll", "status")

    def __init__(
        self,
        status: int,
        headers: list[tuple[bytes, bytes]],
        poll: Callable[[], bytes | asyncio.Future[None] | None],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.status = status
        self.headers = headers
        self.poll = poll
        self.close = close

    async def _write(self, send: Send) -> None:
        poll = self.poll
        while True:
            try:
                chunk = poll()
            except Exception as exc:  # reset, stall, bad chunk size, short content-length
                log.warning("passthrough: the upstream response broke off, relayed cut: %s", exc)
                # Not finishing the body is how the client learns it is truncated.
                raise RelayAborted(str(exc)) from None
            if chunk is None:
                break
            if isinstance(chunk, asyncio.Future):
                await chunk
            elif chunk:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _release(self) -> None:
        with contextlib.suppress(Exception):
            await self.close()
