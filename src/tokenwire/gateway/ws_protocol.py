"""A bound on what a WebSocket client that does not read can make ``tokenwire serve`` hold.

uvicorn's WebSocket protocol (websockets' sans-I/O implementation) writes a pong for every
ping it reads, at once, whether or not the client reads them: a client that sends pings as
fast as it can and never reads grew the gateway by about 20 MB a second until the keep-alive
timeout closed it. :class:`BoundedWebSocketProtocol` sends no pong while the connection's
write buffer is over its high-water mark (RFC 6455, 5.5.3: an endpoint may answer only the
most recent ping), so such a client holds one buffer's worth. Pass it as
``uvicorn.run(..., ws=…)``.
"""

from __future__ import annotations

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class BoundedWebSocketProtocol(WebSocketsSansIOProtocol):
    def handle_ping(self) -> None:
        output = self.conn.data_to_send()  # (the pong: taken from the connection either way)
        if self.writable.is_set():  # (cleared while the transport's writes are paused)
            self.transport.write(b"".join(output))


__all__ = ["BoundedWebSocketProtocol"]
