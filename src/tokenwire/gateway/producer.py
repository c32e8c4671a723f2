"""The gateway's generation: one upstream chat completion piped into a ``StreamWriter``.

``Generation`` is what ``POST /v1/streams`` starts with ``Streams.start``: the upstream
request's ``async with`` handed to ``writer.pipe``, which enters it and reads the response with
its ``poll()`` (the per-token hot path). ``Streams`` turns the upstream client's errors
(``UpstreamUnavailable``, ``UpstreamBroken``) and error answers into the stream's ``failed``
ending, with the same error objects as before the library existed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

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


Produce = Callable[[StreamWriter], Awaitable[Any]]
"""What ``Streams.start`` runs: ``produce(writer)``."""

_json = msgspec.json.Encoder()


@dataclass(slots=True)
class StreamRequest:
    """One ``POST /v1/streams`` for a model that has a producer of the host's
    (``create_app(settings, producers={model: factory})``): what ``factory(request)`` gets to
    build the stream's ``produce(writer)``.

    ``body`` is the request body as the gateway would send it upstream (``stream: true``, usage
    asked for, the ``tokenwire`` options removed); a factory may read and pop its own members.
    ``call(body)`` opens one upstream model call, to hand to ``writer.pipe(..., request.format)``
    (``pipe(writer, body)`` does both). Each call is a new upstream request, so a produce
    function may call the model several times (a tool round) or retry a failed call."""

    body: dict[str, Any]
    model: str | None
    owner: str | None
    format: str
    """The upstream API's stream format (``chat``, ``responses``, ``anthropic``)."""
    upstream: UpstreamClient = field(repr=False)
    path: str = "chat/completions"
    headers: dict[str, str] = field(default_factory=lambda: dict(_UPSTREAM_HEADERS))

    def call(self, body: dict[str, Any] | None = None) -> Any:
        """One upstream model call with ``body`` (default: the request's): an async context
        manager giving the streamed response (``writer.pipe`` enters it)."""
        return self.upstream.request(
            "POST",
            self.path,
            content=_json.encode(self.body if body is None else body),
            headers=self.headers,
            keep_headers=False,
        )

    def pipe(
        self, w: StreamWriter, body: dict[str, Any] | None = None
    ) -> Coroutine[Any, Any, PipeResult]:
        """``w.pipe(self.call(body), self.format)``: one model call piped into the answer."""
        return w.pipe(self.call(body), self.format)


ProducerFactory = Callable[[StreamRequest], Produce]
"""``create_app(producers={model: factory})``: the host's produce function for one request."""


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


__all__ = ["Generation", "Produce", "Producer", "ProducerFactory", "StreamRequest"]
