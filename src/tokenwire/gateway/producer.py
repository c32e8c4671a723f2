"""The gateway's generation: one upstream chat completion piped into a ``StreamWriter``.

``Generation`` is what ``POST /v1/streams`` starts with ``Streams.start``: the upstream
request's ``async with`` handed to ``writer.pipe``, which enters it and reads the response with
its ``poll()`` (the per-token hot path). ``Streams`` turns the upstream client's errors
(``UpstreamUnavailable``, ``UpstreamBroken``) and error answers into the stream's ``failed``
ending, with the same error objects as before the library existed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from tokenwire.errors import StreamFailed
from tokenwire.gateway.upstream import UpstreamClient
from tokenwire.protocol import Block
from tokenwire.streams import PipeResult, Resumed, StreamWriter

if TYPE_CHECKING:
    from tokenwire.gateway.service import Gateway

_UPSTREAM_HEADERS = {"Content-Type": "application/json", "Accept": "text/event-stream"}
log = logging.getLogger("tokenwire.gateway")

RESUME = "tokenwire.gateway"
"""The continuation name of ``POST /v1/streams`` generations (registered by every gateway)."""


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


def resume_args(body: bytes, api: str, supersede: bool) -> dict[str, Any]:
    """What a gateway keeps with a stream so another process can continue it: the upstream
    request body (the caller's credentials are headers, never in it: the taker uses its own
    upstream key), the upstream API, and whether the step may be regenerated."""
    return {"body": body.decode(), "api": api, "supersede": supersede}


def partial_message(blocks: list[Block]) -> dict[str, Any] | None:
    """The partial assistant message whose text is exactly what was emitted, or ``None`` when
    the blocks cannot be sent back as one: a tool call (cut arguments are never continued),
    another choice or step, opaque reasoning attrs, or reasoning after text. Citations
    (``source`` blocks) are skipped: the continuation's own keep their offsets."""
    reasoning: list[str] = []
    text: list[str] = []
    for block in blocks:
        if block.type == "source" and not block.choice and not block.step:
            continue  # (a citation: not part of the content; its span keeps pointing right)
        if block.choice or block.step or block.attrs:
            return None
        if block.type == "reasoning" and not text:
            reasoning.append(block.text)
        elif block.type == "text":
            text.append(block.text)
        else:
            return None
    partial: dict[str, Any] = {"role": "assistant", "content": "".join(text)}
    if reasoning:
        partial["reasoning_content"] = "".join(reasoning)
    return partial


class Continue:
    """The gateway's continuation (``Streams.register_continuation(RESUME, Continue(gw))``):
    runs in the process that took over a stream the gateway started (``POST /v1/streams``,
    ``POST /v1/aisdk/chat``, a detached ``POST /v1/chat/completions``) whose producer died;
    the request goes to the endpoint of the API it was recorded in.

    - no output yet: the same request again;
    - only text/reasoning so far and ``continuation`` is ``vllm`` / ``prefix`` (chat
      completions): the request plus the partial assistant message, so the upstream continues
      from exactly the emitted text, into the open blocks;
    - otherwise, or when the upstream refuses to continue (an error status before any output):
      the step is superseded (``step.reset``) and regenerated with the same request if the
      stream allows it (``"tokenwire": {"supersede": false}`` does not), else the stream
      ends ``failed`` ("producer lost") with the partial kept.
    """

    __slots__ = ("gw",)

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    async def __call__(self, w: StreamWriter, resumed: Resumed) -> PipeResult:
        gw = self.gw
        upstream = gw.require_started()
        args = resumed.args
        body: bytes = args["body"].encode()
        path, headers, fmt = gw.request_for(args.get("api") or gw.settings.upstream_api)
        blocks = resumed.message.blocks
        if not blocks:
            return await Generation(upstream, body, fmt, path=path, headers=headers)(w)
        style = gw.settings.continuation
        # (only when the blocks' text is exactly what the upstream sent: not after reasoning
        # was split out of its content, e.g. ``<think>`` tags, whose raw form is lost)
        exact = resumed.exact and args.get("api") == "chat"
        partial = partial_message(blocks) if exact else None
        if partial is not None and style in ("vllm", "prefix"):
            data = msgspec.json.decode(body)
            if style == "vllm":
                data["continue_final_message"] = True
                data["add_generation_prompt"] = False
            else:
                partial["prefix"] = True
            data["messages"] = [*data["messages"], partial]
            request = Generation(
                upstream, msgspec.json.encode(data), fmt, path=path, headers=headers
            )
            try:
                return await request(w)
            except StreamFailed as exc:
                if w.seq != resumed.seq:
                    raise  # failed after continuing: like any upstream failure
                log.warning("stream %s: the upstream did not continue: %s", w.id, exc.message)
        if not args.get("supersede", True):
            raise StreamFailed("producer lost", "producer_lost")
        await w.supersede()
        return await Generation(upstream, body, fmt, path=path, headers=headers)(w)


Produce = Callable[[StreamWriter], Awaitable[Any]]
"""What ``Streams.start`` runs: ``produce(writer)``."""

_json = msgspec.json.Encoder()


@dataclass(slots=True)
class StreamRequest:
    """One generation started for a model that has a producer of the host's
    (``create_app(settings, producers={model: factory})``), by ``POST /v1/streams``,
    ``POST /v1/aisdk/chat`` or a detached ``POST /v1/chat/completions``: what
    ``factory(request)`` gets to build the stream's ``produce(writer)``.

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


__all__ = [
    "RESUME",
    "Continue",
    "Generation",
    "Produce",
    "Producer",
    "ProducerFactory",
    "StreamRequest",
    "partial_message",
    "resume_args",
]
