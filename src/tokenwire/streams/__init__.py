"""The library: ``Streams`` (live generations) and ``StreamWriter`` (the one producer of ops).

See docs/embedding.md. ``streams.asgi(authorize=...)`` (``tokenwire.streams.asgi``) is what a
host mounts to serve the streams over HTTP.
"""

from tokenwire.streams.core import STREAM_ID, Continuation, Observer, Resumed, StreamHandle, Streams
from tokenwire.streams.store import MemoryStore, StoredStream, StreamStore
from tokenwire.streams.writer import PipeResult, State, StreamWriter, ToolCall

__all__ = [
    "STREAM_ID",
    "Continuation",
    "MemoryStore",
    "Observer",
    "PipeResult",
    "Resumed",
    "State",
    "StoredStream",
    "StreamHandle",
    "StreamStore",
    "StreamWriter",
    "Streams",
    "ToolCall",
]
