"""Smoke test of the benchmark harness: every relay and measurement works at tiny sizes.

Real processes on 127.0.0.1 (the mock, the gateway, the three comparison relays); no timing is
asserted, only that each piece runs and reports a sane structure.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# bench/ is a top-level package of the repository, not of the installed distribution.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import charts, e2e, procs, report
from bench.__main__ import _gateway, _mock, _relay
from bench.client import OpenAICounter, TypedCounter
from bench.e2e import Subject

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, procs.Server]]:
    tmp = tmp_path_factory.mktemp("bench")
    with contextlib.ExitStack() as es:
        mock = es.enter_context(_mock(tmp / "mock.log"))
        servers = {
            "mock": mock,
            "gateway": es.enter_context(_gateway(mock, tmp / "gw", tmp / "gw.log")),
            "raw": es.enter_context(_relay("raw", mock, tmp / "raw.log")),
            "sdk": es.enter_context(_relay("sdk", mock, tmp / "sdk.log")),
            "whole": es.enter_context(_relay("whole", mock, tmp / "whole.log")),
        }
        yield servers


def _subjects(s: dict[str, procs.Server]) -> list[Subject]:
    gw = s["gateway"]
    return [
        Subject("direct", "direct", s["mock"].port, "openai"),
        Subject("raw", "raw", s["raw"].port, "openai", s["raw"]),
        Subject("passthrough", "passthrough", gw.port, "openai", gw),
        Subject("typed", "typed", gw.port, "typed", gw),
        Subject("typed_off", "typed off", gw.port, "typed", gw, options={"coalesce_ms": 0}),
        Subject("sdk", "sdk", s["sdk"].port, "openai", s["sdk"]),
        Subject("whole", "whole", s["whole"].port, "whole", s["whole"]),
    ]


def test_counters_split_anywhere() -> None:
    body = (
        b'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":"Hi"}}]}\n\n'
        b'data: {"choices":[{"delta":{"content":" there"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    for cut in range(1, len(body)):
        counter = OpenAICounter()
        assert counter.feed(body[:cut]) + counter.feed(body[cut:]) == 2
        assert counter.done
    ops = (
        b'id: 1\ndata: {"type":"block.delta","seq":1,"index":0,"text":"ab"}\n\n'
        b'id: 2\ndata: {"type":"block.delta","seq":2,"index":0,"text":"cde"}\n\n'
        b'id: 3\ndata: {"type":"message.end","seq":3,"status":"completed"}\n\n'
    )
    typed = TypedCounter([2, 4, 5])  # tokens of 2, 2 and 1 characters
    assert typed.feed(ops[:70]) == 1
    assert typed.feed(ops[70:]) == 2
    assert typed.done and typed.status == "completed"


def test_every_subject_streams_the_whole_answer(stack: dict[str, procs.Server]) -> None:
    async def go() -> None:
        for subject in _subjects(stack):
            res = await e2e.stream_once(subject, 50)
            assert res.error is None, (subject.key, res.error)
            assert res.status == 200
            assert res.tokens == 50, subject.key
            assert res.done, subject.key

    asyncio.run(go())


def test_measurements_report_sane_structure(stack: dict[str, procs.Server], tmp_path: Path) -> None:
    subjects = {s.key: s for s in _subjects(stack)}
    mock = stack["mock"]

    async def go() -> dict:
        out: dict = {
            "throughput": {
                "concurrency": [2],
                "duration_s": 0.3,
                "tokens_per_answer": 200,
                "subjects": {},
            }
        }
        for key in ("raw", "typed", "sdk"):
            run = await e2e.throughput(subjects[key], mock, concurrency=2, duration=0.3, tokens=200)
            assert run["tokens"] > 0 and run["errors"] == 0 and run["settled"], (key, run)
            assert run["relay_cpu_s_per_1k"] is not None and run["relay_cpu_s_per_1k"] >= 0
            out["throughput"]["subjects"][key] = {"label": key, "runs": {"2": run}}
        lat = {"streams": 3, "tps": 100, "tokens_per_stream": 8, "subjects": {}}
        for key in ("direct", "typed_off"):
            row = await e2e.paced(subjects[key], mock, streams=3, tps=100, tokens=8, stagger_s=0.1)
            assert row["errors"] == 0 and row["incomplete"] == 0, row
            assert row["itl_ms_p50"] is not None and row["ttft_ms_p50"] is not None
            lat["subjects"][key] = {**row, "label": key}
        report.add_latency_deltas(lat)
        assert lat["subjects"]["direct"]["added_itl_ms_p99"] == 0
        out["latency"] = lat
        wire = {"tokens": 100, "paces": {"unpaced": 0.0}, "subjects": {}}
        for key in ("typed_off", "whole"):
            run = await e2e.wire_bytes(subjects[key], tokens=100, tps=0)
            assert run["complete"] and run["wire_bytes"] > run["text_bytes"], run
            wire["subjects"][key] = {"label": key, "runs": {"unpaced": run}}
        # Re-sending the answer on every token costs far more bytes than deltas do.
        assert (
            wire["subjects"]["whole"]["runs"]["unpaced"]["amplification"]
            > wire["subjects"]["typed_off"]["runs"]["unpaced"]["amplification"]
        )
        out["wire"] = wire
        out["idle"] = await e2e.idle_rss(subjects["typed"], stack["gateway"], streams=20)
        assert out["idle"]["created"] == 20 and out["idle"]["readers_connected"] >= 20
        return out

    result = asyncio.run(go())
    result["meta"] = {"command": "test", "date": "-", "cpus": 1, "cpu_model": "-", "python": "-"}
    result["goals"] = report.goals(result)
    assert all({"goal", "target", "measured", "pass"} <= set(g) for g in result["goals"])
    made = charts.write_all(result, tmp_path)
    assert set(made) == {"throughput.png", "relay_cpu.png", "wire_bytes.png", "latency.png"}
    assert all((tmp_path / name).stat().st_size > 1000 for name in made)
    text = report.markdown(result, made)
    assert "## Throughput" in text and "## Goals" in text


def test_catchup_rows_in_the_report() -> None:
    """``make bench`` records bench.catchup's rows and turns them into goals."""
    from bench import catchup

    result = {"catchup": catchup.run(tokens=500)}
    rows = result["catchup"]["rows"]
    assert [r["view"] for r in rows] == ["aisdk", "openai", "responses", "ops"]
    assert all(r["compacted_frames"] < r["replay_frames"] for r in rows)
    goals = [g for g in report.goals(result) if "catch-up" in g["goal"]]
    assert len(goals) == 8 and all(g["measured"] is not None for g in goals)
