"""One detached generation: upstream bytes -> Pipeline -> hub, until the message ends.

The producer runs as its own task, independent of any HTTP request. It reads the upstream
response, feeds the bytes to the sans-IO ``Pipeline``, and appends the ops to the hub. A timer,
armed only while a coalesced delta is held, flushes it when its window expires. A cancel
request (from any process, through the hub) aborts the upstream request; the partial message
is kept.

With a shared hub (Redis), appends that fail because Redis is unreachable are retried for the
hub's grace time (the upstream waits meanwhile); after that the producer aborts the upstream,
ends the stream ``failed`` as far as it still can, and releases it so another process's
watchdog ends it once Redis is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

from tokenwire.gateway.store import StoredStream
from tokenwire.gateway.upstream import UpstreamBroken, UpstreamResponse, UpstreamUnavailable
from tokenwire.hub import HubUnavailable, StreamNotFound
from tokenwire.protocol import EncodedOp, Pipeline

if TYPE_CHECKING:
    from tokenwire.gateway.app import Gateway

log = logging.getLogger("tokenwire.gateway")

_ERROR_BODY_LIMIT = 64 * 1024
_UPSTREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class HubLost(Exception):
    """The hub no longer takes this stream's ops (unreachable past its grace, or it was gone
    or already ended there). The producer stops writing to it."""


class Producer:
    """Runs one stream's generation; ``run()`` returns when the message has ended."""

    __slots__ = (
        "_cancel_requested",
        "_cancelled_task",
        "_connecting",
        "_ended",
        "_first_token",
        "_flush_handle",
        "_flush_task",
        "_hub_lost",
        "_lock",
        "_response",
        "_started",
        "_task",
        "_unsent",
        "body",
        "created_at",
        "gw",
        "owner",
        "pipe",
        "stream_id",
    )

    def __init__(
        self,
        gw: Gateway,
        stream_id: str,
        owner: str | None,
        body: bytes,
        *,
        model: str | None,
        coalesce_ms: float,
    ) -> None:
        self.gw = gw
        self.stream_id = stream_id
        self.owner = owner
        self.body = body
        self.pipe = Pipeline(stream_id, model=model, coalesce_ms=coalesce_ms)
        self.created_at = time.time()
        self._started = time.monotonic()
        self._lock = asyncio.Lock()  # orders (pipeline step + append) between reader and flush
        # A held (coalesced) delta is flushed by a timer armed only while one is held, so an
        # idle or slow stream costs no extra task.
        self._flush_handle: asyncio.TimerHandle | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._unsent: list[EncodedOp] = []  # ops the hub refused (kept for the last attempt)
        self._first_token = False
        self._ended = False  # message.end handed to the hub
        self._hub_lost = False  # after HubLost: one last attempt per append, no retries
        self._task: asyncio.Task[None] | None = None
        self._connecting = False  # waiting for the upstream's answer (connect, retries)
        self._response: UpstreamResponse | None = None
        self._cancel_requested = False
        self._cancelled_task = False  # _on_cancel cancelled the task (while connecting)

    async def run(self) -> None:
        gw = self.gw
        gw.metrics.active_streams.inc()
        task = asyncio.current_task()
        assert task is not None
        self._task = task
        # The upstream is read in this task and a cancel request arrives as a callback: one
        # task per generation (an idle open stream costs what it holds).
        unwatch: Callable[[], None] | None = None
        try:
            unwatch = gw.hub.watch_cancel(self.stream_id, self._on_cancel)
            try:
                await self._read_upstream()
            except asyncio.CancelledError:
                if not self._cancelled_task or task.cancelling() > 1:
                    raise  # not (only) ours: the gateway shuts down
                task.uncancel()  # our cancel landed while connecting: end the stream below
                await self._finish(self.pipe.cancel)
            except HubLost as exc:
                log.error("stream %s: %s", self.stream_id, exc)
                self._hub_lost = True
                await self._fail(f"lost the hub: {exc}", "hub_unavailable")
            except Exception as exc:
                log.error("stream %s: producer error: %r", self.stream_id, exc)
                await self._fail(f"gateway error: {type(exc).__name__}", "internal_error")
        except HubLost as exc:
            # Even the end could not be written: let the hub's other processes end it.
            log.error("stream %s: could not end it in the hub: %s", self.stream_id, exc)
            self._hub_lost = True
        except asyncio.CancelledError:
            # Gateway shutdown: end the stream so nobody waits for it forever.
            with contextlib.suppress(BaseException):
                await asyncio.shield(self._fail("gateway shut down", "shutdown"))
            raise
        finally:
            try:
                if self._flush_handle is not None:
                    self._flush_handle.cancel()
                if unwatch is not None:
                    unwatch()
                if self._flush_task is not None:
                    self._flush_task.cancel()
                    await asyncio.gather(self._flush_task, return_exceptions=True)
                gw.metrics.active_streams.dec()
                if self._hub_lost:
                    await gw.hub.release(self.stream_id)
            finally:
                # Last, so shutdown waits for all of the above; and however that ended.
                gw.tasks.discard(task)

    def _on_cancel(self) -> None:
        """A cancel was requested: abort the upstream (``_finish`` then ends ``cancelled``)."""
        self._cancel_requested = True
        if self._response is not None:
            # Closing the connection ends the read loop; hub appends in flight are never
            # interrupted.
            self._response.abort()
        elif self._connecting and self._task is not None:
            self._cancelled_task = True
            self._task.cancel()  # still connecting / retrying: nothing to keep consistent

    # -- reading -------------------------------------------------------------------------
    async def _read_upstream(self) -> None:
        gw = self.gw
        pipe = self.pipe
        self._connecting = True
        try:
            async with gw.upstream.request(
                "POST",
                "chat/completions",
                content=self.body,
                headers=_UPSTREAM_HEADERS,
                keep_headers=False,
            ) as response:
                self._connecting = False
                self._response = response
                self.body = b""  # no retries from here on: don't hold the prompt for hours
                if response.status_code >= 400:
                    gw.metrics.upstream_errors.labels("http_status").inc()
                    message, etype, code = await _upstream_error(response)
                    await self._fail(message, etype, code)
                    return
                poll = response.poll  # (no coroutine per read, no frame held while idle)
                while (chunk := poll()) is not None:
                    if isinstance(chunk, asyncio.Future):
                        await chunk
                        continue
                    if self._cancel_requested:
                        break  # (bytes that were already buffered are not used)
                    async with self._lock:
                        ops = pipe.feed(chunk, time.monotonic())
                        if ops:
                            await self._append(ops)
                    if self._flush_handle is None and (
                        self._flush_task is None or self._flush_task.done()
                    ):
                        self._arm_flush()  # (a running flush re-arms by itself)
                    if pipe.done:
                        break
        except UpstreamUnavailable as exc:
            self._connecting = False  # (a cancel from now on must not cancel the ending)
            gw.metrics.upstream_errors.labels("unreachable").inc()
            log.warning("stream %s: %s", self.stream_id, exc)
            await self._fail(str(exc), "upstream_error")
            return
        except UpstreamBroken as exc:
            if not self._cancel_requested:  # (a cancel aborts the connection on purpose)
                gw.metrics.upstream_errors.labels("broken_stream").inc()
                log.warning("stream %s: upstream failed mid-stream: %s", self.stream_id, exc)
            await self._fail(f"upstream failed after output started: {exc}", "upstream_error")
            return
        finally:
            self._connecting = False
            self._response = None
        await self._finish(pipe.close)

    def _arm_flush(self) -> None:
        deadline = self.pipe.next_deadline()
        if deadline is not None and not self.pipe.done:
            delay = max(0.0, deadline - time.monotonic())
            self._flush_handle = asyncio.get_running_loop().call_later(delay, self._on_deadline)

    def _on_deadline(self) -> None:
        self._flush_handle = None
        self._flush_task = asyncio.ensure_future(self._flush_due())

    async def _flush_due(self) -> None:
        """Emit a coalesced delta when its window passes, even if the upstream is silent."""
        async with self._lock:
            ops = self.pipe.poll(time.monotonic())
            if ops:
                await self._append(ops)
        if self._flush_handle is None:
            self._arm_flush()  # the timer fired a hair early, or more text is held

    # -- output ----------------------------------------------------------------------------
    async def _append(self, ops: Sequence[EncodedOp]) -> None:
        """Hand ops to the hub (caller holds the lock). Stores the final message first."""
        if self._ended:
            return
        if self._unsent:  # a batch the hub did not take goes first, so the seqs stay dense
            ops = [*self._unsent, *ops]
            self._unsent = []
        if not self._first_token:
            for op in ops:
                if op.type in ("block.start", "block.delta"):
                    self._first_token = True
                    self.gw.metrics.ttft.observe(time.monotonic() - self._started)
                    break
        if ops[-1].type == "message.end":
            self._ended = True
            await self._store_final()
        try:
            await self._hub_append(ops)
        except HubLost:
            self._unsent = list(ops)  # for the one last attempt to end the stream
            raise

    async def _hub_append(self, ops: Sequence[EncodedOp]) -> None:
        """``hub.append``, retried while the hub is unreachable (up to its grace time)."""
        hub = self.gw.hub
        deadline = time.monotonic() + (0.0 if self._hub_lost else hub.unavailable_grace_s)
        delay = 0.05
        while True:
            try:
                await hub.append(self.stream_id, ops)
                return
            except HubUnavailable as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise HubLost(str(exc)) from None
                await asyncio.sleep(min(delay, left))
                delay = min(delay * 2, 1.0)
            except (StreamNotFound, ValueError) as exc:
                # Gone (Redis lost its data) or ended elsewhere (e.g. declared lost meanwhile).
                raise HubLost(f"the hub refused the ops: {exc}") from None

    async def _store_final(self) -> None:
        # Stored before the hub sees message.end, so the message is findable once the hub
        # forgets the log, however short the retention.
        message = self.pipe.message
        self.gw.metrics.streams.labels(message.status).inc()
        try:
            await self.gw.store.save(
                StoredStream(
                    id=self.stream_id,
                    owner=self.owner,
                    status=message.status,
                    seq=self.pipe.seq,
                    message=message.to_json(),
                    created_at=self.created_at,
                    finished_at=time.time(),
                )
            )
        except Exception:
            log.exception("stream %s: could not store the final message", self.stream_id)

    async def _fail(self, reason: str, error_type: str, code: str | int | None = None) -> None:
        # (The ending's closure lives here, not in the long-lived reading frame: a closure
        # there would hold a cell per captured name for the whole stream.)
        await self._finish(
            lambda now: self.pipe.fail(reason, error_type=error_type, code=code, now=now)
        )

    async def _finish(self, end: Callable[[float], list[EncodedOp]]) -> None:
        """Run an ending step (close / cancel / fail) unless the message already ended.

        After a cancel request every ending is a cancel: aborting the upstream makes the read
        loop end (cleanly or with an error), and that must not be reported as either.
        """
        if self._cancel_requested:
            end = self.pipe.cancel
        async with self._lock:
            if self._ended:
                return
            ops = end(time.monotonic())
            if ops:
                await self._append(ops)


async def _upstream_error(response: UpstreamResponse) -> tuple[str, str, str | int | None]:
    """Turn an upstream error response into (message, type, code) for ``message.end``."""
    body = b""
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) >= _ERROR_BODY_LIMIT:
            break
    status = response.status_code
    detail: str | None = None
    etype: str | None = None
    code: str | int | None = status
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError:
        data = None
    if isinstance(data, dict):
        err = data.get("error", data.get("detail"))
        if isinstance(err, dict):
            detail = _str_or_none(err.get("message"))
            etype = _str_or_none(err.get("type"))
            if isinstance(err.get("code"), str | int):
                code = err["code"]
        elif isinstance(err, str):
            detail = err
    if detail is None:
        detail = body[:500].decode("utf-8", "replace").strip() or response.reason_phrase
    return f"upstream returned HTTP {status}: {detail}", etype or "upstream_error", code


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
