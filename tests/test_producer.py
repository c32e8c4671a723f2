"""The producer: generators served as an OpenAI-compatible endpoint, checked with the SDK."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import msgspec
import openai
import pytest
from conftest import http_scope
from hypothesis import given
from hypothesis import strategies as st

from tokenwire.producer import (
    ChatRequest,
    ChunkFramer,
    Finish,
    RawDelta,
    Reasoning,
    RequestError,
    StreamEncoder,
    Text,
    ToolCallDelta,
    ToolCallStart,
    Usage,
    create_app,
)

MESSAGES = [{"role": "user", "content": "hello there"}]


async def rich_handler(request: ChatRequest) -> AsyncIterator[Any]:
    for word in ("Let", " me", " see"):
        yield Reasoning(word)
    yield "The answer"
    yield Text(' is: "42" </script>\n')
    yield ToolCallStart("call_a", "lookup")
    for fragment in ('{"q": ', '"wea', 'ther"}'):
        yield ToolCallDelta(fragment)
    yield ToolCallStart("call_b", "clock")
    yield ToolCallDelta('{"tz": "UTC"}', index=1)
    yield Usage(prompt_tokens=7)
    yield Finish("tool_calls")


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)


def collect(stream: Any) -> dict[str, Any]:
    """What a typical SDK user assembles from a stream."""
    text, reasoning, calls = [], [], {}
    finish, usage = None, None
    for chunk in stream:
        usage = chunk.usage or usage
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        finish = choice.finish_reason or finish
        text.append(delta.content or "")
        reasoning.append((delta.model_extra or {}).get("reasoning_content") or "")
        for call in delta.tool_calls or []:
            entry = calls.setdefault(call.index, {"id": None, "name": None, "arguments": ""})
            entry["id"] = call.id or entry["id"]
            if call.function:
                entry["name"] = call.function.name or entry["name"]
                entry["arguments"] += call.function.arguments or ""
    return {
        "text": "".join(text),
        "reasoning": "".join(reasoning),
        "calls": [calls[i] for i in sorted(calls)],
        "finish": finish,
        "usage": usage,
    }


def test_sdk_consumes_a_streamed_answer_with_every_part(asgi_server):
    with asgi_server(create_app(rich_handler, models=["rich"])) as url:
        stream = sdk(url).chat.completions.create(
            model="rich", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        got = collect(stream)
    assert got["reasoning"] == "Let me see"
    assert got["text"] == 'The answer is: "42" </script>\n'
    assert [(c["id"], c["name"]) for c in got["calls"]] == [
        ("call_a", "lookup"),
        ("call_b", "clock"),
    ]
    assert [json.loads(c["arguments"]) for c in got["calls"]] == [{"q": "weather"}, {"tz": "UTC"}]
    assert got["finish"] == "tool_calls"
    # 3 reasoning + 2 text + 4 argument fragments; the prompt count is the one reported.
    assert (got["usage"].prompt_tokens, got["usage"].completion_tokens) == (7, 9)
    assert got["usage"].total_tokens == 16


def test_sdk_consumes_the_same_answer_non_streamed(asgi_server):
    with asgi_server(create_app(rich_handler, models=["rich"])) as url:
        result = sdk(url).chat.completions.create(model="rich", messages=MESSAGES)
    message = result.choices[0].message
    assert message.content == 'The answer is: "42" </script>\n'
    assert message.model_extra["reasoning_content"] == "Let me see"
    assert [json.loads(c.function.arguments) for c in message.tool_calls] == [
        {"q": "weather"},
        {"tz": "UTC"},
    ]
    assert [c.id for c in message.tool_calls] == ["call_a", "call_b"]
    assert result.choices[0].finish_reason == "tool_calls"
    assert result.usage.completion_tokens == 9


async def raw_tool_handler(request: ChatRequest) -> AsyncIterator[Any]:
    # Tool calls as raw OpenAI fragments (as a server proxying another one would), then a
    # typed call after them: both modes must agree on the calls and the finish reason.
    yield RawDelta({"content": "Checking. "})
    first = {"index": 0, "id": "call_r", "type": "function", "function": {"name": "raw"}}
    yield RawDelta({"tool_calls": [{**first, "function": {"name": "raw", "arguments": ""}}]})
    yield RawDelta({"tool_calls": [{"index": 0, "function": {"arguments": '{"a": '}}]})
    yield RawDelta({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]})
    yield ToolCallStart("call_t", "typed")
    yield ToolCallDelta('{"b": 2}')


def test_raw_tool_call_fragments_agree_streamed_and_not(asgi_server):
    with asgi_server(create_app(raw_tool_handler, models=["raw"])) as url:
        client = sdk(url)
        streamed = collect(
            client.chat.completions.create(model="raw", messages=MESSAGES, stream=True)
        )
        whole = client.chat.completions.create(model="raw", messages=MESSAGES)
    expected = [("call_r", "raw", {"a": 1}), ("call_t", "typed", {"b": 2})]
    got = [(c["id"], c["name"], json.loads(c["arguments"])) for c in streamed["calls"]]
    assert got == expected
    assert streamed["text"] == "Checking. " and streamed["finish"] == "tool_calls"
    message = whole.choices[0].message
    calls = message.tool_calls or []
    assert [(c.id, c.function.name, json.loads(c.function.arguments)) for c in calls] == expected
    assert message.content == "Checking. "
    assert whole.choices[0].finish_reason == "tool_calls"


def test_usage_chunk_only_when_asked_and_stream_ends_with_done(asgi_server):
    async def handler(request: ChatRequest) -> AsyncIterator[str]:
        yield "a"
        yield "b"

    with asgi_server(create_app(handler)) as url:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        plain = httpx.post(f"{url}/v1/chat/completions", json=body)
        body["stream_options"] = {"include_usage": True}
        with_usage = httpx.post(f"{url}/v1/chat/completions", json=body)
    assert plain.headers["content-type"].startswith("text/event-stream")
    for response, usage_chunks in ((plain, 0), (with_usage, 1)):
        events = [e for e in response.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        chunks = [json.loads(e.removeprefix("data: ")) for e in events[:-1]]
        assert sum(1 for c in chunks if c["choices"] == []) == usage_chunks
        assert len({c["id"] for c in chunks}) == 1
        deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
        assert "".join(d.get("content") or "" for d in deltas) == "ab"
    last = json.loads(with_usage.text.split("\n\n")[-3].removeprefix("data: "))
    assert last["usage"]["completion_tokens"] == 2


def test_sync_generators_run_off_the_event_loop(asgi_server):
    def handler(request: ChatRequest) -> Iterator[str]:
        for i in range(5):
            time.sleep(0.005)  # a blocking model step
            yield f"t{i} "

    with asgi_server(create_app(handler)) as url:
        client = sdk(url)
        got = collect(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
        whole = client.chat.completions.create(model="m", messages=MESSAGES)
    assert got["text"] == "t0 t1 t2 t3 t4 "
    assert got["finish"] == "stop"
    assert whole.choices[0].message.content == "t0 t1 t2 t3 t4 "


@pytest.mark.parametrize("stream", [True, False])
def test_max_tokens_cuts_the_generator_and_reports_length(asgi_server, stream: bool):
    closed = threading.Event()

    async def handler(request: ChatRequest) -> AsyncIterator[str]:
        try:
            for i in range(1000):
                yield f"{i},"
        finally:
            closed.set()

    with asgi_server(create_app(handler)) as url:
        client = sdk(url)
        if stream:
            got = collect(
                client.chat.completions.create(
                    model="m", messages=MESSAGES, max_tokens=5, stream=True
                )
            )
            text, finish = got["text"], got["finish"]
        else:
            result = client.chat.completions.create(model="m", messages=MESSAGES, max_tokens=5)
            text, finish = result.choices[0].message.content, result.choices[0].finish_reason
    assert text == "0,1,2,3,4,"
    assert finish == "length"
    assert closed.wait(5)


def test_n_above_one_is_refused_with_an_openai_error(asgi_server):
    refused = pytest.raises(openai.BadRequestError)
    with asgi_server(create_app(rich_handler)) as url, refused as info:
        sdk(url).chat.completions.create(model="rich", messages=MESSAGES, n=2)
    assert info.value.status_code == 400
    assert info.value.body["param"] == "n"
    assert info.value.body["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        (b'{"model": "m"}', "messages"),
        (b'{"model": "m", "messages": []}', "messages"),
        (b'{"model": "m", "messages": "hi"}', "messages"),
        (b'{"messages": [{"role": "user", "content": "x"}]}', "model"),
        (b'{"model": "m", "messages": [{"content": "x"}]}', "messages[0].role"),
        (b'{"model": "m", "messages": [{"role": "user"}], "max_tokens": "9"}', "max_tokens"),
        (b'{"model": "m", "messages": [{"role": "user"}], "stream": "yes"}', "stream"),
        (b'{"model": "m", "messages": [{"role": "user"}], "stream_options": 3}', "stream_options"),
    ],
)
def test_bad_requests_get_a_400_error_object(asgi_server, body: bytes, param: str | None):
    with asgi_server(create_app(rich_handler)) as url:
        response = httpx.post(
            f"{url}/v1/chat/completions", content=body, headers={"content-type": "application/json"}
        )
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_unknown_model_handler_errors_and_model_list(asgi_server):
    def handler(request: ChatRequest) -> list[str]:
        if request.messages[0].text() == "refuse":
            raise RequestError("refused", param="messages", code="refused")
        return ["ok"]

    with asgi_server(create_app(handler, models=["a", "b"])) as url:
        models = httpx.get(f"{url}/v1/models").json()
        unknown = httpx.post(
            f"{url}/v1/chat/completions", json={"model": "zzz", "messages": MESSAGES}
        )
        refused = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": "a", "messages": [{"role": "user", "content": "refuse"}]},
        )
        listed = [m.id for m in sdk(url).models.list()]
    assert [m["id"] for m in models["data"]] == ["a", "b"] == listed
    assert unknown.status_code == 404
    assert unknown.json()["error"]["code"] == "model_not_found"
    assert refused.status_code == 400
    assert refused.json()["error"] == {
        "message": "refused",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "refused",
    }


@pytest.mark.parametrize("paced", [True, False])
def test_client_disconnect_closes_the_generator(asgi_server, paced: bool):
    """Paced: the generator is waiting on its own clock. Unpaced: the producer is waiting for
    the client to read. Either way leaving must stop and close the generator."""
    closed = threading.Event()
    yielded = 0
    ends: list[str] = []

    async def handler(request: ChatRequest) -> AsyncIterator[str]:
        nonlocal yielded
        try:
            while True:
                if paced:
                    await asyncio.sleep(0.002)
                yielded += 1
                yield "token " * 50
        finally:
            closed.set()

    app = create_app(handler, on_stream_end=lambda request, outcome: ends.append(outcome))
    with asgi_server(app) as url:
        body = {"model": "m", "messages": MESSAGES, "stream": True}
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
            stream = response.iter_bytes()
            next(stream)
            next(stream)
        assert closed.wait(5), "the generator was not closed after the client left"
        count = yielded
        time.sleep(0.05)
        assert yielded == count
        deadline = time.monotonic() + 5
        while not ends and time.monotonic() < deadline:
            time.sleep(0.01)
    assert ends == ["disconnected"]


def test_generator_failure_mid_stream_surfaces_as_an_error(asgi_server):
    async def handler(request: ChatRequest) -> AsyncIterator[str]:
        yield "partial"
        raise RuntimeError("boom")

    with asgi_server(create_app(handler)) as url:
        client = sdk(url)
        with pytest.raises(openai.APIError, match="failed while generating"):
            collect(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="m", messages=MESSAGES)


async def test_ready_chunks_are_sent_in_few_writes():
    """A generator that never waits must not cost one socket write per token."""

    async def handler(request: ChatRequest) -> AsyncIterator[str]:
        for _ in range(2000):
            yield "x"

    app = create_app(handler)
    body = msgspec.json.encode({"model": "m", "messages": MESSAGES, "stream": True})
    requests = [{"type": "http.request", "body": body, "more_body": False}]
    never = asyncio.Event()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if requests:
            return requests.pop()
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = http_scope(
        "POST", "/v1/chat/completions", headers=[(b"content-type", b"application/json")]
    )
    await app(scope, receive, send)
    bodies = [m["body"] for m in sent if m["type"] == "http.response.body"]
    data = b"".join(bodies)
    assert data.count(b'"content":"x"') == 2000
    assert data.endswith(b"data: [DONE]\n\n")
    assert len(bodies) < 100


@given(st.text())
def test_framed_chunks_decode_to_the_token(text: str):
    framer = ChunkFramer("chatcmpl-1", 'model "q"', 123)
    framed = ((framer.content(text), "content"), (framer.reasoning(text), "reasoning_content"))
    for frame, key in framed:
        assert frame.startswith(b"data: ") and frame.endswith(b"\n\n")
        assert b"\n" not in frame[:-2] and b"\r" not in frame
        chunk = json.loads(frame[6:])
        assert chunk["id"] == "chatcmpl-1"
        assert chunk["model"] == 'model "q"'
        assert chunk["created"] == 123
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["choices"] == [
            {"index": 0, "delta": {key: text}, "logprobs": None, "finish_reason": None}
        ]


def test_encoder_tool_call_indexes_and_finish():
    encoder = StreamEncoder(ChunkFramer("id", "m", 1), include_usage=True, prompt_tokens=3)
    frames = [
        encoder.feed(ToolCallStart("c1", "f")),
        encoder.feed(ToolCallDelta("{}")),
        encoder.feed(ToolCallStart("c2", "g", index=5)),
        encoder.feed(ToolCallDelta("[")),
        encoder.feed(ToolCallDelta("]", index=0)),
    ]
    chunks = [json.loads(f[6:]) for f in frames]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks]
    assert [c["index"] for c in calls] == [0, 0, 5, 5, 0]
    assert calls[0]["function"] == {"name": "f", "arguments": ""}
    assert calls[0]["id"] == "c1"
    tail = encoder.finish().split(b"\n\n")
    assert json.loads(tail[0][6:])["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(tail[1][6:])["usage"] == {
        "prompt_tokens": 3,
        "completion_tokens": 3,
        "total_tokens": 6,
    }
    assert tail[2] == b"data: [DONE]"


@pytest.mark.parametrize(
    "part",
    [
        ToolCallStart("c", "f", index=-1),
        ToolCallDelta("{}", index=-2),
        RawDelta({"tool_calls": [{"index": -1, "function": {"arguments": "{}"}}]}),
    ],
    ids=["start", "delta", "raw"],
)
def test_negative_tool_call_indexes_are_refused(part: Any) -> None:
    encoder = StreamEncoder(ChunkFramer("id", "m", 1), include_usage=False, prompt_tokens=0)
    with pytest.raises(ValueError, match="index must be 0 or more"):
        encoder.feed(part)
