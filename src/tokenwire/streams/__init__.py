"""The library: ``Streams`` (live generations) and ``StreamWriter`` (the one producer of ops).

See docs/embedding.md. ``streams.asgi(authorize=...)`` (``tokenwire.streams.asgi``) is what a
host mounts to serve the streams over HTTP.
"""

from tokenwire.streams.core import STREAM_ID, Observer, StreamHandle, Streams
from tokenwire.streams.store import MemoryStore, StoredStream, StreamStore
from tokenwire.streams.writer import PipeResult, State, StreamWriter, ToolCall

__all__ = [
    "STREAM_ID",
    "MemoryStore",
    "Observer",
    "PipeResult",
    "State",
    "StoredStream",
    "StreamHandle",
    "StreamStore",
    "StreamWriter",
    "Streams",
    "ToolCall",
]
