"""Issue 12, items 10 and 11, against a real ``tokenwire serve`` process: credentials never reach
its logs; request heads are bounded in size and time (RSS does not grow; slowloris is closed)."""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import free_port, terminate, tokenwire_serve, wait_healthy

from tokenwire.logredact import RedactingFilter, redact_text

SECRET = "sk-client-SECRET-1234"


def _ws_handshake(stream_id: str) -> bytes:
    """A raw WebSocket upgrade request for the stream's ``/ws``."""
    key = base64.b64encode(os.urandom(16))
    return (
        f"GET /v1/streams/{stream_id}/ws HTTP/1.1\r\nHost: x\r\n".encode()
        + b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        + b"Sec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, subprocess.Popen]]:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    port = free_port()
    env = {
        **os.environ,
        "TOKENWIRE_REQUEST_HEAD_TIMEOUT_S": "1",
        "PYTHONUNBUFFERED": "1",
    }
    cmd = [sys.executable, "-m", "tokenwire", "serve", "--port", str(port)]
    cmd += ["--upstream", f"http://127.0.0.1:{free_port()}/v1", "--api-key", SECRET]
    cmd += ["--data-dir", str(tmp_path_factory.mktemp("data")), "--log-level", "debug"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[bytes] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)  # type: ignore[arg-type]
    reader.start()
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc, 15)
    proc.lines = lines  # type: ignore[attr-defined]
    try:
        yield url, proc
    finally:
        terminate(proc)
        reader.join(5)


def test_credentials_never_reach_the_log(served: tuple[str, subprocess.Popen]) -> None:
    url, proc = served
    for query in (f"api_key={SECRET}", f"token={SECRET}", f"api_key=wrong-{SECRET}"):
        httpx.get(f"{url}/v1/streams/st_abcdefghijklmnopqrstuv?{query}")
    httpx.get(f"{url}/v1/streams/st_x", headers={"Authorization": f"Bearer {SECRET}"})
    # A WebSocket handshake (logged header by header at debug).
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1]))) as sock:
        sock.sendall(
            b"GET /v1/streams/st_abcdefghijklmnopqrstuv/ws HTTP/1.1\r\nHost: x\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Authorization: Bearer " + SECRET.encode() + b"\r\n\r\n"
        )
        sock.settimeout(3)
        sock.recv(4096)
    time.sleep(0.5)
    log = b"".join(proc.lines).decode("utf-8", "replace")  # type: ignore[attr-defined]
    assert "GET /v1/streams/st_abcdefghijklmnopqrstuv?api_key=[REDACTED]" in log
    assert "token=[REDACTED]" in log
    assert SECRET not in log


def test_huge_unterminated_heads_do_not_grow_memory(served: tuple[str, subprocess.Popen]) -> None:
    url, proc = served
    port = int(url.rsplit(":", 1)[1])
    before = rss_kib(proc.pid)
    answers: list[bytes] = []

    def attack() -> None:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            piece = b"a" * 65536
            try:
                for _ in range(128):  # 8 MiB, never terminated
                    sock.sendall(piece)
            except OSError:
                pass  # the server closed the connection: what we want
            try:
                answers.append(sock.recv(4096))
            except OSError:
                answers.append(b"")

    threads = [threading.Thread(target=attack) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    grown = rss_kib(proc.pid) - before
    assert grown < 16 * 1024, f"RSS grew by {grown} KiB"
    assert any(a.startswith(b"HTTP/1.1 431") for a in answers), answers[:3]
    assert httpx.get(f"{url}/healthz").status_code == 200  # still serving


def test_a_large_head_in_one_read_is_refused(served: tuple[str, subprocess.Popen]) -> None:
    url, _ = served
    response = httpx.get(f"{url}/healthz", headers={"X-Big": "b" * 70_000})
    assert response.status_code == 431
    assert httpx.get(f"{url}/healthz", headers={"X-Ok": "c" * 30_000}).status_code == 200


def test_the_head_limit_counts_the_request_line_too(served: tuple[str, subprocess.Popen]) -> None:
    """``max_request_head_bytes`` (65,536) is the request line plus headers: a head of exactly
    that many bytes (blank line included) is served, one byte more is ``431``."""
    url, _ = served
    port = int(url.rsplit(":", 1)[1])

    def status_of(size: int) -> bytes:
        start = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Pad: "
        head = start + b"p" * (size - len(start) - 4) + b"\r\n\r\n"
        assert len(head) == size
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            sock.sendall(head)
            return sock.recv(64).split(b"\r\n")[0]

    assert status_of(65_536) == b"HTTP/1.1 200 OK"
    assert status_of(65_537).startswith(b"HTTP/1.1 431")


def test_slowloris_is_closed(served: tuple[str, subprocess.Popen]) -> None:
    url, _ = served
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        start = time.monotonic()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        answer = b""
        try:
            for _ in range(40):  # one header byte every 0.1 s: never done
                sock.sendall(b"X")
                time.sleep(0.1)
                sock.setblocking(False)
                try:
                    answer += sock.recv(4096)
                except BlockingIOError:
                    pass
                sock.setblocking(True)
                if answer:
                    break
        except OSError:
            pass
        elapsed = time.monotonic() - start
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert elapsed < 3.0
    # An idle connection that sends nothing is closed too.
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.settimeout(5)
        assert sock.recv(10) == b""


@pytest.mark.parametrize(
    ("line", "secret"),
    [
        ('127.0.0.1:5 - "GET /v1/streams/x?after=3&api_key=abc HTTP/1.1" 200', "abc"),
        ("< Authorization: Bearer abc.def", "abc.def"),
        ("headers: [(b'authorization', b'Basic dXNlcjpw'), (b'host', b'x')]", "dXNlcjpw"),
        ("{'x-api-key': 'k-123', 'accept': '*/*'}", "k-123"),
        ("redis://user:hunter2@127.0.0.1:6379/0", "hunter2"),
        ("GET /x?token=t0k&key=k2 HTTP/1.1", "t0k"),
        # (names are percent-decoded by the server: they authenticate like the plain ones)
        ('"GET /v1/models?api%5Fkey=sekrit123 HTTP/1.1" 200', "sekrit123"),
        ('"GET /v1/streams/st_x?a=1&%74oken=rt0k HTTP/1.1" 404', "rt0k"),
    ],
)
def test_redact_text(line: str, secret: str) -> None:
    out = redact_text(line)
    assert secret not in out and "[REDACTED]" in out


def test_redaction_keeps_other_encoded_parameters() -> None:
    assert redact_text("GET /v1/x?q=%41b&x=1") == "GET /v1/x?q=%41b&x=1"


def test_filter_formats_split_header_args_and_keeps_access_args() -> None:
    flt = RedactingFilter()
    record = logging.LogRecord(
        "uvicorn.error", 10, "", 0, "< %s: %s", ("Authorization", "Bearer x1"), None
    )
    flt.filter(record)
    assert "x1" not in record.getMessage()
    args = ("127.0.0.1:5", "GET", "/a?api_key=s3", "1.1", 200)
    record = logging.LogRecord("uvicorn.access", 20, "", 0, '%s - "%s %s HTTP/%s" %d', args, None)
    flt.filter(record)
    assert record.args[2] == "/a?api_key=[REDACTED]"  # type: ignore[index]


def test_uvicorn_log_config_filters_every_handler() -> None:
    from tokenwire.logredact import uvicorn_log_config

    config = uvicorn_log_config("warning")
    assert all(h["filters"] == ["redact"] for h in config["handlers"].values())
    assert config["loggers"]["tokenwire"]["level"] == "WARNING"
    # (applied for real by the `tokenwire serve` process in the tests above)


def test_a_websocket_client_that_pings_and_never_reads_holds_no_pile_of_pongs(
    tmp_path: Path,
) -> None:
    """A client sends PING frames as fast as it can and reads nothing: uvicorn wrote a pong
    for each at once, and the gateway grew by about 20 MB a second. ``serve`` answers no ping
    while the client's writes are paused (RFC 6455 lets it answer only the latest)."""
    from conftest import serve_asgi

    from tokenwire.mock import create_mock_app

    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc")
    with (
        serve_asgi(create_mock_app(ttft_ms=600_000)) as mock,  # (live, and silent)
        tokenwire_serve(f"{mock}/v1", tmp_path) as (url, proc),
    ):
        port = int(url.rsplit(":", 1)[1])
        created = httpx.post(f"{url}/v1/streams", json={"model": "mock", "messages": []})
        if created.status_code == 400:  # (an empty list is refused: one message then)
            body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
            created = httpx.post(f"{url}/v1/streams", json=body)
        stream_id = created.json()["id"]
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall(_ws_handshake(stream_id))
        time.sleep(0.3)
        assert sock.recv(200).startswith(b"HTTP/1.1 101")
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"p" * 125))
        burst = (bytes([0x89, 0x80 | 125]) + mask + payload) * 512
        before = rss_kib(proc.pid)
        sock.settimeout(2)
        sent = 0
        started = time.monotonic()
        while time.monotonic() - started < 4:
            try:
                sock.sendall(burst)
                sent += len(burst)
            except OSError:
                break  # (the server stopped reading: what a bound looks like too)
        grown = rss_kib(proc.pid) - before
        sock.close()
        assert grown < 32 * 1024, f"RSS grew by {grown} KiB after {sent >> 20} MiB of pings"
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_a_websocket_client_flooding_frames_is_disconnected_unparsed(tmp_path: Path) -> None:
    """Two million tiny frames held the gateway's loop for seconds while websockets parsed them.
    A reader sends next to nothing after its handshake, so past a byte allowance (refilled over
    time) the client is disconnected before its read is parsed; a client that pings now and
    then and sends its hello reads its stream as before."""
    from websockets.sync.client import connect

    from tokenwire.gateway.ws_protocol import ALLOWANCE_BYTES

    with tokenwire_serve(f"http://127.0.0.1:{free_port()}/v1", tmp_path) as (url, _):
        port = int(url.rsplit(":", 1)[1])
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        stream_id = httpx.post(f"{url}/v1/streams", json=body).json()["id"]  # (fails: no upstream)
        # A polite client: its hello and a few pings, then the stream's ops to the end.
        with connect(f"ws://127.0.0.1:{port}/v1/streams/{stream_id}/ws") as ws:
            ws.send('{"after": 0}')
            for _ in range(20):
                ws.ping().wait(5)
            ops = []
            while not ops or json.loads(ops[-1])["type"] != "message.end":
                ops.append(ws.recv(timeout=10))
        # A flooding one: empty pings, far past the allowance, in one go.
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(_ws_handshake(stream_id))
        sock.settimeout(5)
        assert sock.recv(12).startswith(b"HTTP/1.1 101")
        ping = bytes([0x89, 0x80]) + b"\x01\x02\x03\x04"
        flood = ping * (4 * ALLOWANCE_BYTES // len(ping))
        closed = False
        try:
            sock.sendall(flood)
            sock.settimeout(3)
            while sock.recv(65536):  # (pongs, if any, until b"": closed by the server)
                pass
            closed = True
        except TimeoutError:
            pass  # (still open: not disconnected)
        except OSError:  # (reset, broken pipe: disconnected)
            closed = True
        finally:
            sock.close()
        assert closed, "the flooding client was not disconnected"
        assert httpx.get(f"{url}/healthz").status_code == 200


def test_the_demo_has_serves_bounds_too(tmp_path: Path) -> None:
    """``tokenwire demo`` runs the gateway with ``serve``'s uvicorn options: a request head
    over the limit is refused there too (uvicorn's own protocol keeps every byte of it)."""
    port = free_port()
    cmd = [sys.executable, "-m", "tokenwire", "demo", "--no-browser", "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, timeout=30)
        assert httpx.get(f"{url}/healthz", headers={"X-Big": "b" * 70_000}).status_code == 431
        assert httpx.get(f"{url}/healthz", headers={"X-Ok": "c" * 30_000}).status_code == 200
    finally:
        terminate(proc)


def test_idle_connections_hold_no_empty_deques() -> None:
    """uvicorn makes three empty deques per connection (its pipelined-request queue and the
    waiters of two ``asyncio.Event``s), 760 bytes each; serve's protocol gives it lists
    (docs/benchmarks.md: memory per idle stream). A change in uvicorn must not make that
    saving vanish unseen, and pipelined requests must still be answered in order."""
    from collections import deque

    from conftest import serve_asgi

    from tokenwire.gateway.limits import BoundedHttpToolsProtocol

    made: list[BoundedHttpToolsProtocol] = []

    class Recording(BoundedHttpToolsProtocol):
        __slots__ = ()

        def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
            made.append(self)
            super().connection_made(transport)

    seen: list[tuple[type, type]] = []

    async def app(scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        protocol = made[-1]
        seen.append((type(protocol.pipeline), type(protocol.cycle.message_event._waiters)))
        body = scope["path"].encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    with serve_asgi(app, http=Recording) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.settimeout(5)
            two = b"GET /one HTTP/1.1\r\nHost: x\r\n\r\nGET /two HTTP/1.1\r\nHost: x\r\n\r\n"
            sock.sendall(two)  # (pipelined: both in one write)
            answer = b""
            while answer.count(b"HTTP/1.1 200") < 2 or not answer.endswith(b"/two"):
                chunk = sock.recv(4096)
                assert chunk, answer
                answer += chunk
        assert answer.index(b"/one") < answer.index(b"/two")
        protocol = made[0]
        assert type(protocol.pipeline) is not deque
        assert type(protocol.flow._is_writable_event._waiters) is not deque
    assert seen and all(deque not in kinds for kinds in seen)


def test_a_reader_that_stalls_then_reads_gets_the_whole_answer(tmp_path: Path) -> None:
    """Flow control through serve's protocol (its ``asyncio.Event`` waiters are lists): a
    reader that lets the socket fill (the gateway's writes pause) and only then reads gets
    every op, in order, to the end."""
    from conftest import serve_asgi

    from tokenwire.mock import create_mock_app
    from tokenwire.protocol import SSEDecoder

    with (
        serve_asgi(create_mock_app()) as mock_url,
        tokenwire_serve(f"{mock_url}/v1", tmp_path) as (url, _),
    ):
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        body.update(max_tokens=20_000, tokenwire={"coalesce_ms": 0})  # (an op per token)
        created = httpx.post(f"{url}/v1/streams", json=body).json()
        port = int(url.rsplit(":", 1)[1])
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.connect(("127.0.0.1", port))
            sock.sendall(
                f"GET {created['events_url']}?catchup=exact HTTP/1.1\r\nHost: x\r\n\r\n".encode()
            )
            time.sleep(1.5)  # the answer is far bigger than the socket buffers: writes pause
            sock.settimeout(20)
            raw = b""
            while b'"type":"message.end"' not in raw:
                chunk = sock.recv(65536)
                assert chunk, "the gateway closed before message.end"
                raw += chunk
    head, chunked = raw.split(b"\r\n\r\n", 1)
    assert b"transfer-encoding: chunked" in head.lower()
    body_bytes = b""
    while chunked:  # (the chunked transfer coding, undone)
        size_line, rest = chunked.split(b"\r\n", 1)
        size = int(size_line, 16)
        body_bytes += rest[:size]
        chunked = rest[size + 2 :]
    events = SSEDecoder().feed(body_bytes)
    seqs = [int(e.id) for e in events if e.id]
    assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 20_000
    assert b'"status":"completed"' in events[-1].raw
