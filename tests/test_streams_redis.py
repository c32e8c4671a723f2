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


def test_a_view_cursor_inside_the_trimmed_log_of_an_ended_stream_is_exact(
    redis_server, prefix
) -> None:
    """A long stream's log is trimmed and its newest snapshot is at its end: an openai view
    cursor a few ops before the end still resumes exactly (it used to be 410)."""
    import httpx
    import msgspec
    from conftest import serve_asgi, snapshot_when_ended
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route

    from tokenwire.protocol import SSEDecoder

    streams = Streams(
        hub=RedisHub(redis_server.url, key_prefix=prefix, max_log_ops=40), coalesce_ms=0
    )
    words = [f"w{i} " for i in range(200)]

    async def start(request: Request) -> JSONResponse:
        async def answer(w) -> None:  # type: ignore[no-untyped-def]
            for word in words:
                await w.text(word)

        return JSONResponse({"id": (await streams.start(answer)).id})

    app = Starlette(
        lifespan=streams.lifespan,
        routes=[Route("/start", start, methods=["POST"]), Mount("/tw", streams.asgi())],
    )
    with serve_asgi(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        stream_id = http.post("/start").json()["id"]
        snap = snapshot_when_ended(http, f"/tw/{stream_id}")
        assert snap["status"] == "completed" and snap["seq"] == 204
        for back in (2, 5, 12):
            response = http.get(
                f"/tw/{stream_id}/events",
                params={"format": "openai"},
                headers={"Last-Event-ID": str(204 - back)},
            )
            assert response.status_code == 200, response.text
            chunks = [
                msgspec.json.decode(e.data)
                for e in SSEDecoder().feed(response.content)
                if e.data != "[DONE]"
            ]
            text = "".join(
                c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]
            )
            # ops: message.start, block.start, 200 deltas (seq 3..202), block.end, message.end
            assert text == "".join(words[200 - back + 2 :])


@pytest.mark.parametrize("lost_at", ["middle", "end"])
async def test_an_append_whose_reply_was_lost_is_not_the_streams_end(
    redis_server, prefix, lost_at: str
) -> None:
    """Redis ran an append and its reply was lost (a stall, a cut connection): the writer's
    retry finds its own ops already in the log, byte for byte, and goes on, so the answer
    completes whole, once, rather than failing on the seq check."""
    hub = RedisHub(redis_server.url, key_prefix=prefix, block_s=1.0)
    async with Streams(hub, coalesce_ms=0) as streams:
        real = hub._scripts["append"]
        calls = {"n": 0, "lost": 0}

        async def lose_one_reply(*args, **kwargs):  # type: ignore[no-untyped-def]
            reply = await real(*args, **kwargs)
            calls["n"] += 1
            ending = any(b'"message.end"' in bytes(a) for a in kwargs["args"][8:])
            if not calls["lost"] and (ending if lost_at == "end" else calls["n"] == 4):
                calls["lost"] += 1
                raise ConnectionError("reply lost")
            return reply

        hub._scripts["append"] = lose_one_reply

        async def produce(w):  # type: ignore[no-untyped-def]
            for n in range(8):
                await w.text(f"word{n} ")

        handle = await streams.start(produce)
        assert await streams.wait(handle.id, 10) == "completed"
        assert calls["lost"] == 1
        message = await streams.message(handle.id)
        assert message.text == "".join(f"word{n} " for n in range(8))
        ops = [op async for op in streams.follow(handle.id)]
        assert [op.seq for op in ops] == list(range(1, len(ops) + 1))
        assert apply_ops(ops).to_dict() == message.to_dict()
