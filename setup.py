"""Build hook: a wheel always ships the demo page (``src/tokenwire/static``), or the build fails.

The page is built from ``web/`` with Node.js (``scripts/build-web.sh``, ``make web``) into a
directory git ignores, so a clean checkout does not have it. Building a wheel or sdist builds
it first when npm is available, and otherwise stops with a clear message instead of shipping a
package whose ``/`` page is missing. ``TOKENWIRE_BUILD_WITHOUT_WEB=1`` builds without it on
purpose (the gateway then answers ``/`` with 404; the API is unaffected). Editable installs
(``pip install -e .``) are not checked: they read the tree as it is.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py
from setuptools.command.sdist import sdist as _sdist

ROOT = Path(__file__).resolve().parent
PAGE = Path("src", "tokenwire", "static", "index.html")


class WebBuildError(SystemExit):
    pass


def ensure_web(root: Path = ROOT, env: dict[str, str] | None = None) -> str:
    """Make sure the demo page is built under ``root``; returns what was done. Raises
    :class:`WebBuildError` (a ``SystemExit`` with the reason) if it cannot be."""
    env = dict(os.environ) if env is None else env
    if (root / PAGE).is_file():
        return "present"
    if env.get("TOKENWIRE_BUILD_WITHOUT_WEB") == "1":
        return "skipped"
    script = root / "scripts" / "build-web.sh"
    if not (root / "web" / "package.json").is_file() or not script.is_file():
        raise WebBuildError(
            f"tokenwire: the demo page ({PAGE}) is not built and web/ sources are not here: "
            "build from a git checkout (run `make web` first), or set "
            "TOKENWIRE_BUILD_WITHOUT_WEB=1 to build without the page"
        )
    if shutil.which("npm", path=env.get("PATH")) is None:
        raise WebBuildError(
            f"tokenwire: the demo page ({PAGE}) is not built and npm is not on PATH: install "
            "Node.js >= 20 and run `make web` (or build again), or set "
            "TOKENWIRE_BUILD_WITHOUT_WEB=1 to build without the page"
        )
    subprocess.run(["bash", str(script)], check=True, env=env)
    if not (root / PAGE).is_file():
        raise WebBuildError(f"tokenwire: scripts/build-web.sh ran but {PAGE} is still missing")
    return "built"


class build_py(_build_py):
    def run(self) -> None:
        if not getattr(self, "editable_mode", False):
            ensure_web()
        super().run()


class sdist(_sdist):
    def run(self) -> None:
        ensure_web()
        super().run()


if __name__ == "__main__":
    setup(cmdclass={"build_py": build_py, "sdist": sdist})
