"""Issue 12, item 14: a wheel built from a clean checkout has the demo page or the build fails
clearly; `make bench` does not rewrite the tracked results unless asked to."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_setup():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("tokenwire_setup", ROOT / "setup.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # (setup() only runs as __main__)
    return module


def checkout(tmp: Path, *, web: bool = True) -> Path:
    root = tmp / "checkout"
    (root / "scripts").mkdir(parents=True)
    (root / "src" / "tokenwire").mkdir(parents=True)
    if web:
        (root / "web").mkdir()
        (root / "web" / "package.json").write_text("{}")
    script = root / "scripts" / "build-web.sh"
    # A stand-in for the Node build: writes the page as the real script does.
    script.write_text(
        '#!/usr/bin/env bash\nmkdir -p "$(dirname "$0")/../src/tokenwire/static"\n'
        'echo page > "$(dirname "$0")/../src/tokenwire/static/index.html"\n'
    )
    return root


def no_npm_path(tmp: Path) -> str:
    empty = tmp / "bin"
    empty.mkdir(exist_ok=True)
    return str(empty)


def test_the_setup_hook_is_registered_for_wheels_and_sdists() -> None:
    text = (ROOT / "setup.py").read_text()
    assert 'cmdclass={"build_py": build_py, "sdist": sdist}' in text
    assert "static/**/*" in (ROOT / "pyproject.toml").read_text()


def test_clean_checkout_without_npm_fails_clearly(tmp_path: Path) -> None:
    setup = load_setup()
    root = checkout(tmp_path)
    with pytest.raises(SystemExit, match=r"demo page .* not built and npm is not on PATH"):
        setup.ensure_web(root, {"PATH": no_npm_path(tmp_path)})


def test_no_web_sources_fails_clearly(tmp_path: Path) -> None:
    setup = load_setup()
    root = checkout(tmp_path, web=False)
    with pytest.raises(SystemExit, match="web/ sources are not here"):
        setup.ensure_web(root, {"PATH": no_npm_path(tmp_path)})


def test_opting_out_and_an_existing_page(tmp_path: Path) -> None:
    setup = load_setup()
    root = checkout(tmp_path)
    env = {"PATH": no_npm_path(tmp_path), "TOKENWIRE_BUILD_WITHOUT_WEB": "1"}
    assert setup.ensure_web(root, env) == "skipped"
    (root / "src" / "tokenwire" / "static").mkdir()
    (root / "src" / "tokenwire" / "static" / "index.html").write_text("x")
    assert setup.ensure_web(root, {"PATH": no_npm_path(tmp_path)}) == "present"


def test_the_page_is_built_when_npm_is_there(tmp_path: Path) -> None:
    setup = load_setup()
    root = checkout(tmp_path)
    bin_dir = tmp_path / "npmbin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text("#!/bin/sh\nexit 0\n")
    npm.chmod(0o755)
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    assert setup.ensure_web(root, env) == "built"
    assert (root / "src" / "tokenwire" / "static" / "index.html").is_file()


def test_bench_writes_local_results_unless_publishing() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.__main__ import LOCAL_RESULTS, RESULTS, results_dir

    assert results_dir(None, False) == LOCAL_RESULTS != RESULTS
    assert results_dir(None, True) == RESULTS
    assert results_dir(Path("/tmp/x"), True) == Path("/tmp/x")
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(LOCAL_RESULTS / "latest.json")], cwd=ROOT
    )
    assert ignored.returncode == 0  # a default run leaves the tree clean
    assert "--publish" in (ROOT / "Makefile").read_text()
