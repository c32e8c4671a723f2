"""Issue 12, item 8: a passthrough relay whose upstream breaks mid-body logs one line and no
traceback; the client still gets a truncated body."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from conftest import serve_asgi

from tokenwire.gateway import Settings, create_app
from tokenwire.logredact import RedactingFilter

HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
FAULTS = {
    "reset": HEAD + b"Transfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n",
    "bad-chunk-size": HEAD + b"Transfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\nzz\r\n",
    "short-content-length": HEAD + b"Content-Length: 100\r\n\r\ndata: x\n\n",
}


@pytest.fixture(scope="module")
def broken_upstream() -> Iterator[str]:
    """A raw upstream: the request path's last segment names the fault it answers with."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                head = b""
                while b"\r\n\r\n" not in head:
                    head += conn.recv(65536)
                fault = b"reset"
                for name in FAULTS:
                    if name.encode() in head:
                        fault = name.encode()
                conn.sendall(FAULTS[fault.decode()])
                if fault == b"reset":
                    conn.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                    )
                else:
                    threading.Event().wait(0.2)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}/v1"
    server.close()


@pytest.mark.parametrize("fault", list(FAULTS))
def test_broken_relay_logs_one_line(
    fault: str, broken_upstream: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(upstream=broken_upstream, upstream_retries=0)
    caplog.handler.addFilter(RedactingFilter())  # as `tokenwire serve` installs it
    uvicorn_logger = logging.getLogger("uvicorn")
    with serve_asgi(create_app(settings)) as url:
        uvicorn_logger.addHandler(caplog.handler)
        try:
            with caplog.at_level(logging.INFO):
                body = {"model": fault, "stream": True, "messages": []}
                with (
                    pytest.raises(httpx.RemoteProtocolError),  # a truncated body
                    httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as r,
                ):
                    assert r.status_code == 200
                    b"".join(r.iter_raw())
                asyncio.run(asyncio.sleep(0.2))
        finally:
            uvicorn_logger.removeHandler(caplog.handler)
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(problems) == 1, [r.getMessage() for r in problems]
    assert "passthrough" in problems[0].getMessage()
    assert all(r.exc_info is None for r in caplog.records)
