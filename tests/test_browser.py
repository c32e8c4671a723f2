"""The demo page end to end, in real headless Chromium against a real `tokenwire demo`.

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
from conftest import free_port, terminate

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
CHROMIUM = Path(os.environ.get("TOKENWIRE_CHROMIUM", "/usr/bin/chromium"))
CASES = ["models", "stream", "reload", "mirror", "drop", "stop", "html", "tools", "error"]


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


@pytest.fixture(scope="module")
def results(demo_url: str) -> dict[str, dict[str, object]]:
    """Runs every browser case once; the result of each, by name."""
    proc = subprocess.run(
        ["node", "e2e/demo.mjs", "--base", demo_url, *(f"--case={c}" for c in CASES)],
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


@pytest.mark.parametrize("case", CASES)
def test_demo_page_in_chromium(results: dict[str, dict[str, object]], case: str) -> None:
    """models: the select lists every mock scenario. stream: blocks stream, end = server's
    message, a finished block is never re-rendered. reload: mid-answer reload resumes, whole
    answer exactly once. mirror: a second tab mirrors live. drop: a dropped connection resumes
    from the last seq. stop: Stop cancels. html: mock-html stays inert. tools/error: tool-call
    blocks and a failed answer render."""
    result = results.get(case)
    assert result is not None, f"case {case} did not run"
    assert result["ok"], result.get("error")
