"""The `ai` package itself (DefaultChatTransport, AbstractChat) and @ai-sdk/workflow's
WorkflowChatTransport against the real gateway's AI SDK routes (uvicorn on 127.0.0.1, the
mock model upstream): the UI message the client builds equals the canonical message's blocks,
also after a cut mid-answer and a reconnect (one message, nothing duplicated)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import serve_asgi
from test_views_aisdk import WEB, _essential, _skip_reason, expected_parts

from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app
from tokenwire.protocol.views.base import MessageState

pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")
SCRIPT = WEB / "test-views" / "aisdk-gateway.mjs"


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as mock:
        settings = Settings(upstream=f"{mock}/v1", coalesce_ms=0, keepalive_s=0.5)
        with serve_asgi(create_app(settings)) as url:
            yield url


def _run(base: str, scenarios: list[dict[str, Any]], tmp_path: Path) -> dict[str, Any]:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"api": f"{base}/v1/aisdk/chat", "scenarios": scenarios}))
    done = subprocess.run(
        ["node", str(SCRIPT), str(path)],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _canonical(base: str, stream_id: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=base, timeout=20) as http:
        http.post(f"/v1/streams/{stream_id}/cancel")  # (waits for the end; no-op once ended)
        snap = http.get(f"/v1/streams/{stream_id}").json()
    assert snap["status"] == "completed", snap
    state = MessageState()
    state.load(snap["message"])
    return expected_parts(state)


def _wait(base: str, stream_id: str) -> None:
    with httpx.Client(base_url=base, timeout=20) as http:
        for _ in range(300):
            if http.get(f"/v1/streams/{stream_id}").json()["status"] != "in_progress":
                return
            import time

            time.sleep(0.02)


def test_ai_sdk_against_the_gateway(gateway: str, tmp_path: Path) -> None:
    # (paced, 2 s an answer, so the cut and the reconnect fall mid-answer even on a slow machine:
    # a chat whose answer has ended has no active stream to resume, 204)
    paced = {"tps": 150}
    scenarios = [
        {"name": "text", "mode": "transport", "body": {"model": "mock"}},
        {"name": "reasoning", "mode": "transport", "body": {"model": "mock-reasoning"}},
        {"name": "tools", "mode": "tools", "body": {"model": "mock-agent"}},
        {
            "name": "reconnect",
            "mode": "reconnect",
            "body": {"model": "mock-reasoning", "mock": paced, "max_tokens": 300},
            "cutAfter": 2500,
        },
        {
            "name": "chat",
            "mode": "chat",
            "body": {"model": "mock", "mock": paced, "max_tokens": 300},
            "cutAfter": 1500,
        },
        {
            "name": "workflow",
            "mode": "workflow",
            "body": {"model": "mock-reasoning", "mock": paced, "max_tokens": 300},
            "cutAfter": 3000,
        },
    ]
    out = _run(gateway, scenarios, tmp_path)
    for name in ("text", "reasoning"):
        got = out[name]
        assert not got["errors"], got
        [run] = got["runIds"]
        assert got["message"]["id"] == run  # messageId: the stream id when none was given
        assert _essential(got["message"]["parts"]) == _essential(_canonical(gateway, run)), name
    assert [p["type"] for p in out["reasoning"]["message"]["parts"]] == [
        "step-start",
        "reasoning",
        "text",
    ]

    # Tool call, the client's result, then the answer: one assistant message, both streams.
    tools = out["tools"]
    assert tools["status"] == "ready" and not tools["errors"], tools
    first, second = tools["runIds"]
    roles = [m["role"] for m in tools["messages"]]
    assert roles == ["user", "assistant"]
    parts = tools["messages"][1]["parts"]
    call = _canonical(gateway, first)
    tool = next(p for p in call if p["type"] == "tool-get_weather")
    tool.update(state="output-available", output={"temperature": 21, "sky": "clear"})
    answer = _canonical(gateway, second)
    assert _essential(parts) == _essential(call + answer)
    assert any(p["type"] == "source-url" for p in answer)  # mock-agent's cited answer

    # Cut mid-answer, then reconnect: the resumed message is the whole canonical one.
    reconnect = out["reconnect"]
    [run] = reconnect["runIds"]
    assert reconnect["first"]["errors"]  # the cut was seen
    second = reconnect["second"]
    assert second["message"]["id"] == run
    assert _essential(second["message"]["parts"]) == _essential(_canonical(gateway, run))

    chat = out["chat"]
    [run] = chat["runIds"]
    assert chat["statusAfterSend"] == "error" and chat["status"] == "ready", chat
    assert [m["role"] for m in chat["messages"]] == ["user", "assistant"]  # one answer
    assert _essential(chat["messages"][1]["parts"]) == _essential(_canonical(gateway, run))

    workflow = out["workflow"]
    [run] = workflow["runIds"]  # (the reconnects carry no run id header)
    assert _essential(workflow["message"]["parts"]) == _essential(_canonical(gateway, run))
