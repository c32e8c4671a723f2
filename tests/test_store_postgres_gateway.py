"""Two gateways that share nothing but a PostgresStore (each its own in-process hub, as two
machines whose Redis retention has passed): a message finished on one is read on the other,
with the same owner check. The store is swapped in on the app's Gateway until the lead wires
``store_from_url`` into gateway/app.py."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator

import httpx
import pytest
from conftest import serve_asgi

from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app

pytest.importorskip("asyncpg")

from tokenwire.store_postgres import PostgresStore


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as url:
        yield url


def machine(mock_url: str, pg_url: str, table: str):  # type: ignore[no-untyped-def]
    settings = Settings(
        upstream=f"{mock_url}/v1", retention_s=0.2, coalesce_ms=0, api_keys=("k-alice", "k-bob")
    )
    app = create_app(settings)
    app.state.gateway.store = PostgresStore(pg_url, table=table, max_connections=2)
    return serve_asgi(app)


def test_a_message_finished_on_one_machine_is_read_on_another(mock_url: str, pg_server) -> None:
    table = f"tw_{secrets.token_hex(5)}"
    alice = {"Authorization": "Bearer k-alice"}
    bob = {"Authorization": "Bearer k-bob"}
    with machine(mock_url, pg_server.url, table) as a, machine(mock_url, pg_server.url, table) as b:
        body = {"model": "mock-reasoning", "messages": [{"role": "user", "content": "hi"}]}
        created = httpx.post(f"{a}/v1/streams", json=body, headers=alice, timeout=20)
        assert created.status_code == 201, created.text
        stream_id = created.json()["id"]
        with httpx.stream(
            "GET", f"{a}/v1/streams/{stream_id}/events", headers=alice, timeout=20
        ) as events:
            events.read()
        live = httpx.get(f"{a}/v1/streams/{stream_id}", headers=alice).json()
        assert live["status"] == "completed"
        time.sleep(0.6)  # both hubs' retention has passed: only Postgres knows the stream
        assert httpx.get(f"{b}/v1/streams/{stream_id}", headers=alice).json() == live
        assert httpx.get(f"{b}/v1/streams/{stream_id}", headers=bob).status_code == 404
        assert httpx.get(f"{a}/v1/streams/st_nope{stream_id[3:]}", headers=alice).status_code == 404
