"""``POST /v1/streams`` against each upstream API (``upstream_api``), over real sockets: the
request goes to that API's endpoint and its stream is decoded by that API's decoder."""

from __future__ import annotations

import httpx
import pytest
from conftest import serve_asgi

from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app


@pytest.mark.parametrize(
    ("api", "body"),
    [
        ("chat", {"messages": [{"role": "user", "content": "hi"}]}),
        ("responses", {"input": "hi"}),
        ("anthropic", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}),
    ],
)
def test_streams_from_every_upstream_api(api: str, body: dict) -> None:
    with serve_asgi(create_mock_app()) as mock_url:
        settings = Settings(upstream=f"{mock_url}/v1", upstream_api=api, coalesce_ms=0)
        with (
            serve_asgi(create_app(settings)) as url,
            httpx.Client(base_url=url, timeout=20) as http,
        ):
            created = http.post("/v1/streams", json={"model": "mock", **body})
            assert created.status_code == 201, created.text
            with http.stream("GET", created.json()["events_url"]) as response:
                response.read()
            snapshot = http.get(created.json()["url"]).json()
            message = snapshot["message"]
            assert snapshot["status"] == "completed", message
            assert message["blocks"] and message["blocks"][-1]["type"] == "text"
            assert message["usage"] is not None
            if api == "responses":
                missing = http.post("/v1/streams", json={"model": "mock", "messages": []})
                assert missing.json()["error"]["code"] == "missing_input"
