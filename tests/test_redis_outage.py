"""Issue 12, items 1-3: Redis outages against a real, stalled (SIGSTOP) redis-server.

1. Creating a stream while Redis stalls is idempotent per call: created once (201) or
   ``HubUnavailable`` (503), and no key is left without an expiry.
2. A reader-only failure end never takes a seq a real op will have.
3. One final message per stream: after an outage the store takes the hub's.
"""

from __future__ import annotations

import asyncio
import secrets
import signal
import time
from pathlib import Path

import pytest
from redis.asyncio import Redis
from test_redis_hub import make_ops, new_hub

from tokenwire.client._state import StreamState
from tokenwire.gateway.settle import settle_with_hub
from tokenwire.gateway.store import Store, StoredStream
from tokenwire.hub.redis import HubUnavailable
from tokenwire.hub.redis_feed import reader_only_end
from tokenwire.protocol import Pipeline, SSEDecoder


@pytest.fixture
def prefix() -> str:
    return "o" + secrets.token_hex(4)


async def test_create_retried_after_it_went_through_is_created_once(prefix: str) -> None:
    from redis_server import RedisServer

    with RedisServer() as server:
        hub = new_hub(server.url, prefix, command_timeout_s=0.4)
        await hub.start()
        assert server.proc is not None
        try:
            # Redis stops answering after the script is sent; redis-py times out and sends
            # it again; when Redis wakes up it runs both.
            server.proc.send_signal(signal.SIGSTOP)
            asyncio.get_running_loop().call_later(1.0, server.proc.send_signal, signal.SIGCONT)
            started = time.monotonic()
            await hub.create("st_stall", owner="o")  # before: ValueError("already exists")
            assert time.monotonic() - started < 10
            async with Redis.from_url(server.url) as r:
                assert await r.zscore(f"{prefix}:active", "st_stall") is not None
                assert await r.pttl(f"{prefix}:{{st_stall}}:meta") > 0
            info = await hub.info("st_stall")
            assert info is not None and info.status == "in_progress" and info.owner == "o"
            # The producer can write to it: it is this call's stream.
            await hub.append("st_stall", make_ops("st_stall", ["ok"]))
            assert (await hub.info("st_stall")).status == "completed"  # type: ignore[union-attr]
        finally:
            server.proc.send_signal(signal.SIGCONT)
            await hub.close()


async def test_create_that_fails_leaves_no_key_without_an_expiry(prefix: str) -> None:
    from redis_server import RedisServer

    with RedisServer() as server:
        hub = new_hub(server.url, prefix, command_timeout_s=0.3, retention_s=30.0)
        await hub.start()
        assert server.proc is not None
        try:
            server.proc.send_signal(signal.SIGSTOP)
            asyncio.get_running_loop().call_later(3.0, server.proc.send_signal, signal.SIGCONT)
            with pytest.raises(HubUnavailable):  # the gateway's documented 503
                await hub.create("st_orphan", owner=None)
            await asyncio.sleep(3.2)  # Redis is back and has run the queued scripts
            async with Redis.from_url(server.url) as r:
                # (whether a timed-out script still ran depends on the socket's fate)
                for key in await r.keys(f"{prefix}:*st_orphan*"):
                    ttl = await r.pttl(key)
                    assert 0 < ttl <= (hub.retention_s + hub.lease_ttl_s) * 1000, (key, ttl)
        finally:
            server.proc.send_signal(signal.SIGCONT)
            await hub.close()


async def test_creates_during_a_stall_fail_within_the_call_timeout(prefix: str) -> None:
    """Several creates at once while Redis stalls each answer ``HubUnavailable`` within
    ``call_timeout_s`` (before: about 10 socket timeouts, as redis-py's reconnect handshake
    read with the socket timeout and was retried), and the hub works once Redis is back."""
    from redis_server import RedisServer

    with RedisServer() as server:
        hub = new_hub(server.url, prefix, command_timeout_s=0.5, connect_timeout_s=0.2)
        assert hub.call_timeout_s == pytest.approx(1.9)
        await hub.start()
        assert server.proc is not None
        try:
            server.proc.send_signal(signal.SIGSTOP)

            async def create(stream_id: str, delay: float) -> float:
                await asyncio.sleep(delay)
                started = time.monotonic()
                with pytest.raises(HubUnavailable, match=r"within 1\.9 s|unavailable"):
                    await hub.create(stream_id, owner="o")
                return time.monotonic() - started

            waits = await asyncio.gather(
                *(create(f"st_stalled{i}", i * 0.3) for i in range(3)), create("st_late", 2.0)
            )
            # (the slack is for a loaded machine: without the bound each took about 5 s)
            assert max(waits) < hub.call_timeout_s + 1.5, waits
            server.proc.send_signal(signal.SIGCONT)
            # Cut commands dropped their connections: no stale reply reaches a later call.
            await hub.create("st_after", owner="o")
            await hub.append("st_after", make_ops("st_after", ["ok"]))
            info = await hub.info("st_after")
            assert info is not None and info.status == "completed" and info.owner == "o"
        finally:
            server.proc.send_signal(signal.SIGCONT)
            await hub.close()


async def test_a_dead_producers_live_log_expires_too(redis_server, prefix: str) -> None:
    hub = new_hub(redis_server.url, prefix, retention_s=30.0)
    await hub.start()
    try:
        await hub.create("st_live", owner=None)
        await hub.append("st_live", make_ops("st_live", ["a", "b"], end=False))
        async with Redis.from_url(redis_server.url) as r:
            for key in ("meta", "log", "lease"):
                assert await r.pttl(f"{prefix}:{{st_live}}:{key}") > 0, key
    finally:
        await hub.close()


def test_reader_only_end_takes_no_real_seq() -> None:
    end = reader_only_end(3, "lost connection to Redis", "hub_unavailable")
    assert end.seq == 3 and end.op.seq == 3
    assert end.sse.startswith(b"data:") and b"id:" not in end.sse

    # A client that saw ops 1-3 ends its follow without moving past 3.
    pipe = Pipeline("st_x", model="m")
    ops = pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":"w0"}}]}\n\n')
    ops += pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":" w1"}}]}\n\n')
    assert [op.seq for op in ops] == [1, 2, 3, 4]
    state = StreamState("st_x")
    state.feed(b"".join(op.sse for op in ops[:3]))
    got = state.feed(end.sse)
    assert state.done and state.seq == 3
    assert got and state.message.status == "failed"
    assert state.message.error["type"] == "hub_unavailable"  # type: ignore[index]
    # What an EventSource would send on reconnecting: the last real seq, so op 4 comes.
    decoder = SSEDecoder()
    decoder.feed(b"".join(op.sse for op in ops[:3]) + end.sse)
    assert decoder.last_event_id == "3" and ops[3].seq == 4


async def test_the_store_takes_the_hubs_final_message(
    redis_server, prefix: str, tmp_path: Path
) -> None:
    hub = new_hub(redis_server.url, prefix, lease_ttl_s=0.5)
    other = new_hub(redis_server.url, prefix, lease_ttl_s=0.5)  # another gateway process
    await hub.start()
    await other.start()
    store = Store(tmp_path)
    await store.open()
    try:
        await hub.create("st_two", owner="o")
        pipe = Pipeline("st_two", model="m")
        ops = pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":"w0"}}]}\n\n')
        await hub.append("st_two", ops)
        # The producer lost the hub: its last op and its end never reached Redis, but it
        # ended the message locally and stored it (one more op, hub_unavailable).
        ops = pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":" w1"}}]}\n\n')
        ops += pipe.fail("lost the hub", error_type="hub_unavailable")
        local = StoredStream(
            "st_two", "o", "failed", pipe.seq, pipe.message.to_json(), time.time(), time.time()
        )
        await store.save(local)
        await hub.release("st_two")  # (what the producer does after losing the hub)
        result = await settle_with_hub(hub, store, "st_two", wait_s=10.0, poll_s=0.1)
        assert result == "hub"
        found = await hub.message("st_two")
        assert found is not None
        info, message = found
        row = await store.get("st_two")
        assert row is not None
        assert (row.status, row.seq, row.message) == (info.status, info.seq, message.to_json())
        assert message.error["type"] == "producer_lost"  # type: ignore[index]
        assert row.owner == "o" and row.created_at == local.created_at
        # Unknown to the hub (its keys expired): the stored row stays.
        assert await settle_with_hub(hub, store, "st_never", wait_s=1.0) == "gone"
    finally:
        await store.close()
        await hub.close()
        await other.close()


async def test_the_create_script_is_idempotent_per_call(redis_server, prefix: str) -> None:
    # What redis-py's retry of a timed-out create does: the same call's script runs again.
    from tokenwire.hub.redis_scripts import CREATE, Keys

    keys = Keys(prefix)
    async with Redis.from_url(redis_server.url) as r:
        script = r.register_script(CREATE)
        meta, lease = keys.meta("st_once"), keys.lease("st_once")
        args = ["", "0", "1.0", "p1", 5000, "token-1", 60_000]
        assert await script(keys=[meta, lease], args=args) == 1
        assert await script(keys=[meta, lease], args=args) == 1  # the retry: still ours
        other = [*args[:5], "token-2", 60_000]
        assert await script(keys=[meta, lease], args=other) == 0  # another call: taken
        assert 0 < await r.pttl(meta) <= 60_000
