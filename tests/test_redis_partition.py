"""A network partition between a process's Redis hub (with its readers) and Redis.

Everything is on 127.0.0.1: the readers reach Redis through a blackholing TCP proxy
(tests/tcp_blackhole.py: ``partition()`` stops forwarding in both directions without closing
anything, so the hub hears only silence, as behind a pulled cable), and the producer reaches it
directly, so it keeps producing while the readers' side is cut off. The same again with a
3-master Redis Cluster: one proxy per node, and the readers' cluster client maps each node's
announced address to its proxy (redis-py's ``address_remap``), so every command and every
rediscovery of theirs goes through the proxies.

(An earlier version put Redis in a network namespace over a veth pair; that needs addresses
other than 127.0.0.1, which tests here never use.)

Checked (docs/redis.md, "When Redis is in trouble"): a reader whose grace
(``unavailable_grace_s``) outlasts the partition just keeps waiting (its keep-alive timeouts
still come on time) and, once healed, gets every op exactly once; a reader whose grace is
shorter ends with the reader-only ``failed`` / ``hub_unavailable`` end at the last real seq,
and resuming from that seq (``Last-Event-ID``) after the heal gives exactly the rest. Both end
with a message equal to the producer's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_redis_hub import replay

from tokenwire.hub import HubUnavailable
from tokenwire.hub.redis import RedisHub
from tokenwire.protocol import EncodedOp

_PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from tokenwire.hub.redis import RedisHub
    from tokenwire.protocol import Message, Pipeline, apply_op

    async def main(url, prefix, words, pause):
        hub = RedisHub(url, key_prefix=prefix, lease_ttl_s=3.0)
        await hub.start()
        pipe = Pipeline("st_part", model="m")
        message = Message.empty()
        await hub.create("st_part", owner=None)
        print("ready", flush=True)

        async def send(ops):
            for op in ops:
                apply_op(message, op.op)
            if ops:
                await hub.append("st_part", ops)

        for i in range(words):
            chunk = '{"choices":[{"index":0,"delta":{"content":"w%d "}}]}' % i
            await send(pipe.feed(b"data: " + chunk.encode() + b"\\n\\n"))
            await asyncio.sleep(pause)
        await send(pipe.feed(b"data: [DONE]\\n\\n") + pipe.close())
        print(message.to_json().decode(), flush=True)
        await hub.close()

    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])))
    """
)

# Long enough for the short grace to run out inside it: a reader notices a silent Redis only
# when a command times out (its socket timeout, after redis-py's two retries on a fresh
# connection), and gives up ``unavailable_grace_s`` after that.
PARTITION_S = 4.5


class _ProxiedRedis:
    """A throwaway Redis (or Redis Cluster) on 127.0.0.1, the readers behind blackholing
    proxies (one per node), the producer not. A cluster's nodes announce their own ports: the
    readers' cluster client maps each to its proxy (redis-py's ``address_remap``, set by
    ``remapped()``), and finds the nodes through the first node's proxy."""

    def __init__(self, inner_url: str, url: str, proxies: dict[tuple[str, int], Any]) -> None:
        self.inner_url, self.url = inner_url, url
        self.proxies = proxies
        self.remap = {addr: ("127.0.0.1", proxy.port) for addr, proxy in proxies.items()}

    def partition(self) -> None:
        for proxy in self.proxies.values():
            proxy.partition()

    def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    @contextlib.contextmanager
    def remapped(self) -> Iterator[None]:
        """Cluster clients made meanwhile in this process connect through the proxies."""
        from tokenwire.hub import redis as redis_hub

        made = redis_hub.cluster_client

        def through_proxies(url: str, **options: Any) -> Any:
            return made(url, address_remap=lambda addr: self.remap.get(addr, addr), **options)

        redis_hub.cluster_client = through_proxies  # type: ignore[assignment]
        try:
            yield
        finally:
            redis_hub.cluster_client = made


@contextlib.contextmanager
def _proxied(binary: str, masters: int) -> Iterator[_ProxiedRedis]:
    from redis_cluster import RedisCluster
    from redis_server import RedisServer
    from tcp_blackhole import BlackholeProxy

    with contextlib.ExitStack() as stack:
        if masters == 1:
            server = stack.enter_context(RedisServer(binary))
            nodes, inner = [("127.0.0.1", server.port)], server.url
        else:
            cluster = stack.enter_context(RedisCluster(masters))
            nodes = cluster.nodes
            inner = f"redis://{','.join(f'{h}:{p}' for h, p in nodes)}/?cluster=true"
        proxies = {node: BlackholeProxy(*node) for node in nodes}
        for proxy in proxies.values():
            stack.callback(proxy.close)
        first = proxies[nodes[0]].port
        url = f"redis://127.0.0.1:{first}/" + ("?cluster=true" if masters > 1 else "0")
        yield _ProxiedRedis(inner, url, proxies)


@pytest.fixture(scope="module", params=[1, 3], ids=["single", "cluster"])
def partitioned_redis(request):
    from redis_server import redis_server_binary

    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (`make test` installs it)")
    with _proxied(binary, request.param) as redis:
        yield redis


async def _read_all(cursor, log: list[tuple[float, list[EncodedOp]]]) -> None:
    """Read like an SSE writer: short timeouts (its keep-alive pings) until the end."""
    loop = asyncio.get_running_loop()
    while not cursor.done:
        started = loop.time()
        batch = await cursor.read(0.3)
        log.append((loop.time() - started, batch))
    await cursor.aclose()


async def _started_hub(url: str, prefix: str, *, grace_s: float) -> RedisHub:
    """A reader hub with short timeouts (0.3 s, so the partition is noticed fast), started;
    a start that timed out on a loaded machine is tried again (the partition comes later)."""
    fast = {"block_s": 0.3, "command_timeout_s": 0.3, "connect_timeout_s": 0.3}
    for attempt in range(3):
        hub = RedisHub(url, key_prefix=prefix, unavailable_grace_s=grace_s, **fast)
        try:
            await hub.start()
            return hub
        except HubUnavailable:
            await hub.close()
            if attempt == 2:
                raise
            await asyncio.sleep(0.5)
    raise AssertionError("unreachable")


async def test_readers_wait_out_a_partition_and_lose_nothing(partitioned_redis) -> None:
    redis = partitioned_redis
    prefix = f"part{os.getpid()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # The readers' hubs start first: their short timeouts also bound their start, which a
    # producer process importing meanwhile (CPU) could otherwise push past them.
    with redis.remapped():
        patient = await _started_hub(redis.url, prefix, grace_s=8.0)
        hasty = await _started_hub(redis.url, prefix, grace_s=0.5)
    producer = subprocess.Popen(
        [sys.executable, "-c", _PRODUCER, redis.inner_url, prefix, "150", "0.03"],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert producer.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(producer.stdout.readline), 30)
        assert line.strip() == b"ready"
        patient_log: list[tuple[float, list[EncodedOp]]] = []
        hasty_log: list[tuple[float, list[EncodedOp]]] = []
        readers = [
            asyncio.create_task(_read_all(await patient.subscribe("st_part", 0), patient_log)),
            asyncio.create_task(_read_all(await hasty.subscribe("st_part", 0), hasty_log)),
        ]
        await asyncio.sleep(0.8)  # some ops go through first
        assert sum(len(b) for _, b in patient_log) > 5
        cut_at = time.monotonic()
        await asyncio.to_thread(redis.partition)
        hasty_ended_at = None
        while time.monotonic() - cut_at < PARTITION_S:
            await asyncio.sleep(0.05)
            if hasty_ended_at is None and readers[1].done():
                hasty_ended_at = time.monotonic() - cut_at
            assert not readers[0].done()
        await asyncio.to_thread(redis.heal)
        healed_at = time.monotonic()
        final = await asyncio.wait_for(asyncio.to_thread(producer.stdout.readline), 30)
        await asyncio.wait_for(asyncio.gather(*readers), 20)

        # The short grace ran out during the partition: a reader-only end at the last seq.
        assert hasty_ended_at is not None, "the 0.5 s grace did not run out in the partition"
        assert hasty_ended_at >= 0.5  # (not before its grace)
        hasty_ops = [op for _, batch in hasty_log for op in batch]
        end = hasty_ops[-1]
        assert end.type == "message.end" and end.op.status == "failed"
        assert end.op.error["type"] == "hub_unavailable"
        assert end.seq == hasty_ops[-2].seq and not end.sse.startswith(b"id:")
        # ... and Last-Event-ID (that seq) after the heal gives exactly the rest.
        resumed = await hasty.subscribe("st_part", end.seq)
        rest: list[EncodedOp] = []
        async with asyncio.timeout(10):
            async for batch in resumed:
                rest += batch
        hasty_all = hasty_ops[:-1] + rest

        # The long grace outlasted it: no failure, keep-alive timeouts on time meanwhile.
        patient_ops = [op for _, batch in patient_log for op in batch]
        longest = max(elapsed for elapsed, _ in patient_log)
        assert longest < 1.0, f"a read with a 0.3 s timeout took {longest:.2f} s"
        # (keep-alive empty reads went on through the partition; most, not all, of the ~15 a
        # perfectly punctual loop would make: a loaded machine runs some late)
        assert sum(1 for _, b in patient_log if not b) >= PARTITION_S / 0.3 / 2

        for ops in (patient_ops, hasty_all):
            assert [op.seq for op in ops] == list(range(1, len(ops) + 1))  # 0 lost, 0 repeated
            assert ops[-1].type == "message.end" and ops[-1].op.status == "completed"
            assert replay(ops).to_json() == final.strip()  # the producer's message, exactly
        assert [op.json for op in patient_ops] == [op.json for op in hasty_all]
        assert time.monotonic() - healed_at < 15
    finally:
        producer.kill()
        producer.wait()
        await patient.close()
        await hasty.close()


async def test_a_reader_behind_a_silent_partition_ends_within_its_bound() -> None:
    """A proxy that accepts connections and forwards nothing (a dropped path through a load
    balancer): redis-py's reconnects each waited their socket timeout and were retried, so a
    reader with a 1 s grace was still waiting 38 s into the partition (with the default
    timeouts, minutes). Each read is bounded now: the reader ends at its first failed read
    past the grace, within two reads' bounds (block + command timeout + 2 connects)."""
    from redis_server import RedisServer, redis_server_binary
    from tcp_blackhole import BlackholeProxy

    binary = redis_server_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (`make test` installs it)")
    with RedisServer(binary) as server:
        proxy = BlackholeProxy("127.0.0.1", server.port)
        writer = RedisHub(server.url, key_prefix="silent")
        timeouts = {"block_s": 1.0, "command_timeout_s": 1.0, "connect_timeout_s": 0.5}
        reader = RedisHub(
            f"redis://127.0.0.1:{proxy.port}/0",
            key_prefix="silent",
            unavailable_grace_s=1.0,
            **timeouts,
        )
        await writer.start()
        await reader.start()
        try:
            await writer.create("st_silent", owner=None)
            cursor = await reader.subscribe("st_silent", 0)
            await asyncio.to_thread(proxy.partition)
            started = time.monotonic()
            ops: list[EncodedOp] = []
            async with asyncio.timeout(30):
                while not cursor.done:
                    ops += await cursor.read(0.5)
            ended_after = time.monotonic() - started
            bound = 2 * (1.0 + 1.0 + 2 * 0.5) + 1.0  # two reads' bounds, and slack
            assert ended_after < bound, ended_after
            assert ops[-1].type == "message.end" and ops[-1].op.error["type"] == "hub_unavailable"
            await cursor.aclose()
        finally:
            proxy.heal()
            proxy.close()
            await reader.close()
            await writer.close()
