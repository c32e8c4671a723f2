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

from tokenwire.mock import SCENARIOS, create_mock_app, tool_calls
from tokenwire.mock.scenarios import PREFIX_TOKENS, agent_answer, agent_call
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


def decoded(url: str, api: str, model: str, stream: bool, limit: int = 200, **extra: Any) -> dict:
    body = {LIMIT_FIELD[api]: limit, **extra}
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


def test_the_text_scenario_ends_normally_in_every_api(mock_url: str) -> None:
    """Anthropic requires ``max_tokens``, so there it is only a cap: ``mock`` with a generous
    one answers the same text as chat and Responses without a limit, and ends ``end_turn``
    (before, it filled the limit and always ended ``max_tokens``)."""
    chat = post(mock_url, "chat", model="mock").json()
    assert chat["choices"][0]["finish_reason"] == "stop"
    text = chat["choices"][0]["message"]["content"]
    responses = oa(mock_url).responses.create(model="mock", input="hi")
    assert (responses.status, responses.output_text) == ("completed", text)
    message = an(mock_url).messages.create(model="mock", max_tokens=1024, messages=MESSAGES)
    assert (message.stop_reason, message.content[0].text) == ("end_turn", text)
    with an(mock_url).messages.stream(model="mock", max_tokens=4096, messages=MESSAGES) as s:
        streamed = s.get_final_message()
    assert (streamed.stop_reason, streamed.content[0].text) == ("end_turn", text)
    # A lower max_tokens cuts the same text where chat's limit does.
    cut = an(mock_url).messages.create(model="mock", max_tokens=40, messages=MESSAGES)
    limited = post(mock_url, "chat", model="mock", max_tokens=40).json()["choices"][0]
    assert (cut.stop_reason, limited["finish_reason"]) == ("max_tokens", "length")
    assert cut.content[0].text == limited["message"]["content"]


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
def test_mock_tokens_sets_the_answers_length_in_every_api(mock_url: str, api: str) -> None:
    long = decoded(mock_url, api, "mock", True, limit=4000, mock={"tokens": 600})
    assert long["finish_reason"] == "stop"
    chat = decoded(mock_url, "chat", "mock", False, limit=4000, mock={"tokens": 600})
    assert long["blocks"] == chat["blocks"] and len(chat["blocks"][0]["text"]) > 2000
    cut = decoded(mock_url, api, "mock", False, limit=30, mock={"tokens": 600})
    assert cut["finish_reason"] == "length"
    bad = post(mock_url, api, model="mock", mock={"tokens": 0})
    assert bad.status_code == 400 and "mock.tokens" in bad.text


def test_limits_become_length_in_every_api(mock_url: str) -> None:
    for api in ("responses", "anthropic"):
        for stream in (True, False):
            message = decoded(mock_url, api, "mock-reasoning", stream, limit=10)
            assert message["finish_reason"] == "length", (api, stream)
            assert message["status"] == "completed"


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
def test_the_token_limit_counts_tool_arguments_alike_in_every_api(mock_url: str, api: str) -> None:
    for stream in (True, False):
        tools = decoded(mock_url, api, "mock-tools", stream, limit=3)
        assert tools["finish_reason"] == "length", (api, stream)
        usage = tools["usage"]
        if usage is None and api == "chat" and stream:
            continue  # (a chat stream reports usage only when asked with stream_options)
        assert usage.get("completion_tokens", usage.get("output_tokens")) == 3, (api, stream)


@pytest.mark.parametrize("api", ["responses", "anthropic"])
def test_whole_bodies_of_a_truncated_answer_hold_its_text_as_chat_does(mock_url, api) -> None:
    chat = post(mock_url, "chat", model="mock-truncated").json()
    text = chat["choices"][0]["message"]["content"]
    body = post(mock_url, api, model="mock-truncated").json()
    if api == "responses":
        assert body["status"] == "in_progress"
        assert body["output"][0]["content"][0]["text"] == text
    else:
        assert body["stop_reason"] is None and body["content"][0]["text"] == text


@pytest.mark.parametrize("api", ["responses", "anthropic"])
def test_a_model_that_is_not_a_string_is_400(mock_url: str, api: str) -> None:
    response = post(mock_url, api, model=["mock"])
    assert response.status_code == 400, response.text
    assert "model must be a string" in response.text


def test_mock_agent_in_the_responses_and_messages_apis(mock_url: str) -> None:
    call_id, name, arguments = agent_call(0)
    text, citations = agent_answer(0)
    client = oa(mock_url)
    with client.responses.stream(model="mock-agent", input="weather?") as stream:
        first = stream.get_final_response()
    assert [o.type for o in first.output] == ["reasoning", "function_call"]
    assert (first.output[1].call_id, first.output[1].name) == (call_id, name)
    assert first.output[1].arguments == arguments
    conversation = [
        {"role": "user", "content": "weather?"},
        {"type": "function_call", "call_id": call_id, "name": name, "arguments": arguments},
        {"type": "function_call_output", "call_id": call_id, "output": '{"temperature": 9}'},
    ]
    added = []
    with client.responses.stream(model="mock-agent", input=conversation) as stream:
        for event in stream:
            if event.type == "response.output_text.annotation.added":
                added.append(event.annotation)
        second = stream.get_final_response()
    assert second.output_text == text
    notes = second.output[0].content[0].annotations
    expected = [("url_citation", c.start, c.end, c.url, c.title) for c in citations]
    assert [(n.type, n.start_index, n.end_index, n.url, n.title) for n in notes] == expected
    assert len(added) == len(citations)

    claude = an(mock_url)
    with claude.messages.stream(model="mock-agent", max_tokens=500, messages=MESSAGES) as stream:
        first = stream.get_final_message()
    assert [b.type for b in first.content] == ["thinking", "tool_use"]
    assert (first.content[1].id, first.content[1].name) == (call_id, name)
    assert first.content[1].input == json.loads(arguments)
    history = [
        *MESSAGES,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "9 °C"}],
        },
    ]
    for streamed in (True, False):
        if streamed:
            with claude.messages.stream(model="mock-agent", max_tokens=500, messages=history) as s:
                second = s.get_final_message()
        else:
            second = claude.messages.create(model="mock-agent", max_tokens=500, messages=history)
        assert "".join(b.text for b in second.content) == text
        # Anthropic cites whole text blocks: each cited span is a block of its own.
        cited = [(b.text, b.citations[0].url) for b in second.content if b.citations]
        assert cited == [(text[c.start : c.end], c.url) for c in citations]
        assert second.stop_reason == "end_turn"


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
@pytest.mark.parametrize("stream", [True, False])
def test_mock_agent_sources_decode_alike_in_every_api(mock_url: str, api: str, stream: bool):
    if api == "chat":
        body: dict[str, Any] = {"messages": [*MESSAGES, {"role": "tool", "content": "9"}]}
    elif api == "responses":
        body = {"input": [{"type": "function_call_output", "call_id": "c", "output": "9"}]}
    else:
        result = {"type": "tool_result", "tool_use_id": "c", "content": "9"}
        body = {"messages": [*MESSAGES, {"role": "user", "content": [result]}]}
    response = post(mock_url, api, model="mock-agent", stream=stream, **body)
    blocks = assemble_response(response.content)[1].to_dict()["blocks"]
    text, citations = agent_answer(0)
    assert blocks[0] == {"type": "text", "text": text}
    assert [(b["url"], b["span"]) for b in blocks[1:]] == [
        (c.url, {"block": 0, "start": c.start, "end": c.end}) for c in citations
    ]


def _sse_payloads(body: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in body.splitlines() if line.startswith(b"data: {")]


@pytest.mark.parametrize("model", sorted(SCENARIOS))
def test_every_responses_event_and_body_passes_the_sdks_strict_types(
    mock_url: str, model: str
) -> None:
    """The SDK's stream helpers build objects without validation; its strict models are
    what proves the wire format (usage details, the enum of error codes, ...)."""
    from openai.types.responses import Response, ResponseStreamEvent
    from pydantic import TypeAdapter

    events = TypeAdapter(ResponseStreamEvent)
    streamed = post(mock_url, "responses", model=model, stream=True, max_output_tokens=40)
    payloads = _sse_payloads(streamed.content)
    assert payloads
    for payload in payloads:
        events.validate_python(payload)
    whole = post(mock_url, "responses", model=model, max_output_tokens=40)
    if whole.status_code == 200:
        Response.model_validate(whole.json())
    else:
        assert model == "mock-error" and whole.status_code == 500


def test_responses_usage_counts_reasoning_tokens(mock_url: str) -> None:
    streamed = post(mock_url, "responses", model="mock-reasoning", stream=True)
    payloads = _sse_payloads(streamed.content)
    reasoning = sum(p["type"] == "response.reasoning_summary_text.delta" for p in payloads)
    usage = payloads[-1]["response"]["usage"]
    assert reasoning > 0 and usage["output_tokens_details"]["reasoning_tokens"] == reasoning


@pytest.mark.parametrize("api", ["responses", "anthropic"])
def test_requests_are_checked_alike_in_every_api(mock_url: str, api: str) -> None:
    for body, words in (
        ({"model": "mock", "stream": "yes"}, "stream must be a boolean"),
        ({"model": "mock", "input": None, "messages": None}, "field required"),
    ):
        got = post(mock_url, api, **body)
        assert got.status_code == 400, (body, got.text)
        assert words in got.json()["error"]["message"]
    unknown = post(mock_url, api, model="nope").json()["error"]
    if api == "responses":  # (as chat's: the parameter and the code are named)
        assert (unknown["type"], unknown["param"], unknown["code"]) == (
            "invalid_request_error",
            "model",
            "model_not_found",
        )
    else:
        assert unknown["type"] == "not_found_error"


@pytest.mark.parametrize("api", ["chat", "responses", "anthropic"])
def test_tps_paces_every_api(api: str) -> None:
    """20 tokens at 100 per second take at least 0.19 s in each API (a lower bound only:
    a slow machine may take longer, never shorter)."""
    import time

    with serve_asgi(create_mock_app(tps=100)) as url:
        post(url, api, model="mock", stream=True, **{LIMIT_FIELD[api]: 2})  # (warm up)
        started = time.monotonic()
        got = post(url, api, model="mock", stream=True, **{LIMIT_FIELD[api]: 20})
        elapsed = time.monotonic() - started
    assert got.status_code == 200
    assert elapsed >= 0.19, (api, elapsed)


def test_a_responses_request_may_name_a_prompt_instead_of_input(mock_url: str) -> None:
    got = httpx.post(f"{mock_url}/v1/responses", json={"model": "mock", "prompt": {"id": "pmpt_1"}})
    assert got.status_code == 200, got.text
    assert got.json()["status"] == "completed"
