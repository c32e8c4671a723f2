"""Decoding and validating a ``POST /v1/chat/completions`` body, with OpenAI-style errors."""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from tokenwire.errors import TokenwireError


class RequestError(TokenwireError):
    """A request the server refuses; rendered as ``{"error": {...}}`` with ``status``.

    Handlers may raise it (before returning their generator) to refuse a request.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        type: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> bytes:
        return error_body(self.message, type=self.type, param=self.param, code=self.code)


def error_body(
    message: str,
    *,
    type: str | None = "invalid_request_error",
    param: str | None = None,
    code: str | int | None = None,
) -> bytes:
    """The OpenAI error object: ``{"error": {"message", "type", "param", "code"}}``."""
    return msgspec.json.encode(
        {"error": {"message": message, "type": type, "param": param, "code": code}}
    )


class ChatMessage(msgspec.Struct, kw_only=True):
    role: str
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text, with the text parts of multi-part content joined."""
        if isinstance(self.content, str):
            return self.content
        if not self.content:
            return ""
        return "".join(str(p.get("text", "")) for p in self.content if p.get("type") == "text")


class StreamOptions(msgspec.Struct, kw_only=True):
    include_usage: bool = False


PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class ChatRequest(msgspec.Struct, kw_only=True):
    """The members of a chat-completion request this server looks at (others are ignored)."""

    model: str
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: PositiveInt | None = None
    max_completion_tokens: PositiveInt | None = None
    n: PositiveInt = 1
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    stop: str | list[str] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    user: str | None = None
    # The whole decoded body, for members not modelled above (vendor extensions).
    body: dict[str, Any] = msgspec.field(default_factory=dict)

    @property
    def token_limit(self) -> int | None:
        """``max_completion_tokens`` if given, else ``max_tokens``."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage


_PATH = re.compile(r" - at `\$\.?([^`]*)`$")
_REQUIRED = re.compile(r"^Object missing required field `([^`]+)`")


def parse_request(data: bytes) -> ChatRequest:
    """Decode and validate a request body; raises ``RequestError`` (400) on any problem."""
    try:
        body = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise RequestError(
            f"We could not parse the JSON body of your request ({exc})."
            " The body must be a JSON object.",
            code="invalid_json",
        ) from None
    except RecursionError:  # (msgspec recurses per nesting level)
        raise RequestError(
            "We could not parse the JSON body of your request: it is nested too deep.",
            code="invalid_json",
        ) from None
    if not isinstance(body, dict):
        raise RequestError("The request body must be a JSON object.", code="invalid_json")
    body.pop("body", None)  # reserved for the raw body below
    try:
        request = msgspec.convert(body, ChatRequest)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc)) from None
    request.body = body
    return request


def _validation_error(text: str) -> RequestError:
    path = _PATH.search(text)
    param = path.group(1) if path else None
    detail = _PATH.sub("", text)
    missing = _REQUIRED.match(detail)
    if missing:
        name = f"{param}.{missing.group(1)}" if param else missing.group(1)
        return RequestError(
            f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
        )
    where = f" for '{param}'" if param else ""
    return RequestError(f"Invalid value{where}: {detail}.", param=param, code="invalid_type")
