"""Shared test plumbing: run ASGI apps on real sockets on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from hypothesis import settings

# Hypothesis fails an example slower than 200 ms by default: on a shared, loaded CI machine
# that is a stall, not a bug. The size limits and linear-time checks are tests of their own.
settings.register_profile("tokenwire", deadline=None)
settings.load_profile("tokenwire")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def terminate(proc: subprocess.Popen) -> None:
    """Stop a child process: SIGTERM, then SIGKILL if it is still there after 10 s."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 15) -> None:
    """Until ``GET {url}/healthz`` answers 200 (a ``tokenwire serve`` child started); fails
    the test if ``proc`` exits or ``timeout`` passes first."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            pytest.fail(f"the server at {url} did not start (exit code {proc.poll()})")
        time.sleep(0.1)


@contextlib.contextmanager
def tokenwire_serve(upstream: str, data_dir: Any) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real ``tokenwire serve`` child on a free port (output discarded), healthy; yields its
    base URL and process, and stops it afterwards."""
    import sys

    port = free_port()
    cmd = [sys.executable, "-m", "tokenwire", "serve", "--port", str(port)]
    cmd += ["--upstream", upstream, "--data-dir", str(data_dir)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, 15)
        yield url, proc
    finally:
        terminate(proc)


def http_scope(method: str, path: str, query: bytes = b"", headers: Any = ()) -> dict[str, Any]:
    """An ASGI HTTP scope, for calling an app directly (no client in between)."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": list(headers),
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }


@contextlib.contextmanager
def serve_asgi(app, *, port: int | None = None, **uvicorn_options) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL."""
    port = port or free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", **uvicorn_options
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"test server on port {port} did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def snapshot_when_ended(http: Any, path: str, timeout: float = 10) -> dict:
    """Poll ``GET path`` (a stream's snapshot route) until the stream ended; the snapshot."""
    deadline = time.monotonic() + timeout
    while True:
        snap = http.get(path).json()
        if snap["status"] != "in_progress" or time.monotonic() > deadline:
            return snap
        time.sleep(0.02)


def refused_serve(*args: str) -> str:
    """``tokenwire serve`` (a dead upstream, port 9) with ``args`` that must make it refuse to
    start: exit 2 and one line, no traceback. Returns that line."""
    import sys

    command = [sys.executable, "-m", "tokenwire", "serve", "--upstream", "http://127.0.0.1:9/v1"]
    done = subprocess.run(
        [*command, "--port", "9", *args],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr, done.stderr
    return done.stderr


@pytest.fixture
def asgi_server():
    """``with asgi_server(app) as base_url: ...`` inside a test."""
    return serve_asgi


@pytest.fixture(scope="session")
def redis_server():
    """A throwaway ``redis-server`` on a free port (``.url``, ``.restart()``, ``.stop()``, ...)."""
    from redis_server import RedisServer, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (`make test` installs it)")
    with RedisServer() as server:
        yield server


from conftest_cluster import redis_cluster  # noqa: E402, F401  (fixtures kept in their own files)
from conftest_pg import pg_server  # noqa: E402, F401
