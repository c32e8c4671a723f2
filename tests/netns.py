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
    inside the namespace with ``ns_command(...)`` (Redis is also on 127.0.0.1 there).

    With ``masters=3`` it is a Redis Cluster (``url`` / ``inner_url`` are cluster URLs) and the
    partition is a blackhole route inside the namespace towards this side's address instead:
    the nodes announce ``ns_addr``, which must stay usable inside the namespace (a down link
    would take it away there too). Packets from here still arrive, every answer is dropped:
    from here it is the same silence."""

    def __init__(self, server_bin: str, masters: int = 1) -> None:
        tag = f"{os.getpid() % 100000}"
        self.ns = f"twp{tag}"
        self.host_if, self.ns_if = f"twh{tag}", f"twn{tag}"
        net = random.randrange(0, 256)
        self.host_addr, self.ns_addr = f"10.213.{net}.1", f"10.213.{net}.2"
        self.port = 6379
        self.masters = masters
        self.server_bin = server_bin
        self.dir = tempfile.mkdtemp(prefix="tw-redis-ns-")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def ports(self) -> list[int]:
        return [self.port + i for i in range(self.masters)]

    @property
    def url(self) -> str:
        if self.masters > 1:
            hosts = ",".join(f"{self.ns_addr}:{p}" for p in self.ports)
            return f"redis://{hosts}/?cluster=true"
        return f"redis://{self.ns_addr}:{self.port}/0"

    @property
    def inner_url(self) -> str:
        """The same Redis from inside the namespace (not affected by the partition)."""
        if self.masters > 1:
            return self.url
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
        for port in self.ports:
            args = ["--port", str(port), "--bind", self.ns_addr, "127.0.0.1", "--save", ""]
            args += ["--appendonly", "no", "--dir", self.dir, "--daemonize", "no"]
            args += ["--protected-mode", "no"]  # (no password, and not only on loopback)
            if self.masters > 1:
                args += ["--cluster-enabled", "yes", "--cluster-config-file", f"n{port}.conf"]
                args += ["--cluster-announce-ip", self.ns_addr, "--cluster-node-timeout", "2000"]
            self.procs.append(
                subprocess.Popen(
                    self.ns_command(self.server_bin, *args),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        deadline = time.monotonic() + 10
        while not all(self._pings(port) for port in self.ports):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("redis-server did not start in the namespace")
            time.sleep(0.05)
        if self.masters > 1:
            cli = shutil.which("redis-cli")
            if cli is None:
                raise RuntimeError("redis-cli is not installed")
            create = [cli, "--cluster", "create", *(f"{self.ns_addr}:{p}" for p in self.ports)]
            done = subprocess.run(
                self.ns_command(*create, "--cluster-replicas", "0", "--cluster-yes"),
                capture_output=True,
                timeout=30,
            )
            if done.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create: {done.stdout[-300:]!r}")
            self._wait_cluster_ok()

    def _wait_cluster_ok(self) -> None:
        import redis

        deadline = time.monotonic() + 15
        while True:
            with contextlib.suppress(redis.RedisError):
                infos = [
                    redis.Redis(host=self.ns_addr, port=p, socket_timeout=1).execute_command(
                        "CLUSTER INFO"
                    )
                    for p in self.ports
                ]
                if all(
                    i["cluster_state"] == "ok" and int(i["cluster_known_nodes"]) == self.masters
                    for i in infos
                ):
                    return
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster in the namespace did not become ok")
            time.sleep(0.05)

    def _pings(self, port: int | None = None) -> bool:
        import socket

        try:
            address = (self.ns_addr, port or self.port)
            with socket.create_connection(address, timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def partition(self) -> None:
        """Silence, both ways as seen from here: the link goes down inside the namespace (one
        node), or every answer towards this side is dropped there (a cluster)."""
        if self.masters > 1:
            self._run("-n", self.ns, "route", "add", "blackhole", f"{self.host_addr}/32")
        else:
            self._run("-n", self.ns, "link", "set", self.ns_if, "down")

    def heal(self) -> None:
        if self.masters > 1:
            self._run("-n", self.ns, "route", "del", "blackhole", f"{self.host_addr}/32")
        else:
            self._run("-n", self.ns, "link", "set", self.ns_if, "up")
        deadline = time.monotonic() + 10
        while not all(self._pings(p) for p in self.ports):  # (link and routes come back async)
            if time.monotonic() > deadline:
                raise RuntimeError("the link did not come back")
            time.sleep(0.02)

    def close(self) -> None:
        procs, self.procs = self.procs, []
        for proc in procs:
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
