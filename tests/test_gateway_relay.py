"""WebSocket op streams, the raw passthrough and upstream retries, over real sockets."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import httpx
import pytest
from conftest import serve_asgi
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app

PROMPT = [{"role": "user", "content": "hi"}]

# An upstream that answers with fixed bytes in awkward pieces: CRLF, comments, a UTF-8
# character split across writes. The relay must hand every byte through untouched.
STREAM_PIECES = [
    b": upstream comment\r\n\r\n",
    b'data: {"id":"c1","choices":[{"index":0,"delta":{"content":"caf\xc3',
    b'\xa9 "}}]}\r\n\r\ndata: {"id":"c1","choices":[{"index":0,"delta":{},',
    b'"finish_reason":"stop"}]}\n\n',
    b"data: [DONE]\n\n",
]
PLAIN_BODY = b'{"id":"c2","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}]}'  # noqa: E501
ERROR_BODY = b'{"error":{"message":"slow down","type":"rate_limit","code":"429"}}'


class FixedUpstream:
    """A raw ASGI upstream; behaviour chosen by the request's ``model``."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, bytes, dict[str, str]]] = []
        self.flaky_left = 0

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.requests.append((scope["path"], body, headers))
        model = json.loads(body).get("model") if body else None
        if model == "flaky" and self.flaky_left > 0:
            self.flaky_left -= 1
            await self._respond(send, 503, b"application/json", [b'{"error":"busy"}'])
        elif model in ("stream", "flaky"):
            await self._respond(send, 200, b"text/event-stream", STREAM_PIECES)
        elif model == "error":
            await self._respond(send, 429, b"application/json", [ERROR_BODY])
        else:
            await self._respond(send, 200, b"application/json", [PLAIN_BODY])

    async def _respond(self, send, status: int, ctype: bytes, pieces: list[bytes]) -> None:  # type: ignore[no-untyped-def]
        headers = [(b"content-type", ctype), (b"x-upstream", b"yes")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        for piece in pieces:
            await send({"type": "http.response.body", "body": piece, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
def fixed() -> Iterator[tuple[FixedUpstream, str]]:
    upstream = FixedUpstream()
    with serve_asgi(upstream) as up_url:
        settings = Settings(
            upstream=f"{up_url}/v1",
            upstream_api_key="sk-up",
            upstream_retries=2,
            upstream_backoff_s=0.01,
        )
        with serve_asgi(create_app(settings)) as url:
            yield upstream, url


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as mock_url:
        settings = Settings(upstream=f"{mock_url}/v1", coalesce_ms=0, ws_hello_timeout_s=1.0)
        with serve_asgi(create_app(settings)) as url:
            yield url


# -- passthrough -----------------------------------------------------------------------------
def test_passthrough_stream_is_byte_for_byte(fixed: tuple[FixedUpstream, str]) -> None:
    upstream, url = fixed
    body = b'{"model":"stream","stream":true,"messages":[{"role":"user","content":"x"}]}'
    with httpx.stream("POST", f"{url}/v1/chat/completions", content=body) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["x-upstream"] == "yes"
        relayed = b"".join(response.iter_raw())
    assert relayed == b"".join(STREAM_PIECES)
    path, forwarded, headers = upstream.requests[-1]
    assert path == "/v1/chat/completions" and forwarded == body  # the request is untouched too
    assert headers["authorization"] == "Bearer sk-up"


def test_passthrough_plain_body_and_error_status(fixed: tuple[FixedUpstream, str]) -> None:
    _, url = fixed
    plain = httpx.post(f"{url}/v1/chat/completions", json={"model": "plain", "messages": PROMPT})
    assert plain.status_code == 200 and plain.content == PLAIN_BODY
    error = httpx.post(f"{url}/v1/chat/completions", json={"model": "error", "messages": PROMPT})
    assert error.status_code == 429 and error.content == ERROR_BODY


def test_retry_before_first_byte(fixed: tuple[FixedUpstream, str]) -> None:
    upstream, url = fixed
    upstream.flaky_left = 2
    before = len(upstream.requests)
    response = httpx.post(f"{url}/v1/chat/completions", json={"model": "flaky", "messages": PROMPT})
    assert response.status_code == 200 and response.content == b"".join(STREAM_PIECES)
    assert len(upstream.requests) - before == 3  # two 503s retried, then the answer


def test_retries_are_bounded(fixed: tuple[FixedUpstream, str]) -> None:
    upstream, url = fixed
    upstream.flaky_left = 5
    response = httpx.post(f"{url}/v1/chat/completions", json={"model": "flaky", "messages": PROMPT})
    assert response.status_code == 503  # the last upstream answer, relayed
    upstream.flaky_left = 0


def test_detached_stream_from_fixed_upstream(fixed: tuple[FixedUpstream, str]) -> None:
    _, url = fixed
    created = httpx.post(
        f"{url}/v1/streams", json={"model": "stream", "messages": PROMPT, "tokenwire": {}}
    )
    stream_id = created.json()["id"]
    httpx.get(f"{url}/v1/streams/{stream_id}/events")
    snap = httpx.get(f"{url}/v1/streams/{stream_id}").json()
    assert snap["message"]["blocks"] == [{"type": "text", "text": "café "}]
    assert snap["status"] == "completed"


def test_detached_stream_upstream_error_status(fixed: tuple[FixedUpstream, str]) -> None:
    upstream, url = fixed
    stream_id = httpx.post(
        f"{url}/v1/streams", json={"model": "error", "messages": PROMPT, "tokenwire": {}}
    ).json()["id"]
    forwarded = json.loads(upstream.requests[-1][1])
    assert forwarded["stream"] is True and "tokenwire" not in forwarded
    httpx.get(f"{url}/v1/streams/{stream_id}/events")
    error = httpx.get(f"{url}/v1/streams/{stream_id}").json()["message"]["error"]
    assert error == {
        "message": "upstream returned HTTP 429: slow down",
        "type": "rate_limit",
        "code": "429",
        "status": 429,
    }


# -- WebSocket -------------------------------------------------------------------------------
def ws_url(base: str, stream_id: str, query: str = "") -> str:
    return base.replace("http://", "ws://") + f"/v1/streams/{stream_id}/ws{query}"


def ws_ops(url: str, hello: dict | None = None) -> list[dict]:
    with connect(url) as ws:
        if hello is not None:
            ws.send(json.dumps(hello))
        ops = []
        try:
            while True:
                ops.append(json.loads(ws.recv(timeout=10)))
        except ConnectionClosed:
            pass
    return ops


def counted(ops: list[dict], after: int = 0) -> list[int]:
    """The seqs of WebSocket ops, counted as a client does: deltas state none (each is the
    previous plus one); every other op must state exactly the counted value."""
    seqs = []
    for op in ops:
        after += 1
        assert op.get("seq", after) == after
        assert ("seq" in op) != (op["type"] == "block.delta")
        seqs.append(after)
    return seqs


def test_websocket_stream_and_resume(gateway: str) -> None:
    created = httpx.post(f"{gateway}/v1/streams", json={"model": "mock-tools", "messages": PROMPT})
    stream_id = created.json()["id"]
    full = ws_ops(ws_url(gateway, stream_id), {"after": 0})
    assert counted(full) == list(range(1, len(full) + 1))
    assert full[-1]["type"] == "message.end"
    sse = httpx.get(f"{gateway}/v1/streams/{stream_id}/events").text
    assert sse.count("\ndata:") == len(full)  # every event is "id:N" then "data:..."
    for after in (1, len(full) // 2, len(full) - 1):
        assert ws_ops(ws_url(gateway, stream_id), {"after": after}) == full[after:]
    assert ws_ops(ws_url(gateway, stream_id, "?after=4")) == full[4:]
    assert ws_ops(ws_url(gateway, stream_id)) == full  # no hello: from the start


def test_websocket_live_resume_loses_nothing(gateway: str) -> None:
    created = httpx.post(
        f"{gateway}/v1/streams",
        json={"model": "mock", "messages": PROMPT, "max_tokens": 100, "mock": {"tps": 300}},
    )
    stream_id = created.json()["id"]
    with connect(ws_url(gateway, stream_id, "?catchup=exact")) as ws:
        ws.send(json.dumps({"after": 0}))
        first = [json.loads(ws.recv(timeout=10)) for _ in range(8)]
    after = counted(first)[-1]
    rest = ws_ops(ws_url(gateway, stream_id, "?catchup=exact"), {"after": after})
    assert counted(first) + counted(rest, after) == list(range(1, len(first) + len(rest) + 1))
    assert rest[-1]["type"] == "message.end"


@pytest.mark.parametrize(
    ("stream", "hello", "code"),
    [
        ("st_doesnotexistdoesnotexist", {"after": 0}, 4404),
        (None, {"after": 10_000}, 4400),
        (None, {"after": -1}, 4400),
        (None, {"after": "x"}, 4400),
    ],
)
def test_websocket_errors(gateway: str, stream: str | None, hello: dict, code: int) -> None:
    if stream is None:
        stream = httpx.post(
            f"{gateway}/v1/streams", json={"model": "mock", "messages": PROMPT}
        ).json()["id"]
    messages: list[dict] = []
    with pytest.raises(ConnectionClosed) as closed, connect(ws_url(gateway, stream)) as ws:
        with contextlib.suppress(ConnectionClosed):  # the server may already have closed
            ws.send(json.dumps(hello))
        while True:
            messages.append(json.loads(ws.recv(timeout=10)))
    assert len(messages) == 1 and set(messages[0]["error"]) == {"message", "type", "code"}
    assert closed.value.rcvd is not None and closed.value.rcvd.code == code
