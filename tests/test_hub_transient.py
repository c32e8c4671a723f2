"""Transient ops (protocol v1.1) through both hubs: live cursors get them in place, the log,
the message, late readers and resumes never do."""

from __future__ import annotations

import asyncio
import secrets

import pytest

from tests import v11_vectors
from tokenwire.hub import MemoryHub
from tokenwire.hub.redis import RedisHub
from tokenwire.protocol import EncodedOp, is_transient


async def drain(cursor, timeout: float = 10.0) -> list[EncodedOp]:
    out: list[EncodedOp] = []
    async with asyncio.timeout(timeout):
        async for batch in cursor:
            out += batch
    await cursor.aclose()
    return out


async def check(producer, reader) -> None:
    ops, message = v11_vectors.assemble("v11_agent")
    assert sum(is_transient(op) for op in ops) == 3
    sid = "st_" + secrets.token_hex(4)
    await producer.create(sid, owner=None)
    first = ops[:1]
    await producer.publish(sid, first)
    live = await reader.subscribe(sid, 0)  # open before any transient
    mid = await reader.subscribe(sid, 1)
    task = asyncio.create_task(drain(live))
    mid_task = asyncio.create_task(drain(mid))
    rest = ops[1:]
    for i in range(0, len(rest), 3):  # batches that cut around the transients
        await producer.publish(sid, rest[i : i + 3])
        await asyncio.sleep(0.01)
    got = await task
    assert [op.json for op in got] == [op.json for op in ops]
    assert [op.sse for op in got] == [op.sse for op in ops]  # transient frames have no id:
    assert [op.json for op in await mid_task] == [op.json for op in ops[1:]]
    # Not in the log: a reader after the fact (or resuming) gets only the real ops.
    late = await drain(await reader.subscribe(sid, 0))
    assert [op.json for op in late] == [op.json for op in ops if not is_transient(op)]
    info, stored = await reader.message(sid)
    assert stored.to_json() == message.to_json() and b"progress" not in stored.to_json()
    assert info.seq == max(op.seq for op in ops)


async def test_memory_hub_delivers_transients_to_live_cursors_only() -> None:
    hub = MemoryHub()
    await check(hub, hub)


async def test_memory_hub_drops_the_oldest_transients_for_a_reader_far_behind() -> None:
    hub = MemoryHub()
    ops, _ = v11_vectors.assemble("v11_transient")
    await hub.create("s", owner=None)
    cursor = await hub.subscribe("s", 0)
    transient = next(op for op in ops if is_transient(op))
    real = [op for op in ops if not is_transient(op)]
    await hub.publish("s", real[:1])
    for _ in range(300):
        await hub.publish_transient("s", transient)
    await hub.publish("s", real[1:])
    got = await drain(cursor)
    assert sum(is_transient(op) for op in got) == 256
    assert [op.json for op in got if not is_transient(op)] == [op.json for op in real]


@pytest.fixture
async def redis_hubs(redis_server):
    prefix = "t" + secrets.token_hex(4)
    a = RedisHub(redis_server.url, key_prefix=prefix, block_s=1.0)
    b = RedisHub(redis_server.url, key_prefix=prefix, block_s=1.0)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def test_redis_hub_delivers_transients_across_processes(redis_hubs) -> None:
    a, b = redis_hubs
    await check(a, b)  # produced in "process" a, read in b
    await check(a, a)


async def test_redis_hub_snapshots_and_takeover_across_a_step_reset(redis_server) -> None:
    """A process taking a stream over after a step.reset (state loaded from the snapshot and
    the log) knows which blocks are still open, and the stored message drops the attempt."""
    prefix = "t" + secrets.token_hex(4)
    a = RedisHub(redis_server.url, key_prefix=prefix, block_s=1.0, max_log_ops=12)
    b = RedisHub(redis_server.url, key_prefix=prefix, block_s=1.0, max_log_ops=12)
    await a.start()
    await b.start()
    try:
        ops, message = v11_vectors.assemble("v11_step_reset")
        k = next(i for i, op in enumerate(ops) if op.type == "step.reset") + 1
        await a.create("s", owner=None)
        await a.publish("s", ops[:k])
        await b.publish("s", ops[k:])  # b loads a's state: snapshot + log, then appends
        _, stored = await a.message("s")
        assert stored.to_json() == message.to_json()
        got = await drain(await b.subscribe("s", 0))
        assert [op.json for op in got] == [op.json for op in ops]
    finally:
        await a.close()
        await b.close()
