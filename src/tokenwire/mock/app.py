"""The mock model server: the scenarios served through the producer, paced, with stats."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from tokenwire.mock.apis import AnthropicEncoder, ResponsesEncoder, steps
from tokenwire.mock.scenarios import (
    SCENARIOS,
    NotAPrefix,
    ReasoningStyle,
    Settings,
    ToolStyle,
    answer_parts,
    continue_from,
)
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
    continuation: bool | None = None  # False: refuse continuation requests (--no-continuation)
    # The answer's length in tokens (text and reasoning), whatever the request's limit, which
    # still cuts it. Without it, a chat or Responses limit is the length (the answer reaches
    # it) and an Anthropic answer has its own length (256 tokens): that API requires a
    # ``max_tokens``, so it can only be a cap there.
    tokens: int | None = None

    def __post_init__(self) -> None:
        if self.tokens is not None and (type(self.tokens) is not int or self.tokens < 1):
            raise ValueError("mock.tokens must be a positive integer")


def create_mock_app(
    tps: float = 0,
    ttft_ms: float = 0,
    seed: int = 0,
    reasoning_style: ReasoningStyle = "reasoning_content",
    tool_style: ToolStyle = "openai",
    continuation: bool = True,
) -> Starlette:
    """The mock model server as an ASGI app (see docs/producer.md for the scenarios).

    ``tps`` paces tokens per second per stream (0: as fast as the client reads), ``ttft_ms``
    delays the first token. ``app.state.mock_stats`` holds the ``MockStats``.
    ``continuation=False`` refuses continuation requests (see ``_partial``) with a 400, like
    an upstream that cannot continue an answer.
    """
    stats = MockStats()
    reasoning_field = "reasoning" if reasoning_style == "reasoning" else "reasoning_content"

    def handler(request: ChatRequest) -> AsyncIterator[Part]:
        extra = request.body.get("mock")
        try:
            over = msgspec.convert(extra or {}, Overrides)
        except msgspec.ValidationError as exc:
            raise RequestError(f"Invalid value for 'mock': {exc}.", param="mock") from None
        partial = _partial(request, reasoning_field)
        can_continue = continuation if over.continuation is None else over.continuation
        if partial is not None and not can_continue:
            raise RequestError(
                "This server cannot continue an assistant message.",
                param="continue_final_message" if partial[2] == "vllm" else "messages",
                code="unsupported_parameter",
            )
        # The answer depends on the conversation without the partial assistant message, so
        # a continued request maps to the same answer as the one it continues.
        history = request.messages[:-1] if partial is not None else request.messages
        settings = Settings(
            seed=seed if over.seed is None else over.seed,
            limit=request.token_limit if over.tokens is None else over.tokens,
            stream=request.stream,
            reasoning_style=reasoning_style,
            tool_style=tool_style if over.tool_style is None else over.tool_style,
            tool_results=sum(1 for m in history if m.role == "tool"),
        )
        parts = SCENARIOS[request.model](settings)
        if partial is not None:
            answer = answer_parts(parts, request.token_limit)
            try:
                parts = iter(continue_from(answer, partial[0], partial[1]))
            except NotAPrefix as exc:
                raise RequestError(
                    f"The partial assistant message is not a prefix of this model's answer: {exc}.",
                    param="messages",
                    code="continuation_mismatch",
                ) from None
        return _paced(
            parts,
            tps if over.tps is None else over.tps,
            ttft_ms if over.ttft_ms is None else over.ttft_ms,
        )

    async def stats_endpoint(request: Request) -> Response:
        return Response(msgspec.json.encode(stats.to_dict()), media_type="application/json")

    async def other_api(request: Request) -> Response:
        """``POST /v1/responses`` and ``POST /v1/messages``: the same scenarios in those APIs'
        wire formats (Anthropic's ``x-api-key`` / ``anthropic-version`` are accepted, not
        required: the mock has no keys)."""
        anthropic = request.url.path.endswith("/messages")
        try:
            body = msgspec.json.decode(await request.body())
            if not isinstance(body, dict):
                raise ValueError("the body must be a JSON object")
            over = msgspec.convert(body.get("mock") or {}, Overrides)
            model = body.get("model")
            limit = body.get("max_tokens" if anthropic else "max_output_tokens")
            if limit is not None and (type(limit) is not int or limit < 1):
                raise ValueError("the token limit must be a positive integer")
            stream = body.get("stream", False)
            if type(stream) is not bool:
                raise ValueError("stream must be a boolean")
            # (each API's required conversation member, as the real servers check it)
            if anthropic and not isinstance(body.get("messages"), list):
                raise ValueError("messages: field required (a list of messages)")
            given = body.get("input")
            if not anthropic and given is not None and not isinstance(given, (str, list)):
                raise ValueError("input must be a string or a list of items")
            if (
                not anthropic
                and given is None
                and not any(body.get(k) for k in ("prompt", "conversation", "previous_response_id"))
            ):  # (a stored prompt or conversation may stand in for it)
                raise ValueError("input: field required (or prompt, conversation)")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError, RecursionError) as exc:
            return _api_error(anthropic, 400, "invalid_request_error", f"Invalid request: {exc}")
        if not isinstance(model, str):
            return _api_error(
                anthropic, 400, "invalid_request_error", "Invalid request: model must be a string"
            )
        if model not in SCENARIOS:
            message = f"The model `{model}` does not exist."
            if anthropic:
                return _api_error(anthropic, 404, "not_found_error", message)
            # (as chat's: OpenAI's APIs name the parameter and the code)
            return _api_error(
                anthropic, 404, "invalid_request_error", message, "model", "model_not_found"
            )
        length = None if anthropic else limit  # (see Overrides.tokens)
        settings = Settings(
            seed=seed if over.seed is None else over.seed,
            limit=length if over.tokens is None else over.tokens,
            stream=stream,
            reasoning_style="reasoning_content",  # (think tags are a chat-content quirk)
            tool_style="openai",  # (the other styles are chat-completions quirks)
            tool_results=_tool_results(body, anthropic),
        )
        answer = steps(SCENARIOS[model](settings), limit)
        encoder = (AnthropicEncoder if anthropic else ResponsesEncoder)(model, settings.seed)
        if not stream:
            status, payload = encoder.body(answer)
            return Response(msgspec.json.encode(payload), status, media_type="application/json")
        frames = _paced_frames(
            encoder.events(answer),
            tps if over.tps is None else over.tps,
            ttft_ms if over.ttft_ms is None else over.ttft_ms,
            stats,
        )
        return StreamingResponse(
            frames, media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    app = create_app(
        handler,
        models=list(SCENARIOS),
        reasoning_field=reasoning_field,
        on_stream_start=stats.on_start,
        on_stream_end=stats.on_end,
        routes=[
            Route("/_mock/stats", stats_endpoint, methods=["GET"]),
            Route("/v1/responses", other_api, methods=["POST"]),
            Route("/v1/messages", other_api, methods=["POST"]),
        ],
    )
    app.state.mock_stats = stats
    return app


def _tool_results(body: dict, anthropic: bool) -> int:
    """Tool results in a Responses ``input`` (``function_call_output`` items) or in Anthropic
    ``messages`` (``tool_result`` content blocks)."""
    if anthropic:
        messages = body.get("messages")
        items = [
            block
            for m in (messages if isinstance(messages, list) else ())
            if isinstance(m, dict) and isinstance(m.get("content"), list)
            for block in m["content"]
        ]
        kind = "tool_result"
    else:
        given = body.get("input")
        items = given if isinstance(given, list) else []
        kind = "function_call_output"
    return sum(1 for item in items if isinstance(item, dict) and item.get("type") == kind)


def _partial(request: ChatRequest, reasoning_field: str) -> tuple[str, str, str] | None:
    """``(reasoning, content, style)`` of the partial assistant message a request asks to
    continue, or None. Styles: vLLM's ``continue_final_message: true`` (with
    ``add_generation_prompt: false``), or DeepSeek/Mistral's ``prefix: true`` on the last
    message. The partial reasoning is the message's ``reasoning_content`` (DeepSeek's name)
    or ``reasoning`` member; with think tags it is part of ``content``."""
    body = request.body
    raw = body.get("messages")
    last = raw[-1] if isinstance(raw, list) and raw and isinstance(raw[-1], dict) else {}
    vllm = body.get("continue_final_message") is True
    if not vllm and last.get("prefix") is not True:
        return None
    if vllm and body.get("add_generation_prompt") is not False:
        # (vLLM's own rule: its default add_generation_prompt is true.)
        raise RequestError(
            "continue_final_message needs add_generation_prompt: false.",
            param="add_generation_prompt",
        )
    message = request.messages[-1]
    if message.role != "assistant":
        raise RequestError(
            "Only an assistant message can be continued: the last message must have role "
            "'assistant'.",
            param="messages",
        )
    reasoning = last.get(reasoning_field)
    if reasoning is None:
        reasoning = last.get("reasoning_content", last.get("reasoning"))
    if reasoning is not None and not isinstance(reasoning, str):
        raise RequestError("The partial reasoning must be a string.", param="messages")
    return reasoning or "", message.text(), "vllm" if vllm else "prefix"


def _api_error(
    anthropic: bool,
    status: int,
    kind: str,
    message: str,
    param: str | None = None,
    code: str | None = None,
) -> Response:
    if anthropic:
        body: dict = {"type": "error", "error": {"type": kind, "message": message}}
    else:
        body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return Response(msgspec.json.encode(body), status, media_type="application/json")


async def _paced_frames(
    frames: Iterator[bytes], tps: float, ttft_ms: float, stats: MockStats
) -> AsyncIterator[bytes]:
    """The SSE frames of one answer, each token's delta event paced at ``tps`` per second."""
    stats.started += 1
    stats.active += 1
    outcome = "disconnected"
    try:
        if ttft_ms > 0:
            await asyncio.sleep(ttft_ms / 1000)
        loop = asyncio.get_running_loop()
        interval = 1.0 / tps if tps > 0 else 0.0
        due = loop.time()
        failed = False
        for frame in frames:
            # (Anthropic's ``content_block_delta``, the Responses API's ``….delta`` events)
            if interval and frame.startswith(b"event: ") and b"delta\n" in frame[:48]:
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                due += interval
            failed = failed or frame.startswith((b"event: error", b"event: response.failed"))
            yield frame
        outcome = "failed" if failed else "completed"
    finally:
        stats.active -= 1
        setattr(stats, outcome, getattr(stats, outcome) + 1)


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
