"""The views over HTTP on the real gateway (uvicorn on 127.0.0.1, the mock model upstream),
read by the official ``openai`` SDK: ``?format=openai|responses|aisdk|ops``, the detached
``POST /v1/chat/completions``, the AI SDK chat routes' HTTP rules, ``Client.openai_chunks``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import openai
import pytest
from conftest import serve_asgi
from openai.types.chat import ChatCompletionChunk
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from tokenwire.client import Client
from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app
from tokenwire.protocol import SSEDecoder

PROMPT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(mock_url: str) -> Iterator[str]:
    settings = Settings(
        upstream=f"{mock_url}/v1", coalesce_ms=0, keepalive_s=0.5, catchup_threshold=16
    )
    with serve_asgi(create_app(settings)) as url:
        yield url


@pytest.fixture
def http(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=20) as client:
        yield client


def _oai(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)


def _create(http: httpx.Client, model: str = "mock", **extra: Any) -> str:
    response = http.post("/v1/streams", json={"model": model, "messages": PROMPT, **extra})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def _final_text(http: httpx.Client, stream_id: str) -> str:
    http.post(f"/v1/streams/{stream_id}/cancel")  # (no-op once ended; waits for the end)
    message = http.get(f"/v1/streams/{stream_id}").json()["message"]
    return "".join(b.get("text", "") for b in message["blocks"] if b["type"] == "text")


def _content(chunks: list[ChatCompletionChunk]) -> str:
    return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


def _wait_done(http: httpx.Client, stream_id: str) -> dict[str, Any]:
    for _ in range(200):
        snap = http.get(f"/v1/streams/{stream_id}").json()
        if snap["status"] != "in_progress":
            return snap
        import time

        time.sleep(0.02)
    raise AssertionError("stream did not end")


def _sdk_events(client: openai.OpenAI, stream_id: str, query: str, cast_to: Any) -> list[Any]:
    """A view of the stream (``query``: its format and cursor) read by the SDK's parser."""
    return list(
        client.get(
            f"/streams/{stream_id}/events?{query}",
            cast_to=cast_to,
            stream=True,
            stream_cls=openai.Stream[cast_to],
        )
    )


def _sdk_resume(client: openai.OpenAI, stream_id: str, start: int) -> list[ChatCompletionChunk]:
    """The documented resume: the openai view from ``startIndex``."""
    return _sdk_events(client, stream_id, f"format=openai&startIndex={start}", ChatCompletionChunk)


def test_openai_sdk_detached_cut_and_resume(gateway: str, http: httpx.Client) -> None:
    """The SDK reads the detached answer, the connection is cut mid-answer, and the rest
    comes from ``?format=openai&startIndex=<chunks received>``: nothing lost or repeated."""
    client = _oai(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model="mock",
        messages=PROMPT,  # type: ignore[arg-type]
        stream=True,
        extra_headers={"X-Tokenwire-Detach": "1"},
        extra_body={"mock": {"tps": 400}},
    )
    stream_id = raw.headers["x-tokenwire-stream"]
    assert stream_id.startswith("st_")
    stream = raw.parse()
    got: list[ChatCompletionChunk] = []
    for chunk in stream:
        got.append(chunk)
        if len(got) == 12:
            break
    stream.response.close()  # the connection is cut (the generation goes on)
    rest = _sdk_resume(client, stream_id, len(got))
    chunks = got + rest
    snap = _wait_done(http, stream_id)
    want = "".join(b["text"] for b in snap["message"]["blocks"] if b["type"] == "text")
    assert len(want) > 100
    assert _content(chunks) == want
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    # The client did not ask for usage: as from OpenAI, no ``choices: []`` usage chunk, so
    # the usual ``chunk.choices[0]`` loop works to the end.
    assert all(c.choices for c in chunks) and snap["message"]["usage"] is None
    assert {c.id for c in chunks} == {f"chatcmpl-{stream_id}"}


def test_detached_upstream_refusal_is_its_http_error(gateway: str, http: httpx.Client) -> None:
    """An upstream that refuses the request (an unknown model: 404) is answered with its
    status and error, as the passthrough (and OpenAI) would, so the SDK raises its typed
    error; the stream is still recorded, ended ``failed`` with the upstream's status."""
    client = _oai(gateway)
    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(
            model="no-such-model",
            messages=PROMPT,  # type: ignore[arg-type]
            stream=True,
            extra_headers={"X-Tokenwire-Detach": "1"},
        )
    assert refused.value.code == "model_not_found"
    assert "no-such-model" in refused.value.message
    stream_id = refused.value.response.headers["x-tokenwire-stream"]
    snap = _wait_done(http, stream_id)
    assert snap["status"] == "failed"
    assert snap["message"]["error"]["status"] == 404
    assert snap["message"]["error"]["code"] == "model_not_found"
    # A failure after output is the stream's own ending, as before: an error chunk.
    raw = client.chat.completions.with_raw_response.create(
        model="mock-error",
        messages=PROMPT,  # type: ignore[arg-type]
        stream=True,
        extra_headers={"X-Tokenwire-Detach": "1"},
    )
    assert raw.http_response.status_code == 200
    with pytest.raises(openai.APIError):
        list(raw.parse())


def test_detached_usage_chunk_only_when_the_client_asked(gateway: str, http: httpx.Client) -> None:
    """With ``stream_options.include_usage`` the stream ends with OpenAI's usage chunk, in the
    POST answer and in a resume from the start alike."""
    client = _oai(gateway)
    raw = client.chat.completions.with_raw_response.create(
        model="mock",
        messages=PROMPT,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"X-Tokenwire-Detach": "1"},
    )
    stream_id = raw.headers["x-tokenwire-stream"]
    chunks = list(raw.parse())
    resumed = _sdk_resume(client, stream_id, 0)
    for read in (chunks, resumed):
        assert read[-1].choices == [] and read[-1].usage is not None
        assert read[-1].usage.total_tokens > 0 and all(c.choices for c in read[:-1])
    assert _wait_done(http, stream_id)["message"]["usage"] is not None


def test_openai_view_last_event_id_resume(http: httpx.Client) -> None:
    """``Last-Event-ID`` (an op seq) resumes right after it, parsed by the SDK's chunk model;
    a reader far behind gets merged deltas (fewer chunks, same text)."""
    stream_id = _create(http)
    snap = _wait_done(http, stream_id)
    want = "".join(b["text"] for b in snap["message"]["blocks"] if b["type"] == "text")
    full = http.get(f"/v1/streams/{stream_id}/events", params={"format": "openai"}).content
    events = [e for e in SSEDecoder().feed(full) if e.data != "[DONE]"]
    # From the start, far more than the threshold behind: compacted (merged deltas).
    assert len(events) < 20
    for cut in (3, 10, snap["seq"] - 2):
        body = http.get(
            f"/v1/streams/{stream_id}/events?format=openai",
            headers={"Last-Event-ID": str(cut)},
        ).content
        tail = [
            ChatCompletionChunk.model_validate_json(e.data)
            for e in SSEDecoder().feed(body)
            if e.data != "[DONE]"
        ]
        head = http.get(
            f"/v1/streams/{stream_id}/events?format=openai&startIndex=0"
        ).content  # exact chunks: the prefix up to seq `cut` is a known one
        exact = [e for e in SSEDecoder().feed(head) if e.data != "[DONE]"]
        prefix = []
        for e in exact:
            prefix.append(ChatCompletionChunk.model_validate_json(e.data))
            if e.id == str(cut):
                break
        assert _content(prefix + tail) == want, cut
    # The end is several chunks of one op (finish, usage): each has an id, ``<seq>.<k>``
    # before the op's last, and resuming after one of them sends only what follows it.
    head = http.get(f"/v1/streams/{stream_id}/events?format=openai&startIndex=0").content
    ends = [e for e in SSEDecoder().feed(head) if e.id is not None and "." in e.id]
    assert ends and ends[0].id == f"{snap['seq']}.1"
    after = http.get(
        f"/v1/streams/{stream_id}/events?format=openai", headers={"Last-Event-ID": ends[0].id}
    ).content
    rest = SSEDecoder().feed(after)
    assert [e.data for e in rest] == [
        e.data for e in SSEDecoder().feed(head)[-len(rest) :]
    ] and not any('"finish_reason":"stop"' in e.data for e in rest)
    bad = http.get(
        f"/v1/streams/{stream_id}/events?format=openai", headers={"Last-Event-ID": "3.0"}
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_cursor"


def test_client_openai_chunks(gateway: str, http: httpx.Client) -> None:
    stream_id = _create(http, "mock-reasoning")
    with Client(gateway) as client:
        chunks = list(client.openai_chunks(stream_id))
        again = list(client.openai_chunks(stream_id, start_index=5))
    parsed = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert parsed[0].choices[0].delta.role == "assistant"
    assert chunks[5:] == again
    reasoning = "".join(
        (c["choices"][0]["delta"].get("reasoning_content") or "") for c in chunks if c["choices"]
    )
    assert reasoning and _content(parsed) == _final_text(http, stream_id)


def test_openai_sdk_reads_the_responses_view(gateway: str, http: httpx.Client) -> None:
    stream_id = _create(http, "mock-reasoning")
    _wait_done(http, stream_id)
    client = _oai(gateway)

    def read(query: str) -> list[Any]:
        return _sdk_events(client, stream_id, f"format=responses{query}", ResponseStreamEvent)

    events = read("")
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    text = events[-1].response.output_text
    assert text == _final_text(http, stream_id)
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers))
    rest = read(f"&starting_after={numbers[2]}")
    assert [e.sequence_number for e in rest] == numbers[3:]
    assert rest[-1].response.output_text == text
    # Every event also passes the SDK's strict models (the stream parser above does not
    # validate: a missing required field would only show here).
    for model in ("mock-reasoning", "mock-tools"):
        other = _create(http, model, max_tokens=80)
        _wait_done(http, other)
        raw = http.get(f"/v1/streams/{other}/events?format=responses&catchup=exact").content
        for event in SSEDecoder().feed(raw):
            TypeAdapter(ResponseStreamEvent).validate_json(event.raw)


def test_bad_format_and_cursors_are_400_json(http: httpx.Client) -> None:
    stream_id = _create(http)
    _wait_done(http, stream_id)
    url = f"/v1/streams/{stream_id}/events"
    cases = [
        ({"format": "xml"}, {}, "invalid_format"),
        ({"format": "responses", "starting_after": "x"}, {}, "invalid_cursor"),
        ({"format": "responses", "starting_after": "99999"}, {}, "starting_after_out_of_range"),
        ({"format": "openai"}, {"Last-Event-ID": "-1"}, "invalid_cursor"),
        ({"format": "openai"}, {"Last-Event-ID": "99999"}, "after_out_of_range"),
        ({"format": "aisdk", "startIndex": "1.5"}, {}, "invalid_cursor"),
        ({"format": "aisdk", "startIndex": "99999"}, {}, "start_index_out_of_range"),
    ]
    for params, headers, code in cases:
        response = http.get(url, params=params, headers=headers)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["code"] == code
    # The error names the cursor actually given (header or query parameter).
    named = http.get(url, params={"format": "openai", "after": "abc"})
    assert named.status_code == 400 and "after must be" in named.json()["error"]["message"]
    named = http.get(url, params={"format": "ops"}, headers={"Last-Event-ID": "abc"})
    assert named.status_code == 400 and "Last-Event-ID must" in named.json()["error"]["message"]
    assert http.get("/v1/streams/st_nope_nope_nope_nope/events?format=aisdk").status_code == 404
    # ``format=ops`` is the op stream: a malformed cursor gets the op stream's code.
    for params, headers in (
        ({"after": "-1"}, {}),
        ({"after": "x"}, {}),
        ({}, {"Last-Event-ID": "abc"}),
    ):
        codes = {
            http.get(url, params={**extra, **params}, headers=headers).json()["error"]["code"]
            for extra in ({}, {"format": "ops"})
        }
        assert codes == {"invalid_after"}, (params, headers, codes)
    # Another view's cursor is refused, not ignored (ignored, it would replay from the start).
    foreign = [
        ({"format": "responses", "after": "3"}, "?after="),
        ({"format": "responses", "startIndex": "3"}, "?startIndex="),
        ({"format": "aisdk", "starting_after": "3"}, "?starting_after="),
        ({"format": "aisdk", "after": "3"}, "?after="),
        ({"format": "ops", "startIndex": "3"}, "?startIndex="),
        ({"format": "openai", "starting_after": "3"}, "?starting_after="),
        ({"starting_after": "3"}, "?starting_after="),  # the op stream (no format)
        ({"startIndex": "3"}, "?startIndex="),
    ]
    for params, name in foreign:
        response = http.get(url, params=params)
        assert response.status_code == 400, (params, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_cursor" and error["message"].startswith(name), error
    chat = http.get("/v1/aisdk/chat/no-such-chat/stream", params={"after": "3"})
    assert chat.status_code == 400 and chat.json()["error"]["code"] == "invalid_cursor"
    # Each view's own cursors still work.
    for params in (
        {"format": "openai", "startIndex": "2"},
        {"format": "openai", "after": "2"},
        {"format": "ops", "after": "2"},
        {"after": "2"},
        {"format": "responses", "starting_after": "2"},
        {"format": "aisdk", "startIndex": "2"},
    ):
        assert http.get(url, params=params).status_code == 200, params
    # ``<seq>.<k>`` ids name a chunk that was sent: not one of an op never written, nor a
    # k-th chunk of an op that has no more than k (op 1, message.start, has one chunk).
    seq = http.get(f"/v1/streams/{stream_id}").json()["seq"]
    for forged, code in ((f"{seq + 1}.1", "after_out_of_range"), ("1.1", "invalid_cursor")):
        response = http.get(url, params={"format": "openai"}, headers={"Last-Event-ID": forged})
        assert response.status_code == 400, (forged, response.text)
        assert response.json()["error"]["code"] == code, forged
    # Nothing after the cursor of an ended stream: 204 (an EventSource stops reconnecting).
    for fmt in ("ops", "openai"):
        done = http.get(url, params={"format": fmt}, headers={"Last-Event-ID": str(seq)})
        assert done.status_code == 204, fmt


def test_aisdk_view_start_index_and_ops_snapshot(http: httpx.Client) -> None:
    stream_id = _create(http, "mock-tools")
    _wait_done(http, stream_id)
    url = f"/v1/streams/{stream_id}/events"
    full = http.get(url, params={"format": "aisdk", "startIndex": 0})
    assert full.headers["x-vercel-ai-ui-message-stream"] == "v1"
    parts = [e.data for e in SSEDecoder().feed(full.content)]
    assert parts[-1] == "[DONE]"
    tail = int(full.headers["x-workflow-stream-tail-index"])
    assert tail == len(parts) - 2
    last3 = http.get(url, params={"format": "aisdk", "startIndex": -3})
    assert [e.data for e in SSEDecoder().feed(last3.content)] == parts[-4:]
    resumed = [e.data for e in SSEDecoder().feed(http.get(url, params={"format": "aisdk"}).content)]
    assert msgspec.json.decode(resumed[0])["type"] == "start"
    assert len(resumed) < len(parts)  # (compacted: one delta per block)
    ops = [e for e in SSEDecoder().feed(http.get(url, params={"format": "ops"}).content)]
    assert len(ops) == 1 and b'"snapshot"' in ops[0].data.encode()  # far behind: one snapshot


def test_aisdk_chat_http_rules(mock_url: str) -> None:
    """Chats are per owner: another key's chat id is another chat (204), never its stream;
    stop cancels the upstream; an ended stream is no longer active."""
    settings = Settings(
        upstream=f"{mock_url}/v1", coalesce_ms=0, keepalive_s=0.5, api_keys=("ka", "kb")
    )
    with serve_asgi(create_app(settings)) as base:
        a = httpx.Client(base_url=base, headers={"Authorization": "Bearer ka"}, timeout=20)
        b = httpx.Client(base_url=base, headers={"Authorization": "Bearer kb"}, timeout=20)
        body = {
            "id": "chat1",
            "messages": [{"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}],
            "trigger": "submit-message",
            "model": "mock",
            "mock": {"tps": 100},
        }
        assert a.get("/v1/aisdk/chat/chat1/stream").status_code == 204
        with a.stream("POST", "/v1/aisdk/chat", json=body) as response:
            assert response.status_code == 200
            assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
            run_id = response.headers["x-workflow-run-id"]
            first = next(response.iter_raw())
        assert first.startswith(b"data: ")
        assert b.get("/v1/aisdk/chat/chat1/stream").status_code == 204  # not b's chat
        assert b.post("/v1/aisdk/chat/chat1/stop").status_code == 204
        assert b.get(f"/v1/aisdk/chat/{run_id}/stream?startIndex=0").status_code == 404
        with a.stream("GET", "/v1/aisdk/chat/chat1/stream") as resumed:
            assert resumed.status_code == 200
            head = next(resumed.iter_raw())
        assert msgspec.json.decode(head.split(b"\n")[0][6:]) == {
            "type": "start",
            "messageId": run_id,
        }
        stopped = a.post("/v1/aisdk/chat/chat1/stop")
        assert stopped.status_code == 202 and stopped.json()["status"] == "cancelled"
        assert a.get("/v1/aisdk/chat/chat1/stream").status_code == 204  # ended: not active
        # The same with a Workflow cursor: a chat id (not a run id) with nothing active.
        for index in ("0", "-1"):
            ended = a.get("/v1/aisdk/chat/chat1/stream", params={"startIndex": index})
            assert ended.status_code == 204, ended.text
        assert a.get(f"/v1/aisdk/chat/{run_id}/stream?startIndex=0").status_code == 200
        # The views follow the op stream's access rules: owner only, or a read token.
        view = f"/v1/streams/{run_id}/events?format=openai"
        assert b.get(view).status_code == 404
        assert httpx.get(f"{base}{view}").status_code == 401
        token = a.post(f"/v1/streams/{run_id}/token").json()["token"]
        assert httpx.get(f"{base}{view}&token={token}").status_code == 200
        # A read token works for the Workflow resume of its own run, and only there.
        resume = f"{base}/v1/aisdk/chat/{run_id}/stream?startIndex=0"
        by_token = httpx.get(f"{resume}&token={token}")
        assert by_token.status_code == 200, by_token.text
        other = a.post("/v1/streams", json={"model": "mock", "messages": PROMPT}).json()["id"]
        # (another run does not exist for this token: 404, as on the op stream)
        elsewhere = f"{base}/v1/aisdk/chat/{other}/stream?startIndex=0&token={token}"
        assert httpx.get(elsewhere).status_code == 404
        assert httpx.get(f"{resume}&token=bogus.token").status_code == 401
        assert httpx.post(f"{base}/v1/aisdk/chat/{run_id}/stop?token={token}").status_code == 401
        final = a.get(f"/v1/aisdk/chat/{run_id}/stream?startIndex=0").content
        assert by_token.content == final
        kinds = [msgspec.json.decode(e.data)["type"] for e in SSEDecoder().feed(final)[:-1]]
        assert kinds[-2:] == ["abort", "finish"]
        a.close()
        b.close()


def test_client_openai_chunks_resume_after_cuts(gateway: str, http: httpx.Client) -> None:
    """A read timeout shorter than the token interval cuts the connection again and again;
    ``openai_chunks`` (sync and async) resumes each time: the same chunks, once each."""
    import asyncio

    from tokenwire.client import AsyncClient

    stream_id = _create(http, "mock", max_tokens=8, mock={"tps": 6})
    requests: list[str] = []
    with Client(gateway, max_retries=50) as client:
        client._http.timeout = httpx.Timeout(0.08)  # (shorter than the token interval)
        client._http.event_hooks["request"].append(lambda r: requests.append(str(r.url)))
        chunks = list(client.openai_chunks(stream_id))
    assert len(requests) > 2  # (it was cut and resumed)
    assert any("startIndex=0" not in url for url in requests)  # resumed past chunk 0

    async def read() -> list[dict[str, Any]]:
        async with AsyncClient(gateway, timeout=20) as client:
            return [c async for c in client.openai_chunks(stream_id)]

    again = asyncio.run(read())
    exact = http.get(f"/v1/streams/{stream_id}/events?format=openai&startIndex=0").content
    want = [msgspec.json.decode(e.data) for e in SSEDecoder().feed(exact) if e.data != "[DONE]"]
    assert chunks == want == again
    assert _content([ChatCompletionChunk.model_validate(c) for c in chunks]) == _final_text(
        http, stream_id
    )


def test_resuming_a_10000_token_answer_is_compacted(http: httpx.Client) -> None:
    """Issue 15's measure over HTTP: a 10,000-token answer (one op per token) resumed from
    the start costs <= 1.2x the final message's bytes and <= 20 frames (Responses: its format
    repeats the text in its .done events, so only the frame bound applies)."""
    stream_id = _create(http, max_tokens=10_000)
    snap = _wait_done(http, stream_id)
    assert snap["seq"] > 10_000
    message = len(msgspec.json.encode(snap["message"]))
    for fmt in ("aisdk", "openai", "responses", "ops", None):  # (None: plain /events)
        params = {"format": fmt} if fmt else {}
        body = http.get(f"/v1/streams/{stream_id}/events", params=params).content
        frames = SSEDecoder().feed(body)
        assert len(frames) <= 20, fmt
        assert max(len(e.data) for e in frames) <= 64 * 1024, fmt
        if fmt != "responses":
            assert len(body) <= 1.2 * message, (fmt, len(body), message)


def test_plain_op_stream_far_behind_gets_a_snapshot(gateway: str, http: httpx.Client) -> None:
    """``/events`` without ``format`` is the ops view too: a reader more than
    ``catchup_threshold`` ops behind gets one snapshot op, then the live ops after it, on SSE
    and WebSocket; ``?catchup=exact`` replays every op; the Python client reads either."""
    from websockets.sync.client import connect

    from tokenwire.protocol import Message, apply_op, decode_op

    stream_id = _create(http, max_tokens=2_000)
    snap = _wait_done(http, stream_id)
    message = len(msgspec.json.encode(snap["message"]))
    url = f"/v1/streams/{stream_id}/events"
    body = http.get(url).content
    events = SSEDecoder().feed(body)
    assert len(events) == 1 and int(events[0].id) == snap["seq"]
    assert msgspec.json.decode(events[0].data)["message"] == snap["message"]
    assert len(body) <= 1.2 * message
    # Within the threshold: the exact ops, as always.
    near = SSEDecoder().feed(http.get(url, headers={"Last-Event-ID": str(snap["seq"] - 5)}).content)
    assert [int(e.id) for e in near] == list(range(snap["seq"] - 4, snap["seq"] + 1))
    # catchup=exact: every op of the log, and the same message from them.
    exact = SSEDecoder().feed(http.get(url, params={"catchup": "exact"}).content)
    assert [int(e.id) for e in exact] == list(range(1, snap["seq"] + 1))
    rebuilt = Message.empty()
    for event in exact:
        apply_op(rebuilt, decode_op(event.raw))
    assert rebuilt.to_dict() == snap["message"]
    for params in ({"catchup": "all"}, {"catchup": "all", "format": "aisdk"}):
        bad = http.get(url, params=params)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_catchup"
    # The useChat resume route too, whether the chat is active or not (it used to say 204).
    bad = http.get("/v1/aisdk/chat/no-such-chat/stream", params={"catchup": "all"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_catchup"
    # Every view: compacted by default, every frame with catchup=exact.
    for fmt in ("ops", "openai", "responses", "aisdk"):
        compact = SSEDecoder().feed(http.get(url, params={"format": fmt}).content)
        whole = http.get(url, params={"format": fmt, "catchup": "exact"}).content
        assert len(compact) <= 20 < len(SSEDecoder().feed(whole)), fmt
    # WebSocket: the same rule (one text frame per op, the snapshot first).
    ws_url = gateway.replace("http://", "ws://") + f"/v1/streams/{stream_id}/ws?after=0"
    with connect(ws_url) as ws:
        first = msgspec.json.decode(ws.recv(timeout=5))
    assert first["type"] == "snapshot" and first["seq"] == snap["seq"]
    # The Python client: a snapshot of an ended stream ends the follow (no extra request).
    with Client(gateway) as client:
        compact = list(client.stream(stream_id))
        every = list(client.stream(stream_id, catchup="exact"))
    assert [type(op).__name__ for op in compact] == ["Snapshot"]
    assert len(every) == snap["seq"]
    with pytest.raises(ValueError):
        Client(gateway).stream(stream_id, catchup="all")


def test_plain_op_stream_late_join_then_live(http: httpx.Client) -> None:
    """A reader joining a running stream far behind gets the snapshot, then every live op
    after it, ending with ``message.end`` (nothing lost, nothing repeated)."""
    from tokenwire.protocol import Message, apply_op, decode_op

    stream_id = _create(http, max_tokens=400, mock={"tps": 400})
    for _ in range(200):
        if http.get(f"/v1/streams/{stream_id}").json()["seq"] > 40:
            break
        import time

        time.sleep(0.01)
    with http.stream("GET", f"/v1/streams/{stream_id}/events") as response:
        events = SSEDecoder().feed(b"".join(response.iter_raw()))
    first = msgspec.json.decode(events[0].data)
    assert first["type"] == "snapshot"
    seqs = [int(e.id) for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert msgspec.json.decode(events[-1].data)["type"] == "message.end"
    message = Message.empty()
    for event in events:
        apply_op(message, decode_op(event.raw))
    assert message.to_dict() == http.get(f"/v1/streams/{stream_id}").json()["message"]


def test_last_event_id_wins_over_a_query_cursor(http: httpx.Client) -> None:
    """An EventSource reconnects to the URL it opened, with the header: what follows its last
    event, not the URL's cursor again (which would repeat what it has)."""
    stream_id = _create(http)
    _wait_done(http, stream_id)
    url = f"/v1/streams/{stream_id}/events"
    exact = {"catchup": "exact"}
    for fmt, query in (("responses", "starting_after"), ("openai", "startIndex")):
        header = http.get(url, params={"format": fmt, **exact}, headers={"Last-Event-ID": "5"})
        both = http.get(
            url, params={"format": fmt, query: "2", **exact}, headers={"Last-Event-ID": "5"}
        )
        assert both.status_code == 200 and both.content == header.content, fmt
        assert both.content != http.get(url, params={"format": fmt, query: "2", **exact}).content
    # A bad header is named as the header, with the one code for a bad cursor.
    for fmt, value in (
        ("responses", "abc"),
        ("openai", "1.2.3"),
        ("openai", "3."),
        ("openai", "0.1"),
    ):
        bad = http.get(url, params={"format": fmt}, headers={"Last-Event-ID": value})
        assert bad.status_code == 400, (fmt, value)
        error = bad.json()["error"]
        assert error["code"] == "invalid_cursor" and "Last-Event-ID" in error["message"], error
        assert repr(value) in error["message"], error


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("chat_ttl_s", float("inf")),
        ("chat_ttl_s", 1e300),
        ("chat_ttl_s", 0),
        ("max_frame_bytes", 1023),
        ("threshold", -1),
    ],
)
def test_view_settings_out_of_range_are_refused(field: str, value: float) -> None:
    """(``inf`` was accepted, then every ``POST /v1/aisdk/chat`` was a 500 with Redis: the hub
    keeps the time to live as whole milliseconds.)"""
    from tokenwire.errors import InvalidArgument
    from tokenwire.streams.views_http import ViewOptions

    with pytest.raises(InvalidArgument, match=field.replace("threshold", "catchup_threshold")):
        ViewOptions(**{field: value})


def test_serve_refuses_an_infinite_chat_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    from conftest import refused_serve

    monkeypatch.setenv("TOKENWIRE_CHAT_TTL_S", "inf")
    assert "chat_ttl_s must be" in refused_serve()


def test_aisdk_chat_refuses_parts_of_the_wrong_shape(gateway: str, http: httpx.Client) -> None:
    """(They used to go upstream as something else: a repr for a text, a number for a URL.)"""
    user = {"role": "user", "parts": [{"type": "text", "text": "hi"}]}

    def post(*messages: dict[str, Any], **extra: Any) -> httpx.Response:
        body = {"id": "shape", "messages": list(messages), "model": "mock", **extra}
        return http.post("/v1/aisdk/chat", json=body)

    bad_parts = [
        [1, 2],
        [{"type": "text", "text": {"a": 1}}],
        [{"type": "file", "mediaType": "image/png", "url": 5}],
        [{"type": "file", "mediaType": {"x": 1}, "url": "data:,x"}],
        [{"text": "no type"}],
    ]
    for parts in bad_parts:
        got = post({"role": "user", "parts": parts})
        assert got.status_code == 400, (parts, got.text)
        assert got.json()["error"]["code"] == "invalid_messages"
        assert "messages[0].parts[0]" in got.json()["error"]["message"]
    tool = {"type": "tool-x", "state": "output-available", "toolCallId": {"a": 1}, "output": 1}
    got = post(user, {"role": "assistant", "parts": [tool]})
    assert got.status_code == 400 and "toolCallId" in got.json()["error"]["message"]
    got = post(user, trigger=5)
    assert got.status_code == 400 and got.json()["error"]["code"] == "invalid_trigger"
    assert post(user, trigger="submit-message").status_code == 200


def test_websocket_catch_up_past_the_frame_bound_is_merged_ops() -> None:
    """Past ``max_frame_bytes`` the WebSocket sent every op of the log (thousands of one-token
    messages) where SSE merges: it now sends the ops view's catch-up too (merged deltas that
    state their seq, one op per message), then the live ops, on an ended and a live stream."""
    import asyncio
    import contextlib
    import threading
    import time

    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Mount, Route
    from websockets.sync.client import connect

    from tokenwire import Streams, StreamWriter
    from tokenwire.protocol import Message, apply_op, decode_op

    streams = Streams(coalesce_ms=0)
    go_on = asyncio.Event()

    async def answer(w: StreamWriter) -> None:
        for i in range(3_000):
            await w.text(f" word{i}")
            if i == 2_000:
                await go_on.wait()

    async def start(request: Any) -> JSONResponse:
        return JSONResponse({"id": (await streams.start(answer)).id})

    async def release(request: Any) -> JSONResponse:
        go_on.set()
        return JSONResponse({})

    app = Starlette(
        routes=[
            Route("/start", start, methods=["POST"]),
            Route("/go", release, methods=["POST"]),
            Mount("/tw", streams.asgi(max_frame_bytes=4096)),
        ],
        lifespan=streams.lifespan,
    )

    def follow(url: str, stream_id: str) -> tuple[list[dict], Message]:
        message, got = Message.empty(), []
        ws_url = url.replace("http://", "ws://") + f"/tw/{stream_id}/ws?after=0"
        with connect(ws_url) as ws, contextlib.suppress(Exception):
            while True:
                text = ws.recv(timeout=10)
                got.append(msgspec.json.decode(text))
                apply_op(message, decode_op(text.encode()))
        return got, message

    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        stream_id = http.post("/start").json()["id"]
        while http.get(f"/tw/{stream_id}").json()["seq"] < 2_002:
            time.sleep(0.01)
        result: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: result.update(live=follow(url, stream_id)))
        reader.start()
        time.sleep(0.5)
        http.post("/go")
        reader.join(30)
        snap = http.get(f"/tw/{stream_id}").json()
        assert snap["status"] == "completed"
        ended = follow(url, stream_id)
    for got, message in (result["live"], ended):
        assert message.to_dict() == snap["message"]
        assert got[0]["type"] == "message.start"
    merged = [op for op in ended[0] if op["type"] == "block.delta"]
    assert 10 <= len(ended[0]) <= 30 and all("seq" in op for op in merged)
    # The live reader: the merged catch-up of its first 2,000 tokens, then the live ops.
    assert len(result["live"][0]) < 1_100
