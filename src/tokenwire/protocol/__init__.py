"""The sans-IO core: bytes and objects in, bytes and objects out. No I/O in here."""

from tokenwire.protocol.anthropic import AnthropicNormalizer
from tokenwire.protocol.assembler import Assembler, error_info
from tokenwire.protocol.chunks import Chunk, decode_chunk
from tokenwire.protocol.formats import FORMATS, detect_body, detect_event
from tokenwire.protocol.harmony import HarmonySplitter
from tokenwire.protocol.message import Block, Message
from tokenwire.protocol.normalizer import ChunkNormalizer
from tokenwire.protocol.ops import (
    BlockDelta,
    BlockEnd,
    BlockStart,
    BlockUpdate,
    EncodedOp,
    MessageEnd,
    MessageStart,
    Op,
    ProtocolError,
    Snapshot,
    StepReset,
    Transient,
    apply_op,
    apply_ops,
    decode_op,
    encode,
    is_transient,
    snapshot_op,
)
from tokenwire.protocol.pipeline import Pipeline
from tokenwire.protocol.render import render_markdown
from tokenwire.protocol.response import NotAChatCompletion, assemble_response
from tokenwire.protocol.responses_events import ResponsesNormalizer
from tokenwire.protocol.sse import SSEDecoder, SSEEvent, encode_comment, encode_event
from tokenwire.protocol.think_tags import DEFAULT_THINK_TAGS, ThinkTagSplitter

__all__ = [
    "DEFAULT_THINK_TAGS",
    "FORMATS",
    "AnthropicNormalizer",
    "Assembler",
    "Block",
    "BlockDelta",
    "BlockEnd",
    "BlockStart",
    "BlockUpdate",
    "Chunk",
    "ChunkNormalizer",
    "EncodedOp",
    "HarmonySplitter",
    "Message",
    "MessageEnd",
    "MessageStart",
    "NotAChatCompletion",
    "Op",
    "Pipeline",
    "ProtocolError",
    "ResponsesNormalizer",
    "SSEDecoder",
    "SSEEvent",
    "Snapshot",
    "StepReset",
    "ThinkTagSplitter",
    "Transient",
    "apply_op",
    "apply_ops",
    "assemble_response",
    "decode_chunk",
    "decode_op",
    "detect_body",
    "detect_event",
    "encode",
    "encode_comment",
    "encode_event",
    "error_info",
    "is_transient",
    "render_markdown",
    "snapshot_op",
]
