"""Views: the op log in other wire formats (sans-IO; no asyncio, no sockets).

Each view is a state machine fed ``EncodedOp``-like ops (``.seq`` + ``.json``) that returns
``Frame``s (wire bytes plus a deterministic index). See docs/views.md.
"""

from tokenwire.protocol.views.aisdk import HEADERS as AISDK_HEADERS
from tokenwire.protocol.views.aisdk import AISDKView, resume
from tokenwire.protocol.views.base import (
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_THRESHOLD,
    Frame,
    MessageState,
    OpLike,
    RawOp,
    View,
    catch_up,
    frames_after,
    is_logged,
    ops_from_jsonl,
    replay,
    tail_index,
)
from tokenwire.protocol.views.openai_chunks import OpenAIChunksView
from tokenwire.protocol.views.ops_view import OpsView, message_dict
from tokenwire.protocol.views.responses import ResponsesView

VIEWS = {
    "aisdk": AISDKView,
    "openai": OpenAIChunksView,
    "responses": ResponsesView,
    "ops": OpsView,
}

__all__ = [
    "AISDK_HEADERS",
    "DEFAULT_MAX_FRAME_BYTES",
    "DEFAULT_THRESHOLD",
    "VIEWS",
    "AISDKView",
    "Frame",
    "MessageState",
    "OpLike",
    "OpenAIChunksView",
    "OpsView",
    "RawOp",
    "ResponsesView",
    "View",
    "catch_up",
    "frames_after",
    "is_logged",
    "message_dict",
    "ops_from_jsonl",
    "replay",
    "resume",
    "tail_index",
]
