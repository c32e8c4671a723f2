"""Hubs: per-stream op logs that producers append to and subscribers pull from."""

from tokenwire.hub.base import Cursor, Hub, HubUnavailable, StreamInfo, StreamNotFound
from tokenwire.hub.memory import MemoryHub

__all__ = ["Cursor", "Hub", "HubUnavailable", "MemoryHub", "StreamInfo", "StreamNotFound"]
