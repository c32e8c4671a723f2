"""Views of a stream the hub forgot (retention passed; only the stored final message is left):
a cursor the log can no longer answer exactly is refused with 410 ``cursor_expired``, never
answered with the whole text again after it (docs/views.md, "Resuming a forgotten stream")."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import msgspec
import pytest
from conftest import serve_asgi, snapshot_when_ended
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from tokenwire import Streams, StreamWriter
from tokenwire.hub import MemoryHub
from tokenwire.protocol import SSEDecoder
from tokenwire.streams.store import MemoryStore

WORDS = ("hello ", "hello ", "world ", "again")


@pytest.fixture(scope="module")
def stored() -> Iterator[tuple[httpx.Client, str, int]]:
    """(a client of the host app, the id of a stream the hub forgot, its final seq)."""
    hub = MemoryHub(retention_s=0.2)
    streams = Streams(hub=hub, store=MemoryStore(), coalesce_ms=0)

    async def start(request: Request) -> JSONResponse:
        async def answer(w: StreamWriter) -> None:
            for word in WORDS:
                await w.text(word)

        return JSONResponse({"id": (await streams.start(answer)).id})

    async def known(request: Request) -> JSONResponse:
        return JSONResponse({"known": await hub.info(request.path_params["id"]) is not None})

    app = Starlette(
        lifespan=streams.lifespan,
        routes=[
            Route("/start", start, methods=["POST"]),
            Route("/known/{id}", known),
            Mount("/tw", streams.asgi()),
        ],
    )
    with serve_asgi(app) as base, httpx.Client(base_url=base, timeout=10) as http:
        stream_id = http.post("/start").json()["id"]
        snap = snapshot_when_ended(http, f"/tw/{stream_id}")
        for _ in range(100):
            time.sleep(0.05)  # (until the retention passed: the hub forgets the stream)
            if not http.get(f"/known/{stream_id}").json()["known"]:
                break
        assert not http.get(f"/known/{stream_id}").json()["known"]
        yield http, stream_id, snap["seq"]


def _frames(body: bytes) -> list[str]:
    return [e.data for e in SSEDecoder().feed(body)]


def _openai_text(body: bytes) -> str:
    chunks = [msgspec.json.decode(d) for d in _frames(body) if d != "[DONE]"]
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


@pytest.mark.parametrize(
    ("params", "headers"),
    [
        ({"format": "openai"}, {"Last-Event-ID": "3"}),
        ({"format": "openai", "after": "2"}, {}),
        ({"format": "openai", "startIndex": "2"}, {}),
        ({"format": "responses", "starting_after": "2"}, {}),
        ({"format": "responses"}, {"Last-Event-ID": "4"}),
        ({"format": "aisdk", "startIndex": "3"}, {}),
        ({"format": "aisdk", "startIndex": "-2"}, {}),
    ],
)
def test_a_cursor_into_a_forgotten_log_is_expired(
    stored: tuple[httpx.Client, str, int], params: dict[str, str], headers: dict[str, str]
) -> None:
    http, stream_id, _ = stored
    response = http.get(f"/tw/{stream_id}/events", params=params, headers=headers)
    assert response.status_code == 410, response.text
    error = response.json()["error"]
    assert error["code"] == "cursor_expired" and "restart from the beginning" in error["message"]


def test_restarting_a_forgotten_stream_gives_the_text_once(
    stored: tuple[httpx.Client, str, int],
) -> None:
    http, stream_id, seq = stored
    url = f"/tw/{stream_id}/events"
    text = "".join(WORDS)
    for params in ({"format": "openai"}, {"format": "openai", "startIndex": "0"}):
        response = http.get(url, params=params)
        assert response.status_code == 200 and _openai_text(response.content) == text
    # At the end of the log: nothing after it (204), not an error.
    assert (
        http.get(url, params={"format": "openai"}, headers={"Last-Event-ID": str(seq)}).status_code
        == 204
    )
    # The ops view resumes with a snapshot (which replaces the client's message).
    ops = _frames(http.get(url, params={"format": "ops"}, headers={"Last-Event-ID": "3"}).content)
    assert len(ops) == 1 and msgspec.json.decode(ops[0])["type"] == "snapshot"
    responses = _frames(http.get(url, params={"format": "responses"}).content)
    deltas = [
        msgspec.json.decode(d)["delta"]
        for d in responses
        if msgspec.json.decode(d)["type"] == "response.output_text.delta"
    ]
    assert "".join(deltas) == text
    parts = _frames(http.get(url, params={"format": "aisdk"}).content)
    assert msgspec.json.decode(parts[0])["type"] == "start" and parts[-1] == "[DONE]"


def test_a_chunk_id_inside_the_snapshots_op_is_expired_and_named(
    stored: tuple[httpx.Client, str, int],
) -> None:
    """``<seq>.<k>`` with seq the snapshot's: a live reader cut inside message.end holds such
    an id, and so does one cut inside a restart read (its rebuilt chunks carry the
    snapshot's seq): the id cannot tell which, so it is refused rather than answered with
    the whole text again. The error names the header as it was sent."""
    http, stream_id, seq = stored
    url = f"/tw/{stream_id}/events"
    events = SSEDecoder().feed(http.get(url, params={"format": "openai"}).content)
    ids = [e.id for e in events if e.id]
    assert f"{seq}.1" in ids and ids[-1] == str(seq), ids
    for last in (f"{seq}.1", f"{seq - 1}.1"):
        got = http.get(url, params={"format": "openai"}, headers={"Last-Event-ID": last})
        assert got.status_code == 410, got.text
        assert repr(last) in got.json()["error"]["message"]
    # The snapshot's own id: nothing after it.
    done = http.get(url, params={"format": "openai"}, headers={"Last-Event-ID": str(seq)})
    assert done.status_code == 204


def test_a_read_overtaken_by_the_trimming_starts_over_from_the_newer_snapshot() -> None:
    """``read_log`` gets the log in batches; should the hub trim it past the read meanwhile
    (the next batch is a ``snapshot``), the views' base starts over from that snapshot, so no
    view replays the text before it twice."""
    import asyncio

    from test_redis_hub import make_ops

    from tokenwire.hub import StreamInfo
    from tokenwire.hub.base import Cursor
    from tokenwire.protocol import apply_ops, encode, snapshot_op
    from tokenwire.protocol.ops import Transient
    from tokenwire.streams.views_http import read_log

    ops = make_ops("st_t", [f"w{i} " for i in range(20)])
    newer = snapshot_op(apply_ops(ops[:12]), 12)
    live = encode(Transient(12, "status", "searching"))  # (merged ahead of the catch-up)
    batches = [ops[:5], [live, newer], ops[12:]]

    class Overtaken(Cursor):
        position = 0
        done = False

        async def read(self, timeout: float | None = None) -> list:
            batch = batches.pop(0)
            self.position = batch[-1].seq
            self.done = not batches
            return batch

    class Hub:
        async def subscribe(self, stream_id: str, after: int) -> Cursor:
            return Overtaken()

    class Host:
        hub = Hub()

    info = StreamInfo("st_t", None, "completed", ops[-1].seq, 0.0)
    got, cursor = asyncio.run(read_log(Host(), "st_t", info, None))  # type: ignore[arg-type]
    assert cursor is None
    assert [op.seq for op in got] == [12, *range(13, ops[-1].seq + 1)]
    assert apply_ops(got).to_dict() == apply_ops(ops).to_dict()
