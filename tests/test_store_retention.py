"""Issue 12, items 12 and 15: stored messages expire when asked to; several workers without
Redis are refused."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tokenwire.gateway.service import make_store
from tokenwire.gateway.settings import (
    Settings,
    WorkerSetupError,
    check_worker_setup,
    declared_workers,
)
from tokenwire.gateway.store import Store, StoredStream


def row(stream_id: str, finished_at: float) -> StoredStream:
    return StoredStream(stream_id, None, "completed", 3, b"{}", finished_at - 1, finished_at)


async def test_rows_are_kept_by_default(tmp_path: Path) -> None:
    store = Store(tmp_path)
    await store.open()
    await store.save(row("st_old", 1.0))
    assert await store.cleanup() == 0
    assert await store.get("st_old") is not None
    await store.close()


async def test_cleanup_deletes_rows_past_retention(tmp_path: Path) -> None:
    store = Store(tmp_path, retention_s=60.0)
    await store.open()
    now = time.time()  # (rows recent enough that the store's own pass keeps both)
    await store.save(row("st_old", now - 10))
    await store.save(row("st_new", now + 3000))
    assert await store.cleanup(now + 100) == 1
    assert await store.get("st_old") is None
    assert await store.get("st_new") is not None
    await store.close()


async def test_the_store_cleans_up_by_itself(tmp_path: Path) -> None:
    store = Store(tmp_path, retention_s=0.2, cleanup_interval_s=0.1)
    await store.open()
    await store.save(row("st_x", time.time()))
    for _ in range(50):
        if await store.get("st_x") is None:
            break
        await asyncio.sleep(0.05)
    assert await store.get("st_x") is None
    await store.close()  # and the background task is gone
    assert store._retention._task is None


@pytest.mark.parametrize("store_url", ["sqlite://", "postgresql://tw@127.0.0.1:1/tw"])
def test_store_retention_applies_with_a_store_url(store_url: str) -> None:
    """``--store-retention-s`` reaches the store a ``--store-url`` names, too (it used to
    reach only the default SQLite store in ``--data-dir``)."""
    pytest.importorskip("asyncpg")
    settings = Settings(
        store_url=store_url, store_retention_s=86400.0, store_cleanup_interval_s=60.0
    )
    store = make_store(settings)
    assert (store.retention_s, store.cleanup_interval_s) == (86400.0, 60.0)  # type: ignore[attr-defined]


async def test_the_cleanup_task_outlives_an_unexpected_error(tmp_path: Path, caplog) -> None:
    """A pass that fails with an error nobody expected is logged and the next pass runs; the
    store still closes cleanly (the task used to die silently and make ``close()`` raise)."""
    store = Store(tmp_path, retention_s=0.0, cleanup_interval_s=0.05)
    calls: list[float] = []
    delete = store._retention._delete

    async def flaky(cutoff: float) -> int:
        calls.append(cutoff)
        if len(calls) == 1:
            raise ValueError("something unexpected")
        return await delete(cutoff)

    store._retention._delete = flaky
    await store.open()
    await store.save(row("st_x", time.time() - 1))
    for _ in range(100):
        if len(calls) >= 3 and await store.get("st_x") is None:
            break
        await asyncio.sleep(0.02)
    assert len(calls) >= 3 and await store.get("st_x") is None
    assert any("cleanup failed" in r.getMessage() for r in caplog.records)
    await store.close()


async def test_retention_set_after_construction_is_used(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.retention_s = 60.0  # (before open: the task starts with it)
    assert store._retention.retention_s == 60.0
    await store.open()
    try:
        await store.save(row("st_old", time.time() - 120))
        await store.save(row("st_new", time.time()))
        await store.cleanup()  # (the store's own first pass may have been first)
        assert await store.get("st_old") is None and await store.get("st_new") is not None
    finally:
        await store.close()
    with pytest.raises(ValueError):
        store.cleanup_interval_s = 0


def test_store_retention_setting_from_env() -> None:
    assert Settings.from_env({}).store_retention_s is None
    assert Settings.from_env({"TOKENWIRE_STORE_RETENTION_S": "86400"}).store_retention_s == 86400
    with pytest.raises(ValueError):
        Store(None, retention_s=-1)


@pytest.mark.parametrize(
    ("argv", "env", "workers"),
    [
        (["/venv/bin/uvicorn", "--factory", "tokenwire.gateway.app:app_from_env"], {}, 1),
        (["/venv/bin/uvicorn", "--factory", "x:app_from_env", "--workers", "4"], {}, 4),
        (["/venv/bin/uvicorn", "--workers=3", "--factory", "x:y"], {}, 3),
        (["/venv/lib/site-packages/uvicorn/__main__.py", "x:y", "--workers", "2"], {}, 2),
        (["/venv/bin/gunicorn", "-w", "5", "x:y"], {}, 5),
        (["/venv/bin/uvicorn", "x:y"], {"WEB_CONCURRENCY": "6"}, 6),
        (["/venv/bin/tokenwire", "serve", "--workers", "4"], {}, 1),  # (serve checks itself)
    ],
)
def test_declared_workers(argv: list[str], env: dict[str, str], workers: int) -> None:
    assert declared_workers(argv, env) == workers


def test_several_workers_without_redis_are_refused() -> None:
    argv = ["/venv/bin/uvicorn", "--factory", "tokenwire.gateway.app:app_from_env", "-w", "4"]
    with pytest.raises(WorkerSetupError, match="TOKENWIRE_REDIS_URL"):
        check_worker_setup(Settings(), argv, {})
    with pytest.raises(WorkerSetupError):
        check_worker_setup(Settings(workers=2), ["x"], {})
    check_worker_setup(Settings(redis_url="redis://127.0.0.1:6379/0"), argv, {})
    check_worker_setup(Settings(), ["/venv/bin/uvicorn", "x:y", "--reload"], {})


def test_uvicorn_with_workers_and_no_redis_stops_with_one_clear_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    from conftest import free_port

    root = Path(__file__).resolve().parent.parent
    env = {
        **os.environ,
        "PYTHONPATH": f"{root / 'src'}{os.pathsep}{root / 'tests'}",
        "TOKENWIRE_UPSTREAM": "http://127.0.0.1:9/v1",
        "TOKENWIRE_DATA_DIR": str(tmp_path),
    }
    env.pop("TOKENWIRE_REDIS_URL", None)
    cmd = [sys.executable, "-m", "uvicorn", "--factory", "tokenwire.gateway.app:app_from_env"]
    cmd += ["--workers", "2", "--port", str(free_port()), "--host", "127.0.0.1"]
    # (Before: the server started and served, each worker knowing only its own streams.)
    result = subprocess.run(cmd, env=env, capture_output=True, timeout=30, cwd=tmp_path)
    output = (result.stdout + result.stderr).decode()
    assert "tokenwire: error: 2 gateway worker processes need a shared hub" in output
    assert "Traceback" not in output
    assert output.count("tokenwire: error:") <= 2  # one per worker, no restart loop
