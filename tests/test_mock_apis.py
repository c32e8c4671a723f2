"""`tokenwire mock` as an OpenAI Responses and an Anthropic Messages server: the official SDKs
are its clients (proving the wire format), and our decoders give the same answers for every
scenario as for chat completions."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
import pytest
from conftest import serve_asgi

from tokenwire.mock import create_mock_app, tool_calls
from tokenwire.mock.scenarios import PREFIX_TOKENS
from tokenwire.protocol import assemble_response

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def mock_url():
    with serve_asgi(create_mock_app()) as url:
        yield url


def oa(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def an(url: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)


def post(url: str, api: str, **body: Any) -> httpx.Response:
    if api == "chat":
        return httpx.post(f"{url}/v1/chat/completions", json={"messages": MESSAGES, **body})
    if api == "responses":
        return httpx.post(f"{url}/v1/responses", json={"input": "hi", **body})
    headers = {"x-api-key": "k", "anthropic-version": "2023-06-01"}
    body.setdefault("max_tokens", 1024)
    return httpx.post(f"{url}/v1/messages", json={"messages": MESSAGES, **body}, headers=headers)


def test_openai_sdk_streams_responses_events(mock_url: str) -> None:
    client = oa(mock_url)
    types, text, reasoning = [], [], []
    with client.responses.create(model="mock-reasoning", input="hi", stream=True) as stream:
        for event in stream:
            types.append(event.type)
            if event.type == "response.output_text.delta":
                text.append(event.delta)
            elif event.type == "response.reasoning_summary_text.delta":
                reasoning.append(event.delta)
            elif event.type == "response.completed":
                final = event.response
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    assert final.output_text == "".join(text) and final.usage.output_tokens == 256
    assert final.output[0].type == "reasoning"
    assert final.output[0].summary[0].text == "".join(reasoning)
    # The SDK's own accumulating helper agrees.
    with client.responses.stream(model="mock-tools", input="hi") as stream:
        response = stream.get_final_response()
    calls = [(o.call_id, o.name, o.arguments) for o in response.output]
    assert calls == [tuple(c) for c in tool_calls(0)]


def test_openai_sdk_whole_response_and_limits(mock_url: str) -> None:
    client = oa(mock_url)
    response = client.responses.create(model="mock", input="hi")
    assert response.status == "completed" and response.output_text
    response = client.responses.create(model="mock", input="hi", max_output_tokens=30)
    assert response.status == "incomplete" and response.usage.output_tokens == 30
    assert response.incomplete_details.reason == "max_output_tokens"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="nope", input="hi")
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="mock-error", input="hi")


def test_anthropic_sdk_streams_messages_events(mock_url: str) -> None:
    client = an(mock_url)
    with client.messages.stream(model="mock-reasoning", max_tokens=80, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        message = stream.get_final_message()
    assert [b.type for b in message.content] == ["thinking", "text"]
    # (the mock answers exactly max_tokens tokens, as it does for chat completions)
    assert message.content[1].text == text and message.stop_reason == "max_tokens"
    assert message.content[0].signature.startswith("sig_")
    assert message.usage.output_tokens == 80
    with client.messages.stream(model="mock-tools", max_tokens=100, messages=MESSAGES) as stream:
        message = stream.get_final_message()
    assert message.stop_reason == "tool_use"
    calls = [(b.id, b.name, b.input) for b in message.content]
    assert calls == [(i, n, json.loads(a)) for i, n, a in tool_calls(0)]
    events = client.messages.create(model="mock", max_tokens=10, messages=MESSAGES, stream=True)
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    failing = client.messages.stream(model="mock-error", max_tokens=100, messages=MESSAGES)
    with pytest.raises(anthropic.APIStatusError, match="failed mid-stream"), failing as s:
        for _ in s:
            pass


def test_anthropic_sdk_whole_message(mock_url: str) -> None:
    client = an(mock_url)
    message = client.messages.create(model="mock", max_tokens=12, messages=MESSAGES)
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 12
    assert message.content[0].type == "text" and message.content[0].text
    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(model="nope", max_tokens=5, messages=MESSAGES)


# -- our decoders on the mock's bytes: every scenario, every API, streamed and whole -------------
LIMIT_FIELD = {"chat": "max_tokens", "responses": "max_output_tokens", "anthropic": "max_tokens"}


def decoded(url: str, api: str, model: str, stream: bool, limit: int = 200) -> dict:
    body = {LIMIT_FIELD[api]: limit}
    response = post(url, api, model=model, stream=stream, **body)
    _, message = assemble_response(response.content)
    return message.to_dict()


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
@pytest.mark.parametrize("stream", [True, False])
def test_every_scenario_decodes_alike_in_every_api(mock_url: str, api: str, stream: bool) -> None:
    reasoning = decoded(mock_url, api, "mock-reasoning", stream)
    assert [b["type"] for b in reasoning["blocks"]] == ["reasoning", "text"]
    # (the answer reaches the limit, so every API says so)
    assert reasoning["status"] == "completed" and reasoning["finish_reason"] == "length"
    chat = decoded(mock_url, "chat", "mock-reasoning", stream)
    assert [b["text"] for b in reasoning["blocks"]] == [b["text"] for b in chat["blocks"]]

    tools = decoded(mock_url, api, "mock-tools", stream)
    assert tools["finish_reason"] == "tool_calls"
    calls = [(b["id"], b["name"], json.loads(b["arguments"])) for b in tools["blocks"]]
    assert calls == [(i, n, json.loads(a)) for i, n, a in tool_calls(0)]

    if stream:
        failed = decoded(mock_url, api, "mock-error", stream)
        assert failed["status"] == "failed" and "failed mid-stream" in failed["error"]["message"]
        assert len(failed["blocks"]) == 1
        cut = decoded(mock_url, api, "mock-truncated", stream)
        assert cut["status"] == "failed" and cut["error"]["type"] == "truncated"
        assert len(cut["blocks"][0]["text"]) > PREFIX_TOKENS  # (tokens, not characters)


def test_limits_become_length_in_every_api(mock_url: str) -> None:
    for api in ("responses", "anthropic"):
        for stream in (True, False):
            message = decoded(mock_url, api, "mock-reasoning", stream, limit=10)
            assert message["finish_reason"] == "length", (api, stream)
            assert message["status"] == "completed"
