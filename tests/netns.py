"""A real network partition for tests: Redis in its own network namespace, reached over a veth
pair, and a partition that is the veth link going down (a pulled cable: packets are dropped,
nothing is refused or reset, so TCP peers simply hear nothing until it heals).

Needs root and ``ip netns`` (iproute2); ``netns_unavailable()`` says why not otherwise. Names
carry the test process's pid, and ``close()`` deletes the namespace (which deletes the veth
pair), so nothing is left behind and other processes' namespaces are never touched.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import subprocess
import tempfile
import time

from conftest import terminate


def _ip(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ip", *args], capture_output=True, timeout=10)


def netns_unavailable() -> str | None:
    """Why a test cannot make namespaces here, or ``None`` when it can."""
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_NET_ADMIN); the tests do not run as root"
    name = f"twprobe{os.getpid()}"
    made = _ip("netns", "add", name)
    if made.returncode != 0:
        return f"`ip netns add` failed: {made.stderr.decode(errors='replace').strip()}"
    _ip("netns", "del", name)
    return None


class PartitionedRedis:
    """``redis-server`` inside namespace ``ns`` on ``ns_addr``; this process reaches it over a
    veth pair (``url``). ``partition()`` / ``heal()`` take the link down / up. Commands run
    inside the namespace with ``ns_command(...)`` (Redis is also on 127.0.0.1 there)."""

    def __init__(self, server_bin: str) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = f"twp{tag}"
        self.host_if, self.ns_if = f"twh{tag}", f"twn{tag}"
        net = random.randrange(0, 256)
        self.host_addr, self.ns_addr = f"10.213.{net}.1", f"10.213.{net}.2"
        self.port = 6379
        self.server_bin = server_bin
        self.dir = tempfile.mkdtemp(prefix="tw-redis-ns-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.ns_addr}:{self.port}/0"

    @property
    def inner_url(self) -> str:
        """The same Redis from inside the namespace (not affected by the partition)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def ns_command(self, *args: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *args]

    def _run(self, *args: str) -> None:
        done = _ip(*args)
        if done.returncode != 0:
            raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        self._run("netns", "add", self.ns)
        self._run("link", "add", self.host_if, "type", "veth", "peer", "name", self.ns_if)
        self._run("link", "set", self.ns_if, "netns", self.ns)
        self._run("addr", "add", f"{self.host_addr}/30", "dev", self.host_if)
        self._run("link", "set", self.host_if, "up")
        self._run("-n", self.ns, "addr", "add", f"{self.ns_addr}/30", "dev", self.ns_if)
        self._run("-n", self.ns, "link", "set", self.ns_if, "up")
        self._run("-n", self.ns, "link", "set", "lo", "up")
        args = ["--port", str(self.port), "--bind", self.ns_addr, "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
        args += ["--protected-mode", "no"]  # (no password, and not only on loopback)
        self.proc = subprocess.Popen(
            self.ns_command(self.server_bin, *args),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not self._pings():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("redis-server did not start in the namespace")
            time.sleep(0.05)

    def _pings(self) -> bool:
        import socket

        try:
            with socket.create_connection((self.ns_addr, self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def partition(self) -> None:
        """Take the link down inside the namespace: both directions drop, silently."""
        self._run("-n", self.ns, "link", "set", self.ns_if, "down")

    def heal(self) -> None:
        self._run("-n", self.ns, "link", "set", self.ns_if, "up")
        deadline = time.monotonic() + 10
        while not self._pings():  # (the carrier and the routes come back asynchronously)
            if time.monotonic() > deadline:
                raise RuntimeError("the link did not come back")
            time.sleep(0.02)

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None:
            terminate(proc)
        _ip("netns", "del", self.ns)  # (takes the veth pair with it)
        _ip("link", "del", self.host_if)  # (already gone unless the move into the ns failed)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> PartitionedRedis:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
