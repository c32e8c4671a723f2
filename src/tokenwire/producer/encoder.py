"""Turning generator parts into response bytes (no I/O).

``StreamEncoder`` frames a streamed response chunk by chunk; ``CompletionBuilder`` collects a
non-streamed ``chat.completion`` object. Both count tokens (one per text, reasoning or
argument part), enforce the token limit, and work out finish reason and usage.
"""

from __future__ import annotations

from typing import Any

import msgspec

from tokenwire.producer.framing import DONE, ChunkFramer, error_event
from tokenwire.producer.parts import (
    Finish,
    Part,
    RawDelta,
    Reasoning,
    StreamError,
    Text,
    ToolCallDelta,
    ToolCallStart,
    Truncate,
    Usage,
)


class _Accounting:
    """Token counting, limit, tool-call indexes, finish reason and usage, shared by both modes."""

    def __init__(self, limit: int | None, prompt_tokens: int) -> None:
        self.limit = limit
        self.tokens = 0
        self.prompt_tokens = prompt_tokens
        self.done = False  # stop pulling from the generator
        self.limit_hit = False
        self.finish_reason: str | None = None
        self.reported_usage: Usage | None = None
        self.next_tool = 0
        self.last_tool = 0
        self.saw_tools = False

    def count(self) -> None:
        self.tokens += 1
        if self.limit is not None and self.tokens >= self.limit:
            self.limit_hit = self.done = True

    def delta_index(self, index: int | None) -> int:
        """The call a ``ToolCallDelta`` extends: its own index, or the last call's."""
        return self.last_tool if index is None else _valid_index(index)

    def start_tool(self, index: int | None) -> int:
        index = self.next_tool if index is None else _valid_index(index)
        self.next_tool = max(self.next_tool, index + 1)
        self.last_tool = index
        self.saw_tools = True
        return index

    def raw_tool_calls(self, delta: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
        """The tool-call fragments of a ``RawDelta``'s ``delta``, as (index, fragment); a
        fragment for a new index starts that call, as ``ToolCallStart`` would."""
        calls = delta.get("tool_calls")
        out: list[tuple[int, dict[str, Any]]] = []
        for fragment in calls if isinstance(calls, list) else ():
            if not isinstance(fragment, dict):
                continue
            index = fragment.get("index")
            if not isinstance(index, int) or isinstance(index, bool):
                index = None  # (no index: it continues the last call)
            if index is not None and index >= self.next_tool:
                self.start_tool(index)
            else:
                index = self.last_tool = self.delta_index(index)
            self.saw_tools = True
            out.append((index, fragment))
        return out

    def final_reason(self) -> str:
        if self.limit_hit:
            return "length"
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.saw_tools else "stop"

    def usage(self) -> dict[str, int]:
        got = self.reported_usage or Usage()
        prompt = self.prompt_tokens if got.prompt_tokens is None else got.prompt_tokens
        completion = self.tokens if got.completion_tokens is None else got.completion_tokens
        total = prompt + completion if got.total_tokens is None else got.total_tokens
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


class StreamEncoder:
    """Frames one streamed response: ``start()``, ``feed(part)`` until ``done``, ``finish()``."""

    def __init__(
        self,
        framer: ChunkFramer,
        *,
        limit: int | None = None,
        include_usage: bool = False,
        prompt_tokens: int = 0,
    ) -> None:
        self.framer = framer
        self.include_usage = include_usage
        self.acct = _Accounting(limit, prompt_tokens)
        self.aborted = False  # ended by StreamError/Truncate: no finish chunk, no [DONE]
        self.failed = False  # ended by a StreamError: the stream's outcome is "failed"

    @property
    def done(self) -> bool:
        return self.acct.done

    def start(self) -> bytes:
        return self.framer.role()

    def feed(self, part: Part) -> bytes:
        """The bytes for one part (possibly empty). Check ``done`` afterwards."""
        acct = self.acct
        if acct.done:
            return b""
        if type(part) is str:  # the fast path
            acct.count()
            return self.framer.content(part)
        if isinstance(part, str):  # str subclasses
            acct.count()
            return self.framer.content(str(part))
        if isinstance(part, Text):
            acct.count()
            return self.framer.content(part.text)
        if isinstance(part, Reasoning):
            acct.count()
            return self.framer.reasoning(part.text)
        if isinstance(part, ToolCallDelta):
            acct.count()
            index = acct.delta_index(part.index)
            return self.framer.tool_args(index, part.arguments)
        if isinstance(part, ToolCallStart):
            return self.framer.tool_start(acct.start_tool(part.index), part.id, part.name)
        if isinstance(part, Usage):
            acct.reported_usage = part
            return b""
        if isinstance(part, Finish):
            acct.finish_reason = part.reason
            return b""
        if isinstance(part, RawDelta):
            acct.count()
            if part.finish_reason is not None:
                acct.finish_reason = part.finish_reason
            acct.raw_tool_calls(part.delta)  # (their indexes count, as in a non-streamed answer)
            return self.framer.delta(part.delta)
        if isinstance(part, StreamError):
            acct.done = self.aborted = self.failed = True
            return error_event(part.message, part.type, part.code)
        if isinstance(part, Truncate):
            acct.done = self.aborted = True
            return b""
        raise TypeError(f"a producer generator yielded {type(part).__name__!r}")

    def finish(self) -> bytes:
        """The closing bytes: finish chunk, usage chunk if asked for, ``[DONE]``."""
        self.acct.done = True
        if self.aborted:
            return b""
        out = self.framer.finish(self.acct.final_reason())
        if self.include_usage:
            out += self.framer.usage(self.acct.usage())
        return out + DONE


def _valid_index(index: int) -> int:
    if index < 0:
        raise ValueError(f"a tool call's index must be 0 or more, got {index}")
    return index


class _Call:
    __slots__ = ("arguments", "id", "name")

    def __init__(self, call_id: str | None, name: str | None) -> None:
        self.id = call_id
        self.name = name
        self.arguments: list[str] = []

    def fill(self, call_id: object, name: object) -> None:
        """Take an id and a name where none is known yet (the first ones win)."""
        if self.id is None and isinstance(call_id, str):
            self.id = call_id
        if self.name is None and isinstance(name, str):
            self.name = name


class CompletionBuilder:
    """Collects parts into one ``chat.completion`` object (non-streamed responses)."""

    def __init__(
        self,
        response_id: str,
        model: str,
        created: int,
        *,
        limit: int | None = None,
        prompt_tokens: int = 0,
        reasoning_field: str = "reasoning_content",
    ) -> None:
        self.response_id = response_id
        self.model = model
        self.created = created
        self.reasoning_field = reasoning_field
        self.acct = _Accounting(limit, prompt_tokens)
        self.text: list[str] = []
        self.reasoning: list[str] = []
        self.calls: dict[int, _Call] = {}
        self.annotations: list[Any] = []  # OpenAI `annotations` (url_citation) of raw deltas
        self.error: StreamError | None = None
        self.truncated = False

    @property
    def done(self) -> bool:
        return self.acct.done

    def feed(self, part: Part) -> None:
        acct = self.acct
        if acct.done:
            return
        if isinstance(part, str):
            acct.count()
            self.text.append(str(part))
        elif isinstance(part, Text):
            acct.count()
            self.text.append(part.text)
        elif isinstance(part, Reasoning):
            acct.count()
            self.reasoning.append(part.text)
        elif isinstance(part, ToolCallStart):
            # (Raw fragments may have come first for this index: keep their arguments.)
            self._call(acct.start_tool(part.index)).fill(part.id, part.name)
        elif isinstance(part, ToolCallDelta):
            acct.count()
            index = acct.delta_index(part.index)
            self._call(index).arguments.append(part.arguments)
        elif isinstance(part, Usage):
            acct.reported_usage = part
        elif isinstance(part, Finish):
            acct.finish_reason = part.reason
        elif isinstance(part, RawDelta):
            acct.count()
            if part.finish_reason is not None:
                acct.finish_reason = part.finish_reason
            content = part.delta.get("content")
            if isinstance(content, str):
                self.text.append(content)
            reasoning = part.delta.get(self.reasoning_field)
            if isinstance(reasoning, str):
                self.reasoning.append(reasoning)
            notes = part.delta.get("annotations")
            if isinstance(notes, list):
                self.annotations.extend(notes)
            for index, fragment in acct.raw_tool_calls(part.delta):
                self._raw_tool_call(index, fragment)
        elif isinstance(part, StreamError):
            self.error = part
            acct.done = True
        elif isinstance(part, Truncate):
            self.truncated = acct.done = True
        else:
            raise TypeError(f"a producer generator yielded {type(part).__name__!r}")

    def _raw_tool_call(self, index: int, fragment: dict[str, Any]) -> None:
        """Merge one OpenAI-style tool-call fragment: the first id and name win, arguments
        concatenate."""
        function = fragment.get("function")
        function = function if isinstance(function, dict) else {}
        call = self._call(index)
        call.fill(fragment.get("id"), function.get("name"))
        arguments = function.get("arguments")
        if isinstance(arguments, str):
            call.arguments.append(arguments)

    def _call(self, index: int) -> _Call:
        call = self.calls.get(index)
        if call is None:
            call = self.calls[index] = _Call(None, None)
        return call

    def result(self) -> dict[str, Any]:
        """The ``chat.completion`` object. A truncated answer has ``finish_reason: null``."""
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(self.text) if self.text or not self.calls else None,
        }
        if self.reasoning:
            message[self.reasoning_field] = "".join(self.reasoning)
        if self.annotations:
            message["annotations"] = self.annotations
        if self.calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": "".join(call.arguments)},
                }
                for _, call in sorted(self.calls.items())
            ]
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": None if self.truncated else self.acct.final_reason(),
        }
        return {
            "id": self.response_id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.acct.usage(),
        }

    def to_json(self) -> bytes:
        return msgspec.json.encode(self.result())
