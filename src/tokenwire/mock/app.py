"""The mock model server: the scenarios served through the producer, paced, with stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tokenwire.mock.scenarios import SCENARIOS, ReasoningStyle, Settings, ToolStyle
from tokenwire.producer import ChatRequest, Outcome, Part, RequestError, create_app


class MockStats:
    """Counts streamed responses, so tests can see e.g. that a relay dropped its upstream."""

    def __init__(self) -> None:
        self.started = 0
        self.active = 0
        self.completed = 0
        self.disconnected = 0
        self.failed = 0

    def on_start(self, request: ChatRequest) -> None:
        self.started += 1
        self.active += 1

    def on_end(self, request: ChatRequest, outcome: Outcome) -> None:
        self.active -= 1
        setattr(self, outcome, getattr(self, outcome) + 1)

    def to_dict(self) -> dict[str, int]:
        return {
            "started": self.started,
            "active": self.active,
            "completed": self.completed,
            "disconnected": self.disconnected,
            "failed": self.failed,
        }


class Overrides(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The optional ``"mock"`` member of a request body: per-request settings for tests."""

    tps: float | None = None
    ttft_ms: float | None = None
    seed: int | None = None
    tool_style: ToolStyle | None = None


def create_mock_app(
    tps: float = 0,
    ttft_ms: float = 0,
    seed: int = 0,
    reasoning_style: ReasoningStyle = "reasoning_content",
    tool_style: ToolStyle = "openai",
) -> Starlette:
    """The mock model server as an ASGI app (see docs/producer.md for the scenarios).

    ``tps`` paces tokens per second per stream (0: as fast as the client reads), ``ttft_ms``
    delays the first token. ``app.state.mock_stats`` holds the ``MockStats``.
    """
    stats = MockStats()
    reasoning_field = "reasoning" if reasoning_style == "reasoning" else "reasoning_content"

    def handler(request: ChatRequest) -> AsyncIterator[Part]:
        extra = request.body.get("mock")
        try:
            over = msgspec.convert(extra or {}, Overrides)
        except msgspec.ValidationError as exc:
            raise RequestError(f"Invalid value for 'mock': {exc}.", param="mock") from None
        settings = Settings(
            seed=seed if over.seed is None else over.seed,
            limit=request.token_limit,
            stream=request.stream,
            reasoning_style=reasoning_style,
            tool_style=tool_style if over.tool_style is None else over.tool_style,
        )
        parts = SCENARIOS[request.model](settings)
        return _paced(
            parts,
            tps if over.tps is None else over.tps,
            ttft_ms if over.ttft_ms is None else over.ttft_ms,
        )

    async def stats_endpoint(request: Request) -> Response:
        return Response(msgspec.json.encode(stats.to_dict()), media_type="application/json")

    app = create_app(
        handler,
        models=list(SCENARIOS),
        reasoning_field=reasoning_field,
        on_stream_start=stats.on_start,
        on_stream_end=stats.on_end,
        routes=[Route("/_mock/stats", stats_endpoint, methods=["GET"])],
    )
    app.state.mock_stats = stats
    return app


async def _paced(parts: Iterator[Part], tps: float, ttft_ms: float) -> AsyncIterator[Part]:
    """Yield ``parts`` after ``ttft_ms``, then at ``tps`` per second (0: no pacing at all)."""
    if ttft_ms > 0:
        await asyncio.sleep(ttft_ms / 1000)
    if tps <= 0:
        for part in parts:
            yield part
        return
    loop = asyncio.get_running_loop()
    interval = 1.0 / tps
    due = loop.time()
    for part in parts:
        # An absolute schedule, so sleep overshoot does not accumulate.
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        yield part
        due += interval
