"""Compacted catch-up of the plain op stream, read by the real clients (the JS client in node,
the Python client) on a gateway whose frame bound is small enough that the snapshot does not
fit, so the catch-up is the merged ops: each merged ``block.delta`` states the seq it
reaches, and both clients apply it without taking the jump for a lost op."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from conftest import serve_asgi
from test_views_http import _create, _wait_done

from tokenwire.client import Client
from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app
from tokenwire.protocol import SSEDecoder

ROOT = Path(__file__).resolve().parent.parent
CLIENT_JS = ROOT / "web" / "src" / "client.js"


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as mock:
        settings = Settings(
            upstream=f"{mock}/v1",
            coalesce_ms=0,
            keepalive_s=0.5,
            catchup_threshold=16,
            max_frame_bytes=2000,
        )
        with serve_asgi(create_app(settings)) as url:
            yield url


def _finished_stream(http: httpx.Client, tokens: int) -> dict:
    return _wait_done(http, _create(http, max_tokens=tokens))


def test_merged_catch_up_states_its_seqs(gateway: str) -> None:
    with httpx.Client(base_url=gateway, timeout=20) as http:
        snap = _finished_stream(http, 600)
        body = http.get(f"/v1/streams/{snap['id']}/events").content
    events = SSEDecoder().feed(body)
    ops = [msgspec.json.decode(e.data) for e in events]
    assert ops[0]["type"] == "message.start" and len(events) < 40  # merged, not 600 deltas
    assert all(len(e.raw) <= 2000 for e in events)
    merged = [(int(e.id), op) for e, op in zip(events, ops, strict=True) if "seq" in op]
    deltas = [(seq, op) for seq, op in merged if op["type"] == "block.delta"]
    assert deltas and all(op["seq"] == seq for seq, op in deltas)
    assert int(events[-1].id) == snap["seq"]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_js_and_python_clients_read_a_merged_catch_up(gateway: str, tmp_path: Path) -> None:
    with httpx.Client(base_url=gateway, timeout=20) as http:
        snap = _finished_stream(http, 600)
    script = tmp_path / "follow.mjs"
    script.write_text(
        f"import {{ subscribe }} from {json.dumps(CLIENT_JS.as_uri())};\n"
        "let reconnects = 0;\n"
        f"const sub = subscribe({json.dumps(gateway)}, {json.dumps(snap['id'])}, "
        "{ retryMs: 20, maxRetryMs: 50, "
        "onState: (s) => { if (s === 'reconnecting') reconnects++; } });\n"
        "const timer = setTimeout(() => { console.log(JSON.stringify({ timeout: true, "
        "reconnects })); process.exit(1); }, 10000);\n"
        "await sub.done;\n"
        "clearTimeout(timer);\n"
        "console.log(JSON.stringify({ reconnects, message: sub.message }));\n"
    )
    run = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, (run.stdout, run.stderr)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["reconnects"] == 0
    assert out["message"]["blocks"] == snap["message"]["blocks"]
    assert out["message"]["status"] == "completed"
    with Client(gateway) as client:
        stream = client.stream(snap["id"])
        ops = list(stream)
    assert len(ops) < 40 and stream.message.to_dict() == snap["message"]
