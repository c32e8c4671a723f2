"""Takeover: kill -9 the process producing streams; another process continues them.

A pool of 3 ``tokenwire serve`` processes on one Redis (or a Redis Cluster URL), the
``tokenwire mock`` upstream (its own process, paced). Each round creates ``concurrency`` paced
answers on one process (the victim) at random offsets, so the kill -9 that follows cuts each at
a random point: before the first token, mid-word, in reasoning, in tool-call arguments.
Readers follow every stream on both survivors and on the victim (that reader resumes on a
survivor with ``Last-Event-ID``). The victim is replaced by a fresh process for the next round.

Per trial it checks: every reader's ops are exactly seq 1..N (none lost, repeated or
reordered), and the message they build equals the uninterrupted answer (or, for a stream that
does not allow supersede and was cut in a tool call, ``failed`` with the partial kept).
Takeover time: from the kill to the first op after the last pre-kill seq on a survivor.

``python -m bench.takeover [--trials 100] [--concurrency 10] [--redis URL]`` (a throwaway
``redis-server`` on a free port when no URL is given).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench.procs import ROOT, free_port
from tokenwire.protocol import EncodedOp, Message, apply_op

LEASE_S = 1.0
WATCHDOG_S = LEASE_S / 4  # (the gateway's: min(1, lease / 4))

_USER = {"role": "user", "content": "What is the weather in Malmö?"}
_TOOL_TURN = [
    _USER,
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "9 C, cloudy"},
]


def _body(model: str, messages: list, max_tokens: int, tps: float, **mock: Any) -> dict:
    return {
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
        "mock": {"tps": tps, "ttft_ms": 150, **mock},
    }


# kind -> request body. ``nocont``: the upstream refuses to continue (400) -> supersede.
KINDS: dict[str, dict] = {
    "reasoning": _body("mock-reasoning", [_USER], 60, 55),
    "agent-text": _body("mock-agent", _TOOL_TURN, 200, 28),
    "agent-tool": _body("mock-agent", [_USER], 200, 40),
    "agent-tool-nosupersede": {
        **_body("mock-agent", [_USER], 200, 40),
        "tokenwire": {"supersede": False},
    },
    "reasoning-nocont": _body("mock-reasoning", [_USER], 60, 55, continuation=False),
}
# One round's mix (repeated / cut to the round's size).
MIX = [
    "reasoning",
    "agent-text",
    "agent-tool",
    "reasoning",
    "agent-tool-nosupersede",
    "agent-text",
    "reasoning-nocont",
    "reasoning",
    "agent-tool",
    "agent-tool-nosupersede",
]


class Process:
    """One child process in its own session (killed as a group)."""

    def __init__(self, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill9(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)


async def _wait_ready(url: str, proc: Process, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=2) as client:
        while True:
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(url)).status_code == 200:
                    return
            if proc.proc.poll() is not None or time.monotonic() > deadline:
                tail = proc.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{url} did not start:\n{tail}")
            await asyncio.sleep(0.05)


@dataclass
class Reader:
    """One SSE reader: the ops it got (seq, op JSON, arrival time) and how often it resumed."""

    ops: list[tuple[int, bytes, float]] = field(default_factory=list)
    resumes: int = 0


@dataclass
class Trial:
    kind: str
    stream_id: str
    created_at: float
    readers: list[Reader]
    seq_at_kill: int = -1
    status_at_kill: str = ""


@dataclass
class Outcome:
    """What one trial ended with."""

    kind: str
    status: str
    cut_seq: int
    cut_in: str  # "none" (no output yet), "reasoning", "text", "tool", "ended" (before kill)
    superseded: bool
    takeover_s: float | None
    problems: list[str]


class Harness:
    """The pool of gateways, the mock and the Redis they share."""

    def __init__(self, redis_url: str, workdir: Path, *, pool: int = 3) -> None:
        self.redis_url = redis_url
        self.workdir = workdir
        self.prefix = "tk" + os.urandom(4).hex()
        self.size = pool
        self.spawned = 0
        self.pool: list[tuple[Process, str]] = []
        self.mock: Process | None = None
        self.mock_url = ""
        self.refs: dict[str, dict] = {}

    def _env(self, continuation: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWIRE_")}
        src = str(ROOT / "src")
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
        env.update(
            TOKENWIRE_UPSTREAM=f"{self.mock_url}/v1",
            TOKENWIRE_REDIS_PREFIX=self.prefix,
            TOKENWIRE_REDIS_LEASE_S=str(LEASE_S),
            TOKENWIRE_COALESCE_MS="0",
            TOKENWIRE_CONTINUATION=continuation,
            TOKENWIRE_LOG_LEVEL="warning",
        )
        return env

    async def spawn(self) -> tuple[Process, str]:
        n = self.spawned
        self.spawned += 1
        port = free_port()
        # Both continuation styles: even processes ask vLLM-style, odd ones with ``prefix``.
        style = "vllm" if n % 2 == 0 else "prefix"
        cmd = [sys.executable, "-m", "tokenwire", "serve", "--port", str(port)]
        cmd += ["--data-dir", str(self.workdir / f"gw{n}"), "--redis", self.redis_url]
        proc = Process(cmd, self._env(style), self.workdir / f"gw{n}.log")
        url = f"http://127.0.0.1:{port}"
        await _wait_ready(f"{url}/healthz", proc)
        return proc, url

    async def start(self) -> None:
        port = free_port()
        self.mock_url = f"http://127.0.0.1:{port}"
        env = self._env("none")
        self.mock = Process(
            [sys.executable, "-m", "tokenwire", "mock", "--port", str(port)],
            env,
            self.workdir / "mock.log",
        )
        await _wait_ready(f"{self.mock_url}/v1/models", self.mock)
        self.pool = list(await asyncio.gather(*(self.spawn() for _ in range(self.size))))

    def stop(self) -> None:
        for proc, _ in self.pool:
            proc.stop()
        if self.mock is not None:
            self.mock.stop()

    async def references(self, client: httpx.AsyncClient) -> None:
        """The uninterrupted answer of every kind (unpaced: the answer does not depend on it)."""
        url = self.pool[0][1]
        for kind, body in KINDS.items():
            body = {**body, "mock": {**body["mock"], "tps": 0, "ttft_ms": 0}}
            response = await client.post(f"{url}/v1/streams", json=body)
            response.raise_for_status()
            reader = Reader()
            await read_stream(client, [url], response.json()["id"], reader)
            self.refs[kind] = comparable(build(reader)[0])

    async def round(
        self, client: httpx.AsyncClient, victim: int, kinds: list[str], rng: random.Random
    ) -> list[Outcome]:
        v_proc, v_url = self.pool[victim]
        survivors = [url for i, (_, url) in enumerate(self.pool) if i != victim]
        window = 1.0
        offsets = sorted(rng.uniform(0, window) for _ in kinds)
        start = time.monotonic()
        tasks: list[asyncio.Task] = []

        async def create(kind: str, offset: float) -> Trial:
            await asyncio.sleep(max(0.0, start + offset - time.monotonic()))
            response = await client.post(f"{v_url}/v1/streams", json=KINDS[kind])
            response.raise_for_status()
            stream_id = response.json()["id"]
            readers = [Reader(), Reader(), Reader()]
            for reader, urls in zip(
                readers, ([survivors[0]], [survivors[1]], [v_url, survivors[0]]), strict=True
            ):
                tasks.append(asyncio.create_task(read_stream(client, urls, stream_id, reader)))
            return Trial(kind, stream_id, time.monotonic(), readers)

        # (concurrently: a slow create must not delay the others, nor the kill)
        trials = list(
            await asyncio.gather(*(create(k, o) for k, o in zip(kinds, offsets, strict=True)))
        )
        await asyncio.sleep(max(0.0, start + window + 0.05 - time.monotonic()))
        v_proc.kill9()
        killed = time.monotonic()
        await self._seqs_at_kill(trials)
        replacement = asyncio.create_task(self.spawn())
        try:
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
        finally:
            self.pool[victim] = await replacement
        return [self.judge(t, killed) for t in trials]

    async def _seqs_at_kill(self, trials: list[Trial]) -> None:
        from redis.asyncio import Redis

        from tokenwire.hub.redis_keys import cluster_client, is_cluster_url

        cluster = is_cluster_url(self.redis_url)
        redis = cluster_client(self.redis_url) if cluster else Redis.from_url(self.redis_url)
        try:
            for t in trials:
                status, seq = await redis.hmget(
                    f"{self.prefix}:{{{t.stream_id}}}:meta", ["status", "seq"]
                )
                t.seq_at_kill = int(seq)
                t.status_at_kill = status.decode()
        finally:
            await redis.aclose()

    def judge(self, t: Trial, killed: float) -> Outcome:
        problems: list[str] = []
        results = []
        for i, reader in enumerate(t.readers):
            seqs = [s for s, _, _ in reader.ops]
            if seqs != list(range(1, len(seqs) + 1)):
                problems.append(f"reader {i}: seqs not 1..N: {seqs[:60]}")
            results.append(build(reader))
        message, reset = results[0]
        final = comparable(message)
        for i, (other, _) in enumerate(results[1:], 1):
            if comparable(other) != final:
                problems.append(f"reader {i} built another message than reader 0")
        ref = self.refs[t.kind]
        # Where the cut fell: the last block of the message as of the kill.
        cut_in = "ended"
        if t.status_at_kill == "in_progress":
            upto = Message.empty()
            for seq, data, _ in t.readers[0].ops:
                if seq <= t.seq_at_kill:
                    apply_op(upto, EncodedOp.from_json(data, seq).op)
            kinds = [b.type for b in upto.blocks if b.type != "source"]
            cut_in = {"tool_call": "tool", "reasoning": "reasoning", "text": "text"}.get(
                kinds[-1] if kinds else "", "none"
            )
        if final == ref:
            status = "completed"
        elif (
            t.kind == "agent-tool-nosupersede"
            and final["status"] == "failed"
            and cut_in == "tool"
            and (message.error or {}).get("type") == "producer_lost"
            and _prefix_of(final["blocks"], ref["blocks"])
        ):
            status = "failed (partial kept)"
        else:
            status = final["status"]
            problems.append(
                f"message differs from the uninterrupted answer (cut at seq {t.seq_at_kill}, "
                f"error {message.error}): {final} vs {ref}"
            )
        if reset and not (cut_in == "tool" or t.kind == "reasoning-nocont"):
            problems.append(f"superseded although the cut ({cut_in}) could be continued")
        takeover = None
        if t.status_at_kill == "in_progress":
            arrivals = [
                at for r in t.readers[:2] for seq, _, at in r.ops if seq == t.seq_at_kill + 1
            ]
            if arrivals:
                takeover = min(arrivals) - killed
        return Outcome(t.kind, status, t.seq_at_kill, cut_in, reset, takeover, problems)


def _prefix_of(blocks: list[dict], ref: list[dict]) -> bool:
    """Each block a prefix of the reference's block at its index (the partial kept)."""
    if len(blocks) > len(ref):
        return False
    for got, want in zip(blocks, ref, strict=False):
        for key, value in got.items():
            if isinstance(value, str) and key in ("text", "arguments"):
                if not want.get(key, "").startswith(value):
                    return False
            elif want.get(key) != value:
                return False
    return True


def build(reader: Reader) -> tuple[Message, bool]:
    """The message a reader's ops build, and whether a step was reset on the way."""
    message = Message.empty()
    reset = False
    for seq, data, _ in reader.ops:
        op = EncodedOp.from_json(data, seq)
        reset = reset or op.type == "step.reset"
        apply_op(message, op.op)
    return message, reset


def comparable(message: Message) -> dict:
    data = msgspec.json.decode(message.to_json())
    return {k: data.get(k) for k in ("status", "finish_reason", "blocks")}


async def read_stream(
    client: httpx.AsyncClient, urls: list[str], stream_id: str, reader: Reader
) -> None:
    """Follow a stream over SSE until ``message.end``; on a broken connection resume on the
    next URL (the last one for good) with ``Last-Event-ID``. Every op (``catchup=exact``):
    the check is that no op is lost, repeated or reordered."""
    attempt = 0
    while True:
        url = urls[min(attempt, len(urls) - 1)]
        last = reader.ops[-1][0] if reader.ops else 0
        headers = {"Last-Event-ID": str(last)} if last else {}
        try:
            async with client.stream(
                "GET", f"{url}/v1/streams/{stream_id}/events?catchup=exact", headers=headers
            ) as response:
                if response.status_code != 200:
                    raise httpx.TransportError(f"status {response.status_code}")
                buffer = b""
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    *frames, buffer = buffer.split(b"\n\n")
                    for frame in frames:
                        ident, data = _frame(frame)
                        if data is None or ident is None:
                            continue  # a comment, a transient, or a reader-only end
                        reader.ops.append((ident, data, time.monotonic()))
                        if b'"message.end"' in data[:40]:
                            return
        except httpx.HTTPError:
            pass
        attempt += 1
        reader.resumes += 1
        if attempt > 50:
            raise RuntimeError(f"stream {stream_id}: could not finish reading it")
        await asyncio.sleep(0.05)


def _frame(frame: bytes) -> tuple[int | None, bytes | None]:
    ident = data = None
    for line in frame.split(b"\n"):
        if line.startswith(b"id:"):
            ident = int(line[3:].strip())
        elif line.startswith(b"data:"):
            data = line[5:].removeprefix(b" ")
    return ident, data


@dataclass
class Report:
    outcomes: list[Outcome]
    elapsed_s: float
    logs: str = ""  # the processes' log lines, kept when a trial went wrong

    @property
    def takeovers(self) -> list[float]:
        return [o.takeover_s for o in self.outcomes if o.takeover_s is not None]

    @property
    def problems(self) -> list[str]:
        return [f"{o.kind}: {p}" for o in self.outcomes for p in o.problems]

    def summary(self) -> str:
        times = self.takeovers
        counts: dict[str, int] = {}
        for o in self.outcomes:
            key = f"{o.kind}: cut in {o.cut_in} -> {o.status}"
            key += " (superseded)" if o.superseded else ""
            counts[key] = counts.get(key, 0) + 1
        cut = sum(o.cut_in != "ended" for o in self.outcomes)
        lines = [
            f"{cut} kills mid-stream ({len(self.outcomes) - cut} more streams had ended before "
            f"their kill) in {self.elapsed_s:.1f} s"
        ]
        lines += [f"  {n:3d}  {key}" for key, n in sorted(counts.items())]
        if times:
            lines.append(
                f"takeover time (kill -9 -> first op on a survivor, lease {LEASE_S} s, "
                f"watchdog {WATCHDOG_S} s, n={len(times)}): min {min(times):.3f} s, "
                f"median {statistics.median(times):.3f} s, max {max(times):.3f} s"
            )
        lines.append(f"problems: {len(self.problems)}")
        return "\n".join(lines)


async def run(redis_url: str, trials: int = 100, concurrency: int = 10, seed: int = 0) -> Report:
    rng = random.Random(seed)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="tw-takeover-") as tmp:
        harness = Harness(redis_url, Path(tmp))
        try:
            await harness.start()
            limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
            async with httpx.AsyncClient(timeout=30, limits=limits) as client:
                await harness.references(client)
                outcomes: list[Outcome] = []
                victim = 0
                cut = 0
                # ``trials`` counts streams the kill cut (in progress at the kill); one that
                # ended before it (a slow machine) is reported but not counted.
                while cut < trials:
                    n = min(concurrency, trials - cut)
                    kinds = [MIX[(len(outcomes) + i) % len(MIX)] for i in range(n)]
                    rng.shuffle(kinds)  # (so each kind gets cuts all over its answer)
                    done = await harness.round(client, victim, kinds, rng)
                    outcomes += done
                    cut += sum(o.cut_in != "ended" for o in done)
                    victim = (victim + 1) % harness.size
        finally:
            harness.stop()
        logs = ""
        if any(o.problems for o in outcomes):
            for log in sorted(Path(tmp).glob("*.log")):
                lines = log.read_text(errors="replace").splitlines()
                logs += f"--- {log.name}\n" + "\n".join(lines[-40:]) + "\n"
    return Report(outcomes, time.monotonic() - started, logs)


@contextlib.contextmanager
def _throwaway_redis():  # type: ignore[no-untyped-def]
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: pass --redis URL")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tw-redis-") as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", tmp],
            stdout=subprocess.DEVNULL,
        )
        try:
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def measure(trials: int = 30, concurrency: int = 10) -> dict[str, Any]:
    """For ``python -m bench``: the run on a throwaway Redis, as a JSON-able summary."""
    if shutil.which("redis-server") is None:
        return {"unavailable": "redis-server is not installed"}
    with _throwaway_redis() as url:
        time.sleep(0.3)
        report = asyncio.run(run(url, trials, concurrency))
    times = report.takeovers
    return {
        "lease_s": LEASE_S,
        "watchdog_s": WATCHDOG_S,
        "cut_streams": sum(o.cut_in != "ended" for o in report.outcomes),
        "takeover_s": {
            "n": len(times),
            "min": round(min(times), 3) if times else None,
            "median": round(statistics.median(times), 3) if times else None,
            "max": round(max(times), 3) if times else None,
        },
        "problems": report.problems[:20],
        "summary": report.summary(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--redis", help="Redis URL (default: a throwaway redis-server)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with contextlib.ExitStack() as stack:
        url = args.redis or stack.enter_context(_throwaway_redis())
        time.sleep(0.3)
        report = asyncio.run(run(url, args.trials, args.concurrency, args.seed))
    print(report.summary())
    for problem in report.problems[:20]:
        print("  ", problem[:600])
    print(report.logs, end="")
    sys.exit(1 if report.problems else 0)


if __name__ == "__main__":
    main()
