"""``streams.asgi()`` mounted in host apps (FastAPI, Starlette), over real sockets."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import pytest
from conftest import serve_asgi
from fastapi import FastAPI, HTTPException, Request
from starlette.applications import Starlette
from starlette.routing import Mount
from websockets.sync.client import connect

from tokenwire import Streams, StreamWriter
from tokenwire.errors import NotStarted
from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app
from tokenwire.protocol import Message, apply_op, decode_op

USERS = {"alice-cookie": "alice", "bob-cookie": "bob"}


def current_user(request) -> str:  # type: ignore[no-untyped-def]
    user = USERS.get(request.cookies.get("session", ""))
    if user is None:
        raise HTTPException(401, "log in first")
    return user


def parse(raw: bytes) -> list[bytes]:
    return [line[5:] for line in raw.split(b"\n") if line.startswith(b"data:")]


def rebuild(datas: list[bytes]) -> Message:
    message = Message.empty()
    for data in datas:
        apply_op(message, decode_op(data))
    return message


def host_app(streams: Streams, *, lifespan: bool = True) -> FastAPI:
    app = FastAPI(lifespan=streams.lifespan if lifespan else None)
    app.mount("/tw", streams.asgi(authorize=current_user))

    @app.post("/chat")
    async def chat(request: Request) -> dict:
        user = current_user(request)
        pause = float(request.query_params.get("pause", "0"))

        async def answer(w: StreamWriter) -> None:
            await w.source("https://docs.example/a", "A")
            for word in ("Hello", " from", " the", " host"):
                await w.text(word)
                await asyncio.sleep(pause)

        stream = await streams.start(answer, owner=user, metadata={"user": user})
        base = request.scope.get("root_path", "") + "/tw"
        return {
            "id": stream.id,
            "events_url": f"{base}/{stream.id}/events",
            "token": streams.read_token(stream.id, ttl_s=60),
        }

    return app


@pytest.fixture
def host() -> Iterator[tuple[str, Streams]]:
    streams = Streams(coalesce_ms=0, secret="test-secret")
    with serve_asgi(host_app(streams)) as url:
        yield url, streams


def test_mounted_routes_owner_checks_and_read_tokens(host: tuple[str, Streams]) -> None:
    url, _ = host
    alice = httpx.Client(base_url=url, cookies={"session": "alice-cookie"}, timeout=10)
    bob = httpx.Client(base_url=url, cookies={"session": "bob-cookie"}, timeout=10)
    anon = httpx.Client(base_url=url, timeout=10)
    with alice, bob, anon:
        started = alice.post("/chat").json()
        sid, events, token = started["id"], started["events_url"], started["token"]
        assert events == f"/tw/{sid}/events"
        with alice.stream("GET", events) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            message = rebuild(parse(b"".join(response.iter_raw())))
        assert message.status == "completed"
        assert message.to_dict()["blocks"][1]["text"] == "Hello from the host"
        # snapshot: owner yes; another user and strangers no
        assert alice.get(f"/tw/{sid}").json()["message"] == message.to_dict()
        assert bob.get(f"/tw/{sid}").status_code == 404
        assert anon.get(f"/tw/{sid}").status_code == 401
        assert anon.get(events).status_code == 401
        assert bob.post(f"/tw/{sid}/cancel").status_code == 404
        # read tokens: read-only, one stream, signed
        assert anon.get(f"/tw/{sid}", params={"token": token}).status_code == 200
        with anon.stream("GET", events, params={"token": token}) as response:
            assert response.status_code == 200
            assert rebuild(parse(b"".join(response.iter_raw()))).to_dict() == message.to_dict()
        assert anon.get(f"/tw/{sid}", params={"token": token[:-3] + "xyz"}).status_code == 401
        other = alice.post("/chat").json()
        assert anon.get(f"/tw/{other['id']}", params={"token": token}).status_code == 404
        assert anon.post(f"/tw/{sid}/cancel", params={"token": token}).status_code == 401
        # Signed in (authorize lets the request through) but not the owner: the token is
        # still no way to cancel, and the answer says so (401) instead of "not found".
        refused = bob.post(f"/tw/{sid}/cancel", params={"token": token})
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "token_cannot_cancel"
        # Only a token of that very stream says so: any other is no way to learn that another
        # user's stream exists (404, as for an id with no stream).
        for forged in ("garbage", "", token[:-3] + "xyz"):
            probe = bob.post(f"/tw/{sid}/cancel", params={"token": forged})
            assert probe.status_code == 404, forged
        ws_url = url.replace("http://", "ws://") + f"/tw/{sid}/ws?after=0&token={token}"
        with connect(ws_url) as ws:
            frames = []
            with contextlib.suppress(Exception):
                while True:
                    frames.append(ws.recv(timeout=5))
        assert frames and rebuild([f.encode() for f in frames]).status == "completed"
        with connect(url.replace("http://", "ws://") + f"/tw/{sid}/ws?after=0") as ws:
            error = ws.recv(timeout=5)
            assert "authentication_error" in error


def test_cancel_from_the_mounted_route(host: tuple[str, Streams]) -> None:
    url, _ = host
    with httpx.Client(base_url=url, cookies={"session": "alice-cookie"}, timeout=10) as alice:
        sid = alice.post("/chat", params={"pause": "5"}).json()["id"]
        response = alice.post(f"/tw/{sid}/cancel")
        assert response.status_code == 202
        assert response.json() == {"id": sid, "status": "cancelled"}
        message = alice.get(f"/tw/{sid}").json()["message"]
        assert message["status"] == "cancelled" and message["blocks"][1]["text"] == "Hello"


def test_without_the_lifespan_a_clear_503_and_not_started() -> None:
    streams = Streams()
    app = host_app(streams, lifespan=False)
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        http.cookies.set("session", "alice-cookie")
        response = http.get("/tw/st_x/events")
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "not_started" and "lifespan" in error["message"]
        with pytest.raises(NotStarted):
            asyncio.run(streams.start(lambda w: w.text("x")))


def test_served_alone_runs_its_own_lifespan() -> None:
    streams = Streams(secret="s")
    with serve_asgi(streams.asgi()) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert streams.started
        assert http.get("/st_nope").status_code == 404
    assert not streams.started


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    with serve_asgi(create_mock_app()) as url:
        yield url


def test_gateway_mounted_with_a_prefix_returns_prefixed_urls_and_usage(mock_url: str) -> None:
    gateway = create_app(Settings(upstream=f"{mock_url}/v1", coalesce_ms=0))

    @contextlib.asynccontextmanager
    async def lifespan(app):  # type: ignore[no-untyped-def]
        async with gateway.router.lifespan_context(gateway):
            yield

    outer = Starlette(routes=[Mount("/gw", gateway)], lifespan=lifespan)
    with serve_asgi(outer) as url, httpx.Client(base_url=url, timeout=20) as http:
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        created = http.post("/gw/v1/streams", json=body).json()
        assert created["events_url"].startswith("/gw/v1/streams/")
        with http.stream("GET", created["events_url"]) as response:
            assert response.status_code == 200
            message = rebuild(parse(b"".join(response.iter_raw())))
        assert message.status == "completed"
        assert message.usage is not None  # asked upstream with stream_options.include_usage


def test_gateway_mounted_without_its_lifespan_says_what_to_do(mock_url: str) -> None:
    gateway = create_app(Settings(upstream=f"{mock_url}/v1"))
    outer = Starlette(routes=[Mount("/gw", gateway)])
    with serve_asgi(outer) as url, httpx.Client(base_url=url, timeout=20) as http:
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        response = http.post("/gw/v1/streams", json=body)
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "not_started"
        assert http.get("/gw/v1/streams/st_aaaaaaaaaaaaaaaaaaaaaaaa/events").status_code == 503
        health = http.get("/gw/healthz")  # (a load balancer must not send it traffic)
        assert health.status_code == 503 and health.json()["status"] == "not_started"


def test_gateway_cors_preflight_and_headers(mock_url: str) -> None:
    settings = Settings(upstream=f"{mock_url}/v1", cors_origins=("https://app.example",))
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url, timeout=20) as http:
        preflight = http.options(
            "/v1/streams",
            headers={
                "Origin": "https://app.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example"
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        created = http.post("/v1/streams", json=body, headers={"Origin": "https://app.example"})
        assert created.headers["access-control-allow-origin"] == "https://app.example"
        events = http.get(created.json()["events_url"], headers={"Origin": "https://app.example"})
        assert events.headers["access-control-allow-origin"] == "https://app.example"
        evil = http.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in evil.headers
    anyone = Settings(upstream=f"{mock_url}/v1", cors_origins=("*",))
    with serve_asgi(create_app(anyone)) as url, httpx.Client(base_url=url, timeout=20) as http:
        response = http.get("/healthz", headers={"Origin": "https://x.example"})
        assert response.headers["access-control-allow-origin"] == "*"
        assert "access-control-allow-credentials" not in response.headers


def test_pipe_takes_httpx_and_openai_sdk_responses(mock_url: str) -> None:
    import openai

    body = {"model": "mock-tools", "messages": [{"role": "user", "content": "hi"}]}

    async def main() -> None:
        client = openai.AsyncOpenAI(base_url=f"{mock_url}/v1", api_key="x", max_retries=0)
        async with Streams(coalesce_ms=0) as streams, httpx.AsyncClient() as http:

            async def produce(w: StreamWriter) -> None:
                raw = await client.chat.completions.with_raw_response.create(
                    **body, stream=True, stream_options={"include_usage": True}
                )
                first = await w.pipe(raw)
                assert first.finish_reason == "tool_calls" and first.tool_calls
                assert first.usage is not None and first.model
                for call in first.tool_calls:
                    await w.tool_result(call.id or "", "42")
                async with client.chat.completions.with_streaming_response.create(
                    model="mock", messages=body["messages"], stream=True
                ) as streaming:
                    second = await w.pipe(streaming)
                assert second.finish_reason == "stop"
                request = http.build_request(
                    "POST", f"{mock_url}/v1/chat/completions", json={**body, "stream": True}
                )
                third = await w.pipe(await http.send(request, stream=True))
                assert third.tool_calls
                # async context managers are entered (and exited) by pipe itself
                fourth = await w.pipe(
                    http.stream(
                        "POST", f"{mock_url}/v1/chat/completions", json={**body, "stream": True}
                    )
                )
                assert fourth.tool_calls
                fifth = await w.pipe(
                    client.chat.completions.with_streaming_response.create(
                        model="mock", messages=body["messages"], stream=True
                    )
                )
                assert fifth.finish_reason == "stop"

            handle = await streams.start(produce)
            assert await streams.wait(handle.id, 10) == "completed"
            message = (await streams.message(handle.id)).to_dict()
            kinds = [b["type"] for b in message["blocks"]]
            assert "text" in kinds and kinds.count("tool_call") >= 2
            assert message["usage"] is not None

            async def refused(w: StreamWriter) -> None:
                request = http.build_request(
                    "POST", f"{mock_url}/v1/chat/completions", json={"model": "nope"}
                )
                await w.pipe(await http.send(request, stream=True))

            bad = await streams.start(refused)
            assert await streams.wait(bad.id, 10) == "failed"
            error = (await streams.message(bad.id)).error
            assert error is not None and error["message"].startswith("upstream returned HTTP 4")
        await client.close()

    asyncio.run(main())


def test_gateway_read_tokens_with_api_keys(mock_url: str) -> None:
    settings = Settings(upstream=f"{mock_url}/v1", api_keys=("k1", "k2"), secret="shh")
    with serve_asgi(create_app(settings)) as url, httpx.Client(base_url=url, timeout=20) as http:
        body = {"model": "mock", "messages": [{"role": "user", "content": "hi"}]}
        k1 = {"Authorization": "Bearer k1"}
        sid = http.post("/v1/streams", json=body, headers=k1).json()["id"]
        assert (
            http.post(
                f"/v1/streams/{sid}/token", headers={"Authorization": "Bearer k2"}
            ).status_code
            == 404
        )
        token = http.post(f"/v1/streams/{sid}/token", json={"ttl_s": 60}, headers=k1).json()[
            "token"
        ]
        with http.stream("GET", f"/v1/streams/{sid}/events", params={"token": token}) as response:
            assert response.status_code == 200
            assert rebuild(parse(b"".join(response.iter_raw()))).status == "completed"
        assert http.get(f"/v1/streams/{sid}", params={"token": token}).status_code == 200
        assert http.get(f"/v1/streams/{sid}").status_code == 401
        assert http.get(f"/v1/streams/{sid}", params={"token": "x" + token}).status_code == 401
        cancel = http.post(f"/v1/streams/{sid}/cancel", params={"token": token})
        assert cancel.status_code == 401


def test_authorize_may_be_async_or_answer_itself() -> None:
    from starlette.responses import JSONResponse

    async def async_user(request) -> str:  # type: ignore[no-untyped-def]
        await asyncio.sleep(0)
        if request.headers.get("x-user") == "teapot":
            return JSONResponse({"refused": "by the host"}, 418)  # type: ignore[return-value]
        if "x-user" not in request.headers:
            from tokenwire.errors import Unauthorized

            raise Unauthorized("who are you?")
        return request.headers["x-user"]

    streams = Streams(coalesce_ms=0)
    app = FastAPI(lifespan=streams.lifespan)
    app.mount("/tw", streams.asgi(authorize=async_user))

    @app.post("/start")
    async def start(request: Request) -> dict:
        handle = await streams.start(lambda w: w.text("hi"), owner=request.headers["x-user"])
        return {"id": handle.id}

    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        sid = http.post("/start", headers={"x-user": "carol"}).json()["id"]
        assert http.get(f"/tw/{sid}", headers={"x-user": "carol"}).status_code == 200
        assert http.get(f"/tw/{sid}", headers={"x-user": "dave"}).status_code == 404
        refused = http.get(f"/tw/{sid}/events", headers={"x-user": "teapot"})
        assert refused.status_code == 418 and refused.json() == {"refused": "by the host"}
        anonymous = http.get(f"/tw/{sid}/events")
        assert anonymous.status_code == 401
        assert anonymous.json()["error"]["message"] == "who are you?"


def test_an_http_exception_from_authorize_keeps_its_status_headers_and_type() -> None:
    """As FastAPI answers it on the host's own routes: ``WWW-Authenticate``, ``Retry-After``
    and a login redirect's ``Location`` arrive; the JSON error's type follows the status."""
    refusals = {
        "basic": HTTPException(401, "log in", headers={"WWW-Authenticate": 'Basic realm="app"'}),
        "slow": HTTPException(429, "slow down", headers={"Retry-After": "30"}),
        "login": HTTPException(307, "log in", headers={"Location": "/login"}),
        "nope": HTTPException(403, "not yours"),
    }

    def authorize(request) -> str:  # type: ignore[no-untyped-def]
        raise refusals[request.headers["x-case"]]

    streams = Streams(coalesce_ms=0)
    app = FastAPI(lifespan=streams.lifespan)
    app.mount("/tw", streams.asgi(authorize=authorize))
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        for case, status, header, value, kind in (
            ("basic", 401, "www-authenticate", 'Basic realm="app"', "authentication_error"),
            ("slow", 429, "retry-after", "30", "rate_limit_error"),
            ("login", 307, "location", "/login", "invalid_request_error"),
            ("nope", 403, None, None, "permission_error"),
        ):
            answer = http.get("/tw/st_x/events", headers={"x-case": case})
            assert answer.status_code == status, case
            if header is not None:
                assert answer.headers[header] == value, case
            assert answer.json()["error"]["type"] == kind, case
