"""The gateway's generation: one upstream chat completion piped into a ``StreamWriter``.

``Generation`` is what ``POST /v1/streams`` starts with ``Streams.start``: the upstream
request's ``async with`` handed to ``writer.pipe``, which enters it and reads the response with
its ``poll()`` (the per-token hot path). ``Streams`` turns the upstream client's errors
(``UpstreamUnavailable``, ``UpstreamBroken``) and error answers into the stream's ``failed``
ending, with the same error objects as before the library existed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from tokenwire.gateway.upstream import UpstreamClient
from tokenwire.streams import PipeResult, StreamWriter

if TYPE_CHECKING:
    from tokenwire.gateway.service import Gateway

_UPSTREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class Generation:
    """``produce`` for one upstream request. Not a coroutine function: it returns
    ``writer.pipe(...)``'s coroutine itself, so an open stream holds no frame of its own here
    (per idle stream memory, docs/benchmarks.md). The request body is held by the upstream
    exchange only until the upstream answered (no retries after that)."""

    __slots__ = ("body", "format", "headers", "path", "upstream")

    def __init__(
        self,
        upstream: UpstreamClient,
        body: bytes,
        format: str = "chat",
        *,
        path: str = "chat/completions",
        headers: dict[str, str] | None = None,
    ) -> None:
        self.upstream = upstream
        self.body = body
        self.format = format  # (explicit: "auto" would miss the fast path until it decides)
        self.path = path
        self.headers = headers if headers is not None else _UPSTREAM_HEADERS

    def __call__(self, w: StreamWriter) -> Coroutine[Any, Any, PipeResult]:
        exchange = self.upstream.request(
            "POST",
            self.path,
            content=self.body,
            headers=self.headers,
            keep_headers=False,
        )
        self.body = b""
        return w.pipe(exchange, self.format)


class Producer:
    """One gateway generation, run by hand (``await producer.run()``) on a stream that was
    already created in the hub. ``POST /v1/streams`` uses ``Streams.start`` instead."""

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
        assert gw.upstream is not None, "the gateway is not started"
        self.gw = gw
        self.stream_id = stream_id
        self.writer = StreamWriter(
            gw.streams, stream_id, owner, None, model=model, coalesce_ms=coalesce_ms
        )
        path, headers, fmt = gw.stream_request
        self.produce = Generation(gw.upstream, body, fmt, path=path, headers=headers)

    async def run(self) -> None:
        streams = self.gw.streams
        task = asyncio.current_task()
        assert task is not None
        streams._tasks.add(task)  # (so a shutdown ends it too)
        await streams._run(self.writer, self.produce)


__all__ = ["Generation", "Producer"]
