"""`tokenwire mock` continues a partial assistant message (vLLM's continue_final_message and
DeepSeek/Mistral's prefix: true) from exactly where it was cut, over real sockets: for every
cut (inside a token, a multi-byte text's token, a `<think>` tag, the reasoning), partial +
continuation is the uninterrupted answer, streamed and not."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from conftest import serve_asgi
from hypothesis import given, settings
from hypothesis import strategies as st

from tokenwire.commands.mock import add_arguments
from tokenwire.mock import create_mock_app
from tokenwire.mock.scenarios import agent_answer, agent_call

USER = [{"role": "user", "content": "What is the weather like?"}]
STYLES = ("reasoning_content", "reasoning", "think-tags")


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, str]]:
    """One mock per reasoning style, and one that cannot continue."""
    with (
        serve_asgi(create_mock_app()) as plain,
        serve_asgi(create_mock_app(reasoning_style="reasoning")) as field,
        serve_asgi(create_mock_app(reasoning_style="think-tags")) as tags,
        serve_asgi(create_mock_app(continuation=False)) as refusing,
    ):
        yield {"reasoning_content": plain, "reasoning": field, "think-tags": tags, "no": refusing}


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


class Answer:
    """What one response said: reasoning, content, finish reason, annotations."""

    def __init__(self, reasoning: str, content: str, finish: str | None, notes: list) -> None:
        self.reasoning = reasoning
        self.content = content
        self.finish = finish
        self.notes = notes


def ask(http: httpx.Client, url: str, field: str, stream: bool, **body: Any) -> Answer:
    response = http.post(f"{url}/v1/chat/completions", json={"stream": stream, **body})
    assert response.status_code == 200, response.text
    if not stream:
        choice = response.json()["choices"][0]
        message = choice["message"]
        return Answer(
            message.get(field) or "",
            message["content"] or "",
            choice["finish_reason"],
            message.get("annotations", []),
        )
    reasoning, content, notes, finish = [], [], [], None
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]
    assert events[-1] == "[DONE]"
    for event in events[:-1]:
        choice = json.loads(event)["choices"][0]
        delta = choice["delta"]
        reasoning.append(delta.get(field) or "")
        content.append(delta.get("content") or "")
        notes.extend(delta.get("annotations", []))
        finish = choice["finish_reason"] or finish
    return Answer("".join(reasoning), "".join(content), finish, notes)


def field_of(style: str) -> str:
    return "reasoning" if style == "reasoning" else "reasoning_content"


def history(model: str) -> list[dict[str, Any]]:
    """The conversation before the answer (mock-agent: its second call, after the tool)."""
    if model != "mock-agent":
        return USER
    call_id, name, arguments = agent_call(0)
    call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
    return [
        *USER,
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call_id, "content": '{"temperature": 9}'},
    ]


def continuation(
    kind: str, model: str, style: str, reasoning: str, content: str, limit: int | None
) -> dict[str, Any]:
    """A continuation request in vLLM's (`kind="vllm"`) or DeepSeek/Mistral's style."""
    partial: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning:
        partial[field_of(style)] = reasoning
    body: dict[str, Any] = {"model": model, "max_tokens": limit}
    if kind == "vllm":
        body |= {"continue_final_message": True, "add_generation_prompt": False}
    else:
        partial["prefix"] = True
    body["messages"] = [*history(model), partial]
    return body


def cut(full: Answer, at: int) -> tuple[str, str]:
    """The partial (reasoning, content) after ``at`` characters of reasoning then content."""
    if at <= len(full.reasoning):
        return full.reasoning[:at], ""
    return full.reasoning, full.content[: at - len(full.reasoning)]


CASES = [
    ("mock", "reasoning_content", 40),
    ("mock-reasoning", "reasoning_content", 80),
    ("mock-reasoning", "reasoning", 80),
    ("mock-reasoning", "think-tags", 80),
    ("mock-agent", "reasoning_content", None),
]
_uninterrupted: dict[tuple[str, str, bool], Answer] = {}


def uninterrupted(http, servers, model: str, style: str, limit, stream: bool) -> Answer:
    key = (model, style, stream)
    if key not in _uninterrupted:
        _uninterrupted[key] = ask(
            http,
            servers[style],
            field_of(style),
            stream,
            model=model,
            messages=history(model),
            max_tokens=limit,
        )
    return _uninterrupted[key]


@pytest.mark.parametrize(("model", "style", "limit"), CASES)
@pytest.mark.parametrize("kind", ["vllm", "prefix"])
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_partial_plus_continuation_is_the_uninterrupted_answer(
    http, servers, model: str, style: str, limit: int | None, kind: str, data
) -> None:
    stream = data.draw(st.booleans(), label="stream")
    full = uninterrupted(http, servers, model, style, limit, stream)
    total = len(full.reasoning) + len(full.content)
    at = data.draw(st.integers(0, total), label="cut")
    reasoning, content = cut(full, at)
    body = continuation(kind, model, style, reasoning, content, limit)
    rest = ask(http, servers[style], field_of(style), stream, **body)
    assert reasoning + rest.reasoning == full.reasoning
    assert content + rest.content == full.content
    assert rest.finish == full.finish
    # A citation is sent with the token that completes its span: the continuation repeats
    # exactly those not yet sent, with the uninterrupted answer's offsets.
    sent_later = [n for n in full.notes if n["url_citation"]["end_index"] > len(content)]
    assert rest.notes == sent_later


def test_cuts_inside_think_tags_and_multibyte_text(http, servers) -> None:
    tags = uninterrupted(http, servers, "mock-reasoning", "think-tags", 80, True)
    closing = tags.content.index("</think>")
    agent = uninterrupted(http, servers, "mock-agent", "reasoning_content", None, False)
    assert agent.content == agent_answer(0)[0]
    cuts = [
        ("mock-reasoning", "think-tags", 80, tags, [1, 3, 6, closing + 2, closing + 7]),
        # Between a cloud and its variation selector, inside "Malmö", after an astral emoji.
        (
            "mock-agent",
            "reasoning_content",
            None,
            agent,
            [agent.content.index("☁") + 1, agent.content.index("ö"), agent.content.index("🌧") + 1],
        ),
    ]
    for model, style, limit, full, positions in cuts:
        for at in positions:
            for stream in (True, False):
                body = continuation("prefix", model, style, "", full.content[:at], limit)
                rest = ask(http, servers[style], field_of(style), stream, **body)
                assert full.content[:at] + rest.content == full.content, (model, at)


def refused(http, url: str, body: dict[str, Any], stream: bool = False) -> dict[str, Any]:
    response = http.post(f"{url}/v1/chat/completions", json={"stream": stream, **body})
    assert response.status_code == 400, response.text
    return response.json()["error"]


@pytest.mark.parametrize("kind", ["vllm", "prefix"])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_a_partial_that_is_not_a_prefix_gets_400(http, servers, kind: str, data) -> None:
    full = uninterrupted(http, servers, "mock-reasoning", "reasoning_content", 80, False)
    text = full.reasoning + full.content
    at = data.draw(st.integers(1, len(text)), label="cut")
    wrong = data.draw(st.integers(0, at - 1), label="changed")
    changed = text[:wrong] + ("#" if text[wrong] != "#" else "%") + text[wrong + 1 : at]
    split = min(at, len(full.reasoning))
    body = continuation(
        kind, "mock-reasoning", "reasoning_content", changed[:split], changed[split:], 80
    )
    error = refused(http, servers["reasoning_content"], body, data.draw(st.booleans()))
    assert (error["code"], error["param"]) == ("continuation_mismatch", "messages")
    assert "not a prefix" in error["message"]


def test_other_mismatches_get_400(http, servers) -> None:
    url = servers["reasoning_content"]
    full = uninterrupted(http, servers, "mock-reasoning", "reasoning_content", 80, False)
    cases = [
        # Text after a reasoning that is not complete yet.
        ("", full.reasoning[:10], full.content[:5]),
        # No reasoning at all, but the answer starts with reasoning.
        ("", "", full.content[:5]),
        # Longer than the whole answer.
        ("", full.reasoning, full.content + " and more"),
    ]
    for _, reasoning, content in cases:
        body = continuation("prefix", "mock-reasoning", "reasoning_content", reasoning, content, 80)
        assert refused(http, url, body)["code"] == "continuation_mismatch"
    # The cut may not fall inside a tool call: mock-agent's first call ends with one.
    first = ask(http, url, "reasoning_content", False, model="mock-agent", messages=USER)
    body = continuation("vllm", "mock-agent", "reasoning_content", first.reasoning, '{"ci', None)
    body["messages"] = [*USER, body["messages"][-1]]
    assert refused(http, url, body)["code"] == "continuation_mismatch"
    # vLLM's own rules: add_generation_prompt must be false, the last message an assistant's.
    body = {"model": "mock", "messages": [*USER, {"role": "assistant", "content": "#"}]}
    error = refused(http, url, {**body, "continue_final_message": True})
    assert error["param"] == "add_generation_prompt"
    body = {"model": "mock", "messages": USER, "continue_final_message": True}
    error = refused(http, url, {**body, "add_generation_prompt": False})
    assert "assistant" in error["message"]


def test_continuing_inside_reasoning_still_gives_the_tool_call(http, servers) -> None:
    url = servers["reasoning_content"]
    first = ask(http, url, "reasoning_content", True, model="mock-agent", messages=USER)
    body = continuation("prefix", "mock-agent", "reasoning_content", first.reasoning[:7], "", None)
    body["messages"] = [*USER, body["messages"][-1]]
    response = http.post(f"{url}/v1/chat/completions", json=body).json()
    message = response["choices"][0]["message"]
    assert first.reasoning[:7] + message["reasoning_content"] == first.reasoning
    call = message["tool_calls"][0]
    assert (call["id"], call["function"]["name"], call["function"]["arguments"]) == agent_call(0)
    assert response["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("kind", ["vllm", "prefix"])
def test_a_mock_that_cannot_continue_says_so(http, servers, kind: str) -> None:
    body = continuation(kind, "mock", "reasoning_content", "", "## ", 40)
    for stream in (True, False):
        error = refused(http, servers["no"], body, stream)
        assert error["code"] == "unsupported_parameter"
        assert error["param"] == ("continue_final_message" if kind == "vllm" else "messages")
    # Other requests are served as usual.
    plain = {"model": "mock", "messages": USER, "max_tokens": 5}
    assert http.post(f"{servers['no']}/v1/chat/completions", json=plain).status_code == 200
    # The per-request override, both ways.
    error = refused(http, servers["reasoning_content"], {**body, "mock": {"continuation": False}})
    assert error["code"] == "unsupported_parameter"
    allowed = {**body, "mock": {"continuation": True}}
    assert http.post(f"{servers['no']}/v1/chat/completions", json=allowed).status_code == 200


def test_cli_flag() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args([]).continuation is True
    assert parser.parse_args(["--no-continuation"]).continuation is False


def test_pacing_applies_to_the_continuation(http, servers) -> None:
    url = servers["reasoning_content"]
    full = ask(http, url, "reasoning_content", False, model="mock", messages=USER, max_tokens=30)
    body = continuation("vllm", "mock", "reasoning_content", "", full.content[:9], 30)
    body["mock"] = {"tps": 100, "ttft_ms": 100}
    started = time.monotonic()
    rest = ask(http, url, "reasoning_content", True, **body)
    elapsed = time.monotonic() - started
    assert full.content[:9] + rest.content == full.content
    # >= 25 tokens left at 100/s after a 100 ms first-token delay.
    assert elapsed >= 0.1 + 0.24
