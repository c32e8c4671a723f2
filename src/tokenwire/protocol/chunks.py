"""Typed msgspec views of OpenAI-compatible chat-completion chunks and bodies.

Only the fields tokenwire reads are declared; msgspec skips everything else without building
it, which is what makes a decode cost about a microsecond. Every field is optional because
"compatible" servers disagree on which ones they send. ``gc=False``: these objects never form
reference cycles, and untracking them keeps the collector off the per-chunk path.
"""

from __future__ import annotations

from typing import Any

import msgspec


class FunctionFragment(msgspec.Struct, gc=False):
    name: str | None = None
    arguments: str | None = None


class ToolCallFragment(msgspec.Struct, gc=False):
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionFragment | None = None


class ReasoningDetail(msgspec.Struct, gc=False):
    """OpenRouter-style ``reasoning_details`` entry: ``reasoning.text`` (``text``, and an opaque
    ``signature`` that may come in a later entry), ``reasoning.summary`` (``summary``) or
    ``reasoning.encrypted`` (opaque ``data``)."""

    type: str | None = None
    text: str | None = None
    summary: str | None = None
    signature: str | None = None
    data: str | None = None
    format: str | None = None  # e.g. "anthropic-claude-v1", "openai-responses-v1"
    index: Any = None  # which upstream reasoning block (Anthropic thinking block) it is of


class ImageURL(msgspec.Struct, gc=False):
    url: str | None = None


class ImagePart(msgspec.Struct, gc=False):
    """``delta.images[]`` as image-generating models send it."""

    type: str | None = None
    image_url: ImageURL | None = None


class URLCitation(msgspec.Struct, gc=False):
    url: str | None = None
    title: str | None = None
    start_index: int | None = None  # the cited span of the message's content
    end_index: int | None = None


class Annotation(msgspec.Struct, gc=False):
    type: str | None = None
    url_citation: URLCitation | None = None


class ContentPart(msgspec.Struct, gc=False):
    """Some servers (e.g. Mistral's thinking models) send ``content`` as a list of parts."""

    type: str | None = None
    text: str | None = None
    thinking: str | list[ContentPart] | None = None


class Delta(msgspec.Struct, gc=False):
    """A streamed ``delta``, or a non-streamed ``message`` (same shape, whole values)."""

    role: str | None = None
    content: str | list[ContentPart] | None = None
    refusal: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None
    reasoning_details: list[ReasoningDetail] | None = None
    tool_calls: list[ToolCallFragment] | None = None
    function_call: FunctionFragment | None = None  # legacy single-function form
    images: list[ImagePart] | None = None
    annotations: list[Annotation] | None = None


class Choice(msgspec.Struct, gc=False):
    index: int = 0
    delta: Delta | None = None
    message: Delta | None = None
    finish_reason: str | None = None


class ErrorBody(msgspec.Struct, gc=False):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class Chunk(msgspec.Struct, gc=False):
    """A ``chat.completion.chunk`` (streamed) or ``chat.completion`` (whole) object."""

    model: str | None = None
    choices: list[Choice] | None = None
    usage: dict[str, Any] | None = None
    error: ErrorBody | str | None = None
    citations: list[str] | None = None  # Perplexity: top-level source URLs
    type: Any = None  # (no chat chunk has one: another API's event does; any JSON is kept)


chunk_decoder = msgspec.json.Decoder(Chunk)


def decode_chunk(data: str | bytes) -> Chunk:
    """Decode one chunk; raises ``msgspec.DecodeError`` (or ``ValidationError``) on bad input."""
    return chunk_decoder.decode(data)
