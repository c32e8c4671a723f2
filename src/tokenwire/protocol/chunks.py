"""Typed msgspec views of OpenAI-compatible chat-completion chunks and bodies.

Only the fields tokenwire reads are declared; msgspec skips everything else without building
it, which is what makes a decode cost about a microsecond. Every field is optional because
"compatible" servers disagree on which ones they send.
"""

from __future__ import annotations

from typing import Any

import msgspec


class FunctionFragment(msgspec.Struct):
    name: str | None = None
    arguments: str | None = None


class ToolCallFragment(msgspec.Struct):
    index: int | None = None
    id: str | None = None
    type: str | None = None
    function: FunctionFragment | None = None


class ReasoningDetail(msgspec.Struct):
    """OpenRouter-style ``reasoning_details`` entry (``reasoning.text`` / ``reasoning.summary``)."""

    type: str | None = None
    text: str | None = None
    summary: str | None = None


class ImageURL(msgspec.Struct):
    url: str | None = None


class ImagePart(msgspec.Struct):
    """``delta.images[]`` as image-generating models send it."""

    type: str | None = None
    image_url: ImageURL | None = None


class URLCitation(msgspec.Struct):
    url: str | None = None
    title: str | None = None


class Annotation(msgspec.Struct):
    type: str | None = None
    url_citation: URLCitation | None = None


class ContentPart(msgspec.Struct):
    """Some servers (e.g. Mistral's thinking models) send ``content`` as a list of parts."""

    type: str | None = None
    text: str | None = None
    thinking: str | list[ContentPart] | None = None


class Delta(msgspec.Struct):
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


class Choice(msgspec.Struct):
    index: int = 0
    delta: Delta | None = None
    message: Delta | None = None
    finish_reason: str | None = None


class ErrorBody(msgspec.Struct):
    message: str | None = None
    type: str | None = None
    code: str | int | None = None


class Chunk(msgspec.Struct):
    """A ``chat.completion.chunk`` (streamed) or ``chat.completion`` (whole) object."""

    id: str | None = None
    object: str | None = None
    model: str | None = None
    choices: list[Choice] | None = None
    usage: dict[str, Any] | None = None
    error: ErrorBody | str | None = None
    citations: list[str] | None = None  # Perplexity: top-level source URLs


_chunk_decoder = msgspec.json.Decoder(Chunk)


def decode_chunk(data: str | bytes) -> Chunk:
    """Decode one chunk; raises ``msgspec.DecodeError`` (or ``ValidationError``) on bad input."""
    return _chunk_decoder.decode(data)
