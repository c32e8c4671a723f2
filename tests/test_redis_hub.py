"""The Redis hub against a real throwaway redis-server: two hubs stand for two processes.

Each test uses its own key prefix, so tests sharing the session's server never see each
other's streams. tests/test_redis_hub_cluster.py runs the same contract tests on a real
3-master Redis Cluster (there ``redis_server.url`` is a cluster URL; ``admin`` and
``command_calls`` below work on both).
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from tokenwire.hub import StreamNotFound
from tokenwire.hub.redis import HubUnavailable, RedisHub
from tokenwire.hub.redis_keys import cluster_client, is_cluster_url
from tokenwire.protocol import EncodedOp, Message, Pipeline, apply_op


def chunk(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % escaped.encode()


def make_ops(stream_id: str, words: list[str], *, end: bool = True) -> list[EncodedOp]:
    pipe = Pipeline(stream_id, model="m")
    ops: list[EncodedOp] = []
    for word in words:
        ops += pipe.feed(chunk(word))
    if end:
        ops += pipe.feed(b"data: [DONE]\n\n")
        ops += pipe.close()
    return ops


def replay(ops: list[EncodedOp]) -> Message:
    message = Message.empty()
    for op in ops:
        apply_op(message, op.op)
    return message


async def drain(cursor, timeout: float = 10.0) -> list[EncodedOp]:
    out: list[EncodedOp] = []
    async with asyncio.timeout(timeout):
        async for batch in cursor:
            out += batch
    await cursor.aclose()
    return out


def admin(url: str):
    """A client for the test's own checks (cluster-aware for a cluster URL)."""
    return cluster_client(url) if is_cluster_url(url) else Redis.from_url(url)


async def command_calls(r, name: str) -> int:
    """``cmdstat_<name>`` calls so far, summed over every master of a cluster."""
    if isinstance(r, RedisCluster):
        per_node = await r.info("commandstats", target_nodes=r.PRIMARIES)
        stats = list(per_node.values())
    else:
        stats = [await r.info("commandstats")]
    return sum(s.get(f"cmdstat_{name}", {}).get("calls", 0) for s in stats)


def active_key(hub: RedisHub, stream_id: str) -> str:
    """The lease-index zset that holds ``stream_id`` (one per shard on a cluster)."""
    return hub.keys.active_of(stream_id) if hub.cluster else hub.keys.active


def new_hub(url: str, prefix: str, **options) -> RedisHub:
    options.setdefault("block_s", 1.0)
    options.setdefault("watchdog_interval_s", 0.2)
    return RedisHub(url, key_prefix=prefix, **options)


@pytest.fixture
def prefix() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture
async def hubs(redis_server, prefix):
    a = new_hub(redis_server.url, prefix)
    b = new_hub(redis_server.url, prefix)
    await a.start()
    await b.start()
    yield a, b
    await a.close()
    await b.close()


async def test_created_on_a_read_on_b_with_identical_bytes(hubs) -> None:
    a, b = hubs
    ops = make_ops("st_ab", ["Hello", ", ", "world", "!"])
    await a.create("st_ab", owner="key1")
    info = await b.info("st_ab")
    assert info is not None and (info.owner, info.status, info.seq) == ("key1", "in_progress", 0)
    await a.append("st_ab", ops[:3])
    await a.append("st_ab", ops[3:])
    got_b = await drain(await b.subscribe("st_ab", 0))
    got_a = await drain(await a.subscribe("st_ab", 0))
    assert [op.json for op in got_b] == [op.json for op in ops]
    assert [op.sse for op in got_b] == [op.sse for op in got_a] == [op.sse for op in ops]
    found = await b.message("st_ab")
    assert found is not None
    info, message = found
    assert (info.status, info.seq) == ("completed", len(ops))
    assert message == replay(ops) and message.text == "Hello, world!"


async def test_live_subscribers_on_both_hubs_get_the_same_stream(hubs) -> None:
    a, b = hubs
    ops = make_ops("st_live", [f"w{i} " for i in range(40)])
    await a.create("st_live", owner=None)
    readers = [
        asyncio.create_task(drain(await hub.subscribe("st_live", 0))) for hub in (a, b, b, a, b)
    ]
    for i in range(0, len(ops), 3):  # appended while everybody is waiting
        await a.append("st_live", ops[i : i + 3])
        await asyncio.sleep(0)
    results = await asyncio.gather(*readers)
    for got in results:
        assert [op.json for op in got] == [op.json for op in ops]


async def test_partial_read_on_a_then_resume_on_b_from_every_seq(hubs) -> None:
    a, b = hubs
    ops = make_ops("st_resume", ["one ", "two ", "three ", "four"])
    await a.create("st_resume", owner=None)
    await a.append("st_resume", ops[:5])
    cursor = await a.subscribe("st_resume", 0)
    first = await cursor.read(5)
    assert first and first[-1].seq == cursor.position <= 5
    await cursor.aclose()
    # While live, and once finished: any seq resumes with exactly the ops after it.
    for after in range(6):
        got = await b.subscribe("st_resume", after)
        batch = await got.read(5 if after < 5 else 0.05)
        assert [op.json for op in batch] == [op.json for op in ops[after:5]]
        await got.aclose()
    await a.append("st_resume", ops[5:])
    for after in range(len(ops) + 1):
        got = await drain(await b.subscribe("st_resume", after))
        assert [op.json for op in got] == [op.json for op in ops[after:]]


async def test_resume_older_than_the_retained_log_starts_with_a_snapshot(
    redis_server, prefix
) -> None:
    a = new_hub(redis_server.url, prefix, max_log_ops=20)
    b = new_hub(redis_server.url, prefix, max_log_ops=20)
    await a.start()
    await b.start()
    try:
        ops = make_ops("st_trim", [f"{i}," for i in range(600)])
        await a.create("st_trim", owner=None)
        for i in range(0, len(ops), 7):
            await a.append("st_trim", ops[i : i + 7])
        async with admin(redis_server.url) as r:
            retained = await r.xlen(f"{prefix}:{{st_trim}}:log")
        assert retained < len(ops) // 2  # MAXLEN trimming happened
        async with admin(redis_server.url) as r:
            first = await r.xrange(f"{prefix}:{{st_trim}}:log", count=1)
        oldest = int(first[0][0].split(b"-")[0])
        for after in (0, 1, 50, len(ops) - retained - 1):
            got = await drain(await b.subscribe("st_trim", after))
            assert got[0].type == "snapshot" and got[0].seq > after + 1
            # The older of the two snapshots the log still goes on from (not the end's): a
            # view that reads from the start to reach its cursor stays exact after it, for at
            # least the last max_log_ops / 4 ops (docs/redis.md).
            assert oldest - 1 <= got[0].seq <= len(ops) - 20 // 4
            assert [op.seq for op in got[1:]] == list(range(got[0].seq + 1, len(ops) + 1))
            assert replay(got) == replay(ops)
        tail = await drain(await b.subscribe("st_trim", len(ops) - 5))
        assert [op.json for op in tail] == [op.json for op in ops[-5:]]
        found = await b.message("st_trim")
        assert found is not None and found[1] == replay(ops)
    finally:
        await a.close()
        await b.close()


async def test_live_reader_behind_the_log_gets_a_snapshot_then_the_rest(
    redis_server, prefix
) -> None:
    a = new_hub(redis_server.url, prefix, max_log_ops=20)
    b = new_hub(redis_server.url, prefix, max_log_ops=20, local_window=16)
    await a.start()
    await b.start()
    try:
        ops = make_ops("st_slow", [f"{i} " for i in range(400)])
        await a.create("st_slow", owner=None)
        await a.append("st_slow", ops[:3])
        slow = await b.subscribe("st_slow", 0)
        assert [op.seq for op in await slow.read(5)] == [1, 2, 3]
        for i in range(3, len(ops) - 1, 9):  # the stream moves on while the reader sleeps
            await a.append("st_slow", ops[i : min(i + 9, len(ops) - 1)])
        message_so_far = await b.message("st_slow")
        assert message_so_far is not None and message_so_far[1] == replay(ops[:-1])
        await a.append("st_slow", ops[-1:])
        rest = await drain(slow)
        assert rest[0].type == "snapshot"
        assert replay(ops[:3] + rest) == replay(ops)
    finally:
        await a.close()
        await b.close()


async def test_cancel_requested_on_b_resolves_wait_cancel_on_a(hubs) -> None:
    a, b = hubs
    await a.create("st_cancel", owner=None)
    await a.append("st_cancel", make_ops("st_cancel", ["x"], end=False))
    waiting = asyncio.create_task(a.wait_cancel("st_cancel"))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await b.request_cancel("st_cancel")
    await asyncio.wait_for(waiting, 5)
    # A request made before the producer listens is not lost either.
    await a.create("st_cancel2", owner=None)
    await b.request_cancel("st_cancel2")
    await asyncio.wait_for(a.wait_cancel("st_cancel2"), 5)
    with pytest.raises(StreamNotFound):
        await b.request_cancel("st_nope")


async def test_watch_cancel_across_processes_without_a_task_per_stream(hubs) -> None:
    a, b = hubs
    calls: list[str] = []
    for stream_id in ("st_wa", "st_wb", "st_wc"):
        await a.create(stream_id, owner=None)
    a.watch_cancel("st_wa", lambda: calls.append("wa"))
    unwatch = a.watch_cancel("st_wb", lambda: calls.append("wb"))
    await b.request_cancel("st_wc")  # before the watch: the flag check finds it
    a.watch_cancel("st_wc", lambda: calls.append("wc"))
    await asyncio.sleep(0.05)
    unwatch()
    await b.request_cancel("st_wa")
    await b.request_cancel("st_wb")
    deadline = asyncio.get_running_loop().time() + 5
    while len(calls) < 2 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # time for a wrong callback (st_wb) to arrive too
    assert sorted(calls) == ["wa", "wc"]
    assert "st_wb" not in a._cancels  # nothing is kept for a stream nobody watches


async def test_cancel_published_while_pubsub_reconnects_is_not_lost(hubs, redis_server) -> None:
    # redis-py silently reconnects a dropped pub/sub connection; a cancel published in that
    # gap only sets the flag, which the listener's periodic sweep must pick up.
    a, b = hubs
    await a.create("st_gap", owner=None)
    called = asyncio.Event()
    a.watch_cancel("st_gap", called.set)
    await asyncio.sleep(0.1)  # the watch's own flag check has run (nothing set yet)
    r = admin(redis_server.url)
    try:
        if is_cluster_url(redis_server.url):  # every node's (sharded) pub/sub connections
            await r.execute_command("CLIENT", "KILL", "TYPE", "pubsub", target_nodes=r.PRIMARIES)
        else:
            await r.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    finally:
        await r.aclose()
    await b.request_cancel("st_gap")
    await asyncio.wait_for(called.wait(), 10)


_DYING_PRODUCER = textwrap.dedent(
    """
    import asyncio, sys, time
    from tokenwire.hub.redis import RedisHub
    from tokenwire.protocol import Pipeline

    async def main(url, prefix):
        hub = RedisHub(url, key_prefix=prefix, lease_ttl_s=1.0)
        await hub.start()
        pipe = Pipeline("st_dead", model="m")
        ops = pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":"partial "}}]}\\n\\n')
        ops += pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":"answer"}}]}\\n\\n')
        await hub.create("st_dead", owner=None)
        await hub.append("st_dead", ops)
        print("ready", flush=True)
        await asyncio.sleep(3600)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


async def test_producer_killed_ends_the_stream_failed_on_another_process(
    redis_server, prefix
) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _DYING_PRODUCER, redis_server.url, prefix],
        stdout=subprocess.PIPE,
    )
    b = new_hub(redis_server.url, prefix)
    await b.start()
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert line.strip() == b"ready"
        cursor = await b.subscribe("st_dead", 0)
        first = await cursor.read(5)
        assert replay(first).text == "partial answer"
        os.kill(child.pid, signal.SIGKILL)  # no chance to finish or release anything
        # Bound: lease 1 s + watchdog 0.2 s here; 10 s is the product's promise.
        rest = await drain(cursor, timeout=10)
        end = rest[-1].op
        assert rest[-1].type == "message.end" and end.status == "failed"
        assert end.error == {"message": "producer lost", "type": "producer_lost", "code": None}
        assert [op.type for op in rest] == ["block.end", "message.end"]
        message = replay(first + rest)
        assert message.text == "partial answer" and message.status == "failed"
        found = await b.message("st_dead")
        assert found is not None and found[1] == message
    finally:
        child.kill()
        child.wait()
        await b.close()


async def test_closing_a_hub_hands_its_unfinished_streams_to_the_watchdog(hubs) -> None:
    a, b = hubs
    await a.create("st_closed", owner=None)
    await a.append("st_closed", make_ops("st_closed", ["half"], end=False))
    cursor = await b.subscribe("st_closed", 0)
    await a.close()  # lease TTL is 5 s; the watchdog (0.2 s here) must not wait for it
    got = await drain(cursor, timeout=3)
    assert got[-1].op.status == "failed" and replay(got).text == "half"


async def test_only_one_process_ends_a_lost_stream(redis_server, prefix) -> None:
    a = new_hub(redis_server.url, prefix, lease_ttl_s=0.3, watchdog_interval_s=60)
    watchers = [new_hub(redis_server.url, prefix, watchdog_interval_s=60) for _ in range(3)]
    await a.start()
    for hub in watchers:
        await hub.start()
    try:
        await a.create("st_race", owner=None)
        await a.append("st_race", make_ops("st_race", ["a", "b"], end=False))
        a._leased.clear()  # the producer stops renewing, as a dead process would
        await asyncio.sleep(0.5)
        results = await asyncio.gather(*(h.fail_if_producer_lost("st_race") for h in watchers))
        assert sorted(results) == [False, False, True]
        ops = await drain(await watchers[0].subscribe("st_race", 0))
        assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
        assert sum(op.type == "message.end" for op in ops) == 1
        with pytest.raises(ValueError, match="already ended"):  # the producer comes back late
            await a.append("st_race", make_ops("st_race", ["a", "b", "c"])[len(ops) - 2 :])
    finally:
        await a.close()
        for hub in watchers:
            await hub.close()


async def test_many_local_cursors_share_one_xread_per_batch(hubs, redis_server) -> None:
    a, b = hubs
    ops = make_ops("st_fan", [f"t{i} " for i in range(30)])
    await a.create("st_fan", owner=None)
    cursors = [await b.subscribe("st_fan", 0) for _ in range(200)]
    positions = [0] * len(cursors)

    async def catch_up(i: int, seq: int) -> None:
        while positions[i] < seq:
            batch = await cursors[i].read(5)
            assert batch, "cursor starved"
            positions[i] = batch[-1].seq

    async with admin(redis_server.url) as r:
        before = {name: await command_calls(r, name) for name in ("xread", "xrange")}
        batches = 0
        for i in range(0, len(ops), 4):
            await a.append("st_fan", ops[i : i + 4])
            batches += 1
            await asyncio.gather(
                *(catch_up(j, ops[min(i + 3, len(ops) - 1)].seq) for j in range(200))
            )
        after = {name: await command_calls(r, name) for name in ("xread", "xrange")}

    xreads = after["xread"] - before["xread"]
    xranges = after["xrange"] - before["xrange"]
    assert 1 <= xreads <= batches + 1  # one per batch (at most), not one per subscriber
    assert xranges == 0
    assert all(c.done for c in cursors)
    for cursor in cursors:
        await cursor.aclose()


async def test_finished_stream_keys_expire_and_lease_is_released(hubs, redis_server, prefix):
    a, _ = hubs
    await a.create("st_ttl", owner=None)
    async with admin(redis_server.url) as r:
        assert await r.pttl(f"{prefix}:{{st_ttl}}:lease") > 0
        # Live: kept while the lease is renewed, yet never without an expiry (issue 12).
        live_ttl = await r.pttl(f"{prefix}:{{st_ttl}}:meta")
        assert a.retention_s * 1000 < live_ttl <= (a.retention_s + a.lease_ttl_s) * 1000
        await a.append("st_ttl", make_ops("st_ttl", ["done"]))
        for key in ("meta", "log"):
            assert 0 < await r.pttl(f"{prefix}:{{st_ttl}}:{key}") <= a.retention_s * 1000
        assert not await r.exists(f"{prefix}:{{st_ttl}}:lease")
        assert await r.zscore(active_key(a, "st_ttl"), "st_ttl") is None


async def test_misuse_is_refused(hubs) -> None:
    a, b = hubs
    ops = make_ops("st_bad", ["x"])
    with pytest.raises(StreamNotFound):
        await b.subscribe("st_bad", 0)
    assert await b.info("st_bad") is None and await b.message("st_bad") is None
    await a.create("st_bad", owner=None)
    with pytest.raises(ValueError, match="already exists"):
        await b.create("st_bad", owner=None)
    with pytest.raises(ValueError, match="expected seq 1"):
        await a.append("st_bad", ops[1:])
    await a.append("st_bad", ops[:2])
    with pytest.raises(ValueError, match="outside"):
        await b.subscribe("st_bad", 3)
    with pytest.raises(ValueError, match="expected seq 3"):
        await b.append("st_bad", ops[3:])  # a second writer is checked by Redis too
    await a.append("st_bad", ops[2:])
    with pytest.raises(ValueError, match="already ended"):
        await b.append("st_bad", ops[-1:])


async def test_unreachable_at_start_is_a_clear_error() -> None:
    from conftest import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    hub = RedisHub(url, connect_timeout_s=1.0)
    with pytest.raises(HubUnavailable, match=f"cannot reach Redis at {url}"):
        await hub.start()
    secret = RedisHub(f"redis://user:hunter2@127.0.0.1:{free_port()}/0", connect_timeout_s=1.0)
    with pytest.raises(HubUnavailable) as caught:
        await secret.start()
    assert "hunter2" not in str(caught.value)


async def test_redis_restarted_while_idle_then_hub_works_again(hubs, redis_server) -> None:
    a, b = hubs
    redis_server.restart()  # empty afterwards: no persistence
    ops = make_ops("st_after", ["back ", "again"])
    await a.create("st_after", owner=None)
    waiting = asyncio.create_task(a.wait_cancel("st_after"))
    reader = asyncio.create_task(drain(await b.subscribe("st_after", 0)))
    await a.append("st_after", ops)
    assert [op.json for op in await reader] == [op.json for op in ops]
    await b.request_cancel("st_after")
    await asyncio.wait_for(waiting, 5)


async def test_redis_lost_while_running_ends_readers_and_recovers(prefix) -> None:
    from redis_server import RedisServer

    with RedisServer() as server:
        options = {"block_s": 0.3, "unavailable_grace_s": 0.5, "command_timeout_s": 1.0}
        a = new_hub(server.url, prefix, **options)
        b = new_hub(server.url, prefix, **options)
        await a.start()
        await b.start()
        try:
            await a.create("st_lost", owner=None)
            await a.append("st_lost", make_ops("st_lost", ["so far"], end=False))
            cursor = await b.subscribe("st_lost", 0)
            head = await cursor.read(5)
            server.stop()
            rest = await drain(cursor, timeout=10)  # ends, does not hang
            assert [op.type for op in rest] == ["message.end"]
            assert rest[0].op.status == "failed"
            # A reader-only end takes no seq a real op will have (issue 12): the last real
            # seq, and no id: line for an EventSource to resume after.
            assert rest[0].seq == head[-1].seq and not rest[0].sse.startswith(b"id:")
            assert rest[0].op.error["type"] == "hub_unavailable"
            with pytest.raises(HubUnavailable, match="Redis unavailable"):
                await a.create("st_new", owner=None)
            with pytest.raises(HubUnavailable):
                await b.subscribe("st_lost", 0)
            server.start()
            await a.create("st_new", owner=None)
            ops = make_ops("st_new", ["fine"])
            await a.append("st_new", ops)
            got = await drain(await b.subscribe("st_new", 0))
            assert [op.json for op in got] == [op.json for op in ops]
        finally:
            await a.close()
            await b.close()


async def test_a_reader_behind_the_window_waits_out_a_redis_stall(prefix) -> None:
    from redis_server import RedisServer

    with RedisServer() as server:
        # A command waits up to 2 s for Redis: longer than the reads' own 0.3 s timeout.
        options = {"unavailable_grace_s": 8.0, "command_timeout_s": 2.0}
        a = new_hub(server.url, prefix, **options)
        b = new_hub(server.url, prefix, **options)
        await a.start()
        await b.start()
        assert server.proc is not None
        try:
            ops = make_ops("st_stall", ["one ", "two ", "three"])
            await a.create("st_stall", owner=None)
            await a.append("st_stall", ops)
            cursor = await b.subscribe("st_stall", 0)  # behind b's window: reads from Redis
            server.proc.send_signal(signal.SIGSTOP)  # Redis stops answering, keeps its data
            loop = asyncio.get_running_loop()
            loop.call_later(3.0, server.proc.send_signal, signal.SIGCONT)
            got: list[EncodedOp] = []
            empty_reads, longest = 0, 0.0
            async with asyncio.timeout(20):
                while not cursor.done:
                    started = loop.time()
                    batch = await cursor.read(0.3)  # (an SSE writer's keep-alive timeout)
                    longest = max(longest, loop.time() - started)
                    empty_reads += not batch
                    got += batch
            assert [op.json for op in got] == [op.json for op in ops]  # no "failed" end
            assert empty_reads >= 3  # the reader's timeouts still came while it waited...
            assert longest < 1.0  # ...on time, not after a stuck Redis command
        finally:
            server.proc.send_signal(signal.SIGCONT)
            await a.close()
            await b.close()


@settings(max_examples=25, deadline=None)
@given(
    words=st.lists(st.text(min_size=1, max_size=4), min_size=0, max_size=20),
    data=st.data(),
)
def test_resume_from_any_seq_yields_exactly_the_ops_after_it(redis_server, words, data) -> None:
    resume_from_any_seq(redis_server.url, words, data)


def resume_from_any_seq(url: str, words: list[str], data) -> None:
    """The property above, one example (the cluster module runs it with fewer examples)."""

    async def scenario() -> None:
        prefix = "p" + secrets.token_hex(4)
        a = new_hub(url, prefix)
        b = new_hub(url, prefix)
        await a.start()
        await b.start()
        try:
            ops = make_ops("st_prop", words)
            await a.create("st_prop", owner=None)
            split = data.draw(st.integers(0, len(ops)), label="appended before subscribing")
            await a.append("st_prop", ops[:split])
            after = data.draw(st.integers(0, split), label="after")
            reader = asyncio.create_task(drain(await b.subscribe("st_prop", after)))
            await asyncio.sleep(0)
            rest = ops[split:]
            while rest:  # the rest arrives live, in random batches
                size = data.draw(st.integers(1, len(rest)), label="batch")
                await a.append("st_prop", rest[:size])
                rest = rest[size:]
            got = await reader
            assert [op.json for op in got] == [op.json for op in ops[after:]]
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


async def test_a_reader_that_fails_ends_its_waiting_cursors(hubs, redis_server) -> None:
    a, b = hubs
    ops = make_ops("st_corrupt", ["one", " two"], end=False)
    await a.create("st_corrupt", owner=None)
    await a.append("st_corrupt", ops)
    reader = asyncio.create_task(drain(await b.subscribe("st_corrupt", len(ops))))
    await asyncio.sleep(0.2)  # b's feed reader now blocks in XREAD
    # An entry that is not an op (nothing of ours writes one): b's reader cannot decode it.
    raw = admin(redis_server.url)
    await raw.xadd(b.keys.log("st_corrupt"), {"op": b"not json"}, id=f"{len(ops) + 1}-1")
    await raw.aclose()
    got = await reader
    assert got[-1].type == "message.end"
    assert got[-1].op.status == "failed" and got[-1].op.error["type"] == "hub_unavailable"


async def test_a_create_whose_reply_is_lost_is_ended_by_the_watchdog(redis_server, prefix) -> None:
    """A Redis stall can apply ``create`` and lose its reply: the caller sees the hub as
    unavailable and never produces. The stream is in the lease index before the create runs,
    so once its lease runs out a watchdog ends it ``failed`` ("producer lost") rather than it
    staying ``in_progress`` until it expires. A create refused as a duplicate leaves the
    index entry of the stream that exists alone."""
    from tokenwire.errors import HubUnavailable, StreamExists

    a = new_hub(redis_server.url, prefix, lease_ttl_s=0.3, watchdog_interval_s=60)
    watcher = new_hub(redis_server.url, prefix, watchdog_interval_s=0.1)
    await a.start()
    await watcher.start()
    try:
        real = a._scripts["create"]

        async def applied_then_lost(*args, **kwargs):
            await real(*args, **kwargs)
            raise ConnectionError("reply lost")

        a._scripts["create"] = applied_then_lost
        with pytest.raises(HubUnavailable):
            await a.create("st_lost_reply", owner=None)
        a._scripts["create"] = real
        info = await watcher.info("st_lost_reply")
        assert info is not None and info.status == "in_progress"
        for _ in range(50):
            await asyncio.sleep(0.1)
            info = await watcher.info("st_lost_reply")
            if info.status != "in_progress":
                break
        assert info.status == "failed"
        message = (await watcher.message("st_lost_reply"))[1]
        assert message.error["message"] == "producer lost"
        # A duplicate create is refused and the existing stream stays in the index.
        await a.create("st_taken", owner=None)
        deadline = await a.r.zscore(active_key(a, "st_taken"), "st_taken")
        with pytest.raises(StreamExists):
            await watcher.create("st_taken", owner=None)
        assert await a.r.zscore(active_key(a, "st_taken"), "st_taken") == deadline
    finally:
        await a.close()
        await watcher.close()


async def test_a_reader_from_the_start_is_exact_for_the_last_quarter_of_the_log(
    redis_server, prefix
) -> None:
    """After every append (and after the end), the snapshot a reader from seq 0 gets is at
    least ``max_log_ops / 4`` ops behind the head: cursors in that span stay exact for a view
    (docs/redis.md), however Redis's approximate trimming cut the log."""
    hub = new_hub(redis_server.url, prefix, max_log_ops=200)
    await hub.start()
    try:
        ops = make_ops("st_window", [f"w{i} " for i in range(700)])
        await hub.create("st_window", owner=None)
        smallest = len(ops)
        for op in ops:
            await hub.append("st_window", [op])
            if op.seq > 400:
                got = await hub._catch_up("st_window", 0)
                base = got[0].seq if got[0].type == "snapshot" else 0
                smallest = min(smallest, op.seq - base)
        assert smallest >= 200 // 4
        assert got[0].type == "snapshot"  # (the log was trimmed)
    finally:
        await hub.close()


async def test_readers_queueing_for_a_read_connection_are_not_an_outage(redis_server) -> None:
    """More idle live streams than blocking-read connections: readers queue for one (as
    docs/redis.md says). The bound on a read (for silent partitions) starts once the reader
    has its connection; counting the queueing too ended healthy readers ``hub_unavailable``."""
    prefix = "q" + secrets.token_hex(4)
    writer = new_hub(redis_server.url, prefix)
    reader = RedisHub(
        redis_server.url,
        key_prefix=prefix,
        block_s=1.0,
        command_timeout_s=0.2,
        connect_timeout_s=0.1,
        unavailable_grace_s=1.0,
        max_reader_connections=2,
    )
    await writer.start()
    await reader.start()
    ids = [f"st_queue{i}" for i in range(4)]
    try:
        for stream_id in ids:
            await writer.create(stream_id, owner=None)  # (live and idle: a model thinking)
        cursors = [await reader.subscribe(stream_id, 0) for stream_id in ids]
        ended: list[str] = []

        async def drain(stream_id: str, cursor) -> None:  # type: ignore[no-untyped-def]
            loop = asyncio.get_running_loop()
            until = loop.time() + 7.0
            while not cursor.done and loop.time() < until:
                if any(op.type == "message.end" for op in await cursor.read(0.5)):
                    ended.append(stream_id)

        await asyncio.gather(*(drain(i, c) for i, c in zip(ids, cursors, strict=True)))
        assert ended == []
        for stream_id in ids:  # ... and every reader still gets what comes
            await writer.append(stream_id, make_ops(stream_id, ["hi"]))
        for cursor in cursors:
            got = []
            async with asyncio.timeout(10):
                while not cursor.done:
                    got += await cursor.read(0.5)
            assert got[-1].type == "message.end" and got[-1].op.status == "completed"
            await cursor.aclose()
    finally:
        await reader.close()
        await writer.close()


async def test_a_live_snapshot_says_which_blocks_are_open(redis_server, prefix) -> None:
    """A reader that fell out of the trimmed log mid-answer gets a snapshot saying which
    blocks are still open (both the newest snapshot and the older one the log goes on from
    keep it), so a view can go on without guessing."""
    a = new_hub(redis_server.url, prefix, max_log_ops=20)
    await a.start()
    try:
        ops = make_ops("st_open", [f"{i} " for i in range(200)], end=False)
        await a.create("st_open", owner=None)
        for i in range(0, len(ops), 7):
            await a.append("st_open", ops[i : i + 7])
        async with admin(redis_server.url) as r:
            meta = await r.hgetall(f"{prefix}:{{st_open}}:meta")
        assert meta[b"snap_open"] == b"0" and meta[b"snap_prev_open"] == b"0"
        for after in (0, 3):
            cursor = await a.subscribe("st_open", after)
            first = (await cursor.read(5))[0]
            assert first.type == "snapshot" and first.op.open == [0]
            assert first.op.message["status"] == "in_progress"
            await cursor.aclose()
    finally:
        await a.close()
