"""The demo's agent answer (``create_app(producers={"mock-agent": ...})``) end to end over real
sockets: the mock model server and the gateway, each served by uvicorn, read over SSE.

The held-out style check of issue 14: two model steps (the first superseded once), a tool
result, a status line updated 5 times and 3 transient events; resumed from every seq with
``Last-Event-ID``, each reader ends with exactly the stored message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import serve_asgi
from rich.console import Console

from tokenwire.client._state import StreamState
from tokenwire.commands import tail
from tokenwire.commands.demo_agent import agent_producer, get_weather
from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app
from tokenwire.mock.scenarios import agent_answer, agent_call
from tokenwire.protocol import (
    BlockStart,
    BlockUpdate,
    Message,
    StepReset,
    Transient,
    apply_op,
    render_markdown,
)

RECORDINGS = Path(__file__).parent / "recordings"
BODY = {"model": "mock-agent", "messages": [{"role": "user", "content": "What's the weather?"}]}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data_dir = tmp_path_factory.mktemp("agent")
    with serve_asgi(create_mock_app(tps=0, ttft_ms=0)) as mock:
        settings = Settings(upstream=f"{mock}/v1", data_dir=str(data_dir))
        app = create_app(settings, producers={"mock-agent": agent_producer(pause_s=0.2)})
        with serve_asgi(app) as url:
            yield url


@pytest.fixture(scope="module")
def redis_gateway(redis_server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The same gateway on a Redis hub (a throwaway redis-server)."""
    from tokenwire.hub.redis import RedisHub

    data_dir = tmp_path_factory.mktemp("agent-redis")
    with serve_asgi(create_mock_app(tps=0, ttft_ms=0)) as mock:
        settings = Settings(upstream=f"{mock}/v1", data_dir=str(data_dir))
        hub = RedisHub(redis_server.url, key_prefix="tw-agent-test")
        app = create_app(settings, hub, producers={"mock-agent": agent_producer(pause_s=0.2)})
        with serve_asgi(app) as url:
            yield url


def _read(url: str, stream_id: str, state: StreamState, after: int) -> tuple[list, bytes]:
    """Feeds ``/events`` (``Last-Event-ID: after``) into ``state`` until the end; the ops it
    applied or passed on (transients), and the raw body."""
    ops: list = []
    body = b""
    headers = {"Last-Event-ID": str(after)} if after else {}
    with httpx.stream("GET", f"{url}/v1/streams/{stream_id}/events", headers=headers) as r:
        assert r.status_code == 200
        for chunk in r.iter_raw():
            body += chunk
            ops += state.feed(chunk)
            if state.done:
                break
    return ops, body


def _start(url: str, **agent: object) -> str:
    r = httpx.post(f"{url}/v1/streams", json={**BODY, "agent": agent})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.mark.parametrize("hub", ["memory", "redis"])
def test_the_held_out_agent_answer_resumes_from_every_seq(
    hub: str, request: pytest.FixtureRequest
) -> None:
    gateway = request.getfixturevalue("gateway" if hub == "memory" else "redis_gateway")
    warm = StreamState(
        httpx.post(f"{gateway}/v1/streams", json={**BODY, "model": "mock"}).json()["id"]
    )
    _read(gateway, warm.id, warm, 0)  # (the hub's connections are up: a reader subscribes fast)
    # Transient events go to the readers connected at that moment: the first comes after a
    # pause long enough for this reader to be connected.
    stream_id = _start(gateway, flaky=True, pause_ms=600)
    live = StreamState(stream_id)
    live_ops, body = _read(gateway, stream_id, live, 0)  # connected before the first transient
    snapshot = httpx.get(f"{gateway}/v1/streams/{stream_id}").json()
    final = Message.from_dict(snapshot["message"])
    assert live.message == final
    assert snapshot["status"] == "completed"

    # Live: exactly the 3 transient progress events, never with an id line or in the message.
    assert len([op for op in live_ops if type(op) is Transient]) == 3
    frames = [f for f in body.split(b"\n\n") if b'"type":"transient"' in f]
    assert len(frames) == 3
    assert not any(line.startswith(b"id:") for f in frames for line in f.split(b"\n"))
    assert live.transients == {"progress": {"site": "almanac.example", "done": 3}}

    # The log: one step.reset (the first attempt of step 1), 5 in-place status updates.
    ops, _ = _read(gateway, stream_id, StreamState(stream_id), 0)  # (the end: nobody live)
    assert not any(type(op) is Transient for op in ops)
    resets = [i for i, op in enumerate(ops) if type(op) is StepReset]
    assert [ops[i].step for i in resets] == [1]
    updates = [op for op in ops if type(op) is BlockUpdate and op.index == 0]
    assert len(updates) == 5
    before = [op.block["type"] for op in ops[: resets[0]] if type(op) is BlockStart]
    assert before == ["data", "reasoning"]  # the superseded attempt had begun its reasoning

    # The final message: the latest status only, one of each block, steps 0 / 1 / 2.
    blocks = final.blocks
    assert [(b.type, b.step) for b in blocks] == [
        ("data", 0),
        ("reasoning", 1),
        ("tool_call", 1),
        ("tool_result", 1),
        ("text", 2),
        ("source", 2),
        ("source", 2),
    ]
    assert blocks[0].attrs["value"] == "done: 2 sources cited"
    call_id, name, arguments = agent_call(0)
    assert blocks[2].attrs["id"] == call_id and blocks[2].text == arguments
    assert blocks[3].attrs == {"call_id": call_id, "name": name}
    assert blocks[3].text == (
        '{"city":"Malmö","unit":"celsius","forecast":[{"day":0,"high_c":19,"sky":"cloudy"},'
        '{"day":1,"high_c":10,"sky":"sunny"}]}'
    )
    text, citations = agent_answer(0)
    assert blocks[4].text == text
    assert [b.attrs["span"] for b in blocks[5:]] == [
        {"block": 4, "start": c.start, "end": c.end} for c in citations
    ]

    # Resumed from every seq: the state up to N, then the rest over SSE after N.
    last = snapshot["seq"]
    assert ops[-1].seq == last
    for after in range(last + 1):
        state = StreamState(stream_id)
        for op in ops:
            if op.seq > after:
                break
            apply_op(state.message, op)
        state.seq = after
        state.done = after == last
        if not state.done:
            rest, _ = _read(gateway, stream_id, state, after)
            assert rest and not any(type(op) is Transient for op in rest)
        assert state.message == final, f"resumed after seq {after}"
        assert state.message.to_json() == final.to_json()

    # The recording (tests/recordings/demo_agent.*) is this very answer, under another id.
    recorded = json.loads((RECORDINGS / "demo_agent.message.json").read_bytes())
    assert {**recorded, "id": stream_id} == final.to_dict()


def test_without_the_retry_the_answer_has_no_reset_and_renders_readably(gateway: str) -> None:
    stream_id = _start(gateway, pause_ms=0)
    state = StreamState(stream_id)
    _read(gateway, stream_id, state, 0)
    message = state.message
    assert message.status == "completed"
    assert message.blocks[0].attrs["value"] == "done: 2 sources cited"
    assert message.blocks[1].text.startswith("The user asks about the weather.")

    # replay --format markdown / tail: tool call + result, the status line's latest value,
    # numbered citations, steps separated.
    md = render_markdown(message)
    assert md.startswith("*status:* done: 2 sources cited\n")
    assert "searching" not in md and "progress" not in md
    assert "**Tool call** `get_weather`" in md and "**Tool result** `get_weather`" in md
    assert "---\n\n*Step 1*" in md and "---\n\n*Step 2*" in md
    assert "[Right now it is 9 °C and cloudy ☁️ in Malmö.][1]" in md
    assert "[2]: <https://forecast.example/malmo/tomorrow>" in md
    console = Console(record=True, width=120)
    console.print(tail.render(message))
    shown = console.export_text()
    for needle in ("● status: done: 2 sources cited", "tool call get_weather", "step 2"):
        assert needle in shown, needle
    assert "tool result get_weather" in shown and "[source] [2]" in shown
    assert "in Malmö. [1] Tomorrow" in shown  # the cited spans, numbered as their sources


def test_tail_follows_the_agent_answer(gateway: str) -> None:
    """``tokenwire tail --model mock-agent --prompt ...`` against the gateway: the final screen
    shows the status line's latest value, the tool round, numbered citations and the steps."""
    args = ["--url", gateway, "--model", "mock-agent", "--prompt", "What's the weather?"]
    result = subprocess.run(
        [sys.executable, "-m", "tokenwire", "tail", *args],
        capture_output=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    final = out[out.rindex("status: done") - 2 :]  # (the live display's last frame)
    for needle in (
        "● status: done: 2 sources cited",
        "step 1",
        "tool call get_weather",
        '"forecast":[{"day":0',
        "step 2",
        "Right now it is 9 °C and cloudy ☁️ in Malmö. [1]",
        "[source] [2] Malmö: tomorrow's forecast",
        "● completed  finish_reason=stop",
    ):
        assert needle in final, needle
    assert "searching" not in final and "progress" not in final


def test_get_weather_is_a_deterministic_toy() -> None:
    a = get_weather('{"city":"Malmö","days":2}')
    assert a == get_weather('{"city": "Malmö", "days": 2}')
    assert len(a["forecast"]) == 2 and a["city"] == "Malmö"
    assert "error" in get_weather("not json")


def test_other_models_keep_the_plain_pipe(gateway: str) -> None:
    r = httpx.post(f"{gateway}/v1/streams", json={**BODY, "model": "mock-tools"})
    state = StreamState(r.json()["id"])
    _read(gateway, state.id, state, 0)
    assert state.message.status == "completed"
    assert {b.type for b in state.message.blocks} == {"tool_call"}


def test_live_reader_sees_the_status_update_in_place(gateway: str) -> None:
    """A reader connected mid-search gets the status block's updates as block.update ops."""
    stream_id = _start(gateway, pause_ms=150)
    seen: list[object] = []
    state = StreamState(stream_id)
    done = threading.Event()

    def follow() -> None:
        with httpx.stream("GET", f"{gateway}/v1/streams/{stream_id}/events") as r:
            for chunk in r.iter_raw():
                for op in state.feed(chunk):
                    if type(op) is BlockUpdate:
                        seen.append(state.message.blocks[0].attrs["value"])
                if state.done:
                    break
        done.set()

    threading.Thread(target=follow, daemon=True).start()
    assert done.wait(20)
    assert seen[:3] == ["searching… 1 of 3", "searching… 2 of 3", "searching… 3 of 3"]
    assert seen[-1] == "done: 2 sources cited"


def _replay(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tokenwire", "replay", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_replay_reads_a_recorded_agent_stream() -> None:
    """``tokenwire replay`` on the SSE a live reader recorded (transient events included): the
    gateway's message byte for byte; its ops round-trip as JSON lines; Markdown is readable."""
    recording = str(RECORDINGS / "demo_agent.events.sse")
    expected = (RECORDINGS / "demo_agent.message.json").read_bytes()
    result = _replay(recording)
    assert result.returncode == 0, result.stderr
    assert result.stdout == expected + b"\n"
    ops = _replay(recording, "--format", "ops")
    lines = [json.loads(line) for line in ops.stdout.splitlines()]
    assert "transient" not in {op["type"] for op in lines}
    assert [op["type"] for op in lines].count("step.reset") == 1
    again = _replay("-", "--format-in", "ops", stdin=ops.stdout)
    assert again.returncode == 0, again.stderr
    assert again.stdout == expected + b"\n"
    md = _replay(recording, "--format", "markdown").stdout.decode()
    assert md.startswith("*status:* done: 2 sources cited\n\n---\n\n*Step 1*\n\n> **Reasoning**")
    assert md.count("> **Reasoning**") == 1  # the superseded attempt's is gone
    assert "**Tool result** `get_weather` (call_110d53b460)\n\n```json\n{" in md
    assert "[Tomorrow brings 4 mm of rain 🌧️ and a low of 1 °C.][2]" in md
    assert md.rstrip().endswith(
        '[2]: <https://forecast.example/malmo/tomorrow> "Malmö: tomorrow\'s forecast"'
    )


def test_replay_refuses_what_is_not_an_op_log(tmp_path: Path) -> None:
    fixture = Path(__file__).parent / "fixtures" / "openai_text.sse"
    result = _replay(str(fixture), "--format-in", "ops")
    assert result.returncode == 2
    assert b"not a tokenwire op log" in result.stderr
    # Auto-detection still takes an upstream recording for what it is.
    assert json.loads(_replay(str(fixture)).stdout)["status"] == "completed"


def test_only_plain_generations_get_a_resume_record(redis_gateway: str, redis_server) -> None:
    """A takeover continues a plain ``POST /v1/streams`` (the gateway's ``Continue``), never a
    host's produce function: the gateway cannot know how to continue it, so a model of
    ``producers`` gets no resume record (a lost producer ends it ``failed``, as before)."""
    import redis

    from tokenwire.hub.redis_scripts import Keys

    keys = Keys("tw-agent-test")
    client = redis.Redis.from_url(redis_server.url)
    try:
        plain = StreamState(
            httpx.post(f"{redis_gateway}/v1/streams", json={**BODY, "model": "mock"}).json()["id"]
        )
        agent = _start(redis_gateway, pause_ms=0)
        record = client.hget(keys.meta(plain.id), "resume")
        assert record is not None and b'"tokenwire.gateway"' in record
        assert client.hget(keys.meta(agent), "resume") is None
        _read(redis_gateway, plain.id, plain, 0)
        _read(redis_gateway, agent, StreamState(agent), 0)
    finally:
        client.close()
