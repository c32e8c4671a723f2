"""The session's PostgreSQL database (see ``pg_server.py``); imported by ``conftest.py``."""

from __future__ import annotations

import importlib.util
import os

import pytest


@pytest.fixture(scope="session")
def pg_server():
    """A real PostgreSQL database of our own (``.url``, ``.kind``, ``.kill_connections()``,
    ``.restart()`` on a throwaway server); skipped when none can be had."""
    if os.environ.get("TOKENWIRE_TEST_PG") == "off":
        pytest.skip("TOKENWIRE_TEST_PG=off")
    if importlib.util.find_spec("asyncpg") is None:
        pytest.skip("asyncpg is not installed (pip install -e '.[dev]')")
    from pg_server import PgServer, pg_bin_dir

    server = PgServer()
    try:
        server.start()
    except Exception as exc:
        server.close()
        if server.mode != "auto" or pg_bin_dir() is not None:
            raise  # a server was asked for, or could have been started: a real failure
        pytest.skip(f"no PostgreSQL on 127.0.0.1:5432 and no initdb to start one ({exc})")
    try:
        yield server
    finally:
        server.close()
