"""Redis commands per op: a 3-master Redis Cluster vs a single Redis.

The same workload runs against a throwaway ``redis-server`` and a throwaway 3-master cluster
(``redis-server --cluster-enabled yes`` x3 + ``redis-cli --cluster create``), both on
127.0.0.1: ``streams`` streams produced by one ``RedisHub`` (one op per append, paced, as a
streaming producer), each read from seq 0 by ``readers`` cursors spread over ``processes``
other hubs (each hub stands for a gateway process: one XREAD task per stream, local fan-out).
Around the run, ``INFO commandstats`` is read from every master and the deltas are divided by
the ops appended. Background work during the run (lease renewals, watchdog scans, cancel-flag
sweeps) is included, as in production.

    python -m bench.cluster                 # 8 streams x 200 ops, 10 readers each, 2 processes
    python -m bench.cluster --json          # the numbers as JSON
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import redis

from tokenwire.hub.redis import RedisHub
from tokenwire.protocol import EncodedOp, Pipeline


def _free_port(bus: bool = False) -> int:
    """A free port (and, for a cluster node, a free cluster-bus port at +10000)."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if not bus:
            return port
        if port < 55535:
            with socket.socket() as sock:
                try:
                    sock.bind(("127.0.0.1", port + 10000))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free port")


def _spawn(binary: str, port: int, workdir: str, *extra: str) -> subprocess.Popen[bytes]:
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    args += ["--dir", workdir, "--daemonize", "no", "--loglevel", "warning", *extra]
    return subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _wait(ports: list[int], check: str = "") -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            if all(
                check in str(redis.Redis(port=p, socket_timeout=1).execute_command(*_INFO[check]))
                for p in ports
            ):
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("redis-server did not come up")
        time.sleep(0.05)


_INFO = {"": ("PING",), "cluster_state:ok": ("CLUSTER", "INFO")}


@contextlib.contextmanager
def single_redis() -> Iterator[tuple[str, list[int]]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    workdir = tempfile.mkdtemp(prefix="tw-bench-redis-")
    port = _free_port()
    proc = _spawn(binary, port, workdir)
    try:
        _wait([port])
        yield f"redis://127.0.0.1:{port}/0", [port]
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


@contextlib.contextmanager
def cluster_redis(masters: int = 3) -> Iterator[tuple[str, list[int]]]:
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise RuntimeError("redis-server / redis-cli are not installed")
    workdir = tempfile.mkdtemp(prefix="tw-bench-cluster-")
    ports: list[int] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(masters):
            port = _free_port(bus=True)
            ports.append(port)
            procs.append(
                _spawn(
                    binary,
                    port,
                    workdir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    f"nodes-{port}.conf",
                )
            )
        _wait(ports)
        create = [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"], capture_output=True, check=True
        )
        _wait(ports, "cluster_state:ok")
        hosts = ",".join(f"127.0.0.1:{p}" for p in ports)
        yield f"redis://{hosts}/?cluster=true", ports
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        shutil.rmtree(workdir, ignore_errors=True)


def _commandstats(ports: list[int]) -> dict[str, int]:
    """Calls per command, summed over every node."""
    total: dict[str, int] = {}
    for port in ports:
        client = redis.Redis(port=port)
        try:
            for name, stats in client.info("commandstats").items():
                key = name.removeprefix("cmdstat_")
                total[key] = total.get(key, 0) + int(stats["calls"])
        finally:
            client.close()
    return total


def _ops(stream_id: str, words: int) -> list[EncodedOp]:
    pipe = Pipeline(stream_id, model="m")
    ops: list[EncodedOp] = []
    for i in range(words):
        chunk = b'data: {"choices":[{"index":0,"delta":{"content":"w%d "}}]}\n\n' % i
        ops += pipe.feed(chunk)
    return ops + pipe.feed(b"data: [DONE]\n\n") + pipe.close()


@dataclass
class Result:
    backend: str
    masters: int
    streams: int
    ops: int
    readers: int
    processes: int
    seconds: float
    calls: dict[str, int]
    calls_per_op: float
    per_command_per_op: dict[str, float]


async def _workload(
    url: str, streams: int, words: int, readers: int, processes: int, pace_s: float
) -> tuple[int, float]:
    prefix = "bench"
    options = {"block_s": 1.0, "watchdog_interval_s": 1.0}
    producer = RedisHub(url, key_prefix=prefix, **options)
    gateways = [RedisHub(url, key_prefix=prefix, **options) for _ in range(processes)]
    for hub in (producer, *gateways):
        await hub.start()
    ids = [f"st_bench{i:03d}" for i in range(streams)]
    logs = {sid: _ops(sid, words) for sid in ids}
    try:
        for sid in ids:
            await producer.create(sid, owner=None)
        cursors = [
            await gateways[i % processes].subscribe(sid, 0) for sid in ids for i in range(readers)
        ]

        async def read(cursor) -> int:
            n = 0
            async for batch in cursor:
                n += len(batch)
            await cursor.aclose()
            return n

        async def produce(sid: str) -> None:
            for op in logs[sid]:
                await producer.append(sid, [op])
                await asyncio.sleep(pace_s)

        started = time.monotonic()
        tasks = [asyncio.create_task(read(c)) for c in cursors]
        await asyncio.gather(*(produce(sid) for sid in ids))
        got = await asyncio.wait_for(asyncio.gather(*tasks), 60)
        elapsed = time.monotonic() - started
        expected = [len(logs[sid]) for sid in ids for _ in range(readers)]
        if got != expected:
            raise RuntimeError("a reader missed ops")
        return sum(len(log) for log in logs.values()), elapsed
    finally:
        for hub in (producer, *gateways):
            await hub.close()


def measure(
    backend: str,
    *,
    streams: int = 8,
    words: int = 200,
    readers: int = 10,
    processes: int = 2,
    pace_s: float = 0.005,
) -> Result:
    """Run the workload on ``backend`` (``single`` or ``cluster``) and count Redis commands."""
    context = cluster_redis() if backend == "cluster" else single_redis()
    with context as (url, ports):
        before = _commandstats(ports)
        ops, elapsed = asyncio.run(_workload(url, streams, words, readers, processes, pace_s))
        after = _commandstats(ports)
    calls = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0) > 0}
    calls.pop("info", None)  # (our own measuring)
    total = sum(calls.values())
    return Result(
        backend=backend,
        masters=len(ports),
        streams=streams,
        ops=ops,
        readers=readers * streams,
        processes=processes,
        seconds=round(elapsed, 2),
        calls=dict(sorted(calls.items(), key=lambda kv: -kv[1])),
        calls_per_op=round(total / ops, 3),
        per_command_per_op={
            k: round(v / ops, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
        },
    )


def run() -> dict:
    """For ``python -m bench``: both backends at the default size, as a JSON-able summary."""
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        return {"unavailable": "redis-server / redis-cli are not installed"}
    rows = [asdict(measure(backend)) for backend in ("single", "cluster")]
    single, cluster = (r["calls_per_op"] for r in rows)
    return {
        "rows": rows,
        "summary": f"{single} Redis commands per op on one Redis, {cluster} on the cluster",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=8)
    parser.add_argument("--words", type=int, default=200, help="text deltas per stream")
    parser.add_argument("--readers", type=int, default=10, help="readers per stream")
    parser.add_argument("--processes", type=int, default=2, help="reading hubs")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = [
        measure(
            backend,
            streams=args.streams,
            words=args.words,
            readers=args.readers,
            processes=args.processes,
        )
        for backend in ("single", "cluster")
    ]
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
        return
    for r in results:
        print(
            f"{r.backend:8} masters={r.masters} ops={r.ops} readers={r.readers} "
            f"processes={r.processes}: {r.calls_per_op} Redis commands per op ({r.seconds} s)"
        )
        top = ", ".join(f"{k} {v}" for k, v in list(r.per_command_per_op.items())[:8])
        print(f"         per op: {top}")


if __name__ == "__main__":
    main()
