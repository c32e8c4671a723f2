"""Transient ops (protocol v1.1) on the reading side: the gateway's SSE writer sends their
frames without an ``id:``, and the Python clients expose them without applying them."""

from __future__ import annotations

import asyncio

from tests import v11_vectors
from tokenwire.client._state import StreamState
from tokenwire.gateway.metrics import Metrics
from tokenwire.gateway.streaming import OpStreamResponse
from tokenwire.hub import MemoryHub
from tokenwire.protocol import Transient, is_transient


async def sse_body(ops) -> bytes:
    """The bytes ``OpStreamResponse`` writes for a live reader of a stream made of ``ops``."""
    hub = MemoryHub()
    await hub.create("s", owner=None)
    cursor = await hub.subscribe("s", 0)
    sent: list[bytes] = []
    gone = asyncio.Event()

    async def receive() -> dict:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message.get("body", b""))

    response = OpStreamResponse(cursor, metrics=Metrics(), keepalive_s=5.0)
    task = asyncio.create_task(response({"type": "http"}, receive, send))
    for op in ops:  # one op at a time, as a producer would
        await hub.publish("s", [op])
        await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await task
    return b"".join(sent)


async def test_the_sse_writer_sends_transient_frames_without_an_id() -> None:
    ops, _ = v11_vectors.assemble("v11_agent")
    body = await sse_body(ops)
    assert body == b"".join(op.sse for op in ops)
    assert body.count(b'data:{"type":"transient"') == 3
    for frame in body.split(b"\n\n"):
        if b'"transient"' in frame:
            assert frame.startswith(b"data:")  # no id: line, so Last-Event-ID stays put


async def test_the_client_state_exposes_transients_and_never_applies_them() -> None:
    ops, message = v11_vectors.assemble("v11_agent")
    body = await sse_body(ops)
    seen: list[Transient] = []
    state = StreamState("st_v11_agent", on_transient=seen.append)
    got = []
    for i in range(0, len(body), 7):  # any split of the bytes
        got += state.feed(body[i : i + 7])
    assert state.message.to_json() == message.to_json()
    assert [(t.name, t.value) for t in seen] == [
        ("progress", 0.1),
        ("progress", 0.5),
        ("progress", 1.0),
    ]
    assert state.transients == {"progress": 1.0}
    assert sum(type(op) is Transient for op in got) == 3  # iterating yields them too
    assert state.seq == max(op.seq for op in ops)


def test_a_resumed_client_is_not_moved_by_transients() -> None:
    """A reconnect resumes after the last real op, even when a transient came after it."""
    ops, message = v11_vectors.assemble("v11_agent")
    k = next(i for i, op in enumerate(ops) if is_transient(op))
    state = StreamState("st_v11_agent")
    state.feed(b"".join(op.sse for op in ops[: k + 1]))
    assert state.seq == ops[k - 1].seq
    assert state.headers()["Last-Event-ID"] == str(ops[k - 1].seq)
    state.reset_connection()
    state.feed(b"".join(op.sse for op in ops if op.seq > state.seq))  # the gateway's resume
    assert state.message.to_json() == message.to_json()
