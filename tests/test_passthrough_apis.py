"""The raw passthrough of ``POST /v1/responses`` and ``POST /v1/messages`` (issue 16): the
official ``openai`` (Responses) and ``anthropic`` SDKs pointed at the gateway, in front of
``tokenwire mock``; what the upstream sent reaches the client byte for byte, with the upstream
API's auth headers, under the gateway's own auth and body-size rules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest
from conftest import serve_asgi
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app

MESSAGES = [{"role": "user", "content": "hi"}]
KEY = "gw-key"
UPSTREAM_KEY = "sk-upstream"


class Recorder:
    """ASGI wrapper around the mock: keeps each request's path and headers and the exact
    body bytes it answered with."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: list[tuple[str, dict[str, str], bytearray]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        body = bytearray()
        self.seen.append((scope["path"], headers, body))

        async def record(message: Message) -> None:
            if message["type"] == "http.response.body":
                body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, record)


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[str, Recorder]]:
    recorder = Recorder(create_mock_app())
    with serve_asgi(recorder) as url:
        yield url, recorder


def _gateway(url: str, api: str = "chat", **extra: Any) -> Iterator[str]:
    settings = Settings(
        upstream=f"{url}/v1",
        upstream_api=api,
        upstream_api_key=UPSTREAM_KEY,
        api_keys=(KEY,),
        coalesce_ms=0,
        **extra,
    )
    with serve_asgi(create_app(settings)) as base:
        yield base


@pytest.fixture(scope="module")
def gateway(upstream: tuple[str, Recorder]) -> Iterator[str]:
    yield from _gateway(upstream[0], max_body_bytes=4096)


def test_openai_sdk_responses_through_the_gateway(
    gateway: str, upstream: tuple[str, Recorder]
) -> None:
    recorder = upstream[1]
    client = openai.OpenAI(base_url=f"{gateway}/v1", api_key=KEY, max_retries=0)
    recorder.seen.clear()
    text: list[str] = []
    raw = httpx.Client(base_url=gateway, headers={"Authorization": f"Bearer {KEY}"})
    with client.responses.create(model="mock-reasoning", input="hi", stream=True) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
    assert final.output_text == "".join(text) and final.output[0].type == "reasoning"
    path, headers, _ = recorder.seen[-1]
    assert path == "/v1/responses"
    assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}"  # (never the gateway's key)
    assert "x-api-key" not in headers
    # Byte for byte, streamed and whole.
    for stream_flag in (True, False):
        body = {"model": "mock-tools", "input": "hi", "stream": stream_flag}
        got = raw.post("/v1/responses", json=body)
        assert got.status_code == 200
        assert got.content == bytes(recorder.seen[-1][2]) and got.content
        ctype = got.headers["content-type"]
        assert ctype.startswith("text/event-stream" if stream_flag else "application/json")
    # Upstream errors come through as they are.
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")
    raw.close()


def test_anthropic_sdk_messages_through_the_gateway(
    gateway: str, upstream: tuple[str, Recorder]
) -> None:
    recorder = upstream[1]
    recorder.seen.clear()
    # The Anthropic SDK sends its key as x-api-key: the gateway accepts that as its key.
    client = anthropic.Anthropic(base_url=gateway, api_key=KEY, max_retries=0)
    with client.messages.stream(model="mock-reasoning", max_tokens=80, messages=MESSAGES) as s:
        text = "".join(s.text_stream)
        message = s.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    assert message.content[1].text == text and message.usage.output_tokens == 80
    path, headers, _ = recorder.seen[-1]
    assert path == "/v1/messages"
    assert headers["x-api-key"] == UPSTREAM_KEY
    assert headers["anthropic-version"] == client.default_headers["anthropic-version"]
    bearer = anthropic.Anthropic(base_url=gateway, auth_token=KEY, max_retries=0)
    whole = bearer.messages.create(model="mock", max_tokens=12, messages=MESSAGES)
    assert whole.usage.output_tokens == 12
    raw = httpx.Client(base_url=gateway, headers={"x-api-key": KEY})
    for stream_flag in (True, False):
        body = {"model": "mock-tools", "max_tokens": 50, "messages": MESSAGES}
        got = raw.post("/v1/messages", json={**body, "stream": stream_flag})
        assert got.status_code == 200
        assert got.content == bytes(recorder.seen[-1][2]) and got.content
        # No anthropic-version from the client: the default; the client's one otherwise.
        assert recorder.seen[-1][1]["anthropic-version"] == "2023-06-01"
    raw.post("/v1/messages", json=body, headers={"anthropic-version": "2099-01-01"})
    assert recorder.seen[-1][1]["anthropic-version"] == "2099-01-01"
    raw.close()


def test_passthrough_auth_and_body_limit(gateway: str, upstream: tuple[str, Recorder]) -> None:
    recorder = upstream[1]
    recorder.seen.clear()
    big = {"model": "mock", "input": "x" * 5000, "messages": MESSAGES, "max_tokens": 5}
    for path in ("/v1/responses", "/v1/messages"):
        small = {"model": "mock", "input": "hi", "messages": MESSAGES, "max_tokens": 5}
        missing = httpx.post(f"{gateway}{path}", json=small)
        assert missing.status_code == 401
        # The error says how this route takes the key (the Anthropic SDKs send x-api-key).
        hint = missing.json()["error"]["message"]
        assert ("x-api-key" in hint) == (path == "/v1/messages") and "Bearer" in hint, hint
        # (x-api-key is the gateway key's other spelling on /v1/messages only)
        bad = {"x-api-key": "nope"} if path == "/v1/messages" else {"Authorization": "Bearer no"}
        wrong = httpx.post(f"{gateway}{path}", json=small, headers=bad)
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "invalid_api_key"
        good = {"Authorization": f"Bearer {KEY}"}
        too_big = httpx.post(f"{gateway}{path}", json=big, headers=good)
        assert too_big.status_code == 413, path
    assert recorder.seen == []  # (nothing refused reached the upstream)


def test_anthropic_upstream_gateway_sends_bearer_to_responses(
    upstream: tuple[str, Recorder],
) -> None:
    """With ``--upstream-api anthropic`` the upstream client sends no Bearer on its own: the
    Responses passthrough adds it, the Messages one uses x-api-key only."""
    url, recorder = upstream
    for base in _gateway(url, "anthropic"):
        auth = {"Authorization": f"Bearer {KEY}"}
        recorder.seen.clear()
        httpx.post(f"{base}/v1/responses", json={"model": "mock", "input": "hi"}, headers=auth)
        assert recorder.seen[-1][1]["authorization"] == f"Bearer {UPSTREAM_KEY}"
        body = {"model": "mock", "max_tokens": 5, "messages": MESSAGES}
        httpx.post(f"{base}/v1/messages", json=body, headers=auth)
        headers = recorder.seen[-1][1]
        assert headers["x-api-key"] == UPSTREAM_KEY and "authorization" not in headers
        # Every other route that reaches the upstream carries the key too: the chat
        # passthrough, the detached chat (both Bearer, the OpenAI-compatible endpoint's
        # auth) and the model list (the configured API's auth).
        body = {"model": "mock", "max_tokens": 5, "messages": MESSAGES, "stream": True}
        for extra in ({}, {"X-Tokenwire-Detach": "1"}):
            recorder.seen.clear()
            got = httpx.post(f"{base}/v1/chat/completions", json=body, headers=auth | extra)
            assert got.status_code == 200, got.text
            path, headers, _ = recorder.seen[-1]
            assert path == "/v1/chat/completions"
            assert headers["authorization"] == f"Bearer {UPSTREAM_KEY}", extra
        recorder.seen.clear()
        httpx.get(f"{base}/v1/models", headers=auth)
        path, headers, _ = recorder.seen[-1]
        assert path == "/v1/models" and headers["x-api-key"] == UPSTREAM_KEY
        assert headers["anthropic-version"] == "2023-06-01"
