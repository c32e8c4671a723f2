"""The useChat host example (examples/usechat: FastAPI, its own POST handler answering with
``streams.aisdk_response``, ``streams.asgi`` mounted at the same path for resume and stop),
driven by the `ai` package itself over real sockets: an answer, a cut mid-answer resumed by
``AbstractChat.resumeStream()``, and stop."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from conftest import serve_asgi
from test_views_aisdk import WEB, _essential, _skip_reason, expected_parts

from tokenwire.mock import create_mock_app
from tokenwire.protocol.views.base import MessageState

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # (the repo root: examples/)

from examples.usechat.app import create_app

pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")


def _parts(http: httpx.Client, stream_id: str) -> list[dict]:
    snap = http.get(f"/api/chat/{stream_id}").json()
    assert snap["status"] == "completed", snap
    state = MessageState()
    state.load(snap["message"])
    return expected_parts(state)


def test_usechat_host_example(tmp_path: Path) -> None:
    paced = {"options": {"mock": {"tps": 150}, "max_tokens": 300}}  # (2 s: resumed mid-answer)
    scenarios = [
        {"name": "plain", "mode": "transport", "body": {}},
        {"name": "cut", "mode": "chat", "body": paced, "cutAfter": 1500},
    ]
    with serve_asgi(create_mock_app()) as mock, serve_asgi(create_app(f"{mock}/v1")) as url:
        config = tmp_path / "config.json"
        config.write_text(json.dumps({"api": f"{url}/api/chat", "scenarios": scenarios}))
        done = subprocess.run(
            ["node", "test-views/aisdk-gateway.mjs", str(config)],
            cwd=WEB,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        with httpx.Client(base_url=url, timeout=20) as http:
            [run] = out["plain"]["runIds"]
            assert _essential(out["plain"]["message"]["parts"]) == _essential(_parts(http, run))
            cut = out["cut"]
            [run] = cut["runIds"]
            assert cut["statusAfterSend"] == "error" and cut["status"] == "ready", cut
            assert [m["role"] for m in cut["messages"]] == ["user", "assistant"]
            http.post(f"/api/chat/{run}/cancel")  # (waits for the end: it already ended)
            assert _essential(cut["messages"][1]["parts"]) == _essential(_parts(http, run))

            # Stop: another user cannot; the chat's user can, and the stream ends cancelled.
            body = {
                "id": "c-stop",
                "messages": [
                    {"id": "u", "role": "user", "parts": [{"type": "text", "text": "hi"}]}
                ],
                **paced,
            }
            with http.stream("POST", "/api/chat", json=body) as response:
                run = response.headers["x-workflow-run-id"]
                next(response.iter_raw())
            other = {"x-user": "mallory"}
            assert http.post("/api/chat/c-stop/stop", headers=other).status_code == 204
            assert http.get("/api/chat/c-stop/stream", headers=other).status_code == 204
            stopped = http.post("/api/chat/c-stop/stop")
            assert stopped.status_code == 202 and stopped.json()["status"] == "cancelled"
            assert http.get("/api/chat/c-stop/stream").status_code == 204
