"""Serve any Python generator as an OpenAI-compatible chat-completions endpoint.

>>> async def handler(request: ChatRequest):
...     for word in ["Hello", ",", " world"]:
...         yield word
>>> app = create_app(handler, models=["my-model"])
"""

from tokenwire.producer.app import ChunkStreamResponse, Handler, Outcome, create_app
from tokenwire.producer.encoder import CompletionBuilder, StreamEncoder
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
from tokenwire.producer.request import ChatMessage, ChatRequest, RequestError, parse_request

__all__ = [
    "DONE",
    "ChatMessage",
    "ChatRequest",
    "ChunkFramer",
    "ChunkStreamResponse",
    "CompletionBuilder",
    "Finish",
    "Handler",
    "Outcome",
    "Part",
    "RawDelta",
    "Reasoning",
    "RequestError",
    "StreamEncoder",
    "StreamError",
    "Text",
    "ToolCallDelta",
    "ToolCallStart",
    "Truncate",
    "Usage",
    "create_app",
    "error_event",
    "parse_request",
]
