"""Facts: what the chunk normalizer learned from upstream, free of any server's quirks.

The assembler turns facts into ops. ``key`` on tool-call facts identifies one call uniquely
within the response (the normalizer resolves missing or reused upstream indexes into keys).
"""

from __future__ import annotations

from typing import Any

import msgspec


class Started(msgspec.Struct, gc=False):
    model: str | None


class TextFact(msgspec.Struct, gc=False):
    """Streamed text of a block kind: ``text``, ``reasoning`` or ``refusal``."""

    choice: int
    kind: str
    text: str


class ToolCallStarted(msgspec.Struct, gc=False):
    choice: int
    key: int
    id: str | None
    name: str | None


class ToolCallArguments(msgspec.Struct, gc=False):
    choice: int
    key: int
    text: str


class ImageFact(msgspec.Struct, gc=False):
    choice: int
    url: str


class SourceFact(msgspec.Struct, gc=False):
    choice: int
    url: str
    title: str | None


class Finished(msgspec.Struct, gc=False):
    choice: int
    reason: str


class UsageFact(msgspec.Struct, gc=False):
    usage: dict[str, Any]


class UpstreamError(msgspec.Struct, gc=False):
    message: str
    type: str | None = None
    code: str | int | None = None


class Done(msgspec.Struct, gc=False):
    """``data: [DONE]`` (or the end of a whole, non-streamed body)."""


Fact = (
    Started
    | TextFact
    | ToolCallStarted
    | ToolCallArguments
    | ImageFact
    | SourceFact
    | Finished
    | UsageFact
    | UpstreamError
    | Done
)
