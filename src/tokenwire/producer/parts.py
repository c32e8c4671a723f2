"""What a producer generator may yield besides plain ``str``.

A plain ``str`` is the fast path: one token of answer text. The typed parts below cover the
rest of an OpenAI chat-completion stream. They are frozen msgspec Structs: cheap to build and
to dispatch on by type.
"""

from __future__ import annotations

from typing import Any

import msgspec


class Text(msgspec.Struct, frozen=True):
    """A token of answer text (same as yielding the ``str`` itself)."""

    text: str


class Reasoning(msgspec.Struct, frozen=True):
    """A token of reasoning text, sent in the app's reasoning field (``reasoning_content``...)."""

    text: str


class ToolCallStart(msgspec.Struct, frozen=True):
    """A new tool call. ``index`` defaults to the next free one (0, 1, ...)."""

    id: str
    name: str
    index: int | None = None


class ToolCallDelta(msgspec.Struct, frozen=True):
    """A fragment of a tool call's JSON arguments. ``index`` defaults to the last started call."""

    arguments: str
    index: int | None = None


class Usage(msgspec.Struct, frozen=True):
    """Token counts to report; fields left ``None`` are filled in from what was streamed."""

    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


class Finish(msgspec.Struct, frozen=True):
    """The finish reason to report once the generator is exhausted (default: stop/tool_calls)."""

    reason: str


class RawDelta(msgspec.Struct, frozen=True):
    """Escape hatch: a ``delta`` object sent verbatim (e.g. to imitate another server's quirks).

    In a non-streamed response its ``content``, reasoning and ``annotations`` members are
    appended to the message and its ``tool_calls`` fragments merged into the message's tool
    calls (so both modes report the same answer and finish reason); other members are ignored.
    """

    delta: dict[str, Any]
    finish_reason: str | None = None


class StreamError(msgspec.Struct, frozen=True):
    """Abort with an ``{"error": {...}}`` object: mid-stream it is sent as an SSE event and the
    stream ends without ``finish_reason`` or ``[DONE]``; non-streamed it becomes an HTTP error."""

    message: str
    type: str = "server_error"
    code: str | int | None = None
    status: int = 500


class Truncate(msgspec.Struct, frozen=True):
    """Stop right here, with no ``finish_reason`` and no ``[DONE]`` (a truncated answer)."""


Part = str | Text | Reasoning | ToolCallStart | ToolCallDelta | Usage | Finish | RawDelta
Part = Part | StreamError | Truncate
