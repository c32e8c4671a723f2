"""Scale-out: real gateway processes (`tokenwire serve --redis`) sharing one throwaway Redis.

Every gateway here is a separate OS process on its own free port; the model server is the
mock, served from this test process. Each module run uses its own Redis key prefix. All
processes are started in their own session and killed as a group, even when a test fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from conftest import free_port, serve_asgi

from tokenwire.mock import create_mock_app

pytestmark = pytest.mark.timeout(60)

LEASE_S = 2.0  # producer lease of the gateways under test: "producer lost" within ~2.5 s
GRACE_S = 2.0  # how long they wait for a lost Redis before failing streams


class GatewayProcess:
    """One `tokenwire serve` subprocess (or a uvicorn supervisor with its workers)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        cmd = [sys.executable, "-m", "tokenwire", "serve", "--port", str(self.port), *args]
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(
                cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gateway on {self.port} did not start:\n{self.output()}")
            time.sleep(0.05)

    def kill9(self) -> None:
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """Terminate the whole process group (workers included); SIGKILL if it lingers."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers (e.g. orphaned workers)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)


class Cluster:
    """Starts gateways that share the mock upstream, the Redis server and a key prefix."""

    def __init__(self, redis_url: str, mock_url: str, workdir: Path) -> None:
        self.redis_url = redis_url
        self.mock_url = mock_url
        self.workdir = workdir
        self.prefix = "ts" + secrets.token_hex(4)
        self.started: list[GatewayProcess] = []

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TOKENWIRE_")}
        env.update(
            TOKENWIRE_UPSTREAM=f"{self.mock_url}/v1",
            TOKENWIRE_REDIS_PREFIX=self.prefix,
            TOKENWIRE_REDIS_LEASE_S=str(LEASE_S),
            TOKENWIRE_REDIS_GRACE_S=str(GRACE_S),
            TOKENWIRE_COALESCE_MS="0",  # one op per token: seqs are predictable
            TOKENWIRE_LOG_LEVEL="warning",
        )
        return env

    def spawn(self, *extra: str, redis: bool = True) -> GatewayProcess:
        name = f"gw{len(self.started)}"
        args = ["--data-dir", str(self.workdir / name), *extra]
        if redis:
            args += ["--redis", self.redis_url]
        gateway = GatewayProcess(args, self.env(), self.workdir / f"{name}.log")
        self.started.append(gateway)
        return gateway

    def start(self, *extra: str) -> GatewayProcess:
        gateway = self.spawn(*extra)
        gateway.wait_ready()
        return gateway

    def stop_all(self) -> None:
        for gateway in self.started:
            gateway.stop()


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as url:
        yield url


@pytest.fixture(scope="module")
def cluster(redis_server, mock_url) -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="tw-scaleout-") as tmp:
        cluster = Cluster(redis_server.url, mock_url, Path(tmp))
        try:
            yield cluster
        finally:
            cluster.stop_all()


@pytest.fixture(scope="module")
def pair(cluster: Cluster) -> tuple[GatewayProcess, GatewayProcess]:
    """Gateways A and B, started together."""
    a, b = cluster.spawn(), cluster.spawn()
    a.wait_ready()
    b.wait_ready()
    return a, b


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=20) as client:
        yield client


@pytest.fixture(autouse=True)
def redis_running(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests that stop Redis must not leave it stopped for the next ones."""
    yield
    if "redis_server" in request.fixturenames:
        server = request.getfixturevalue("redis_server")
        if server.proc is None:
            server.start()


# -- helpers ---------------------------------------------------------------------------------
def body(tokens: int, *, tps: float = 0, ttft_ms: float = 0, model: str = "mock") -> dict:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": tokens,
        "mock": {"tps": tps, "ttft_ms": ttft_ms},
    }


async def create(http: httpx.AsyncClient, gateway: GatewayProcess, payload: dict) -> str:
    response = await http.post(f"{gateway.url}/v1/streams", json=payload)
    assert response.status_code == 201, response.text
    return response.json()["id"]


Event = tuple[int, bytes]  # (id, data) of one SSE event


async def events(
    http: httpx.AsyncClient,
    gateway: GatewayProcess,
    stream_id: str,
    *,
    last_event_id: int | None = None,
    stop_at_seq: int | None = None,
) -> list[Event]:
    """The SSE events of a stream, until the response ends (or ``stop_at_seq`` is reached):
    every op (``catchup=exact``), however far behind the stream the reader starts."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    url = f"{gateway.url}/v1/streams/{stream_id}/events?catchup=exact"
    out: list[Event] = []
    buffer = b""
    async with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, await response.aread()
        async for chunk in response.aiter_bytes():
            buffer += chunk
            *frames, buffer = buffer.split(b"\n\n")
            for frame in frames:
                fields = _fields(frame)
                if fields:
                    # No id: line (a reader-only end): the last id stays, as in EventSource.
                    last = out[-1][0] if out else (last_event_id or 0)
                    ident = int(fields[b"id"]) if b"id" in fields else last
                    out.append((ident, fields[b"data"]))
            if stop_at_seq is not None and out and out[-1][0] >= stop_at_seq:
                break
    return out


def _fields(frame: bytes) -> dict[bytes, bytes]:
    """``field:value`` lines of one SSE event (one optional space after the colon)."""
    fields = {}
    for line in frame.split(b"\n"):
        if line and not line.startswith(b":"):
            name, _, value = line.partition(b":")
            fields[name] = value.removeprefix(b" ")
    return fields


def op(event: Event) -> dict:
    return msgspec.json.decode(event[1])


def text_of(evs: list[Event]) -> str:
    return "".join(op(e).get("text", "") for e in evs if op(e)["type"] == "block.delta")


async def mock_stats(http: httpx.AsyncClient, mock_url: str) -> dict[str, int]:
    return (await http.get(f"{mock_url}/_mock/stats")).json()


async def until(check, timeout: float, what: str):  # type: ignore[no-untyped-def]
    """Poll the async ``check`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- tests -----------------------------------------------------------------------------------
async def test_created_on_a_read_on_b(pair, http) -> None:
    a, b = pair
    stream_id = await create(http, a, body(40))
    got = await events(http, b, stream_id)
    assert [seq for seq, _ in got] == list(range(1, len(got) + 1))
    assert op(got[-1])["type"] == "message.end" and op(got[-1])["status"] == "completed"
    snap_a = (await http.get(f"{a.url}/v1/streams/{stream_id}")).json()
    snap_b = (await http.get(f"{b.url}/v1/streams/{stream_id}")).json()
    assert snap_a == snap_b and snap_b["seq"] == len(got)
    assert snap_b["message"]["blocks"][0]["text"] == text_of(got) != ""


async def test_read_part_on_a_resume_on_b_with_last_event_id(pair, http) -> None:
    a, b = pair
    stream_id = await create(http, a, body(60, tps=150))
    first = await events(http, a, stream_id, stop_at_seq=10)
    last = first[-1][0]
    assert last >= 10
    rest = await events(http, b, stream_id, last_event_id=last)
    assert rest[0][0] == last + 1 and op(rest[-1])["type"] == "message.end"
    # Nothing lost, nothing repeated: the two parts are exactly one full read, byte for byte.
    assert first + rest == await events(http, a, stream_id)
    gone = await http.get(
        f"{b.url}/v1/streams/{stream_id}/events", headers={"Last-Event-ID": str(rest[-1][0])}
    )
    assert gone.status_code == 204


async def test_subscribers_on_a_and_b_get_identical_op_streams(pair, http) -> None:
    a, b = pair
    stream_id = await create(http, b, body(80, tps=200, ttft_ms=300))
    readers = [events(http, gw, stream_id) for gw in (a, b, a, b)]
    results = await asyncio.gather(*readers)
    assert results[0] and op(results[0][-1])["status"] == "completed"
    for other in results[1:]:
        assert other == results[0]  # same seqs, byte-identical data


async def test_cancel_on_b_stops_the_upstream_request_held_by_a(pair, http, mock_url) -> None:
    a, b = pair
    await until(lambda: _mock_idle(http, mock_url), 10, "earlier generations to finish")
    before = (await mock_stats(http, mock_url))["disconnected"]
    stream_id = await create(http, a, body(2000, tps=40))
    head = await events(http, b, stream_id, stop_at_seq=3)
    assert head[-1][0] >= 3
    response = await http.post(f"{b.url}/v1/streams/{stream_id}/cancel")
    assert response.status_code == 202
    stats = await until(
        lambda: _disconnected_after(http, mock_url, before), 10, "the mock to see a disconnect"
    )
    assert stats["disconnected"] == before + 1 and stats["active"] == 0
    final = await events(http, b, stream_id)
    assert op(final[-1])["type"] == "message.end" and op(final[-1])["status"] == "cancelled"
    snap = (await http.get(f"{a.url}/v1/streams/{stream_id}")).json()
    assert snap["status"] == "cancelled" and snap["message"]["blocks"][0]["text"]


async def _mock_idle(http: httpx.AsyncClient, mock_url: str) -> bool:
    return (await mock_stats(http, mock_url))["active"] == 0


async def _disconnected_after(
    http: httpx.AsyncClient, mock_url: str, before: int
) -> dict[str, int] | None:
    stats = await mock_stats(http, mock_url)
    return stats if stats["disconnected"] > before else None


async def test_kill_9_producer_fails_the_stream_on_b_and_keeps_partial_text(
    cluster, pair, http
) -> None:
    _, b = pair
    doomed = cluster.start()
    # (no supersede and continuation none: nobody can continue it; see test_takeover.py)
    stream_id = await create(
        http, doomed, {**body(2000, tps=40), "tokenwire": {"supersede": False}}
    )
    head = await events(http, b, stream_id, stop_at_seq=6)
    reader = asyncio.create_task(events(http, b, stream_id, last_event_id=head[-1][0]))
    await asyncio.sleep(0.2)
    doomed.kill9()
    killed_at = time.monotonic()
    tail = await asyncio.wait_for(reader, 15)
    elapsed = time.monotonic() - killed_at
    end = op(tail[-1])
    assert end["type"] == "message.end" and end["status"] == "failed", end
    assert end["error"]["message"] == "producer lost"
    assert elapsed <= 10, f"producer loss took {elapsed:.1f} s to reach subscribers"
    partial = text_of(head + tail)
    assert partial
    snap = (await http.get(f"{b.url}/v1/streams/{stream_id}")).json()
    assert snap["status"] == "failed" and snap["message"]["blocks"][0]["text"] == partial


async def test_redis_down_gives_503_and_fails_active_streams(redis_server, pair, http) -> None:
    a, b = pair
    stream_id = await create(http, a, body(2000, tps=40))
    head = await events(http, b, stream_id, stop_at_seq=3)
    reader = asyncio.create_task(events(http, b, stream_id, last_event_id=head[-1][0]))
    await asyncio.sleep(0.2)
    redis_server.stop()
    tail = await asyncio.wait_for(reader, GRACE_S + 10)
    end = op(tail[-1])
    assert end["type"] == "message.end" and end["status"] == "failed"
    assert end["error"]["type"] == "hub_unavailable" and "Redis" in end["error"]["message"]
    # That end is this reader's only: it claims no seq of the stream (issue 12).
    last_real = tail[-2][0] if len(tail) > 1 else head[-1][0]
    assert end["seq"] == last_real == tail[-1][0]
    response = await http.post(f"{a.url}/v1/streams", json=body(5))
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "hub_unavailable"
    health = await http.get(f"{b.url}/healthz")
    assert health.status_code == 503 and health.json()["status"] == "unavailable"
    redis_server.start()
    # Back (empty, as after a restart without persistence): both processes serve again.
    for gateway in (a, b):
        assert (await http.get(f"{gateway.url}/healthz")).status_code == 200
    stream_id = await create(http, b, body(10))
    got = await events(http, a, stream_id)
    assert op(got[-1])["status"] == "completed"


async def test_redis_restarted_while_idle_service_recovers(
    redis_server, pair, http, mock_url
) -> None:
    a, b = pair
    stream_id = await create(http, a, body(10))
    assert op((await events(http, b, stream_id))[-1])["status"] == "completed"
    redis_server.restart()
    # The very next requests work: stale connections are replaced transparently.
    stream_id = await create(http, a, body(10))
    assert op((await events(http, b, stream_id))[-1])["status"] == "completed"
    # Cross-process cancel works again too (each process's pub/sub listener reconnected).
    await until(lambda: _mock_idle(http, mock_url), 10, "earlier generations to finish")
    before = (await mock_stats(http, mock_url))["disconnected"]
    stream_id = await create(http, b, body(2000, tps=40))
    await events(http, a, stream_id, stop_at_seq=2)
    assert (await http.post(f"{a.url}/v1/streams/{stream_id}/cancel")).status_code == 202
    await until(
        lambda: _disconnected_after(http, mock_url, before), 10, "the mock to see a disconnect"
    )
    assert op((await events(http, a, stream_id))[-1])["status"] == "cancelled"


def test_two_workers_serve_from_two_processes(cluster) -> None:
    server = cluster.start("--workers", "2")
    clients: dict[int, httpx.Client] = {}
    try:
        for _ in range(200):  # a fresh connection each time; the kernel spreads them
            client = httpx.Client(base_url=server.url, limits=httpx.Limits(max_connections=1))
            pid = client.get("/healthz").json()["pid"]
            if pid in clients or pid == server.pid:
                client.close()
            else:
                clients[pid] = client
            if len(clients) == 2:
                break
        assert len(clients) == 2, f"only saw worker pids {list(clients)}"
        (pid_1, via_1), (pid_2, via_2) = clients.items()
        created = via_1.post("/v1/streams", json=body(20))
        assert created.status_code == 201
        assert via_1.get("/healthz").json()["pid"] == pid_1  # same kept-alive connection
        stream_id = created.json()["id"]
        with via_2.stream("GET", f"/v1/streams/{stream_id}/events") as response:
            raw = response.read()
        assert via_2.get("/healthz").json()["pid"] == pid_2
        assert b'"status":"completed"' in raw and raw.count(b"\nid:") + 1 >= 20
    finally:
        for client in clients.values():
            client.close()
        server.stop()
    assert server.proc.returncode is not None


def test_serve_refuses_workers_without_redis_and_unreachable_redis(cluster) -> None:
    no_redis = cluster.spawn("--workers", "2", redis=False)
    assert no_redis.proc.wait(timeout=20) == 2
    out = no_redis.output().strip()
    assert "--workers 2 needs --redis" in out and len(out.splitlines()) == 1
    nowhere = f"redis://:secret@127.0.0.1:{free_port()}/0"
    down = cluster.spawn("--redis", nowhere, redis=False)
    assert down.proc.wait(timeout=20) == 2
    out = down.output().strip()
    assert "cannot reach Redis at" in out and len(out.splitlines()) == 1
    assert "secret" not in out
