"""A throwaway 3-master Redis Cluster for tests: three ``redis-server --cluster-enabled yes``
on free 127.0.0.1 ports (each also needs its cluster-bus port, +10000, free) in a temp dir,
joined by ``redis-cli --cluster create … --cluster-replicas 0``; no persistence.

Never touches a Redis the machine may already run (e.g. on 6379).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time

from conftest import terminate


def cluster_binaries() -> tuple[str, str] | None:
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    return (server, cli) if server and cli else None


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_cluster_port(taken: set[int]) -> int:
    """A free port whose cluster-bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 55535 and port not in taken and _port_free(port + 10000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _info(port: int) -> str:
    """``CLUSTER INFO`` of one node, or "" if it does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"CLUSTER INFO\r\n")
            data = b""
            while True:  # a bulk reply: "$<n>\r\n<n bytes>\r\n"
                chunk = sock.recv(4096)
                if not chunk:
                    return ""
                data += chunk
                header, sep, body = data.partition(b"\r\n")
                if sep and header.startswith(b"$") and len(body) >= int(header[1:]) + 2:
                    return body.decode(errors="replace")
                if sep and not header.startswith(b"$"):
                    return ""  # an error: e.g. cluster support disabled

    except OSError:
        return ""


class RedisCluster:
    """Three masters; ``url`` names one of them (a cluster client discovers the rest)."""

    def __init__(self, masters: int = 3) -> None:
        found = cluster_binaries()
        if found is None:
            raise FileNotFoundError("redis-server / redis-cli are not on PATH")
        self.server_bin, self.cli_bin = found
        self.masters = masters
        self.ports: list[int] = []
        self.dir = tempfile.mkdtemp(prefix="tw-redis-cluster-")
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}"

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    def start(self) -> None:
        for _ in range(self.masters):
            port = _free_cluster_port(set(self.ports))
            args = ["--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
            args += ["--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout"]
            args += ["2000", "--save", "", "--appendonly", "no", "--dir", self.dir]
            args += ["--daemonize", "no", "--loglevel", "warning"]
            self.procs.append(
                subprocess.Popen(
                    [self.server_bin, *args],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
            self.ports.append(port)
        deadline = time.monotonic() + 10
        while not all(_info(port) for port in self.ports):
            if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                raise RuntimeError("the cluster's redis-server processes did not start")
            time.sleep(0.02)
        create = [self.cli_bin, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
        create += ["--cluster-replicas", "0", "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, timeout=30)
        if done.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {done.stdout[-500:]!r}")
        self.wait_ok()

    def wait_ok(self, timeout_s: float = 15) -> None:
        """Until every node reports ``cluster_state:ok`` and knows all masters."""
        deadline = time.monotonic() + timeout_s
        want = f"cluster_known_nodes:{self.masters}"
        while True:
            infos = [_info(port) for port in self.ports]
            if all("cluster_state:ok" in i and want in i for i in infos):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ok: {infos}")
            time.sleep(0.05)

    def close(self) -> None:
        procs, self.procs = self.procs, []
        for proc in procs:
            terminate(proc)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.dir)

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
