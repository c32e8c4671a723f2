"""The gateway's generation: one upstream chat completion piped into a ``StreamWriter``.

``generate`` is what ``POST /v1/streams`` starts with ``Streams.start``: it posts the request
upstream and pipes the response (the writer's per-token hot path). Upstream failures become
``StreamFailed`` with the same error objects as before the library existed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from tokenwire.errors import StreamFailed
from tokenwire.gateway.metrics import Metrics
from tokenwire.gateway.upstream import UpstreamBroken, UpstreamClient, UpstreamUnavailable
from tokenwire.streams import StreamWriter

if TYPE_CHECKING:
    from tokenwire.gateway.service import Gateway

log = logging.getLogger("tokenwire.gateway")

_UPSTREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}


class Generation:
    """``produce`` for one upstream request (a callable object rather than a closure: it
    holds exactly what it needs, and drops the request body once the upstream answered)."""

    __slots__ = ("body", "metrics", "upstream")

    def __init__(self, upstream: UpstreamClient, metrics: Metrics, body: bytes) -> None:
        self.upstream = upstream
        self.metrics = metrics
        self.body = body

    async def __call__(self, w: StreamWriter) -> None:
        metrics = self.metrics
        try:
            async with self.upstream.request(
                "POST",
                "chat/completions",
                content=self.body,
                headers=_UPSTREAM_HEADERS,
                keep_headers=False,
            ) as response:
                self.body = b""  # no retries from here on: don't hold the prompt for hours
                if response.status_code >= 400:
                    metrics.upstream_errors.labels("http_status").inc()
                await w.pipe(response)
        except UpstreamUnavailable as exc:
            metrics.upstream_errors.labels("unreachable").inc()
            log.warning("stream %s: %s", w.stream_id, exc)
            raise StreamFailed(str(exc), "upstream_error") from None
        except UpstreamBroken as exc:
            metrics.upstream_errors.labels("broken_stream").inc()
            log.warning("stream %s: upstream failed mid-stream: %s", w.stream_id, exc)
            raise StreamFailed(
                f"upstream failed after output started: {exc}", "upstream_error"
            ) from None


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
        self.produce = Generation(gw.upstream, gw.metrics, body)

    async def run(self) -> None:
        streams = self.gw.streams
        task = asyncio.current_task()
        assert task is not None
        streams._tasks.add(task)  # (so a shutdown ends it too)
        await streams._run(self.writer, self.produce)


__all__ = ["Generation", "Producer"]
