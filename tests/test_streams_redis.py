"""Streams across processes over a real Redis: follow, cancel and ids from another process."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import textwrap

import pytest

from tokenwire import Streams
from tokenwire.errors import StreamExists
from tokenwire.hub.redis import RedisHub
from tokenwire.protocol import apply_ops

_PRODUCER = textwrap.dedent(
    """
    import asyncio, sys
    from tokenwire import Streams
    from tokenwire.hub.redis import RedisHub

    async def main(url, prefix):
        hub = RedisHub(url, key_prefix=prefix, block_s=1.0, watchdog_interval_s=0.2)
        async with Streams(hub, coalesce_ms=0) as streams:
            async def produce(w):
                await w.source("https://docs.example/a", "A")
                n = 0
                while True:  # until cancelled from the other process
                    await w.text(f"tick {n} ")
                    n += 1
                    await asyncio.sleep(0.05)

            handle = await streams.start(produce, owner="u1", stream_id="shared-1")
            print("ready", handle.id, flush=True)
            print("ended", await streams.wait(handle.id, 30), flush=True)

    asyncio.run(main(sys.argv[1], sys.argv[2]))
    """
)


@pytest.fixture
def prefix() -> str:
    return "t" + secrets.token_hex(4)


async def test_follow_and_cancel_a_stream_produced_by_another_process(redis_server, prefix) -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _PRODUCER, redis_server.url, prefix], stdout=subprocess.PIPE
    )
    hub = RedisHub(redis_server.url, key_prefix=prefix, block_s=1.0, watchdog_interval_s=0.2)
    try:
        async with Streams(hub) as streams:
            assert child.stdout is not None
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
            assert line.split() == [b"ready", b"shared-1"]
            with pytest.raises(StreamExists):  # the id is taken, in the other process
                await streams.start(lambda w: w.text("x"), stream_id="shared-1")
            ops = []
            async for op in streams.follow("shared-1"):
                ops.append(op)
                if len(ops) == 8:
                    assert await streams.cancel("shared-1") == "in_progress"
            assert ops[-1].type == "message.end" and ops[-1].op.status == "cancelled"
            assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
            message = await streams.message("shared-1")
            assert apply_ops(ops).to_dict() == message.to_dict()
            assert message.to_dict()["blocks"][1]["text"].startswith("tick 0 tick 1 ")
            # resuming from the middle yields exactly the rest
            tail = [op async for op in streams.follow("shared-1", after=5)]
            assert [op.seq for op in tail] == [op.seq for op in ops[5:]]
        ended = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
        assert ended.split() == [b"ended", b"cancelled"]
    finally:
        child.kill()
        child.wait()
