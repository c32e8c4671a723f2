"""LiteLLM proxy as a benchmark subject, installed into its own venv (``bench/.venv-litellm``).

Kept out of the project's venv on purpose: LiteLLM's dependency tree is large and pins its own
versions. Every failure (install, start) is returned as a reason, never raised, so a run
without LiteLLM still completes and its row says why.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from bench.procs import ROOT

VENV = ROOT / "bench" / ".venv-litellm"
PACKAGE = "litellm[proxy]"
# No network beyond 127.0.0.1: use the bundled model-cost map, no telemetry.
ENV = {
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    "LITELLM_TELEMETRY": "False",
    "LITELLM_LOG": "ERROR",
    "DISABLE_SCHEMA_UPDATE": "True",
    # The proxy refuses to start without a master key; this one only guards 127.0.0.1.
    "LITELLM_MASTER_KEY": "sk-tokenwire-bench-4f9c2a7e1d6b8035",
}
HEADERS = (("Authorization", "Bearer " + ENV["LITELLM_MASTER_KEY"]),)


def executable() -> Path:
    return VENV / "bin" / "litellm"


def _works() -> bool:
    python = VENV / "bin" / "python"
    if not (python.exists() and executable().exists()):
        return False
    check = subprocess.run(
        [str(python), "-c", "import litellm.proxy.proxy_server"],
        capture_output=True,
        timeout=120,
        env={**os.environ, **ENV},
    )
    return check.returncode == 0


def ensure(log: Path) -> str | None:
    """Install LiteLLM's proxy if needed. ``None`` when ready, else why it is not."""
    try:
        if _works():
            return None
        if not (VENV / "bin" / "python").exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(VENV)],
                check=True,
                capture_output=True,
                timeout=120,
            )
        with open(log, "ab") as out:
            pip = subprocess.run(
                [str(VENV / "bin" / "pip"), "install", "--disable-pip-version-check", PACKAGE],
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=900,
            )
        if pip.returncode != 0:
            return f"pip install {PACKAGE} failed (exit {pip.returncode}; see {log})"
        if not _works():
            return f"{PACKAGE} installed but its proxy does not import (see {log})"
        return None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"could not install {PACKAGE}: {type(exc).__name__}: {exc}"


def version() -> str | None:
    python = VENV / "bin" / "python"
    try:
        out = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def write_config(directory: Path, upstream: str) -> Path:
    """A proxy config with one model, ``mock``, served by the mock as an OpenAI-compatible API."""
    path = directory / "litellm.yaml"
    path.write_text(
        "model_list:\n"
        "  - model_name: mock\n"
        "    litellm_params:\n"
        "      model: openai/mock\n"
        f"      api_base: {upstream}\n"
        "      api_key: bench\n"
        "litellm_settings:\n"
        "  drop_params: true\n"
        "  set_verbose: false\n"
    )
    return path


def command(config: Path, port: int) -> list[str]:
    return [
        str(executable()),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--telemetry",
        "False",
    ]
