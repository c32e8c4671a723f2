"""The in-process hub: cursors, resume, trimming with snapshots, retention, cancel."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwire import timeouts
from tokenwire.hub import MemoryHub, StreamNotFound
from tokenwire.hub.base import Signal
from tokenwire.protocol import EncodedOp, Message, Pipeline, apply_op


def chunk(text: str) -> bytes:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return b'data: {"choices":[{"index":0,"delta":{"content":"%s"}}]}\n\n' % escaped.encode()


def make_ops(stream_id: str, words: list[str]) -> list[EncodedOp]:
    pipe = Pipeline(stream_id, model="m")
    ops: list[EncodedOp] = []
    for word in words:
        ops += pipe.feed(chunk(word))
    ops += pipe.feed(b"data: [DONE]\n\n")
    ops += pipe.close()
    return ops


async def drain(cursor) -> list[EncodedOp]:
    out: list[EncodedOp] = []
    async for batch in cursor:
        out += batch
    return out


@settings(max_examples=60, deadline=None)
@given(
    words=st.lists(st.text(min_size=1, max_size=5), min_size=0, max_size=30),
    data=st.data(),
)
def test_resume_from_any_seq_yields_exactly_the_rest(words: list[str], data) -> None:
    async def scenario() -> None:
        hub = MemoryHub()
        ops = make_ops("st_prop", words)
        await hub.create("st_prop", owner=None)
        split = data.draw(st.integers(0, len(ops)), label="published before subscribing")
        await hub.append("st_prop", ops[:split])
        after = data.draw(st.integers(0, split), label="after")
        cursor = await hub.subscribe("st_prop", after)
        reader = asyncio.create_task(drain(cursor))
        await asyncio.sleep(0)
        for op in ops[split:]:  # the rest arrives live, one op at a time
            await hub.append("st_prop", [op])
        got = await asyncio.wait_for(reader, 5)
        assert [op.json for op in got] == [op.json for op in ops[after:]]

    asyncio.run(scenario())


async def test_slow_reader_never_blocks_append_or_others() -> None:
    hub = MemoryHub()
    ops = make_ops("st_a", [f"w{i} " for i in range(500)])
    await hub.create("st_a", owner=None)
    slow = await hub.subscribe("st_a", 0)
    fast = asyncio.create_task(drain(await hub.subscribe("st_a", 0)))
    for op in ops:
        await hub.append("st_a", [op])  # returns at once although ``slow`` never reads
    assert [op.seq for op in await fast] == [op.seq for op in ops]
    first = await slow.read(0)
    assert [op.seq for op in first] == [op.seq for op in ops]  # everything waits in the log
    assert slow.done


async def test_read_timeout_returns_empty_while_live() -> None:
    hub = MemoryHub()
    await hub.create("st_t", owner="o")
    cursor = await hub.subscribe("st_t", 0)
    assert await cursor.read(0.01) == []
    assert not cursor.done
    info = await hub.info("st_t")
    assert info is not None and info.owner == "o" and info.status == "in_progress"


async def test_trimmed_log_gives_late_readers_a_snapshot() -> None:
    hub = MemoryHub(max_log_ops=10)
    ops = make_ops("st_long", [f"w{i} " for i in range(100)])
    body, end = ops[:-2], ops[-2:]
    await hub.create("st_long", owner=None)
    await hub.append("st_long", body)
    cursor = await hub.subscribe("st_long", 0)
    snapshot = await cursor.read(0)
    assert [op.type for op in snapshot] == ["snapshot"]
    # It says which blocks are still open: a view mid-connection must not end them early.
    assert snapshot[0].op.open == [0]
    base = snapshot[0].seq
    assert 0 < base < len(body) - 5  # the start of the log is gone
    live = await cursor.read(0)
    assert [op.seq for op in live] == list(range(base + 1, len(body) + 1))
    await hub.append("st_long", end)
    rest = live + await drain(cursor)
    first = snapshot
    # Snapshot + the ops after it rebuild exactly the full message.
    message = Message.empty()
    for op in [*first, *rest]:
        apply_op(message, op.op)
    full = Message.empty()
    for op in ops:
        apply_op(full, op.op)
    assert message == full
    found = await hub.message("st_long")
    assert found is not None and found[1] == full and found[0].status == "completed"


async def test_retention_forgets_finished_streams() -> None:
    hub = MemoryHub(retention_s=0.05)
    await hub.start()
    try:
        await hub.create("st_r", owner=None)
        await hub.append("st_r", make_ops("st_r", ["x"]))
        assert (await hub.info("st_r")).status == "completed"  # type: ignore[union-attr]
        await asyncio.sleep(0.2)
        assert await hub.info("st_r") is None
        assert len(hub) == 0
        with pytest.raises(StreamNotFound):
            await hub.subscribe("st_r", 0)
    finally:
        await hub.close()


async def test_append_rejects_gaps_and_ops_after_end() -> None:
    hub = MemoryHub()
    ops = make_ops("st_g", ["a", "b"])
    await hub.create("st_g", owner=None)
    with pytest.raises(ValueError):
        await hub.append("st_g", ops[1:])
    await hub.append("st_g", ops)
    with pytest.raises(ValueError):
        await hub.append("st_g", ops[-1:])
    with pytest.raises(ValueError):
        await hub.create("st_g", owner=None)
    with pytest.raises(ValueError):
        await hub.subscribe("st_g", len(ops) + 1)


async def test_cancel_request_reaches_the_producer() -> None:
    hub = MemoryHub()
    await hub.create("st_c", owner=None)
    waiter = asyncio.create_task(hub.wait_cancel("st_c"))
    await asyncio.sleep(0)
    assert not waiter.done()
    await hub.request_cancel("st_c")
    await asyncio.wait_for(waiter, 1)
    await hub.request_cancel("st_c")  # idempotent
    with pytest.raises(StreamNotFound):
        await hub.request_cancel("st_unknown")


async def test_watch_cancel_calls_back_once_and_unwatch_stops_it() -> None:
    hub = MemoryHub()
    for stream_id in ("st_w1", "st_w2", "st_w3"):
        await hub.create(stream_id, owner=None)
    calls: list[str] = []
    hub.watch_cancel("st_w1", lambda: calls.append("w1"))
    unwatch = hub.watch_cancel("st_w2", lambda: calls.append("w2"))
    unwatch()
    await hub.request_cancel("st_w1")
    await hub.request_cancel("st_w1")
    await hub.request_cancel("st_w2")
    assert calls == ["w1"]
    await hub.request_cancel("st_w3")  # requested before anyone watched: still called back
    hub.watch_cancel("st_w3", lambda: calls.append("w3"))
    await asyncio.sleep(0)
    assert calls == ["w1", "w3"]


async def test_a_failing_cancel_watcher_does_not_stop_the_others() -> None:
    hub = MemoryHub()
    await hub.create("st_wf", owner=None)
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("boom")

    hub.watch_cancel("st_wf", broken)
    hub.watch_cancel("st_wf", lambda: calls.append("fine"))
    await hub.request_cancel("st_wf")  # does not raise
    assert calls == ["broken", "fine"]


# -- Signal: the wake-up primitive under both hubs -------------------------------------------
async def test_signal_wakes_every_current_waiter_and_only_them() -> None:
    signal = Signal()
    first = [asyncio.ensure_future(signal.wait(5)) for _ in range(3)]
    await asyncio.sleep(0)
    signal.fire()
    assert await asyncio.gather(*first) == [True, True, True]
    late = asyncio.ensure_future(signal.wait(0.05))  # a fire before it waited does not count
    assert await late is False


async def test_signal_waiters_that_leave_are_forgotten() -> None:
    signal = Signal()
    assert await signal.wait(0.01) is False  # timed out
    leaving = asyncio.ensure_future(signal.wait(None))
    await asyncio.sleep(0)
    leaving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaving
    assert not signal._waiters  # neither left a future behind
    staying = asyncio.ensure_future(signal.wait(None))
    await asyncio.sleep(0)
    signal.fire()
    assert await staying is True


async def test_signal_waits_use_coarse_timeouts_and_leave_none_behind(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(timeouts, "EXACT_BELOW_S", 0.0)
    monkeypatch.setattr(timeouts, "RESOLUTION_S", 0.05)
    signal = Signal()
    waiting = asyncio.ensure_future(signal.wait(30))
    await asyncio.sleep(0)
    slots = timeouts._by_loop[asyncio.get_running_loop()]
    assert sum(map(len, slots.values())) == 1
    signal.fire()
    assert await waiting is True
    assert sum(map(len, slots.values())) == 0  # (a fired wait holds no slot entry for 30 s)
    assert await signal.wait(0.1) is False
    assert not signal._waiters
