"""A real 3-master Redis Cluster (tests/redis_cluster.py) and the hub's cluster layout
(tokenwire.hub.redis_keys): hash-tagged stream keys, the hub's own Lua scripts, the sharded
lease index and the sharded cancel channels."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from tokenwire.hub.redis_keys import (
    ClusterKeys,
    cancel_messages,
    cluster_client,
    due_streams,
    forget,
    is_cluster_url,
    parse_cluster_url,
    request_cancel,
    set_deadlines,
    strip_cluster_flag,
)
from tokenwire.hub.redis_scripts import APPEND, CREATE, RENEW, TAKEOVER, entry_id

IDS = [f"st_{i:04x}cafe" for i in range(40)]


@pytest.fixture
async def client(redis_cluster):
    c = cluster_client(redis_cluster.url + "/?cluster=true", socket_timeout=5)
    await c.initialize()
    try:
        yield c
    finally:
        await c.aclose()


def node_of(c: RedisCluster, key: str) -> str:
    return c.get_node_from_key(key).name


def test_the_cluster_is_up_with_three_masters(redis_cluster) -> None:
    r = redis.RedisCluster.from_url(redis_cluster.url)
    try:
        assert r.cluster_info()["cluster_state"] == "ok"
        assert len(r.get_primaries()) == 3
        for i in range(30):
            r.set(f"k{i}", i)
        assert [int(r.get(f"k{i}")) for i in range(30)] == list(range(30))
        assert len({r.get_node_from_key(f"k{i}").name for i in range(30)}) == 3
        r.delete(*(f"k{i}" for i in range(30)))  # (redis-py splits it by slot)
    finally:
        r.close()


async def test_every_key_of_a_stream_shares_a_slot_and_scripts_run(client: RedisCluster) -> None:
    keys = ClusterKeys("twc")
    assert len({node_of(client, IDS[i]) for i in range(len(IDS))}) == 3  # ids spread out
    create, append = client.register_script(CREATE), client.register_script(APPEND)
    take, renew = client.register_script(TAKEOVER), client.register_script(RENEW)
    for stream_id in IDS[:6]:
        stream_keys = keys.stream(stream_id)
        assert len({client.keyslot(k) for k in stream_keys}) == 1
        assert await create(
            keys=[stream_keys[0], stream_keys[2]], args=["o", "1", "1.5", "p", 5000, "tok", 60000]
        )
        ops = [b'{"type":"message.start","seq":1}', b'{"type":"block.start","seq":2}']
        reply = await append(keys=stream_keys, args=[1, 100, "", "", "", 60000, "0", "", *ops])
        assert reply == [1, b"in_progress", 2]
        # The takeover's scripts touch only the stream's own keys: they run on its node too.
        meta, log, lease = stream_keys
        await client.hset(meta, "resume", "{}")
        await client.delete(lease)
        assert await take(keys=[meta, lease, log], args=["q", 5000, 60000]) == [1, 1, 2]
        assert await renew(keys=[meta, lease], args=["p", 5000, "0"]) == 0  # (fenced)
        assert await renew(keys=[meta, lease], args=["q", 5000, "1"]) == 1
        stale = await append(keys=stream_keys, args=[3, 100, "", "", "", 60000, "0", "0", ops[1]])
        assert stale == [3, b"in_progress", 2]
        entries = await client.xrange(keys.log(stream_id), "-", "+")
        assert [e[0] for e in entries] == [entry_id(1).encode(), entry_id(2).encode()]
        # A blocking read of a stream's log goes to the node owning its slot.
        got = await client.xread({keys.log(stream_id): entry_id(1)}, block=100)
        assert got[0][1][0][1] == {b"op": ops[1]}
        await client.delete(*stream_keys)
    # The cluster is real: a script over keys of two slots is refused.
    a, b = next((x, y) for x in IDS for y in IDS if client.keyslot(x) != client.keyslot(y))
    node = client.get_node_from_key(a)
    direct = Redis(host=node.host, port=node.port)
    try:
        with pytest.raises(ResponseError, match="same slot"):
            await direct.eval("return redis.call('EXISTS', KEYS[1], KEYS[2])", 2, a, b)
    finally:
        await direct.aclose()


async def test_the_lease_index_is_sharded_over_every_master(client: RedisCluster) -> None:
    keys = ClusterKeys("twc", shards=16)
    assert len({node_of(client, k) for k in keys.all_active()}) == 3
    for shard in range(16):  # a shard's zset and its cancel channel share a slot
        assert client.keyslot(keys.active(shard)) == client.keyslot(keys.cancel_channel(shard))
    now = int(time.time() * 1000)
    deadlines = {sid: now - 1000 if i % 2 else now + 60_000 for i, sid in enumerate(IDS)}
    await set_deadlines(client, keys, deadlines)
    assert len(keys.by_shard(IDS)) > 8
    due = await due_streams(client, keys, now)
    assert sorted(due) == sorted(sid for i, sid in enumerate(IDS) if i % 2)
    await forget(client, keys, IDS)
    assert await due_streams(client, keys, now + 120_000) == []


async def test_cancel_requests_reach_the_listener_from_every_shard(client: RedisCluster) -> None:
    keys = ClusterKeys("twc", shards=8)
    received: list[str] = []
    listening = asyncio.Event()

    async def listen() -> None:
        listening.set()
        async for stream_id in cancel_messages(client, keys, poll_s=1.0):
            received.append(stream_id)

    task = asyncio.create_task(listen())
    try:
        await listening.wait()
        targets = [sid for sid in IDS[:24]]
        assert len({node_of(client, keys.cancel_channel_of(s)) for s in targets}) == 3
        deadline = time.monotonic() + 5
        while await request_cancel(client, keys, targets[0]) == 0:  # until subscribed
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        received.clear()
        started = time.monotonic()
        for stream_id in targets:
            assert await request_cancel(client, keys, stream_id) == 1
        while len(received) < len(targets) and time.monotonic() - started < 5:
            await asyncio.sleep(0.01)
        # Each node has its own reader: no message waits for another node's poll timeout.
        assert sorted(received) == sorted(targets)
        assert time.monotonic() - started < 0.8
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_cluster_urls() -> None:
    assert is_cluster_url("redis://h:7000/?cluster=true")
    assert not is_cluster_url("redis://h:7000/0")
    nodes, options = parse_cluster_url("rediss://u:p%40ss@h1:7000,h2:7001,[::1]:7002/0?cluster=1")
    assert nodes == [("h1", 7000), ("h2", 7001), ("::1", 7002)]
    assert options == {"username": "u", "password": "p@ss", "ssl": True}
    assert parse_cluster_url("redis://h")[0] == [("h", 6379)]
    with pytest.raises(ValueError, match="database 0"):
        parse_cluster_url("redis://h:7000/2?cluster=1")
    assert strip_cluster_flag("redis://h:1/?cluster=true&x=1") == "redis://h:1/?x=1"
    from conftest import refused_serve  # (a wrong URL is not said to be unreachable)

    line = refused_serve("--redis", "redis://u:pw-hidden@127.0.0.1:6379/3?cluster=true")
    assert "error: invalid Redis Cluster URL redis://u:***@" in line and "database 0" in line
    assert "pw-hidden" not in line
    with pytest.raises(ValueError, match="braces"):
        ClusterKeys("tw{x}")


async def test_the_hubs_multi_stream_pipelines_work_on_the_cluster(client: RedisCluster) -> None:
    """What RedisHub's lease renewer, close() and cancel sweep send, across many slots."""
    keys = ClusterKeys("twc")
    leases = [keys.lease(sid) for sid in IDS]
    pipe = client.pipeline(transaction=False)
    for key in leases:
        pipe.set(key, "p", px=60_000)
    for sid in IDS:
        pipe.hset(keys.meta(sid), "cancel", "1")
    await pipe.execute()
    pipe = client.pipeline(transaction=False)
    for sid in IDS:
        pipe.hget(keys.meta(sid), "cancel")
    assert await pipe.execute() == [b"1"] * len(IDS)
    pipe = client.pipeline(transaction=False)
    pipe.delete(*leases)  # one DEL over many slots: split per slot by the cluster pipeline
    pipe.delete(*(keys.meta(sid) for sid in IDS))
    await pipe.execute()
    assert await client.exists(*leases) == 0


async def test_a_cluster_node_url_without_the_cluster_flag_is_refused(redis_cluster) -> None:
    """As a single Redis every command would meet MOVED (a 500 per request): the hub and
    ``tokenwire serve`` refuse at start, saying what to add."""
    from conftest import refused_serve

    from tokenwire.hub import HubUnavailable
    from tokenwire.hub.redis import RedisHub

    hub = RedisHub(redis_cluster.url, key_prefix="twflag")
    with pytest.raises(HubUnavailable, match=r"\?cluster=true"):
        await hub.start()
    await hub.close()
    assert "add ?cluster=true" in refused_serve("--redis", redis_cluster.url)
