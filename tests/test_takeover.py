"""Takeover: a stream whose producing process died is continued by another process.

In-process tests run two ``Streams`` on two ``RedisHub`` instances (one real, throwaway Redis),
one of which stops renewing its leases (its process "died"). The end-to-end test runs
``bench.takeover``: 3 ``tokenwire serve`` processes, the ``tokenwire mock`` upstream, kill -9
of the producing process at random points (``TOKENWIRE_TAKEOVER_TRIALS``, default 20; the
full run is 100).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import statistics
from typing import Any

import msgspec
import pytest

from bench import takeover as bench_takeover
from tokenwire import Streams, StreamWriter
from tokenwire.errors import HubUnavailable
from tokenwire.gateway.producer import partial_message
from tokenwire.hub.redis import RedisHub
from tokenwire.protocol import Block
from tokenwire.streams import Resumed

pytestmark = pytest.mark.timeout(120)

LEASE_S = 0.6


def _hub(url: str, prefix: str) -> RedisHub:
    return RedisHub(
        url, key_prefix=prefix, lease_ttl_s=LEASE_S, watchdog_interval_s=0.1, block_s=1.0
    )


async def _die(streams: Streams) -> None:
    """The process stops renewing leases and watching (as if frozen or killed)."""
    hub = streams.hub
    assert isinstance(hub, RedisHub)
    for task in hub._tasks:
        task.cancel()
    await asyncio.gather(*hub._tasks, return_exceptions=True)
    hub._tasks = []


async def _wait_status(streams: Streams, stream_id: str, timeout: float = 10) -> str:
    async with asyncio.timeout(timeout):
        while True:
            info = await streams.hub.info(stream_id)
            if info is not None and info.status != "in_progress":
                return info.status
            await asyncio.sleep(0.05)


async def _until_ended(writer: StreamWriter) -> None:
    """Until the writer let go of its stream, and a moment more (for any late report)."""
    async with asyncio.timeout(5):
        while not writer.ended:
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.3)


TEXT = "Grüße aus Malmö ☁️ — the end."


async def _continue_text(w: StreamWriter, resumed: Resumed) -> None:
    """A host continuation: writes what the message lacks of ``args['text']``."""
    done = "".join(b.text for b in resumed.message.blocks if b.type == "text")
    full = resumed.args["text"]
    assert full.startswith(done)
    for char in full[len(done) :]:
        await w.text(char)


async def test_host_continuation_takes_over_and_fences_the_old_producer(redis_server) -> None:
    prefix = "tk" + secrets.token_hex(4)
    a = Streams(_hub(redis_server.url, prefix), coalesce_ms=0)
    b = Streams(_hub(redis_server.url, prefix), coalesce_ms=0)
    for streams in (a, b):
        streams.register_continuation("text", _continue_text)
    release = asyncio.Event()
    outcome: list[BaseException | None] = []

    async def produce(w: StreamWriter) -> None:
        await w.text(TEXT[:9])  # cut inside "Malmö"'s word, before its multi-byte "ö"
        await release.wait()
        try:
            await w.text("ZOMBIE")
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)
            raise

    async with a, b:
        handle = await a.start(produce, resume="text", resume_args={"text": TEXT})
        async with asyncio.timeout(5):
            while a.hub._owned.get(handle.id) is None or handle.writer.seq < 3:  # type: ignore[attr-defined]
                await asyncio.sleep(0.01)
        await _die(a)
        assert await _wait_status(b, handle.id) == "completed"
        info, message = await b.hub.message(handle.id)  # type: ignore[misc]
        assert message.blocks[0].text == TEXT
        seq = info.seq
        # The old producer wakes up: its append is refused (fenced), nothing changes.
        release.set()
        async with asyncio.timeout(5):
            while not outcome:
                await asyncio.sleep(0.01)
        assert outcome[0] is not None
        info2, message2 = await b.hub.message(handle.id)  # type: ignore[misc]
        assert (info2.seq, info2.status) == (seq, "completed")
        assert message2.blocks[0].text == TEXT
        # Every op once, in order: the log replays to the same message.
        cursor = await b.hub.subscribe(handle.id, 0)
        seqs = []
        while not cursor.done:
            seqs += [op.seq for op in await cursor.read(1)]
        assert seqs == list(range(1, seq + 1))


async def test_without_a_registered_continuation_the_stream_fails_as_before(redis_server) -> None:
    prefix = "tk" + secrets.token_hex(4)
    a = Streams(_hub(redis_server.url, prefix), coalesce_ms=0)
    b = Streams(_hub(redis_server.url, prefix), coalesce_ms=0)  # registers nothing
    a.register_continuation("text", _continue_text)
    hold = asyncio.Event()

    async def produce(w: StreamWriter) -> None:
        await w.text("partial")
        await hold.wait()

    async with a, b:
        handle = await a.start(produce, resume="text", resume_args={"text": TEXT})
        await asyncio.sleep(0.1)
        await _die(a)
        assert await _wait_status(b, handle.id) == "failed"
        _, message = await b.hub.message(handle.id)  # type: ignore[misc]
        assert message.blocks[0].text == "partial"
        assert message.error is not None and message.error["type"] == "producer_lost"
        hold.set()


@pytest.mark.parametrize("metadata", [None, {"chat": "c-1"}])
async def test_a_lost_stream_is_stored_and_reported_where_its_watchdog_ended_it(
    redis_server, metadata
) -> None:
    """A stream with no ``resume`` whose process dies: the process whose watchdog ends it
    (failed, "producer lost") stores it in its store (shared, e.g. Postgres, it outlives the
    hub's retention) and runs its ``on_end``, with the stream's metadata."""
    from tokenwire.streams.store import MemoryStore

    prefix = "tk" + secrets.token_hex(4)
    ended: list[tuple[Any, Any]] = []
    a = Streams(_hub(redis_server.url, prefix), coalesce_ms=0)
    b = Streams(
        _hub(redis_server.url, prefix),
        store=MemoryStore(),
        coalesce_ms=0,
        on_end=lambda row, message: ended.append((row, message)),
    )
    hold = asyncio.Event()

    async def produce(w: StreamWriter) -> None:
        await w.text("partial")
        await hold.wait()

    async with a, b:
        handle = await a.start(produce, owner="u1", metadata=metadata)
        await asyncio.sleep(0.1)
        await _die(a)
        assert await _wait_status(b, handle.id) == "failed"
        async with asyncio.timeout(5):
            while not ended:
                await asyncio.sleep(0.02)
        row, message = ended[0]
        assert (row.id, row.owner, row.status, row.metadata) == (
            handle.id,
            "u1",
            "failed",
            metadata,
        )
        assert message.blocks[0].text == "partial"
        assert message.error["type"] == "producer_lost"
        stored = await b.store.get(handle.id)
        assert stored is not None and stored.seq == row.seq and stored.metadata == metadata
        assert len(ended) == 1
        hold.set()


async def test_a_stream_its_own_process_ended_in_an_outage_is_reported_once(redis_server) -> None:
    """Redis unreachable past the grace: the producer ends its stream here (stored, on_end
    run); once Redis is back this process's watchdog ends it "producer lost" in the hub, and
    the stream is settled, not reported a second time."""
    from tokenwire.errors import HubUnavailable
    from tokenwire.streams.store import MemoryStore

    hub = RedisHub(
        redis_server.url,
        key_prefix="tk" + secrets.token_hex(4),
        lease_ttl_s=LEASE_S,
        watchdog_interval_s=0.1,
        block_s=1.0,
        unavailable_grace_s=0.2,
    )
    ended: list[str] = []
    streams = Streams(
        hub, store=MemoryStore(), coalesce_ms=0, on_end=lambda row, m: ended.append(row.status)
    )
    real_append = hub.append
    outage = asyncio.Event()

    async def append(stream_id: str, ops: Any) -> None:
        if outage.is_set():
            raise HubUnavailable("Redis is away (test)")
        await real_append(stream_id, ops)

    hub.append = append  # type: ignore[method-assign]

    async def produce(w: StreamWriter) -> None:
        await w.text("partial")
        outage.set()
        await w.text(" more")

    async with streams:
        handle = await streams.start(produce)
        await asyncio.sleep(0.5)
        outage.clear()
        assert await _wait_status(streams, handle.id) == "failed"
        await asyncio.sleep(0.5)  # (time for a second report, if there were one)
        assert ended == ["failed"]


async def test_a_lost_streams_row_stored_by_its_dead_producer_becomes_the_hubs(
    redis_server,
) -> None:
    """The producer stored its final message (``completed``) and died in ``on_end``, before
    ``message.end`` reached Redis; another process's watchdog ends it ``failed`` (what readers
    saw). The shared store then holds the hub's version (the same answer before and after
    Redis forgets the stream), and that process does not run ``on_end`` a second time."""
    from tokenwire.streams.store import MemoryStore

    prefix = "tk" + secrets.token_hex(4)
    shared = MemoryStore()
    in_hook, forever = asyncio.Event(), asyncio.Event()

    async def dies_in_on_end(row: Any, message: Any) -> None:
        in_hook.set()
        await forever.wait()

    b_ended: list[str] = []
    a = Streams(_hub(redis_server.url, prefix), store=shared, on_end=dies_in_on_end)
    b = Streams(
        _hub(redis_server.url, prefix),
        store=shared,
        on_end=lambda row, message: b_ended.append(row.status),
    )

    async def produce(w: StreamWriter) -> None:
        await w.text("hello")
        await w.text(" world")

    async with a, b:
        try:
            handle = await a.start(produce, metadata={"chat": 1})
            await in_hook.wait()
            await _die(a)
            assert await _wait_status(b, handle.id) == "failed"
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(3):
                    while (await shared.get(handle.id)).status != "failed":  # type: ignore[union-attr]
                        await asyncio.sleep(0.02)
            row = await shared.get(handle.id)
            _, hub_message = await b.hub.message(handle.id)  # type: ignore[misc]
            assert row is not None and row.message == hub_message.to_json()
            assert row.metadata == {"chat": 1} and b_ended == []
        finally:
            forever.set()


async def test_a_stream_lost_while_the_finding_process_closes_is_still_stored(
    redis_server,
) -> None:
    """A rolling deploy: process A dies while B is shutting down (its own stream's on_end
    takes a while). B's watchdog ends A's stream; B still stores it and reports it before
    its close() returns (nobody else will: it has ended in the hub)."""
    from tokenwire.streams.store import MemoryStore

    prefix = "tk" + secrets.token_hex(4)
    shared = MemoryStore()
    b_ended: list[str] = []
    own: dict[str, str] = {}

    async def b_on_end(row: Any, message: Any) -> None:
        b_ended.append("own" if row.id == own.get("id") else "lost")
        if row.id == own.get("id"):
            await asyncio.sleep(LEASE_S * 4)  # (the watchdog runs meanwhile)

    async def forever(w: StreamWriter) -> None:
        await w.text("hello")
        await asyncio.Event().wait()

    a = Streams(_hub(redis_server.url, prefix), store=shared)
    b = Streams(_hub(redis_server.url, prefix), store=shared, on_end=b_on_end)
    await a.open()
    await b.open()
    try:
        lost = await a.start(forever, metadata={"chat": 1})
        own["id"] = (await b.start(forever)).id
        await asyncio.sleep(0.2)
        await _die(a)
        await b.close()
        row = await shared.get(lost.id)
        assert row is not None and row.status == "failed" and row.metadata == {"chat": 1}
        assert sorted(b_ended) == ["lost", "own"]
    finally:
        for task in list(a._tasks):
            task.cancel()
        await asyncio.gather(*a._tasks, return_exceptions=True)


@pytest.mark.parametrize("next_step", ["write", "return", "raise"])
async def test_a_producer_that_wakes_after_its_stream_was_ended_elsewhere_reports_nothing(
    redis_server, next_step: str
) -> None:
    """A producer frozen past its lease (a stall) wakes after another process's watchdog
    ended its stream "producer lost" (stored there, on_end run there): its next write is
    refused, or its end (it returns) finds the stream no longer its own before storing, and
    it neither stores its own version nor runs on_end a second time."""
    from tokenwire.streams.store import MemoryStore

    prefix = "tk" + secrets.token_hex(4)
    shared = MemoryStore()
    ended: list[tuple[str, str]] = []
    a = Streams(
        _hub(redis_server.url, prefix),
        store=shared,
        on_end=lambda row, message: ended.append(("a", row.status)),
    )
    b = Streams(
        _hub(redis_server.url, prefix),
        store=shared,
        on_end=lambda row, message: ended.append(("b", row.status)),
    )
    wake = asyncio.Event()
    outcome: list[str] = []

    async def produce(w: StreamWriter) -> None:
        await w.text("before the stall")
        await wake.wait()
        if next_step == "return":
            return
        if next_step == "raise":  # (the failed end it would write finds the stream fenced)
            raise RuntimeError("the producer fails after its stall")
        try:
            await w.text(" after it")
        except Exception as exc:  # (what the producer sees: the stream is no longer its)
            outcome.append(type(exc).__name__)
            raise

    async with a, b:
        handle = await a.start(produce, metadata={"chat": 2})
        await asyncio.sleep(0.1)
        await _die(a)  # (frozen: no lease renewal, no watchdog)
        assert await _wait_status(b, handle.id) == "failed"
        async with asyncio.timeout(5):
            while not ended:
                await asyncio.sleep(0.02)
        wake.set()
        await _until_ended(handle.writer)
        row = await shared.get(handle.id)
        _, message = await b.hub.message(handle.id)  # type: ignore[misc]
        assert row is not None and row.message == message.to_json()
        assert message.text == "before the stall"
    assert ended == [("b", "failed")]
    assert outcome == (["HubLost"] if next_step == "write" else [])


@pytest.mark.parametrize("how", ["flush", "wake", "catch", "catch-block"])
async def test_a_fence_first_heard_by_a_coalesced_flush_still_fences_the_producer(
    redis_server, how: str
) -> None:
    """A producer frozen past its lease while its held text's flush (a timer's task) hangs
    on Redis; another process takes the stream over and is still continuing when it wakes.
    Whoever hears "taken over" first, the producer's writes from then on are fenced, never a
    seq mismatch read as a lost hub (which stored its own ``failed`` answer and ran on_end
    next to the taker's): ``flush``, the flush hears it; ``wake``, the whole process wakes
    and its lease renewal hears it first (its hub forgets the stream's state); ``catch``,
    no coalescing: the producer's own write hears it, and it catches that and writes on
    (``catch-block``: its next write starts a block)."""
    from tokenwire.streams.store import MemoryStore

    text = "abcdefghijklmnopqrstuvwxyz" * 3
    prefix = "tk" + secrets.token_hex(4)
    shared = MemoryStore()
    ended: list[tuple[str, str]] = []

    async def slow_continue(w: StreamWriter, resumed: Resumed) -> None:
        done = "".join(b.text for b in resumed.message.blocks if b.type == "text")
        for char in text[len(done) :]:
            await w.text(char)
            await asyncio.sleep(0.03)  # (still producing when the frozen one wakes)

    coalesce_ms = 0 if how.startswith("catch") else 20
    a = Streams(
        _hub(redis_server.url, prefix),
        store=shared,
        coalesce_ms=coalesce_ms,
        on_end=lambda row, message: ended.append(("a", row.status)),
    )
    b = Streams(
        _hub(redis_server.url, prefix),
        store=shared,
        coalesce_ms=coalesce_ms,
        on_end=lambda row, message: ended.append(("b", row.status)),
    )
    for streams in (a, b):
        streams.register_continuation("text", slow_continue)
    stall, wake = asyncio.Event(), asyncio.Event()
    producer: list[asyncio.Task | None] = [None]
    real_append = a.hub.append

    async def stalled_append(stream_id, ops):  # type: ignore[no-untyped-def]
        # (a partition between this process and Redis: the flush's append hangs till healed)
        if stall.is_set() and asyncio.current_task() is not producer[0]:
            await wake.wait()
        return await real_append(stream_id, ops)

    a.hub.append = stalled_append  # type: ignore[method-assign]

    async def produce(w: StreamWriter) -> None:
        producer[0] = asyncio.current_task()
        await w.text(text[:10])
        if how.startswith("catch"):
            await wake.wait()
            with contextlib.suppress(Exception):
                await w.text("Y")  # refused: fenced
            if how == "catch-block":  # (a new block, whose index the taker's log has used)
                await w.tool_call("call_1", "lookup", {"q": 1})
            await w.text("W")  # ... and so is the next one
            return
        stall.set()
        await w.text("Z")  # (held for coalescing: the flush timer's task appends it)
        await asyncio.sleep(0.05)
        await wake.wait()
        await asyncio.sleep(0.2)  # (the flush hears the fence)
        await w.text("Y")  # the producer's own next write

    async with a, b:
        handle = await a.start(produce, resume="text", resume_args={})
        await asyncio.sleep(0.4)
        await _die(a)
        async with asyncio.timeout(10):
            while (await b.hub.info(handle.id)).seq <= 6:  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
        if how == "wake":  # (its lease renewal runs again, and finds the stream taken)
            a.hub._start_tasks()  # type: ignore[attr-defined]
            await asyncio.sleep(LEASE_S / 3 + 0.1)
        wake.set()
        assert await _wait_status(b, handle.id, 20) == "completed"
        await _until_ended(handle.writer)
        _, message = await b.hub.message(handle.id)  # type: ignore[misc]
        assert message.text == text
    assert ended == [("b", "completed")]


async def test_a_fenced_producer_that_returns_leaves_the_takers_lease_alone(redis_server) -> None:
    """A producer frozen past its lease wakes after another process took its stream over and
    simply returns: fenced, it releases the stream, and must not delete the lease, which is
    the taker's now (a third process's watchdog then took the live stream over again)."""
    text = "abcdefghijklmnopqrstuvwxyz" * 3
    prefix = "tk" + secrets.token_hex(4)

    async def slow_continue(w: StreamWriter, resumed: Resumed) -> None:
        done = "".join(b.text for b in resumed.message.blocks if b.type == "text")
        for char in text[len(done) :]:
            await w.text(char)
            await asyncio.sleep(0.03)

    a, b, c = (Streams(_hub(redis_server.url, prefix), coalesce_ms=0) for _ in range(3))
    for streams in (a, b, c):
        streams.register_continuation("text", slow_continue)
    wake = asyncio.Event()

    async def produce(w: StreamWriter) -> None:
        await w.text(text[:10])
        await wake.wait()  # (then returns: its end)

    async with a, b, c:
        handle = await a.start(produce, resume="text", resume_args={})
        await asyncio.sleep(0.3)
        await _die(c)  # (not watching for now: B takes the stream over)
        await _die(a)
        async with asyncio.timeout(10):
            while (await b.hub.info(handle.id)).seq <= 6:  # type: ignore[union-attr]
                await asyncio.sleep(0.05)
        c.hub._start_tasks()  # type: ignore[attr-defined]
        await asyncio.sleep(0.3)
        wake.set()
        await _until_ended(handle.writer)
        lease = await b.hub.r.get(b.hub.keys.lease(handle.id))  # type: ignore[attr-defined]
        assert lease is not None and lease.decode() == b.hub.producer_id  # type: ignore[attr-defined]
        assert await _wait_status(b, handle.id, 30) == "completed"
        meta = b.hub.keys.meta(handle.id)  # type: ignore[attr-defined]
        assert await b.hub.r.hget(meta, "epoch") == b"1"  # type: ignore[attr-defined]
        _, message = await b.hub.message(handle.id)  # type: ignore[misc]
        assert message.text == text


async def test_a_finished_answer_whose_stream_redis_lost_is_still_stored_once(
    redis_server,
) -> None:
    """Redis lost the stream's keys (a restart without persistence) while its producer ran:
    that is not fencing (nobody else has the stream), so the producer stores its own final
    message and runs on_end, once."""
    from tokenwire.streams.store import MemoryStore

    store = MemoryStore()
    ended: list[str] = []
    hub = _hub(redis_server.url, "tk" + secrets.token_hex(4))
    streams = Streams(
        hub, store=store, coalesce_ms=0, on_end=lambda row, m: ended.append(row.status)
    )
    go = asyncio.Event()

    async def produce(w: StreamWriter) -> None:
        await w.text("the whole answer")
        await go.wait()

    async with streams:
        handle = await streams.start(produce)
        await asyncio.sleep(0.2)
        await hub.r.delete(hub.keys.meta(handle.id), hub.keys.log(handle.id))
        go.set()
        await _until_ended(handle.writer)
        row = await store.get(handle.id)
    assert row is not None and row.status == "completed" and ended == ["completed"]


async def test_exactly_one_process_takes_over(redis_server) -> None:
    prefix = "tk" + secrets.token_hex(4)
    owner = _hub(redis_server.url, prefix)
    watchers = [_hub(redis_server.url, prefix) for _ in range(6)]
    await owner.start()
    won: list[str] = []
    try:
        await owner.create("st_race", owner=None)
        await owner.set_resume("st_race", b'{"v":1,"name":"x","args":null}')
        for hub in watchers:
            await hub.start()
            for task in hub._tasks:  # (only the explicit calls below)
                task.cancel()

            async def taken(t, hub=hub) -> bool:  # type: ignore[no-untyped-def]
                won.append(hub.producer_id)
                return True

            hub.on_takeover = taken
        for task in owner._tasks:
            task.cancel()
        await owner.r.delete(owner.keys.lease("st_race"))
        results = await asyncio.gather(*(h.take_over("st_race") for h in watchers))
        assert results.count(True) == 1 and len(won) == 1
        assert results.count(None) == len(watchers) - 1  # (the lease is the winner's now)
        # The original producer is fenced: its append is refused.
        from tokenwire.protocol import MessageStart, encode

        with pytest.raises(Exception) as refused:
            await owner.append("st_race", [encode(MessageStart(1, "st_race", None))])
        assert "taken over" in str(refused.value)
    finally:
        for hub in [owner, *watchers]:
            try:
                await hub.close()
            except HubUnavailable:
                pass


async def test_memory_hub_has_no_takeover() -> None:
    streams = Streams(coalesce_ms=0)
    streams.register_continuation("text", _continue_text)
    async with streams:
        assert not streams.can_resume
        assert not hasattr(streams.hub, "on_takeover")
        handle = await streams.start(
            lambda w: w.text("hi"), resume="text", resume_args={"text": "hi"}
        )
        assert await streams.wait(handle.id, 5) == "completed"
        with pytest.raises(ValueError, match="no continuation"):
            await streams.start(lambda w: w.text("x"), resume="unknown")


def test_partial_message_is_exactly_the_emitted_text() -> None:
    blocks = [
        Block("reasoning", text="Let me th"),
        Block("text", text="Grü"),
        Block("source", attrs={"url": "https://x", "title": None}),
        Block("text", text="ße"),
    ]
    assert partial_message(blocks) == {
        "role": "assistant",
        "content": "Grüße",
        "reasoning_content": "Let me th",
    }
    assert partial_message([Block("tool_call", attrs={"id": "c", "name": "f"})]) is None
    assert partial_message([Block("reasoning", attrs={"signature": "s"}, text="x")]) is None
    assert partial_message([Block("text", text="a"), Block("reasoning", text="b")]) is None


async def test_kill_9_of_the_producing_gateway_process(redis_server) -> None:
    """3 gateway processes; kill -9 the producer at random points; see bench/takeover.py."""
    await kill_9_trials(redis_server.url, int(os.environ.get("TOKENWIRE_TAKEOVER_TRIALS", "20")))


async def kill_9_trials(redis_url: str, trials: int) -> None:
    """``trials`` streams cut by a kill -9 each continue on a survivor: nothing lost,
    repeated or reordered, and each taken over within the lease plus slack."""
    report = await bench_takeover.run(redis_url, trials=trials, concurrency=10, seed=3)
    print("\n" + report.summary())
    assert not report.problems, "\n".join(report.problems[:5]) + "\n" + report.logs
    assert sum(o.cut_in != "ended" for o in report.outcomes) >= trials
    times = report.takeovers
    assert times, "no stream was in progress at a kill"
    # Slack: the mock's 150 ms TTFT, the requests, and a loaded machine (the replacement
    # process boots while the survivors take over, on shared cores).
    bound = bench_takeover.LEASE_S + bench_takeover.WATCHDOG_S + 1.5
    print(
        f"takeover: min {min(times):.3f} s, median {statistics.median(times):.3f} s, "
        f"max {max(times):.3f} s (bound {bound:.2f} s)"
    )
    assert max(times) <= bound


async def test_think_tag_reasoning_is_not_continued_but_regenerated(redis_server, caplog) -> None:
    """With ``<think>`` tags the raw content is not rebuildable from the blocks (tags and the
    whitespace after them are dropped): the producer marks the stream inexact, and the taker
    supersedes the step even with ``continuation = vllm``; the final message is the
    uninterrupted answer."""
    from conftest import serve_asgi

    from tokenwire.gateway import Settings
    from tokenwire.gateway.producer import RESUME, Generation, resume_args
    from tokenwire.gateway.service import Gateway
    from tokenwire.mock import create_mock_app
    from tokenwire.protocol import Message, apply_op

    prefix = "tk" + secrets.token_hex(4)
    body = {
        "model": "mock-reasoning",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 60,
        "stream": True,
        "mock": {"tps": 40},
    }
    with serve_asgi(create_mock_app(reasoning_style="think-tags")) as mock_url:
        gateways = []
        for _ in range(2):
            settings = Settings(
                upstream=f"{mock_url}/v1", continuation="vllm", coalesce_ms=0, redis_url="x"
            )
            gw = Gateway(settings, _hub(redis_server.url, prefix))
            await gw.startup()
            gateways.append(gw)
        a, b = gateways
        try:

            async def start(gw: Gateway, data: dict) -> str:
                raw = msgspec.json.encode(data)
                path, headers, fmt = gw.stream_request
                assert gw.upstream is not None
                handle = await gw.streams.start(
                    Generation(gw.upstream, raw, fmt, path=path, headers=headers),
                    resume=RESUME,
                    resume_args=resume_args(raw, "chat", True),
                    coalesce_ms=0,
                )
                return handle.id

            reference = await start(b, {**body, "mock": {"tps": 0}})
            assert await _wait_status(b.streams, reference) == "completed"
            _, want = await b.hub.message(reference)  # type: ignore[misc]

            stream_id = await start(a, body)
            async with asyncio.timeout(5):  # some reasoning out, from inside <think>
                while (info := await b.hub.info(stream_id)) is None or info.seq < 6:
                    await asyncio.sleep(0.02)
            await _die(a.streams)
            assert await _wait_status(b.streams, stream_id, 15) == "completed"
            cursor = await b.hub.subscribe(stream_id, 0)
            ops = []
            while not cursor.done:
                ops += await cursor.read(1)
            assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
            assert any(op.type == "step.reset" for op in ops)
            got = Message.empty()
            for op in ops:
                apply_op(got, op.op)
            assert [blk.to_dict() for blk in got.blocks] == [blk.to_dict() for blk in want.blocks]
            assert got.blocks[0].type == "reasoning" and got.finish_reason == want.finish_reason
            # Superseded without asking the upstream to continue (which could not be exact).
            assert not [r for r in caplog.records if "did not continue" in r.getMessage()]
        finally:
            for gw in gateways:
                await gw.shutdown()


async def test_a_live_producer_keeps_its_stream_and_a_fenced_one_stops_renewing(
    redis_server,
) -> None:
    prefix = "tk" + secrets.token_hex(4)
    # (a 0.6 s lease renewed every 0.2 s: a stall of the test's loop under load is no expiry)
    hub = RedisHub(redis_server.url, key_prefix=prefix, lease_ttl_s=0.6, watchdog_interval_s=0.05)
    await hub.start()
    try:
        await hub.create("st_live", owner=None)
        await hub.set_resume("st_live", b'{"v":1,"name":"x","args":null}')
        await asyncio.sleep(1.5)  # > 2 leases: renewed (epoch-checked) all along
        assert await hub.r.pttl(hub.keys.lease("st_live")) > 0
        assert "st_live" in hub._leased
        # Another process takes it over (bumps the epoch): our renewals no longer hold it.
        await hub.r.hincrby(hub.keys.meta("st_live"), "epoch", 1)
        await hub.r.set(hub.keys.lease("st_live"), "other", px=300)
        await asyncio.sleep(0.9)
        assert await hub.r.get(hub.keys.lease("st_live")) is None
        assert "st_live" not in hub._leased  # (so close() leaves the taker's lease alone)
    finally:
        await hub.close()


@pytest.mark.parametrize("learns", ["append", "renewal"])
async def test_a_fenced_producer_cannot_end_the_stream_it_lost(redis_server, learns) -> None:
    """A producer frozen past its lease (not dead: a stall under load) wakes up after another
    process took its stream over. It learns that from its refused append or its refused lease
    renewal; the failed end it then writes fits the log (the taker has not written yet) and
    reloads the stream's state, yet must still be fenced: only the taker ends the stream."""
    from tokenwire.errors import StreamEnded
    from tokenwire.protocol import BlockStart, MessageEnd, MessageStart, encode

    prefix = "tk" + secrets.token_hex(4)
    owner, taker = _hub(redis_server.url, prefix), _hub(redis_server.url, prefix)
    await owner.start()
    await taker.start()
    stopped = [taker] if learns == "renewal" else [owner, taker]
    for hub in stopped:  # (only the explicit calls below)
        for task in hub._tasks:
            task.cancel()

    async def taken(t) -> bool:  # type: ignore[no-untyped-def]
        return True  # (the taker's producer has not written anything yet)

    taker.on_takeover = taken
    sid = "st_fenced"
    try:
        await owner.create(sid, owner=None)
        await owner.set_resume(sid, b'{"v":1,"name":"x","args":null}')
        await owner.append(sid, [encode(MessageStart(1, sid, None))])
        if learns == "append":
            await owner.r.delete(owner.keys.lease(sid))
            assert await taker.take_over(sid) is True
            with pytest.raises(StreamEnded, match="taken over"):
                await owner.append(sid, [encode(BlockStart(2, 0, {"type": "text"}))])
        else:  # the takeover as the TAKEOVER script does it, past the frozen renewer
            await owner.r.hincrby(owner.keys.meta(sid), "epoch", 1)
            await owner.r.set(owner.keys.lease(sid), "other", px=int(LEASE_S * 1000))
            async with asyncio.timeout(5):
                while sid in owner._leased:
                    await asyncio.sleep(0.05)
        failed = MessageEnd(2, "failed", None, None, {"message": "lost the hub"})
        with pytest.raises(StreamEnded):
            await owner.append(sid, [encode(failed)])
        info = await taker.info(sid)
        assert info is not None and (info.status, info.seq) == ("in_progress", 1)
        await owner.release(sid)  # (what the fenced writer does last: leaves the taker alone)
        assert await owner.r.exists(owner.keys.lease(sid))
        if learns == "append":
            await taker.append(sid, [encode(MessageEnd(2, "completed", "stop", None, None))])
            info = await taker.info(sid)
            assert info is not None and (info.status, info.seq) == ("completed", 2)
        assert sid not in owner._epochs  # (forgotten once its writer let go)
    finally:
        for hub in (owner, taker):
            with contextlib.suppress(HubUnavailable):
                await hub.close()


async def test_a_takeover_gives_the_streams_keys_a_live_expiry_again(redis_server) -> None:
    """The keys of a stream whose producer died run out a retention after its last renewal.
    A process that takes it over late (every process died, one came back) used to leave
    them to expire under it; its next ops were refused and the stream failed."""
    prefix = "tk" + secrets.token_hex(4)
    owner, taker = _hub(redis_server.url, prefix), _hub(redis_server.url, prefix)
    await owner.start()
    await taker.start()
    try:
        for task in [*owner._tasks, *taker._tasks]:
            task.cancel()  # (only the explicit calls below)
        from tokenwire.protocol import MessageStart, encode

        await owner.create("st_late", owner=None)
        await owner.set_resume("st_late", b'{"v":1,"name":"x","args":null}')
        await owner.append("st_late", [encode(MessageStart(1, "st_late", None))])
        keys = owner.keys
        await owner.r.delete(keys.lease("st_late"))
        for key in (keys.meta("st_late"), keys.log("st_late")):
            await owner.r.pexpire(key, 500)  # (about to run out: the owner died long ago)

        async def taken(t) -> bool:  # type: ignore[no-untyped-def]
            return True

        taker.on_takeover = taken
        assert await taker.take_over("st_late") is True
        for key in (keys.meta("st_late"), keys.log("st_late")):
            assert await taker.r.pttl(key) > 0.9 * taker._live_expiry_ms(), key
    finally:
        for hub in (owner, taker):
            with contextlib.suppress(HubUnavailable):
                await hub.close()
