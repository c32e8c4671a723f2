"""A bound on what a WebSocket client can make ``tokenwire serve`` hold, or spend.

uvicorn's WebSocket protocol (websockets' sans-I/O implementation) writes a pong for every
ping it reads, at once, whether or not the client reads them: a client that sends pings as
fast as it can and never reads grew the gateway by about 20 MB a second until the keep-alive
timeout closed it. :class:`BoundedWebSocketProtocol` sends no pong while the connection's
write buffer is over its high-water mark (RFC 6455, 5.5.3: an endpoint may answer only the
most recent ping), so such a client holds one buffer's worth.

Parsing frames costs the event loop too: a client flooding tiny frames (two million pings)
held one loop for seconds. A reader sends next to nothing after its handshake (a hello, its
pings, a close), so each connection gets a byte allowance, refilled over time; a client past
it is disconnected before the read is parsed. Pass the class as ``uvicorn.run(..., ws=…)``.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

log = logging.getLogger("tokenwire.gateway")

ALLOWANCE_BYTES = 64 * 1024
"""What a client may send at once after its handshake (about 10,000 empty pings)."""
REFILL_BYTES_PER_S = 1024
"""How fast the allowance comes back (a ping every second is ~10 bytes)."""


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._allowance = float(ALLOWANCE_BYTES)
        self._counted_at = 0.0

    def data_received(self, data: bytes) -> None:
        if self.handshake_complete:
            now = time.monotonic()
            if self._counted_at:
                refill = (now - self._counted_at) * REFILL_BYTES_PER_S
                self._allowance = min(float(ALLOWANCE_BYTES), self._allowance + refill)
            self._counted_at = now
            self._allowance -= len(data)
            if self._allowance < 0:
                if not self.transport.is_closing():
                    log.warning(
                        "WebSocket client %s sent more than %d bytes at once: disconnected",
                        self.client,
                        ALLOWANCE_BYTES,
                    )
                    self.transport.close()
                return  # (not parsed: the point is not to spend the loop on it)
        super().data_received(data)

    def handle_ping(self) -> None:
        output = self.conn.data_to_send()  # (the pong: taken from the connection either way)
        if self.writable.is_set():  # (cleared while the transport's writes are paused)
            self.transport.write(b"".join(output))


__all__ = ["ALLOWANCE_BYTES", "REFILL_BYTES_PER_S", "BoundedWebSocketProtocol"]
