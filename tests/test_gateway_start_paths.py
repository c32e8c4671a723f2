"""The gateway's three ways to start a generation start it the same way (``start_generation``):
``POST /v1/streams``, ``POST /v1/aisdk/chat`` and ``POST /v1/chat/completions`` with
``X-Tokenwire-Detach: 1``. Each honours the ``tokenwire`` options member (and never forwards
it upstream) and runs the host's producer for its model (``create_app(producers=...)``).
Real sockets: the mock model server and the gateway, each served by uvicorn."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import serve_asgi

from tokenwire import StreamWriter
from tokenwire.errors import StreamFailed
from tokenwire.gateway import Settings, StreamRequest, create_app
from tokenwire.mock import create_mock_app

HOST_TEXT = "from the host's producer"
MESSAGES = [{"role": "user", "content": "hi"}]
UI_MESSAGES = [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[dict]]]:
    bodies: list[dict[str, Any]] = []  # what the host's producer was given, per start

    def host(request: StreamRequest):  # type: ignore[no-untyped-def]
        bodies.append(dict(request.body))

        async def produce(w: StreamWriter) -> None:
            await w.text(HOST_TEXT)

        return produce

    with serve_asgi(create_mock_app(tps=0, ttft_ms=0)) as mock:
        settings = Settings(upstream=f"{mock}/v1", data_dir=str(tmp_path_factory.mktemp("gw")))
        producers = {"host-model": host, "host-refuses": _refusing}
        with serve_asgi(create_app(settings, producers=producers)) as url:
            yield url, bodies


def _refusing(request: StreamRequest):  # type: ignore[no-untyped-def]
    """A host producer that refuses with an HTTP status and no error type."""

    async def produce(w: StreamWriter) -> None:
        raise StreamFailed("quota exhausted", status=429)

    return produce


def test_a_host_producers_untyped_refusal_is_its_status_with_a_type(
    gateway: tuple[str, list[dict]],
) -> None:
    """``StreamFailed(status=429)`` from the host's producer, before any output: the detached
    route answers 429 with a usable error type (never the string "None")."""
    url, _ = gateway
    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "host-refuses", "messages": MESSAGES, "stream": True},
        headers={"X-Tokenwire-Detach": "1"},
        timeout=10,
    )
    assert r.status_code == 429, r.text
    assert r.json() == {
        "error": {"message": "quota exhausted", "type": "upstream_error", "code": None}
    }
    assert r.headers["x-tokenwire-stream"].startswith("st_")


def _sse_data(body: str) -> list[Any]:
    out = []
    for line in body.splitlines():
        if line.startswith("data:"):
            data = line[5:].strip()
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def test_every_start_route_runs_the_hosts_producer_without_the_options_member(
    gateway: tuple[str, list[dict]],
) -> None:
    url, bodies = gateway
    options = {"tokenwire": {"coalesce_ms": 0, "supersede": False}}

    r = httpx.post(
        f"{url}/v1/streams", json={"model": "host-model", "messages": MESSAGES, **options}
    )
    assert r.status_code == 201, r.text

    r = httpx.post(
        f"{url}/v1/chat/completions",
        json={"model": "host-model", "messages": MESSAGES, "stream": True, **options},
        headers={"X-Tokenwire-Detach": "1"},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-tokenwire-stream"].startswith("st_")
    chunks = [c for c in _sse_data(r.text) if c != "[DONE]"]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == HOST_TEXT

    r = httpx.post(
        f"{url}/v1/aisdk/chat",
        json={"id": "chat-1", "model": "host-model", "messages": UI_MESSAGES, **options},
        timeout=10,
    )
    assert r.status_code == 200, r.text
    parts = [p for p in _sse_data(r.text) if p != "[DONE]"]
    assert "".join(p["delta"] for p in parts if p["type"] == "text-delta") == HOST_TEXT

    assert len(bodies) == 3  # one per route: the host's producer ran for each
    for body in bodies:
        assert "tokenwire" not in body and body["stream"] is True
    # Usage is asked for, but not for an OpenAI client that did not ask (detached route).
    assert [body.get("stream_options") for body in bodies] == [
        {"include_usage": True},
        None,
        {"include_usage": True},
    ]
    assert bodies[2]["messages"] == [{"role": "user", "content": "hi"}]  # UI -> chat messages


@pytest.mark.parametrize(
    ("path", "extra", "headers"),
    [
        ("/v1/streams", {"messages": MESSAGES}, {}),
        (
            "/v1/chat/completions",
            {"messages": MESSAGES, "stream": True},
            {"X-Tokenwire-Detach": "1"},
        ),
        ("/v1/aisdk/chat", {"id": "chat-2", "messages": UI_MESSAGES}, {}),
    ],
)
def test_every_start_route_refuses_bad_options_alike(
    gateway: tuple[str, list[dict]], path: str, extra: dict, headers: dict
) -> None:
    url, _ = gateway
    for bad in ({"coalesce_ms": -1}, {"supersede": "no"}, "fast"):
        r = httpx.post(
            f"{url}{path}", json={"model": "mock", **extra, "tokenwire": bad}, headers=headers
        )
        assert r.status_code == 400, (path, bad, r.text)
        assert r.json()["error"]["code"] == "invalid_options"
