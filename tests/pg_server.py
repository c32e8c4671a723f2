"""A PostgreSQL database for tests, on a real server.

``TOKENWIRE_TEST_PG`` picks the server: ``auto`` (default) uses the one answering on
127.0.0.1:5432 (or ``TOKENWIRE_TEST_PG_URL``, an admin URL) and else starts a throwaway
cluster; ``shared`` / ``throwaway`` force one of the two; ``off`` skips the Postgres tests.

- shared: a database with a random name is created for the session and dropped after it;
  nothing else on that server is touched.
- throwaway: Debian's ``initdb`` + ``pg_ctl`` (``/usr/lib/postgresql/*/bin``) make a cluster
  in a temp dir and start it on a free 127.0.0.1 port with trust auth and no fsync; removed
  after. Postgres refuses to run as root: as root, the cluster runs as the ``postgres`` system
  user (which Debian's package creates), through ``runuser``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bin_dir() -> str | None:
    """The newest ``/usr/lib/postgresql/<v>/bin`` with ``initdb`` and ``pg_ctl``, or PATH's."""
    dirs = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda d: int(Path(d).parent.name) if Path(d).parent.name.isdigit() else 0,
    )
    for d in reversed(dirs):
        if os.access(f"{d}/initdb", os.X_OK) and os.access(f"{d}/pg_ctl", os.X_OK):
            return d
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return str(Path(os.path.realpath(initdb)).parent)
    return None


async def _admin(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=3)
    try:
        for sql in statements:
            await conn.execute(sql)
    finally:
        await conn.close()


def _answers(url: str) -> bool:
    try:
        asyncio.run(_admin(url, "SELECT 1"))
        return True
    except Exception:
        return False


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


class PgServer:
    """``url``: a database of our own. ``kind``: ``shared`` or ``throwaway``.

    ``kill_connections()`` ends every backend of our database (as a server restart does to
    clients); ``restart()`` stops and starts a throwaway server on the same port, data kept.
    """

    def __init__(self, mode: str | None = None) -> None:
        self.mode = mode or os.environ.get("TOKENWIRE_TEST_PG", "auto")
        self.admin_url = os.environ.get("TOKENWIRE_TEST_PG_URL", DEFAULT_ADMIN_URL)
        self.database = f"tw_test_{secrets.token_hex(6)}"
        self.kind = ""
        self.dir: str | None = None
        self.port = 0
        self._user: str | None = None
        self._bin: str | None = None

    @property
    def url(self) -> str:
        return _with_database(self.admin_url, self.database)

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> None:
        if self.mode not in ("auto", "shared", "throwaway"):
            raise ValueError(f"TOKENWIRE_TEST_PG={self.mode!r}: use auto, shared or throwaway")
        if self.mode in ("auto", "shared") and _answers(self.admin_url):
            self.kind = "shared"
        elif self.mode == "shared":
            raise RuntimeError(f"no PostgreSQL answers at {self.admin_url}")
        else:
            self._start_throwaway()
            self.kind = "throwaway"
        asyncio.run(_admin(self.admin_url, f'CREATE DATABASE "{self.database}"'))

    def close(self) -> None:
        if self.kind == "shared":
            # Only ever the database we created.
            with contextlib.suppress(Exception):
                asyncio.run(
                    _admin(
                        self.admin_url, f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'
                    )
                )
        elif self.kind == "throwaway":
            self.stop()
            if self.dir is not None:
                shutil.rmtree(self.dir, ignore_errors=True)
        self.kind = ""

    def __enter__(self) -> PgServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- faults --------------------------------------------------------------------------
    def kill_connections(self) -> int:
        """``pg_terminate_backend`` on every connection to our database; how many."""

        async def run() -> int:
            import asyncpg

            conn = await asyncpg.connect(self.admin_url, timeout=3)
            try:
                return len(
                    await conn.fetch(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = $1 AND pid <> pg_backend_pid()",
                        self.database,
                    )
                )
            finally:
                await conn.close()

        return asyncio.run(run())

    def stop(self) -> None:
        """Stop a throwaway server (fast shutdown: clients are disconnected)."""
        if self.dir is None:
            raise RuntimeError("only a throwaway server can be stopped")
        if os.path.exists(f"{self.dir}/data/postmaster.pid"):
            self._pg_ctl("stop", "-m", "fast", "-w", "-t", "30")

    def restart(self, down_s: float = 0.0) -> None:
        """Stop, stay down ``down_s``, start again on the same port (data kept)."""
        self.stop()
        time.sleep(down_s)
        self._pg_start()

    # -- throwaway cluster ---------------------------------------------------------------
    def _start_throwaway(self) -> None:
        self._bin = pg_bin_dir()
        if self._bin is None:
            raise FileNotFoundError("initdb/pg_ctl not found (Debian's postgresql package)")
        if os.geteuid() == 0:
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user") from None
            self._user = "postgres"
        self.dir = tempfile.mkdtemp(prefix="tw-pg-")
        if self._user is not None:
            shutil.chown(self.dir, self._user)
        self._run(
            f"{self._bin}/initdb", "-D", f"{self.dir}/data", "-U", "postgres", "-A", "trust",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        for attempt in range(5):  # another process may take the "free" port first
            self.port = _free_port()
            try:
                self._pg_start()
                break
            except subprocess.CalledProcessError:
                if attempt == 4:
                    raise
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _pg_start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c fsync=off"
            " -c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
        )
        self._pg_ctl("start", "-w", "-t", "30", "-l", f"{self.dir}/log", "-o", options)
        deadline = time.monotonic() + 10
        url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        while not _answers(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"throwaway PostgreSQL did not answer; see {self.dir}/log")
            time.sleep(0.05)

    def _pg_ctl(self, *args: str) -> None:
        self._run(f"{self._bin}/pg_ctl", "-D", f"{self.dir}/data", *args)

    def _run(self, *cmd: str) -> None:
        if self._user is not None:
            cmd = ("runuser", "-u", self._user, "--", *cmd)
        # (cwd: the postgres user may not be allowed into ours)
        done = subprocess.run(cmd, cwd=self.dir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if done.returncode != 0:
            raise subprocess.CalledProcessError(
                done.returncode, cmd, stderr=done.stderr.decode(errors="replace")
            )
