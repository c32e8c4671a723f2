"""The mock model server: every scenario through the official SDK and through our decoder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

import httpx
import openai
import pytest
from conftest import free_port, serve_asgi

from tokenwire.cli import main as cli_main
from tokenwire.mock import SCENARIOS, create_mock_app, tool_calls
from tokenwire.mock.scenarios import agent_answer, agent_call
from tokenwire.protocol import assemble_response

MESSAGES = [{"role": "user", "content": "hi"}]


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def post(url: str, **body: Any) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", json={"messages": MESSAGES, **body})


def chunks_of(response: httpx.Response) -> tuple[list[dict[str, Any]], bool]:
    """The JSON events of an SSE body, and whether it ended with [DONE]."""
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]
    done = bool(events) and events[-1] == "[DONE]"
    return [json.loads(e) for e in events if e != "[DONE]"], done


def content_of(chunks: list[dict[str, Any]]) -> list[str]:
    return [
        c["choices"][0]["delta"]["content"]
        for c in chunks
        if c.get("choices") and c["choices"][0]["delta"].get("content")
    ]


@pytest.fixture(scope="module")
def mock_url():

    with serve_asgi(create_mock_app()) as url:
        yield url


def test_models_lists_every_scenario(mock_url: str):
    ids = [m.id for m in sdk(mock_url).models.list()]
    assert ids == list(SCENARIOS)
    assert {
        "mock",
        "mock-reasoning",
        "mock-tools",
        "mock-error",
        "mock-truncated",
        "mock-html",
        "mock-agent",
    } <= (set(ids))


def test_mock_text_is_markdown_of_exactly_max_tokens(mock_url: str):
    client = sdk(mock_url)
    stream = client.chat.completions.create(
        model="mock",
        messages=MESSAGES,
        max_tokens=300,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces, usage, finish = [], None, None
    for chunk in stream:
        usage = chunk.usage or usage
        if chunk.choices:
            finish = chunk.choices[0].finish_reason or finish
            if chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    text = "".join(pieces)
    assert len(pieces) == 300
    assert usage.completion_tokens == 300
    assert finish == "length"
    assert "## " in text and "\n- " in text and "\n```" in text
    whole = client.chat.completions.create(model="mock", messages=MESSAGES, max_tokens=300)
    assert whole.choices[0].message.content == text
    default = chunks_of(post(mock_url, model="mock", stream=True))[0]
    assert len(content_of(default)) == 256
    assert default[-1]["choices"][0]["finish_reason"] == "stop"


def test_output_is_deterministic_per_seed(asgi_server, mock_url: str):
    first = post(mock_url, model="mock", max_tokens=80).json()["choices"][0]["message"]
    again = post(mock_url, model="mock", max_tokens=80).json()["choices"][0]["message"]
    other = post(mock_url, model="mock", max_tokens=80, mock={"seed": 7}).json()
    with asgi_server(create_mock_app(seed=7)) as url:
        seven = post(url, model="mock", max_tokens=80).json()
    assert first == again
    assert other["choices"][0]["message"] != first
    assert other["choices"][0]["message"] == seven["choices"][0]["message"]


@pytest.mark.parametrize("style", ["reasoning_content", "reasoning", "think-tags"])
def test_reasoning_styles(asgi_server, style: str):
    with asgi_server(create_mock_app(reasoning_style=style)) as url:
        client = sdk(url)
        reasoning, text = [], []
        stream = client.chat.completions.create(
            model="mock-reasoning", messages=MESSAGES, max_tokens=100, stream=True
        )
        for chunk in stream:
            delta = chunk.choices[0].delta
            reasoning.append((delta.model_extra or {}).get(style) or "")
            text.append(delta.content or "")
        whole = (
            client.chat.completions.create(
                model="mock-reasoning", messages=MESSAGES, max_tokens=100
            )
            .choices[0]
            .message
        )
    if style == "think-tags":
        assert "".join(reasoning) == ""
        assert "".join(text).startswith("<think>\nLet me think")
        assert "</think>\n\n## " in "".join(text)
        assert whole.content == "".join(text)
    else:
        assert "".join(reasoning).startswith("Let me think")
        assert "".join(text).startswith("## ")
        assert whole.model_extra[style] == "".join(reasoning)
        assert whole.content == "".join(text)


def test_tool_calls_assemble_to_json_with_the_sdk(mock_url: str):
    client = sdk(mock_url)
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in client.chat.completions.create(model="mock-tools", messages=MESSAGES, stream=True):
        finish = chunk.choices[0].finish_reason or finish
        for call in chunk.choices[0].delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += call.id or ""
            entry["name"] += call.function.name or ""
            entry["arguments"] += call.function.arguments or ""
    expected = [(i, n, json.loads(a)) for i, n, a in tool_calls(0)]
    assert [(c["id"], c["name"], json.loads(c["arguments"])) for c in calls.values()] == expected
    assert finish == "tool_calls"
    whole = client.chat.completions.create(model="mock-tools", messages=MESSAGES)
    message = whole.choices[0].message
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in message.tool_calls
    ] == (expected)
    assert whole.choices[0].finish_reason == "tool_calls"


@pytest.mark.parametrize("style", ["gemini", "ollama"])
def test_tool_styles_reproduce_index_quirks(asgi_server, mock_url: str, style: str):
    chunks, done = chunks_of(
        post(mock_url, model="mock-tools", stream=True, mock={"tool_style": style})
    )
    entries = [e for c in chunks for e in c["choices"][0]["delta"].get("tool_calls", [])]
    assert done
    assert [(e["id"], e["function"]["name"], e["function"]["arguments"]) for e in entries] == (
        tool_calls(0)
    )
    if style == "gemini":
        assert all("index" not in e for e in entries)
    else:
        assert [e["index"] for e in entries] == [0, 0]
    # The app-wide setting (--tool-style) does the same as the per-request one.
    with asgi_server(create_mock_app(tool_style=style)) as url:
        app_wide = chunks_of(post(url, model="mock-tools", stream=True))[0]
    assert [c["choices"] for c in app_wide] == [c["choices"] for c in chunks]


def test_error_mid_stream_surfaces_in_the_sdk(mock_url: str):
    client = sdk(mock_url)
    seen = []
    with pytest.raises(openai.APIError, match="failed mid-stream"):
        for chunk in client.chat.completions.create(
            model="mock-error", messages=MESSAGES, stream=True
        ):
            seen.append(chunk.choices[0].delta.content or "")
    assert "".join(seen)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="mock-error", messages=MESSAGES)
    assert info.value.body["code"] == "mock_error"


def test_truncated_stream_has_no_finish_reason_and_no_done(mock_url: str):
    chunks, done = chunks_of(post(mock_url, model="mock-truncated", stream=True))
    assert not done
    assert content_of(chunks)
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks)
    # The SDK simply sees the stream end.
    listed = list(
        sdk(mock_url).chat.completions.create(
            model="mock-truncated", messages=MESSAGES, stream=True
        )
    )
    assert listed and listed[-1].choices[0].finish_reason is None


def test_html_scenario_carries_raw_markup(mock_url: str):
    text = "".join(content_of(chunks_of(post(mock_url, model="mock-html", stream=True))[0]))
    assert '<img src=x onerror="window.__xss=1">' in text
    assert "<script>window.__xss=2</script>" in text
    whole = sdk(mock_url).chat.completions.create(model="mock-html", messages=MESSAGES)
    assert whole.choices[0].message.content == text


def test_bad_override_and_unknown_model(mock_url: str):
    bad = post(mock_url, model="mock", mock={"tps": "fast"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "mock"
    unknown = post(mock_url, model="gpt-9")
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "model"


def stats(url: str) -> dict[str, int]:
    return httpx.get(f"{url}/_mock/stats").json()


def wait_for(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_stats_count_completed_and_disconnected_streams(asgi_server):
    with asgi_server(create_mock_app(tps=200)) as url:
        assert stats(url) == {
            "started": 0,
            "active": 0,
            "completed": 0,
            "disconnected": 0,
            "failed": 0,
        }
        post(url, model="mock", stream=True, max_tokens=5)
        post(url, model="mock", max_tokens=5)  # not streamed: not counted
        assert wait_for(lambda: stats(url)["completed"] == 1)
        body = {"model": "mock", "messages": MESSAGES, "stream": True, "max_tokens": 100000}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            received = response.iter_bytes()  # kept: dropping it would close the stream
            next(received)
            assert stats(url)["active"] == 1
        assert wait_for(lambda: stats(url)["disconnected"] == 1)
        assert stats(url) == {
            "started": 2,
            "active": 0,
            "completed": 1,
            "disconnected": 1,
            "failed": 0,
        }
        # An answer that ends with an error event failed, in every API alike (chat counted
        # it completed, Anthropic and Responses failed).
        post(url, model="mock-error", stream=True)
        assert wait_for(lambda: stats(url)["failed"] == 1)
        messages = {"model": "mock-error", "max_tokens": 50, "messages": MESSAGES, "stream": True}
        httpx.post(f"{url}/v1/messages", json=messages, timeout=10)
        responses = {"model": "mock-error", "input": "hi", "stream": True}
        httpx.post(f"{url}/v1/responses", json=responses, timeout=10)
        assert wait_for(lambda: stats(url)["failed"] == 3)
        assert stats(url)["completed"] == 1


def test_paced_stream_matches_unpaced_output(mock_url: str):
    fast = post(mock_url, model="mock", stream=True, max_tokens=20)
    slow = post(
        mock_url, model="mock", stream=True, max_tokens=20, mock={"tps": 400, "ttft_ms": 20}
    )
    assert content_of(chunks_of(fast)[0]) == content_of(chunks_of(slow)[0])


EXPECTED_STATUS = {
    "mock": ("completed", "length"),
    "mock-reasoning": ("completed", "length"),
    "mock-tools": ("completed", "tool_calls"),
    "mock-error": ("failed", None),
    "mock-truncated": ("failed", None),
    "mock-html": ("completed", "stop"),
    "mock-agent": ("completed", "tool_calls"),  # (its first call: no tool result yet)
}


CASES = [(model, "openai") for model in SCENARIOS] + [
    ("mock-tools", "gemini"),
    ("mock-tools", "ollama"),
]


@pytest.mark.parametrize(("model", "style"), CASES)
def test_recorded_output_decodes_into_the_expected_message(mock_url: str, model: str, style: str):
    limit = None if model == "mock-html" else 120
    response = post(
        mock_url,
        model=model,
        stream=True,
        max_tokens=limit,
        mock={"tool_style": style},
        stream_options={"include_usage": True},
    )
    _, message = assemble_response(response.content)
    got = message.to_dict()
    assert (got["status"], got["finish_reason"]) == EXPECTED_STATUS[model]
    blocks = got["blocks"]
    if model == "mock-tools":
        assert [(b["type"], b["id"], b["name"], b["arguments"]) for b in blocks] == [
            ("tool_call", *call) for call in tool_calls(0)
        ]
        return
    if model == "mock-agent":
        assert [b["type"] for b in blocks] == ["reasoning", "tool_call"]
        assert (blocks[1]["id"], blocks[1]["name"], blocks[1]["arguments"]) == agent_call(0)
        return
    whole = post(mock_url, model=model, max_tokens=limit)
    if model == "mock-error":
        assert got["error"]["message"] == "The mock model failed mid-stream."
        assert [b["type"] for b in blocks] == ["text"] and blocks[0]["text"]
        assert whole.status_code == 500
        return
    if model == "mock-truncated":
        assert got["error"]["type"] == "truncated"
        assert [b["type"] for b in blocks] == ["text"] and blocks[0]["text"]
        return
    answer = whole.json()["choices"][0]["message"]
    if model == "mock-reasoning":
        assert [b["type"] for b in blocks] == ["reasoning", "text"]
        assert blocks[0]["text"] == answer["reasoning_content"]
    else:
        assert [b["type"] for b in blocks] == ["text"]
        assert got["usage"]["completion_tokens"] == (limit or got["usage"]["completion_tokens"])
    assert blocks[-1]["text"] == answer["content"]


def test_think_tags_decode_into_a_reasoning_block(asgi_server):
    with asgi_server(create_mock_app(reasoning_style="think-tags")) as url:
        response = post(url, model="mock-reasoning", stream=True, max_tokens=100)
    _, message = assemble_response(response.content)
    blocks = message.to_dict()["blocks"]
    assert [b["type"] for b in blocks] == ["reasoning", "text"]
    assert blocks[0]["text"].strip().startswith("Let me think")
    assert "<think>" not in blocks[1]["text"]


def test_cli_rejects_bad_settings(capsys):
    assert cli_main(["mock", "--tps", "-1"]) == 2
    assert "must not be negative" in capsys.readouterr().err


def test_cli_serves_the_mock(tmp_path):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tokenwire", "mock", "--port", str(port), "--seed", "3"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return httpx.get(f"{url}/v1/models").status_code == 200
            except httpx.HTTPError:
                return False

        assert wait_for(up, timeout=15), "tokenwire mock did not start"
        answer = post(url, model="mock", max_tokens=10, mock={"seed": 3}).json()
        default = post(url, model="mock", max_tokens=10).json()
        assert answer["choices"][0]["message"] == default["choices"][0]["message"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- mock-agent: a tool round, then an answer citing its sources ----------------------------
def test_mock_agent_two_calls_with_the_openai_sdk(mock_url: str):
    client = sdk(mock_url)
    call_id, name, arguments = agent_call(0)
    # First call: reasoning, then one tool call whose arguments arrive in several deltas.
    reasoning, fragments, finish, order = [], [], None, []
    stream = client.chat.completions.create(model="mock-agent", messages=MESSAGES, stream=True)
    for chunk in stream:
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        thought = (choice.delta.model_extra or {}).get("reasoning_content")
        if thought:
            reasoning.append(thought)
            order.append("reasoning")
        for call in choice.delta.tool_calls or []:
            assert call.index == 0
            if call.id:
                assert (call.id, call.function.name) == (call_id, name)
                order.append("call")
            fragments.append(call.function.arguments or "")
    assert order.index("call") == len(reasoning) and "get_weather" in "".join(reasoning)
    assert len([f for f in fragments if f]) >= 3 and "".join(fragments) == arguments
    assert json.loads(arguments) == {"city": "Malmö", "unit": "celsius", "days": 2}
    assert finish == "tool_calls"
    whole = client.chat.completions.create(model="mock-agent", messages=MESSAGES)
    assert whole.choices[0].message.tool_calls[0].function.arguments == arguments
    assert whole.choices[0].message.model_extra["reasoning_content"] == "".join(reasoning)

    # Second call: the host ran the tool; the answer cites its sources by span.
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    conversation = [
        *MESSAGES,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"temperature": 9}'},
    ]
    text, citations = agent_answer(0)
    answer = client.chat.completions.create(model="mock-agent", messages=conversation)
    message = answer.choices[0].message
    assert message.content == text and answer.choices[0].finish_reason == "stop"
    notes = [
        (n.type, n.url_citation.start_index, n.url_citation.end_index, n.url_citation.url)
        for n in message.annotations
    ]
    assert notes == [("url_citation", c.start, c.end, c.url) for c in citations]
    spans = [text[c.start : c.end] for c in citations]
    assert spans[0].startswith("Right now") and spans[0].endswith("Malmö.")
    assert spans[1].startswith("Tomorrow") and "🌧️" in spans[1]
    pieces, streamed_notes, finish = [], [], None
    for chunk in client.chat.completions.create(
        model="mock-agent", messages=conversation, stream=True
    ):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        pieces.append(choice.delta.content or "")
        for note in (choice.delta.model_extra or {}).get("annotations") or []:
            # Sent with the token that completes the cited span.
            assert note["url_citation"]["end_index"] == len("".join(pieces))
            streamed_notes.append(note)
    assert "".join(pieces) == text and finish == "stop"
    assert [n["url_citation"]["url"] for n in streamed_notes] == [c.url for c in citations]
    # Our decoder makes them sources with spans into the text block.
    _, decoded = assemble_response(
        post(mock_url, model="mock-agent", messages=conversation, stream=True).content
    )
    blocks = decoded.to_dict()["blocks"]
    assert blocks[0] == {"type": "text", "text": text}
    assert [(b["url"], b["span"]) for b in blocks[1:]] == [
        (c.url, {"block": 0, "start": c.start, "end": c.end}) for c in citations
    ]


def test_mock_agent_is_paced_and_deterministic(asgi_server):
    with asgi_server(create_mock_app(tps=200, seed=5)) as url:
        started = time.monotonic()
        first = chunks_of(post(url, model="mock-agent", stream=True))[0]
        elapsed = time.monotonic() - started
        again = chunks_of(post(url, model="mock-agent", stream=True))[0]
    deltas = [c["choices"][0]["delta"] for c in first]
    # Reasoning and argument fragments are tokens: at 200/s they take their time.
    assert elapsed >= (len(deltas) - 3) / 200
    assert deltas == [c["choices"][0]["delta"] for c in again]
    call = next(d["tool_calls"][0] for d in deltas if d.get("tool_calls"))
    assert call["id"] == agent_call(5)[0]
