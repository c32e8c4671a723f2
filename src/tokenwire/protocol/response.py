"""Assemble a whole recorded upstream response: a streamed SSE body or a whole JSON body, of
chat completions, the OpenAI Responses API or the Anthropic Messages API."""

from __future__ import annotations

from typing import Any

import msgspec

from tokenwire.errors import TokenwireError
from tokenwire.protocol.assembler import INVALID_UTF8, error_info
from tokenwire.protocol.chunks import decode_chunk
from tokenwire.protocol.facts import Done
from tokenwire.protocol.formats import (
    FORMAT_ITEMS,
    FORMATS,
    body_fits,
    detect_body,
    truncated_message,
)
from tokenwire.protocol.jsonsafe import repair_utf8
from tokenwire.protocol.message import Message
from tokenwire.protocol.ops import EncodedOp
from tokenwire.protocol.pipeline import Pipeline


class NotAChatCompletion(TokenwireError, ValueError):
    """The input holds no chunk, event or body of the upstream format."""


def assemble_response(
    data: bytes,
    *,
    stream_id: str | None = None,
    coalesce_ms: float = 0.0,
    think_tags: tuple[str, ...] | None = None,
    format: str = "auto",
) -> tuple[list[EncodedOp], Message]:
    """Decode a whole response into its ops and final message.

    ``format``: ``"auto"`` (default) detects the upstream API from the first event or the
    body's shape; ``"chat"``, ``"responses"`` or ``"anthropic"`` force it.

    There is no clock in a recording: with ``coalesce_ms > 0`` the first delta of a run goes
    out alone and the rest of the run to the same block is merged into one op.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown format {format!r} (one of {', '.join(FORMATS)})")
    kwargs = {} if think_tags is None else {"think_tags": think_tags}
    body = data.lstrip()
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:].lstrip()
    if body.startswith(b"{"):
        fmt = detect_body(body) if format == "auto" else format
        pipe = Pipeline(stream_id, coalesce_ms=coalesce_ms, format=fmt, **kwargs)
        if fmt == "chat":
            return _whole_body(pipe, body)
        return _whole_event_body(pipe, body)
    pipe = Pipeline(stream_id, coalesce_ms=coalesce_ms, format=format, **kwargs)
    ops = pipe.feed(data)
    if not pipe.normalizer.saw_chunk and not pipe.normalizer.saw_done:
        reason = pipe.normalizer.last_skip_reason
        detail = f" (last data event: {reason})" if reason else ""
        what = FORMAT_ITEMS.get(pipe.format, FORMAT_ITEMS["chat"])
        raise NotAChatCompletion(f"no {what} found{detail}")
    ops += pipe.close()
    return ops, pipe.message


_WHOLE = {
    "chat": "a chat completion",
    "responses": "a Responses API response",
    "anthropic": "an Anthropic message",
}


def _repaired() -> dict[str, Any]:
    """The warning of a body whose invalid UTF-8 was replaced (a new dict per message)."""
    return error_info(
        "the body held invalid UTF-8; the undecodable bytes were replaced with U+FFFD",
        INVALID_UTF8,
    )


def _whole_event_body(pipe: Pipeline, body: bytes) -> tuple[list[EncodedOp], Message]:
    if not body_fits(pipe.format, body):
        detected = detect_body(body)
        looks = f" (it looks like {_WHOLE[detected]})" if detected != "chat" else ""
        raise NotAChatCompletion(
            f"the JSON body is not {_WHOLE[pipe.format]} or an error body{looks}"
        )
    normalizer = pipe.normalizer
    # (msgspec does not check the UTF-8 of the items and blocks the decoders keep raw)
    repaired = repair_utf8(body)
    if repaired is not None:
        body = repaired
        pipe.assembler.warning = _repaired()
    try:
        facts = normalizer.feed_body(body)  # type: ignore[union-attr]
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
        raise NotAChatCompletion(f"not a {pipe.format} JSON body: {exc}") from None
    ops = pipe.assembler.feed(facts)
    return ops + pipe.assembler.close(0.0, truncated_message(pipe.format, whole=True)), pipe.message


def _whole_body(pipe: Pipeline, body: bytes) -> tuple[list[EncodedOp], Message]:
    replaced = False
    try:
        chunk = decode_chunk(body)
    except RecursionError:  # msgspec recurses per nesting level
        raise NotAChatCompletion("not a chat-completion JSON body: nested too deep") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        repaired = repair_utf8(body)
        try:
            if repaired is None:
                raise exc
            chunk = decode_chunk(repaired)
            replaced = True
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            raise NotAChatCompletion(f"not a chat-completion JSON body: {exc}") from None
    if chunk.choices is None and chunk.error is None:
        raise NotAChatCompletion("JSON body has neither 'choices' nor 'error'")
    if replaced:
        pipe.assembler.warning = _repaired()
    normalizer = pipe.normalizer
    facts = normalizer.feed_chunk(chunk) + normalizer.close()
    # A body none of whose choices finished is an answer cut off (as a Responses body still
    # ``in_progress`` or an Anthropic one without ``stop_reason``): the close says so.
    choices = chunk.choices or ()
    finished = not choices or any(choice.finish_reason for choice in choices)
    if chunk.error is None and finished:
        facts.append(Done())
    ops = pipe.assembler.feed(facts)
    return ops + pipe.assembler.close(0.0, truncated_message("chat", whole=True)), pipe.message
