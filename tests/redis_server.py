"""A throwaway ``redis-server`` for tests: free 127.0.0.1 port, temp dir, no persistence.

Never touches a Redis the machine may already run (e.g. on 6379): the port is picked free,
and ``restart()`` brings the server back on the same port, empty, as a real restart without
persistence would.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time

from conftest import terminate


def redis_server_binary() -> str | None:
    return shutil.which("redis-server") or (
        "/usr/bin/redis-server" if shutil.which("/usr/bin/redis-server") else None
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process; ``url`` stays the same across ``restart()``."""

    def __init__(self, binary: str | None = None) -> None:
        found = binary or redis_server_binary()
        if found is None:
            raise FileNotFoundError("redis-server is not on PATH")
        self.binary = found
        self.port = 0
        self.dir = tempfile.mkdtemp(prefix="tw-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        if self.proc is not None:
            return
        for _ in range(5):  # another process may grab a "free" port before we bind it
            port = self.port or _free_port()
            args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            args += ["--dir", self.dir, "--daemonize", "no", "--loglevel", "warning"]
            self.proc = subprocess.Popen(
                [self.binary, *args],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                if _ping(port):
                    self.port = port
                    return
                time.sleep(0.02)
            self._kill()
            time.sleep(0.1)
        raise RuntimeError("could not start redis-server")

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc)

    def stop(self) -> None:
        """Stop the server; the port is kept for a later ``start()``."""
        self._kill()

    def restart(self) -> None:
        """Stop and start again on the same port: the data is gone (no persistence)."""
        self.stop()
        self.start()

    def close(self) -> None:
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
