"""The gateway over real sockets, against the mock model server."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
from conftest import free_port, serve_asgi
from starlette.middleware.base import BaseHTTPMiddleware

from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app
from tokenwire.protocol import Message, SSEDecoder, apply_op, decode_op

PROMPT = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as url:
        yield url


@pytest.fixture(scope="module")
def gateway(mock_url: str) -> Iterator[str]:
    settings = Settings(upstream=f"{mock_url}/v1", coalesce_ms=0, keepalive_s=0.2)
    with serve_asgi(create_app(settings)) as url:
        yield url


@pytest.fixture
def http(gateway: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gateway, timeout=20) as client:
        yield client


def create(http: httpx.Client, model: str = "mock", **extra: object) -> str:
    response = http.post("/v1/streams", json={"model": model, "messages": PROMPT, **extra})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def read_events(http: httpx.Client, stream_id: str, query: str = "", **headers: str) -> bytes:
    url = f"/v1/streams/{stream_id}/events{query}"
    with http.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200, response.read()
        return b"".join(response.iter_raw())


def parse(raw: bytes) -> list[tuple[int, bytes]]:
    """(seq, op JSON) per event; keep-alive comments are dropped by the decoder."""
    events = SSEDecoder().feed(raw)
    return [(int(e.id), e.data.encode()) for e in events if e.id is not None]


def rebuild(ops: list[tuple[int, bytes]]) -> Message:
    message = Message.empty()
    for _, data in ops:
        op = decode_op(data)
        assert op is not None
        apply_op(message, op)
    return message


def error_of(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "code"}
    return body["error"]


def mock_stats(mock_url: str) -> dict[str, int]:
    return httpx.get(f"{mock_url}/_mock/stats").json()


# -- the op stream -------------------------------------------------------------------------
def test_stream_delivers_dense_ops_and_matches_snapshot(http: httpx.Client) -> None:
    stream_id = create(http, "mock-reasoning")
    raw = read_events(http, stream_id, "?catchup=exact")  # (a late read is not compacted)
    ops = parse(raw)
    assert [seq for seq, _ in ops] == list(range(1, len(ops) + 1))
    assert b'"message.start"' in ops[0][1] and b'"message.end"' in ops[-1][1]
    snap = http.get(f"/v1/streams/{stream_id}").json()
    assert snap["id"] == stream_id and snap["status"] == "completed"
    assert snap["seq"] == len(ops)
    assert snap["message"] == rebuild(ops).to_dict()
    assert [b["type"] for b in snap["message"]["blocks"]] == ["reasoning", "text"]


def test_sse_headers(http: httpx.Client) -> None:
    stream_id = create(http)
    with http.stream("GET", f"/v1/streams/{stream_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        response.read()


def test_resume_from_every_seq_yields_exactly_the_rest(http: httpx.Client) -> None:
    stream_id = create(http, "mock-tools")
    full = parse(read_events(http, stream_id))
    last = full[-1][0]
    for after in range(last):
        header = read_events(http, stream_id, **{"Last-Event-ID": str(after)})
        assert parse(header) == full[after:], after
    query = http.get(f"/v1/streams/{stream_id}/events", params={"after": 3})
    assert parse(query.content) == full[3:]
    # Last-Event-ID (what a reconnecting EventSource sends) wins over the URL's ?after=.
    both = http.get(
        f"/v1/streams/{stream_id}/events", params={"after": 1}, headers={"Last-Event-ID": "5"}
    )
    assert parse(both.content) == full[5:]
    # Nothing left after the end: 204 tells an EventSource to stop reconnecting.
    done = http.get(f"/v1/streams/{stream_id}/events", headers={"Last-Event-ID": str(last)})
    assert done.status_code == 204


def test_subscriber_cut_mid_stream_resumes_without_loss_or_repeat(http: httpx.Client) -> None:
    stream_id = create(http, "mock", mock={"tps": 300}, max_tokens=120)
    first: list[tuple[int, bytes]] = []
    decoder = SSEDecoder()
    with http.stream("GET", f"/v1/streams/{stream_id}/events?catchup=exact") as response:
        for chunk in response.iter_raw():
            first += [(int(e.id), e.data.encode()) for e in decoder.feed(chunk) if e.id]
            if len(first) >= 10:
                break  # drop the connection mid-stream
    assert b'"message.end"' not in first[-1][1]
    cut = first[-1][0]
    # (exact: the stream ran on far past the cut; by default that reader gets a snapshot)
    rest = parse(read_events(http, stream_id, "?catchup=exact", **{"Last-Event-ID": str(cut)}))
    whole = parse(read_events(http, stream_id, "?catchup=exact"))
    assert first + rest == whole
    assert http.get(f"/v1/streams/{stream_id}").json()["status"] == "completed"
    # The default for a reader that far behind: one snapshot op, the message as of the end.
    compacted = parse(read_events(http, stream_id, **{"Last-Event-ID": str(cut)}))
    assert len(compacted) == 1 and compacted[0][0] == whole[-1][0]
    assert rebuild(first + compacted) == rebuild(whole)


def test_two_subscribers_receive_identical_bytes(http: httpx.Client, gateway: str) -> None:
    stream_id = create(http, "mock-reasoning", mock={"tps": 400})
    results: list[bytes] = []

    def reader() -> None:
        with httpx.Client(base_url=gateway, timeout=20) as own:
            results.append(read_events(own, stream_id, "?catchup=exact"))

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 2
    # Keep-alive comments may fall at different places; the op events must be identical.
    strip = [b"".join(p for p in r.split(b"\n\n") if p and not p.startswith(b":")) for r in results]
    assert strip[0] == strip[1]
    assert parse(results[0]) == parse(results[1])


def test_stalled_subscriber_does_not_block_others(http: httpx.Client, gateway: str) -> None:
    # A long answer (far more than socket buffers hold) read by one client that never reads.
    stream_id = create(http, "mock", max_tokens=40_000)
    port = int(gateway.rsplit(":", 1)[1])
    stalled = socket.socket()
    stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stalled.connect(("127.0.0.1", port))
    stalled.sendall(f"GET /v1/streams/{stream_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    try:
        raw = read_events(http, stream_id, "?catchup=exact")  # (every op, however late)
        ops = parse(raw)
        assert len(raw) > 1_000_000
        assert b'"status":"completed"' in ops[-1][1]
        assert http.get(f"/v1/streams/{stream_id}").json()["status"] == "completed"
    finally:
        stalled.close()


def test_client_disconnect_is_not_a_cancel(http: httpx.Client) -> None:
    stream_id = create(http, "mock", mock={"tps": 500}, max_tokens=60)
    with http.stream("GET", f"/v1/streams/{stream_id}/events") as response:
        next(response.iter_raw())
    ops = parse(read_events(http, stream_id))
    assert b'"status":"completed"' in ops[-1][1]


# -- cancel ----------------------------------------------------------------------------------
def test_cancel_aborts_upstream_and_keeps_partial(http: httpx.Client, mock_url: str) -> None:
    before = mock_stats(mock_url)["disconnected"]
    stream_id = create(http, "mock", mock={"tps": 50}, max_tokens=2000)
    seen = 0
    decoder = SSEDecoder()
    with http.stream("GET", f"/v1/streams/{stream_id}/events") as response:
        for chunk in response.iter_raw():
            seen += sum(b"block.delta" in e.data.encode() for e in decoder.feed(chunk))
            if seen >= 3:
                break
    response = http.post(f"/v1/streams/{stream_id}/cancel")
    assert response.status_code == 202
    assert response.json() == {"id": stream_id, "status": "cancelled"}
    deadline = time.monotonic() + 5
    while mock_stats(mock_url)["disconnected"] <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mock_stats(mock_url)["disconnected"] == before + 1
    snap = http.get(f"/v1/streams/{stream_id}").json()
    assert snap["status"] == "cancelled"
    assert snap["message"]["blocks"][0]["text"]  # the partial answer is kept
    ops = parse(read_events(http, stream_id))
    assert b'"status":"cancelled"' in ops[-1][1]
    again = http.post(f"/v1/streams/{stream_id}/cancel")
    assert again.status_code == 202 and again.json()["status"] == "cancelled"


def test_cancel_while_the_upstream_has_not_answered() -> None:
    # An upstream that accepts the connection and never answers: the cancel must end the
    # stream at once (not after the read timeout) and drop the pending request.
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True).start()
    settings = Settings(upstream=f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url, timeout=10) as http:
        stream_id = create(http)
        deadline = time.monotonic() + 5
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.01)
        assert accepted, "the gateway never connected upstream"
        response = http.post(f"/v1/streams/{stream_id}/cancel")
        assert response.json() == {"id": stream_id, "status": "cancelled"}
        accepted[0].settimeout(5)
        while accepted[0].recv(65536):  # the request, then EOF: the gateway hung up
            pass
        ops = parse(read_events(http, stream_id))
        assert [msgspec.json.decode(op)["type"] for _, op in ops][-1] == "message.end"
    silent.close()


def sse_subscribers(http: httpx.Client) -> float:
    metrics = http.get("/metrics", timeout=5).text.splitlines()
    lines = [line for line in metrics if line.startswith('tokenwire_subscribers{transport="sse"}')]
    return sum(float(line.split()[-1]) for line in lines)


def test_an_idle_reader_that_hangs_up_is_let_go(http: httpx.Client, gateway: str) -> None:
    # Nothing is written to a reader waiting for the first token but pings, and a write to a
    # closed connection does not fail: only the server's http.disconnect tells it is gone.
    stream_id = create(http, "mock", mock={"ttft_ms": 60_000})
    port = int(gateway.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET /v1/streams/{stream_id}/events HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 5
        while sse_subscribers(http) != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert sse_subscribers(http) == 1
    deadline = time.monotonic() + 5
    while sse_subscribers(http) != 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert sse_subscribers(http) == 0, "the reader outlived its connection"
    assert http.get(f"/v1/streams/{stream_id}").json()["status"] == "in_progress"
    http.post(f"/v1/streams/{stream_id}/cancel")


def test_passthrough_client_hanging_up_stops_the_upstream(
    http: httpx.Client, mock_url: str
) -> None:
    before = mock_stats(mock_url)["disconnected"]
    body = {"model": "mock", "messages": PROMPT, "stream": True, "mock": {"ttft_ms": 60_000}}
    with http.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
    deadline = time.monotonic() + 5
    while mock_stats(mock_url)["disconnected"] <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert mock_stats(mock_url)["disconnected"] == before + 1


def test_streams_work_behind_user_middleware(mock_url: str) -> None:
    # BaseHTTPMiddleware wraps receive() in a task group: streamed responses must still
    # deliver everything (their disconnect watch runs such a receive() in a task).
    class Tagged(BaseHTTPMiddleware):
        async def dispatch(self, request, call_next):  # type: ignore[no-untyped-def]
            response = await call_next(request)
            response.headers["x-tagged"] = "1"
            return response

    app = create_app(Settings(upstream=f"{mock_url}/v1", coalesce_ms=0))
    app.add_middleware(Tagged)
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        body = {"model": "mock", "messages": PROMPT, "stream": True, "max_tokens": 30}
        with http.stream("POST", "/v1/chat/completions", json=body) as response:
            assert response.status_code == 200 and response.headers["x-tagged"] == "1"
            raw = b"".join(response.iter_raw())
        assert raw.rstrip().endswith(b"data: [DONE]")
        stream_id = create(http, "mock", max_tokens=30)
        ops = parse(read_events(http, stream_id))
        assert b'"status":"completed"' in ops[-1][1]


def test_head_on_a_live_stream_answers_at_once_and_holds_nothing(http: httpx.Client) -> None:
    stream_id = create(http, "mock", mock={"tps": 5}, max_tokens=50)  # ~10 s to finish
    head = http.head(f"/v1/streams/{stream_id}/events", timeout=5)
    assert head.status_code == 200
    assert head.headers["content-type"].startswith("text/event-stream")
    # The same keep-alive connection is free again, and no subscriber was left behind.
    assert sse_subscribers(http) == 0
    http.post(f"/v1/streams/{stream_id}/cancel")


def test_head_with_a_format_checks_seq_cursors_not_chunk_cursors(http: httpx.Client) -> None:
    """As docs/http-api.md says: with ``?format=``, HEAD refuses an op-seq cursor past the
    stream's seq (400, as GET), and leaves chunk cursors past the end to GET."""
    stream_id = create(http)
    read_events(http, stream_id)
    url = f"/v1/streams/{stream_id}/events"
    for params, headers in (
        ({"format": "ops", "after": 99999}, {}),
        ({"format": "openai", "after": 99999}, {}),
        ({"format": "openai"}, {"Last-Event-ID": "99999"}),
    ):
        assert http.head(url, params=params, headers=headers).status_code == 400
        got = http.get(url, params=params, headers=headers)
        assert got.status_code == 400 and got.json()["error"]["code"] == "after_out_of_range"
    for params in (
        {"format": "openai", "startIndex": 99999},
        {"format": "responses", "starting_after": 99999},
        {"format": "aisdk", "startIndex": 99999},
    ):
        assert http.head(url, params=params).status_code == 200
        assert http.get(url, params=params).status_code == 400


def test_cancel_after_completion_is_harmless(http: httpx.Client) -> None:
    stream_id = create(http)
    read_events(http, stream_id)
    response = http.post(f"/v1/streams/{stream_id}/cancel")
    assert response.status_code == 202 and response.json()["status"] == "completed"


# -- upstream trouble ------------------------------------------------------------------------
def test_upstream_error_status_fails_stream_with_its_message(http: httpx.Client) -> None:
    stream_id = create(http, "no-such-model")
    ops = parse(read_events(http, stream_id))
    end = msgspec.json.decode(ops[-1][1])
    assert end["type"] == "message.end" and end["status"] == "failed"
    assert "upstream returned HTTP" in end["error"]["message"]
    assert "no-such-model" in end["error"]["message"]


def test_error_mid_stream_keeps_partial(http: httpx.Client) -> None:
    stream_id = create(http, "mock-error")
    snap = http.get(f"/v1/streams/{stream_id}")
    read_events(http, stream_id)
    snap = http.get(f"/v1/streams/{stream_id}").json()
    assert snap["status"] == "failed" and snap["message"]["error"]["message"]


def test_unreachable_upstream_fails_stream(tmp_path: Path) -> None:
    """...and the password of the upstream URL is in neither the stream's error nor a 502."""
    upstream = f"http://tw:pw-hidden@127.0.0.1:{free_port()}/v1"
    settings = Settings(upstream=upstream, upstream_retries=1, upstream_backoff_s=0.01)
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        stream_id = create(http)
        ops = parse(read_events(http, stream_id))
        end = msgspec.json.decode(ops[-1][1])
        assert end["status"] == "failed" and end["error"]["type"] == "upstream_error"
        assert "unreachable" in end["error"]["message"]
        assert "pw-hidden" not in end["error"]["message"]
        assert "tw:[REDACTED]@127.0.0.1" in end["error"]["message"]
        models = http.get("/v1/models")
        assert models.status_code == 502 and error_of(models)["type"] == "upstream_error"
        body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
        relayed = http.post("/v1/chat/completions", json=body)
        for response in (models, relayed):
            assert response.status_code == 502 and "pw-hidden" not in response.text


# -- bad input -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/v1/streams/st_doesnotexistdoesnotexist", "/v1/streams/nope/events"]
)
def test_unknown_stream_is_404(http: httpx.Client, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 404
    assert error_of(response)["code"] == "stream_not_found"
    cancel = http.post("/v1/streams/st_doesnotexistdoesnotexist/cancel")
    assert cancel.status_code == 404


@pytest.mark.parametrize("value", ["abc", "-1", "1.5", "", " ", "1e3", "99999"])
def test_bad_resume_position_is_400(http: httpx.Client, value: str) -> None:
    stream_id = create(http)
    read_events(http, stream_id)
    by_query = http.get(f"/v1/streams/{stream_id}/events", params={"after": value})
    assert by_query.status_code == 400, value
    assert error_of(by_query)["type"] == "invalid_request_error"
    if value.strip():  # an empty Last-Event-ID header means "from the start"
        by_header = http.get(f"/v1/streams/{stream_id}/events", headers={"Last-Event-ID": value})
        assert by_header.status_code == 400, value


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "invalid_json"),
        (b"[1, 2]", "invalid_json"),
        (b'{"model": "mock"}', "missing_messages"),
        (b'{"model": "mock", "messages": []}', "missing_messages"),
        (b'{"model": "mock", "messages": "hi"}', "missing_messages"),
        (b'{"messages": [{"role": "user", "content": "x"}], "tokenwire": 5}', "invalid_options"),
        (
            b'{"messages": [{"role": "user", "content": "x"}], "tokenwire": {"coalesce_ms": -1}}',
            "invalid_options",
        ),
    ],
)
def test_bad_create_body_is_400(http: httpx.Client, body: bytes, code: str) -> None:
    response = http.post("/v1/streams", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert error_of(response)["code"] == code


def test_oversized_body_is_413(mock_url: str) -> None:
    settings = Settings(upstream=f"{mock_url}/v1", max_body_bytes=2048)
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        big = {"model": "mock", "messages": [{"role": "user", "content": "x" * 4096}]}
        for path in ("/v1/streams", "/v1/chat/completions"):
            response = http.post(path, json=big)
            assert response.status_code == 413
            assert error_of(response)["code"] == "body_too_large"

        def chunked() -> Iterator[bytes]:  # no Content-Length: the limit still holds
            yield b'{"messages": [{"role": "user", "content": "'
            for _ in range(10):
                yield b"x" * 512
            yield b'"}]}'

        response = http.post("/v1/streams", content=chunked())
        assert response.status_code == 413
        small = http.post("/v1/streams", json={"model": "mock", "messages": PROMPT})
        assert small.status_code == 201


def test_unknown_route_is_json_404(http: httpx.Client) -> None:
    response = http.get("/v1/nothing-here")
    assert response.status_code == 404 and error_of(response)


# -- auth ------------------------------------------------------------------------------------
def test_auth_and_stream_ownership(mock_url: str) -> None:
    secret = "sk-upstream-secret-value"
    settings = Settings(
        upstream=f"{mock_url}/v1", api_keys=("key-a", "key-b"), upstream_api_key=secret
    )
    assert secret not in repr(settings)
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        a = {"Authorization": "Bearer key-a"}
        b = {"Authorization": "Bearer key-b"}
        assert http.get("/healthz").status_code == 200
        assert http.get("/").status_code == 200
        for method, path in [
            ("POST", "/v1/streams"),
            ("GET", "/v1/models"),
            ("GET", "/metrics"),
            ("POST", "/v1/chat/completions"),
        ]:
            response = http.request(method, path, json={"messages": PROMPT})
            assert response.status_code == 401, path
            assert error_of(response)["type"] == "authentication_error"
        wrong = http.post(
            "/v1/streams", json={"messages": PROMPT}, headers={"Authorization": "Bearer x"}
        )
        assert wrong.status_code == 401
        stream_id = http.post(
            "/v1/streams", json={"model": "mock", "messages": PROMPT}, headers=a
        ).json()["id"]
        for path in (f"/v1/streams/{stream_id}", f"/v1/streams/{stream_id}/events"):
            assert http.get(path).status_code == 401
            assert http.get(path, headers=b).status_code == 404
        assert http.post(f"/v1/streams/{stream_id}/cancel", headers=b).status_code == 404
        # EventSource cannot set headers: ?api_key= works too.
        raw = http.get(f"/v1/streams/{stream_id}/events", params={"api_key": "key-a"}).content
        assert b'"message.end"' in raw
        snap = http.get(f"/v1/streams/{stream_id}", headers=a)
        assert snap.status_code == 200 and snap.json()["status"] == "completed"
        everything = [snap.text, raw.decode(), http.get("/metrics", headers=a).text]
        everything.append(http.get("/v1/models", headers=a).text)
        assert not any(secret in text for text in everything)


# -- retention and the store -----------------------------------------------------------------
def test_store_answers_after_retention(mock_url: str, tmp_path: Path) -> None:
    settings = Settings(upstream=f"{mock_url}/v1", retention_s=0.2, data_dir=str(tmp_path))
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url) as http:
        stream_id = create(http, "mock-reasoning")
        ops = parse(read_events(http, stream_id))
        live = http.get(f"/v1/streams/{stream_id}").json()
        time.sleep(0.6)  # the op log is forgotten now
        stored = http.get(f"/v1/streams/{stream_id}").json()
        assert stored == live
        # Resuming from before the end now gets one snapshot of the final message.
        events = parse(read_events(http, stream_id, **{"Last-Event-ID": "2"}))
        assert len(events) == 1 and events[0][0] == ops[-1][0]
        snapshot = msgspec.json.decode(events[0][1])
        assert snapshot["type"] == "snapshot" and snapshot["message"] == live["message"]
        last = str(ops[-1][0])
        assert (
            http.get(f"/v1/streams/{stream_id}/events", headers={"Last-Event-ID": last}).status_code
            == 204
        )
        assert http.post(f"/v1/streams/{stream_id}/cancel").json()["status"] == "completed"
    # A restarted gateway on the same data dir still knows the stream.
    with serve_asgi(create_app(settings)) as url:
        assert httpx.get(f"{url}/v1/streams/{stream_id}").json() == live


# -- misc --------------------------------------------------------------------------------------
def test_coalescing_option_merges_deltas_not_content(http: httpx.Client) -> None:
    plain = create(http, "mock", mock={"tps": 400}, max_tokens=80)
    merged = create(http, "mock", mock={"tps": 400}, max_tokens=80, tokenwire={"coalesce_ms": 100})
    plain_ops = parse(read_events(http, plain, "?catchup=exact"))
    merged_ops = parse(read_events(http, merged, "?catchup=exact"))
    assert rebuild(merged_ops).text == rebuild(plain_ops).text
    assert len(merged_ops) < len(plain_ops)


def test_healthz_metrics_and_index(http: httpx.Client) -> None:
    assert http.get("/healthz").json() == {"status": "ok", "pid": os.getpid(), "hub": "memory"}
    stream_id = create(http)
    read_events(http, stream_id)
    text = http.get("/metrics").text
    for name in (
        "tokenwire_active_streams",
        "tokenwire_subscribers",
        "tokenwire_ops_sent_total",
        "tokenwire_bytes_sent_total",
        "tokenwire_upstream_errors_total",
        "tokenwire_time_to_first_token_seconds_bucket",
    ):
        assert name in text
    assert http.get("/").status_code == 200


async def test_cancel_while_a_failed_stream_is_being_ended_still_ends_it(tmp_path: Path) -> None:
    # Regression: a cancel arriving while the producer stored its "failed" ending (upstream
    # unreachable) cancelled the producer mid-ending, and message.end never reached the hub.
    from tokenwire.gateway.app import Gateway
    from tokenwire.gateway.producer import Producer
    from tokenwire.hub import MemoryHub

    hub = MemoryHub()
    gw = Gateway(Settings(upstream=f"http://127.0.0.1:{free_port()}/v1", upstream_retries=0), hub)
    await gw.startup()
    save = gw.store.save

    async def slow_save(row):  # type: ignore[no-untyped-def]
        await asyncio.sleep(0.3)
        await save(row)

    gw.store.save = slow_save  # type: ignore[method-assign]
    try:
        await hub.create("st_cancel_during_fail", owner=None)
        producer = Producer(gw, "st_cancel_during_fail", None, b"{}", model=None, coalesce_ms=0)
        task = asyncio.create_task(producer.run())
        await asyncio.sleep(0.1)  # refused at once; now storing the failed ending
        await hub.request_cancel("st_cancel_during_fail")
        await asyncio.wait_for(task, 5)
        info = await hub.info("st_cancel_during_fail")
        assert info is not None and info.status != "in_progress"
    finally:
        await gw.shutdown()


def test_owner_tags_are_keyed_and_legacy_rows_stay_readable(mock_url: str, tmp_path: Path) -> None:
    """The owner tag stored with a stream is an HMAC of the API key with the server's secret
    (here the one kept in the data directory), never ``sha256(key)``; a row an earlier version
    stored with ``sha256(key)[:32]`` is still its key's (and no other key's)."""
    import hashlib
    import hmac
    import sqlite3

    settings = Settings(
        upstream=f"{mock_url}/v1", api_keys=("key-a", "key-b"), data_dir=str(tmp_path)
    )
    legacy = hashlib.sha256(b"key-a").hexdigest()[:32]
    message = Message.empty("st_legacy_row_00000001").to_json()
    app = create_app(settings)
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        a = {"Authorization": "Bearer key-a"}
        b = {"Authorization": "Bearer key-b"}
        stream_id = http.post(
            "/v1/streams", json={"model": "mock", "messages": PROMPT}, headers=a
        ).json()["id"]
        assert http.post(f"/v1/streams/{stream_id}/cancel", headers=a).status_code == 202
        db = sqlite3.connect(tmp_path / "tokenwire.sqlite3")
        for _ in range(200):  # (the final row is written as the stream settles)
            row = db.execute("SELECT owner FROM streams WHERE id = ?", (stream_id,)).fetchone()
            if row:
                break
            time.sleep(0.02)
        secret = (tmp_path / "secret").read_text().strip().encode()
        keyed = hmac.new(secret, b"owner:key-a", hashlib.sha256).hexdigest()[:32]
        assert row == (keyed,) and keyed != legacy
        db.execute(
            "INSERT INTO streams (id, owner, status, seq, message, created_at, finished_at)"
            " VALUES (?, ?, 'completed', 2, ?, 0, 0)",
            ("st_legacy_row_00000001", legacy, message),
        )
        db.commit()
        db.close()
        assert http.get("/v1/streams/st_legacy_row_00000001", headers=a).status_code == 200
        assert http.get("/v1/streams/st_legacy_row_00000001", headers=b).status_code == 404
        events = http.get("/v1/streams/st_legacy_row_00000001/events", headers=a)
        assert events.status_code == 200 and b'"snapshot"' in events.content
