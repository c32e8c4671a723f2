"""Fan-out over Redis: one stream to many SSE subscribers spread over 2 gateway processes.

Everything runs as separate processes on 127.0.0.1: a throwaway ``redis-server``, the mock
model server, and two ``tokenwire serve --redis`` gateways. The subscribers are raw asyncio
sockets in this process (no HTTP library: they only count events), split evenly between the
two gateways and all connected before the first token. For each subscriber count we measure:

- delivered ops/s: ops received by all subscribers / (first op to last subscriber done);
- gateway CPU per delivered op: user+system time of both gateway processes (``/proc``);
- Redis commands per produced op: ``INFO commandstats`` deltas of ``XREAD`` (the per-process
  stream reader), ``XRANGE`` (catch-up reads) and ``EVALSHA`` (the producer's appends).

The goal: Redis work per op is O(1) per process, whatever the subscriber count.

    python -m bench.fanout            # 10 / 100 / 1000 subscribers, paced and unpaced
    python -m bench.fanout --quick    # shorter streams
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import httpx
import redis

_TICKS = os.sysconf("SC_CLK_TCK")
_COMMANDS = ("xread", "xrange", "evalsha")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code < 500:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not come up")
        time.sleep(0.05)


@contextlib.contextmanager
def _processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        yield procs
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Setup:
    redis_url: str
    gateways: list[tuple[str, int]]  # (base URL, pid)
    redis_pid: int


@contextlib.contextmanager
def cluster() -> Iterator[Setup]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed")
    with tempfile.TemporaryDirectory(prefix="tw-fanout-") as tmp, _processes() as procs:
        rport = _free_port()
        args = ["--port", str(rport), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", tmp, "--loglevel", "warning"]
        procs.append(subprocess.Popen([binary, *args], stdout=subprocess.DEVNULL))
        redis_url = f"redis://127.0.0.1:{rport}/0"
        client = redis.Redis.from_url(redis_url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        client.close()
        mport = _free_port()
        mock = subprocess.Popen(
            [sys.executable, "-m", "tokenwire", "mock", "--port", str(mport)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(mock)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWIRE_")}
        env["TOKENWIRE_COALESCE_MS"] = "0"  # one op per token: the worst case for fan-out
        gateways: list[tuple[str, int]] = []
        for i in range(2):
            port = _free_port()
            cmd = [sys.executable, "-m", "tokenwire", "serve", "--port", str(port)]
            cmd += ["--upstream", f"http://127.0.0.1:{mport}/v1", "--redis", redis_url]
            cmd += ["--data-dir", f"{tmp}/gw{i}", "--log-level", "warning"]
            proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)
            procs.append(proc)
            gateways.append((f"http://127.0.0.1:{port}", proc.pid))
        _wait_http(f"http://127.0.0.1:{mport}/v1/models", mock)
        for (url, _), proc in zip(gateways, procs[-2:], strict=True):
            _wait_http(f"{url}/healthz", proc)
        yield Setup(redis_url, gateways, procs[0].pid)


class Subscriber:
    """One SSE reader on a raw socket: counts events, stops after ``message.end``."""

    __slots__ = ("connected", "done_at", "ops", "url")

    def __init__(self, url: str) -> None:
        self.url = url
        self.ops = 0
        self.connected = asyncio.Event()
        self.done_at = 0.0

    async def run(self, stream_id: str) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        path = f"/v1/streams/{stream_id}/events?catchup=exact"  # (every op, as sent)
        request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"
        writer.write(request.encode())
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        finally:
            self.connected.set()  # (also on failure, so nobody waits for it)
        if not head.startswith(b"HTTP/1.1 200"):
            body = await asyncio.wait_for(reader.read(2000), 2)
            raise RuntimeError(f"subscribe failed: {head[:12]!r} {body[:300]!r}")
        self.connected.set()
        carry_id = carry_end = b""
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    raise RuntimeError("connection closed before message.end")
                # Every event starts "id:" after a newline (previous event or chunk header).
                buf = carry_id + data
                self.ops += buf.count(b"\nid:")
                carry_id = buf[-3:]
                buf = carry_end + data
                if b"message.end" in buf:
                    break
                carry_end = buf[-10:]
        finally:
            self.done_at = time.monotonic()
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@dataclass
class Result:
    subscribers: int
    tps: float
    produced_ops: int
    delivered_ops: int
    seconds: float
    delivered_ops_per_s: float
    gateway_cpu_s: float
    cpu_us_per_delivered_op: float
    redis_calls: dict[str, int]
    redis_calls_per_op: dict[str, float]
    xread_per_op_per_process: float
    seq_when_all_connected: int
    """Ops produced before every subscriber was connected (message.start: 1); not measured."""


def _commandstats(client: redis.Redis) -> dict[str, int]:
    stats = client.info("commandstats")
    return {name: int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in _COMMANDS}


async def measure(setup: Setup, subscribers: int, tokens: int, tps: float) -> Result:
    client = redis.Redis.from_url(setup.redis_url)
    a_url = setup.gateways[0][0]
    # The first token waits until every subscriber is connected (ttft covers the connects).
    ttft_ms = 1500 + 5 * subscribers
    body = {
        "model": "mock",
        "messages": [{"role": "user", "content": "fan out"}],
        "max_tokens": tokens,
        "mock": {"tps": tps, "ttft_ms": ttft_ms},
    }
    async with httpx.AsyncClient(timeout=30) as http:
        created = await http.post(f"{a_url}/v1/streams", json=body)
        created.raise_for_status()
        stream_id = created.json()["id"]
        subs = [Subscriber(setup.gateways[i % 2][0]) for i in range(subscribers)]
        tasks = [asyncio.create_task(s.run(stream_id)) for s in subs]
        for i in range(0, subscribers, 100):  # connect in waves, not a SYN flood
            await asyncio.gather(*(s.connected.wait() for s in subs[i : i + 100]))
        for task in tasks:
            if task.done():
                await task  # a subscriber that failed to connect: raise its error
        seq_at_start = (await http.get(f"{a_url}/v1/streams/{stream_id}")).json()["seq"]
        while sum(s.ops for s in subs) < subscribers * seq_at_start:
            await asyncio.sleep(0.01)  # everyone has what existed before the window
        ops0 = sum(s.ops for s in subs)
        cpu0 = sum(_cpu_s(pid) for _, pid in setup.gateways)
        calls0 = _commandstats(client)
        first_op = None
        while first_op is None:  # the clock starts at the first op, not at the ttft wait
            if any(s.ops > seq_at_start for s in subs):
                first_op = time.monotonic()
            elif any(t.done() for t in tasks):
                await asyncio.gather(*tasks)  # raises the subscriber's error
                raise RuntimeError("the stream ended before its first op")
            else:
                await asyncio.sleep(0.001)
        await asyncio.gather(*tasks)
        done = max(s.done_at for s in subs)
        cpu1 = sum(_cpu_s(pid) for _, pid in setup.gateways)
        calls1 = _commandstats(client)
        final = (await http.get(f"{a_url}/v1/streams/{stream_id}")).json()
    client.close()
    produced = final["seq"] - seq_at_start  # ops appended inside the measured window
    delivered = sum(s.ops for s in subs) - ops0
    seconds = max(done - first_op, 1e-9)
    calls = {name: calls1[name] - calls0[name] for name in _COMMANDS}
    cpu = cpu1 - cpu0
    return Result(
        subscribers=subscribers,
        tps=tps,
        produced_ops=produced,
        delivered_ops=delivered,
        seconds=round(seconds, 3),
        delivered_ops_per_s=round(delivered / seconds),
        gateway_cpu_s=round(cpu, 2),
        cpu_us_per_delivered_op=round(cpu / delivered * 1e6, 1),
        redis_calls=calls,
        redis_calls_per_op={k: round(v / produced, 3) for k, v in calls.items()},
        xread_per_op_per_process=round(calls["xread"] / produced / 2, 3),
        seq_when_all_connected=seq_at_start,
    )


def run(quick: bool = True) -> dict:
    """Run the fan-out benchmark; returns ``{"runs": [Result dicts], ...}``."""
    counts = (10, 100, 1000)
    tokens = 200 if quick else 1000
    paced_tps = 100.0
    results: list[Result] = []
    with cluster() as setup:

        async def main() -> None:
            for n in counts:
                results.append(await measure(setup, n, tokens, paced_tps))
            results.append(await measure(setup, 1000, tokens, 0))  # unpaced: capacity

        asyncio.run(main())
    return {
        "benchmark": "fanout",
        "processes": 2,
        "tokens": tokens,
        "coalesce_ms": 0,
        "runs": [asdict(r) for r in results],
    }


def table(report: dict) -> str:
    head = (
        f"{'subs':>5} {'tps':>5} {'ops':>5} {'delivered/s':>12} {'cpu µs/op':>10} "
        f"{'XREAD/op':>9} {'per proc':>9} {'XRANGE/op':>10} {'EVALSHA/op':>11} {'pre':>5}"
    )
    lines = [head, "-" * len(head)]
    for r in report["runs"]:
        per = r["redis_calls_per_op"]
        lines.append(
            f"{r['subscribers']:>5} {r['tps'] or 'max':>5} {r['produced_ops']:>5} "
            f"{r['delivered_ops_per_s']:>12,} {r['cpu_us_per_delivered_op']:>10} "
            f"{per['xread']:>9} {r['xread_per_op_per_process']:>9} {per['xrange']:>10} "
            f"{per['evalsha']:>11} {r['seq_when_all_connected']:>5}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter streams")
    args = parser.parse_args()
    report = run(quick=args.quick)
    print(table(report))


if __name__ == "__main__":
    main()
