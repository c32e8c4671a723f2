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
    """``server``: a tool the upstream runs itself (Anthropic's server and MCP tools): its
    result is the upstream's to give, not the caller's."""

    choice: int
    key: int
    id: str | None
    name: str | None
    server: bool = False


class ToolCallArguments(msgspec.Struct, gc=False):
    choice: int
    key: int
    text: str


class ToolCallEnded(msgspec.Struct, gc=False):
    """Call ``key``'s arguments are complete: its block ends now rather than at the next
    block (a whole call written at once; streamed calls end with their choice)."""

    choice: int
    key: int


class ImageFact(msgspec.Struct, gc=False):
    choice: int
    url: str


class SourceFact(msgspec.Struct, gc=False):
    """A source. With ``start``/``end`` it cites a span of the choice's current text block (the
    open one, else the last one): half-open Unicode code-point offsets into that block's text."""

    choice: int
    url: str
    title: str | None
    start: int | None = None
    end: int | None = None
    cited_text: str | None = None


class FileFact(msgspec.Struct, gc=False):
    choice: int
    url: str
    media_type: str
    name: str | None = None


class ReasoningSignature(msgspec.Struct, gc=False):
    """An opaque signature for the choice's open (else last) reasoning block, kept byte-exact.
    ``alone``: the thought it signs has no text (Anthropic's omitted thinking): it is a
    reasoning block of its own, never another block's signature."""

    choice: int
    signature: str
    alone: bool = False


class ReasoningEnd(msgspec.Struct, gc=False):
    """The upstream's reasoning block ended (an Anthropic thinking block, a Responses reasoning
    item): the choice's next reasoning is a block of its own, with its own signature."""

    choice: int


class ReasoningEncrypted(msgspec.Struct, gc=False):
    """Opaque encrypted or redacted reasoning: goes on the choice's open reasoning block, or on a
    new (empty-text) reasoning block when none is open."""

    choice: int
    data: str
    redacted: bool = False


class ToolResultStarted(msgspec.Struct, gc=False):
    """A tool's result begins (for the call ``call_id``); its output follows as
    ``ToolResultOutput`` and ends with ``ToolResultEnd``."""

    choice: int
    call_id: str
    name: str | None = None
    error: bool = False


class ToolResultOutput(msgspec.Struct, gc=False):
    choice: int
    call_id: str
    text: str


class ToolResultEnd(msgspec.Struct, gc=False):
    """``error`` (when not ``None``) sets the result's error flag as it ends."""

    choice: int
    call_id: str
    error: bool | None = None


class DataFact(msgspec.Struct, gc=False):
    """App data. With an ``id`` already in the message, it replaces that block's value in place;
    ``transient`` data goes to live readers only, never into the log or the message."""

    choice: int
    name: str
    value: Any
    id: str | None = None
    transient: bool = False


class StepStarted(msgspec.Struct, gc=False):
    """Blocks from here on belong to ``step`` (a new model call or tool round)."""

    step: int


class StepReset(msgspec.Struct, gc=False):
    """Supersede: drop every block of ``step`` (the latest step); its retry reuses the number."""

    step: int


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
    | ToolCallEnded
    | ImageFact
    | SourceFact
    | FileFact
    | ReasoningSignature
    | ReasoningEncrypted
    | ReasoningEnd
    | ToolResultStarted
    | ToolResultOutput
    | ToolResultEnd
    | DataFact
    | StepStarted
    | StepReset
    | Finished
    | UsageFact
    | UpstreamError
    | Done
)
