"""Assemble a whole recorded upstream response (streamed SSE or a ``chat.completion`` body)."""

from __future__ import annotations

import msgspec

from tokenwire.errors import TokenwireError
from tokenwire.protocol.chunks import decode_chunk
from tokenwire.protocol.facts import Done
from tokenwire.protocol.message import Message
from tokenwire.protocol.ops import EncodedOp
from tokenwire.protocol.pipeline import Pipeline


class NotAChatCompletion(TokenwireError, ValueError):
    """The input holds no chat-completion chunk or body."""


def assemble_response(
    data: bytes,
    *,
    stream_id: str | None = None,
    coalesce_ms: float = 0.0,
    think_tags: tuple[str, ...] | None = None,
) -> tuple[list[EncodedOp], Message]:
    """Decode a whole response into its ops and final message.

    There is no clock in a recording: with ``coalesce_ms > 0`` the first delta of a run goes
    out alone and the rest of the run to the same block is merged into one op.
    """
    kwargs = {} if think_tags is None else {"think_tags": think_tags}
    pipe = Pipeline(stream_id, coalesce_ms=coalesce_ms, **kwargs)
    body = data.lstrip()
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:].lstrip()
    if body.startswith(b"{"):
        return _whole_body(pipe, body)
    ops = pipe.feed(data)
    if not pipe.normalizer.saw_chunk and not pipe.normalizer.saw_done:
        reason = pipe.normalizer.last_skip_reason
        detail = f" (last data event: {reason})" if reason else ""
        raise NotAChatCompletion(f"no chat-completion chunks found{detail}")
    ops += pipe.close()
    return ops, pipe.message


def _whole_body(pipe: Pipeline, body: bytes) -> tuple[list[EncodedOp], Message]:
    try:
        chunk = decode_chunk(body)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise NotAChatCompletion(f"not a chat-completion JSON body: {exc}") from None
    if chunk.choices is None and chunk.error is None:
        raise NotAChatCompletion("JSON body has neither 'choices' nor 'error'")
    normalizer = pipe.normalizer
    facts = normalizer.feed_chunk(chunk) + normalizer.close()
    if chunk.error is None:
        facts.append(Done())
    ops = pipe.assembler.feed(facts)
    return ops + pipe.assembler.close(), pipe.message
