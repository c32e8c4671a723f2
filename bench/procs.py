"""Benchmark servers as separate processes on 127.0.0.1, with their CPU time and RSS.

Every subject runs in its own process so the load-generating client never shares a GIL with
the server it measures. CPU time and memory are read from ``/proc`` (Linux), summed over the
process and its descendants (a server that forks workers is measured whole).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (scans /proc: no psutil needed)."""
    kids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[1]) == pid:  # field 4 (ppid) counted after the command name
            kids.append(int(entry))
    return kids


def tree(pid: int) -> list[int]:
    out = [pid]
    i = 0
    while i < len(out):
        out.extend(_children(out[i]))
        i += 1
    return out


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds of these processes so far (utime + stime in /proc/PID/stat)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / _TICKS


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident set size of these processes (second field of /proc/PID/statm)."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/statm", "rb") as f:
                total += int(f.read().split()[1]) * _PAGE
        except OSError:
            continue
    return total


class Server:
    """A running server process: its URL and its (tree's) CPU time and RSS."""

    def __init__(self, name: str, proc: subprocess.Popen[bytes], port: int) -> None:
        self.name = name
        self.proc = proc
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._pids = [proc.pid]

    def refresh(self) -> None:
        self._pids = tree(self.proc.pid)

    def cpu(self) -> float:
        return cpu_seconds(self._pids)

    def rss(self) -> int:
        return rss_bytes(self._pids)

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None


@contextmanager
def spawn(
    name: str,
    command: Sequence[str],
    port: int,
    *,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/",
    timeout: float = 30.0,
    log: Path | None = None,
) -> Iterator[Server]:
    """Start ``command`` (which must listen on ``port``), wait until it answers HTTP, stop it."""
    full_env = {**os.environ, **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        list(command), cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
    )
    server = Server(name, proc, port)
    try:
        _wait_ready(proc, port, ready_path, timeout, name)
        server.refresh()
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def _wait_ready(proc: subprocess.Popen[bytes], port: int, path: str, timeout: float, name: str):
    deadline = time.monotonic() + timeout
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode} while starting")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(request)
                if sock.recv(12).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not answer on port {port} within {timeout:.0f} s")
        time.sleep(0.1)


def uvicorn_command(target: str, port: int, *, factory: bool = False) -> list[str]:
    command = [sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning", "--no-access-log"]
    if factory:
        command.append("--factory")
    return command


def tokenwire_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "tokenwire", *args]
