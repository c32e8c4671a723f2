"""A page built with `@ai-sdk/react`'s `useChat` (`resume: true`), bundled with esbuild and
served by the gateway itself (its static page), in real headless Chromium: send, reload
mid-answer -> the answer completes once with no duplicated text; stop -> the stream ends
cancelled (the upstream generation is stopped, not just this tab's reading)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import serve_asgi

from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
CHROMIUM = Path(os.environ.get("TOKENWIRE_CHROMIUM", "/usr/bin/chromium"))


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (install Debian's chromium: scripts/system-deps.sh)"
    if shutil.which("node") is None:
        return "node is not installed"
    for package in ("playwright-core", "@ai-sdk/react", "react-dom", "esbuild"):
        if not (WEB / "node_modules" / package).is_dir():
            return "web/node_modules is missing (run scripts/build-web.sh)"
    return None


pytestmark = [
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
    pytest.mark.timeout(120),
]


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("usechat")
    subprocess.run(
        ["node", "test-views/usechat/build.mjs", str(out)],
        cwd=WEB,
        check=True,
        timeout=60,
    )
    return out


@pytest.fixture(scope="module")
def gateway(page_dir: Path) -> Iterator[str]:
    with serve_asgi(create_mock_app()) as mock:
        settings = Settings(
            upstream=f"{mock}/v1", coalesce_ms=0, keepalive_s=0.5, static_dir=str(page_dir)
        )
        with serve_asgi(create_app(settings)) as url:
            yield url


def _text(message: dict[str, Any]) -> str:
    return "".join(p["text"] for p in message["parts"] if p["type"] == "text")


def test_use_chat_reload_and_stop(gateway: str) -> None:
    done = subprocess.run(
        ["node", "test-views/usechat-browser.mjs", gateway],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    http = httpx.Client(base_url=gateway, timeout=20)

    reload = out["reload"]
    before = reload["before"]["messages"][-1]
    run = before["id"]  # the UI message id: the stream id (the POST gave no messageId)
    snap = http.get(f"/v1/streams/{run}").json()
    assert snap["status"] == "completed"
    want = "".join(b["text"] for b in snap["message"]["blocks"] if b["type"] == "text")
    after = reload["after"]
    assert after["error"] is None
    # After the reload the page has no copy of the conversation (nothing persisted): the one
    # assistant message is the resumed one, whole, once.
    assistants = [m for m in after["messages"] if m["role"] == "assistant"]
    assert len(assistants) == 1 and assistants[0]["id"] == run
    assert _text(assistants[0]) == want
    assert len([p for p in assistants[0]["parts"] if p["type"] == "text"]) == 1
    assert len(_text(before)) < len(want)  # the reload did fall mid-answer
    assert "GET /v1/aisdk/chat/reload-1/stream" in reload["requests"]

    stop = out["stop"]
    message = stop["state"]["messages"][-1]
    assert "POST /v1/aisdk/chat/stop-1/stop" in stop["requests"]
    stopped = http.get(f"/v1/streams/{message['id']}").json()
    assert stopped["status"] == "cancelled"
    got = "".join(b["text"] for b in stopped["message"]["blocks"] if b["type"] == "text")
    assert got.startswith(_text(message)) or _text(message).startswith(got)
    http.close()
