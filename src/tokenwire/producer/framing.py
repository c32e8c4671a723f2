"""Byte templates for ``chat.completion.chunk`` SSE events (no I/O).

Everything that is fixed for one response (id, created, model) is rendered once into byte
prefixes and suffixes; framing a token is then two concatenations around the JSON-escaped
token text.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tokenwire.producer.request import error_body

_encode = msgspec.json.encode

DONE = b"data: [DONE]\n\n"


class ChunkFramer:
    """Frames the SSE events of one streamed response."""

    __slots__ = (
        "_content_pre",
        "_head",
        "_reasoning_pre",
        "_tail",
        "_tool_args_post",
        "_tool_args_pre",
        "_top",
        "post",
    )

    def __init__(
        self, response_id: str, model: str, created: int, reasoning_field: str = "reasoning_content"
    ) -> None:
        # `_top` ends just before "choices"; `_head` ends where the delta object starts.
        self._top = b"".join(
            (
                b'data: {"id":',
                _encode(response_id),
                b',"object":"chat.completion.chunk","created":',
                str(int(created)).encode(),
                b',"model":',
                _encode(model),
                b",",
            )
        )
        self._head = self._top + b'"choices":[{"index":0,"delta":'
        self._tail = b',"logprobs":null,"finish_reason":null}]}\n\n'
        self._content_pre = self._head + b'{"content":'
        self._reasoning_pre = self._head + b"{" + _encode(reasoning_field) + b":"
        self._tool_args_pre = self._head + b'{"tool_calls":[{"index":'
        self._tool_args_post = b"}]}" + self._tail
        self.post = b"}" + self._tail  # closes a one-member delta

    def content(self, text: str) -> bytes:
        return self._content_pre + _encode(text) + self.post

    def reasoning(self, text: str) -> bytes:
        return self._reasoning_pre + _encode(text) + self.post

    def role(self) -> bytes:
        return self._head + b'{"role":"assistant","content":""}' + self._tail

    def tool_start(self, index: int, call_id: str, name: str) -> bytes:
        entry = b'{"index":%d,"id":%s,"type":"function","function":{"name":%s,"arguments":""}}' % (
            index,
            _encode(call_id),
            _encode(name),
        )
        return self._head + b'{"tool_calls":[' + entry + b"]}" + self._tail

    def tool_args(self, index: int, fragment: str) -> bytes:
        return b'%s%d,"function":{"arguments":%s}%s' % (
            self._tool_args_pre,
            index,
            _encode(fragment),
            self._tool_args_post,
        )

    def delta(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        """A chunk with an arbitrary ``delta`` object (and optionally a finish reason)."""
        return self._head + _encode(delta) + self._finish_tail(finish_reason)

    def finish(self, reason: str) -> bytes:
        return self._head + b"{}" + self._finish_tail(reason)

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The ``include_usage`` chunk: empty ``choices`` and the usage object."""
        return self._top + b'"choices":[],"usage":' + _encode(usage) + b"}\n\n"

    def _finish_tail(self, reason: str | None) -> bytes:
        if reason is None:
            return self._tail
        return b',"logprobs":null,"finish_reason":' + _encode(reason) + b"}]}\n\n"


def error_event(message: str, type: str | None, code: str | int | None) -> bytes:
    """A mid-stream ``{"error": {...}}`` event, as OpenAI-compatible servers send it."""
    return b"data: " + error_body(message, type=type, code=code) + b"\n\n"
