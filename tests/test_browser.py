"""The demo page end to end, in real headless Chromium against a real `tokenwire demo`, and the
JS client against a real `tokenwire serve --api-key` (with `tokenwire mock` as its upstream).

The browser side is web/e2e/demo.mjs (playwright-core driving Debian's /usr/bin/chromium); it
runs every case once and prints one JSON result per case, which the tests below check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, serve_asgi, terminate, wait_healthy

from tokenwire.mock import create_mock_app

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
CHROMIUM = Path(os.environ.get("TOKENWIRE_CHROMIUM", "/usr/bin/chromium"))
CASES = [
    "models",
    "stream",
    "reload",
    "finished",
    "mirror",
    "drop",
    "stop",
    "html",
    "tools",
    "error",
    "agent",
    "agent-supersede",
]
API_KEY = "tw-browser-test-key"


def _skip_reason() -> str | None:
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (install Debian's chromium: scripts/system-deps.sh)"
    if shutil.which("node") is None:
        return "node is not installed"
    if not (WEB / "node_modules" / "playwright-core").is_dir():
        return "web/node_modules is missing (run scripts/build-web.sh)"
    if not (ROOT / "src" / "tokenwire" / "static" / "index.html").is_file():
        return "the demo page is not built (run scripts/build-web.sh)"
    return None


pytestmark = [
    pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or ""),
    pytest.mark.timeout(180),
]


@pytest.fixture(scope="module")
def demo_url() -> Iterator[str]:
    """`tokenwire demo` on a free port; yields its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenwire", "demo", "--no-browser", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "CI": "1"},
    )
    found: list[str] = []
    seen: list[str] = []
    ready = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:  # keep draining so the demo never blocks on a full pipe
            seen.append(line)
            match = re.search(r"open\s+(http://\S+?)/?\s*$", line)
            if match and not found:
                found.append(match.group(1))
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not ready.wait(30) or not found:
            pytest.fail("tokenwire demo did not print its URL:\n" + "".join(seen))
        yield found[0]
    finally:
        terminate(proc)


def _run_cases(base: str, cases: list[str], *extra: str) -> dict[str, dict[str, object]]:
    """Runs web/e2e/demo.mjs for ``cases`` against ``base``; each case's result, by name."""
    proc = subprocess.run(
        ["node", "e2e/demo.mjs", "--base", base, *(f"--case={c}" for c in cases), *extra],
        cwd=WEB,
        capture_output=True,
        text=True,
        timeout=170,
    )
    out: dict[str, dict[str, object]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
            out[str(result["case"])] = result
    if not out:
        pytest.fail(f"the browser script produced no results:\n{proc.stdout}\n{proc.stderr}")
    return out


@pytest.fixture(scope="module")
def results(demo_url: str) -> dict[str, dict[str, object]]:
    """Runs every browser case once; the result of each, by name."""
    return _run_cases(demo_url, CASES)


@pytest.fixture(scope="module")
def keyed_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`tokenwire serve --api-key KEY` (upstream: the mock model server); yields its URL."""
    data_dir = tmp_path_factory.mktemp("keyed")
    with serve_asgi(create_mock_app()) as mock_url:
        port = free_port()
        cmd = [sys.executable, "-m", "tokenwire", "serve", "--upstream", f"{mock_url}/v1"]
        cmd += ["--api-key", API_KEY, "--port", str(port), "--data-dir", str(data_dir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_healthy(url, proc, 20)
            yield url
        finally:
            terminate(proc)


@pytest.mark.parametrize("case", CASES)
def test_demo_page_in_chromium(results: dict[str, dict[str, object]], case: str) -> None:
    """models: the select lists every mock scenario. stream: blocks stream, end = server's
    message, a finished block is never re-rendered. reload: mid-answer reload resumes, whole
    answer exactly once. finished: a reload on a finished stream shows its end (never stuck on
    "connecting"). mirror: a second tab mirrors live. drop: a dropped connection resumes
    from the last seq. stop: Stop cancels. html: mock-html stays inert. tools/error: tool-call
    blocks and a failed answer render. agent: the demo's mock-agent answer (status line, reasoning,
    tool call + result, cited text in a new step) renders every block, and a reload mid-answer
    ends as a fresh page shows it. agent-supersede: the held-out check in the browser (a first
    attempt superseded, the status updated 5 times, 3 transient events), reloaded at several
    points: exactly the server's message and rendering."""
    result = results.get(case)
    assert result is not None, f"case {case} did not run"
    assert result["ok"], result.get("error")
    if "skipped" in result:
        pytest.skip(str(result["skipped"]))


def test_js_client_authenticates_with_an_api_key(keyed_gateway: str) -> None:
    """Against `tokenwire serve --api-key`, in Chromium: without a key every call of the JS
    client is a 401; with `apiKey` it creates, follows (fetch: Authorization header), snapshots,
    and an EventSource on `eventsUrl` (key in the query) reads the whole stream."""
    result = _run_cases(keyed_gateway, ["auth"], "--api-key", API_KEY).get("auth")
    assert result is not None, "the auth case did not run"
    assert result["ok"], result.get("error")
