"""A host's ``POST {api}`` answered with ``streams.aisdk_response(..., body=body)`` (and the
gateway's ``POST /v1/aisdk/chat``): the answer's ``messageId``, exact chunks from the first
(the Workflow transport's count is its resume index), and no transient parts for the
Workflow transport's body."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import msgspec
import pytest
from conftest import serve_asgi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount, Route

from tokenwire import Streams, StreamWriter
from tokenwire.protocol import SSEDecoder

USER = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]}


def _host() -> Starlette:
    streams = Streams(coalesce_ms=0, secret="s")

    async def produce(w: StreamWriter) -> None:
        for i in range(6):
            await w.text(f"w{i} ")
            if i == 2:
                await w.data("progress", {"i": i}, transient=True)
            await asyncio.sleep(0.01)

    async def chat(request: Request) -> Any:
        body = await request.json()
        handle = await streams.start(produce)
        if request.query_params.get("late"):
            await streams.wait(handle.id, 10)  # every op is in the log before the answer
        return streams.aisdk_response(handle.id, body=body)

    return Starlette(
        routes=[Route("/api/chat", chat, methods=["POST"]), Mount("/api/chat", streams.asgi())],
        lifespan=streams.lifespan,
    )


def _chunks(raw: bytes) -> list[dict[str, Any]]:
    return [msgspec.json.decode(e.raw) for e in SSEDecoder().feed(raw) if e.raw != b"[DONE]"]


@pytest.fixture(scope="module")
def base() -> Any:
    with serve_asgi(_host()) as url:
        yield url


def _post(base: str, body: dict[str, Any], query: str = "") -> tuple[str, list[dict[str, Any]]]:
    response = httpx.post(f"{base}/api/chat{query}", json=body, timeout=20)
    assert response.status_code == 200, response.text
    return response.headers["x-workflow-run-id"], _chunks(response.content)


def test_the_answer_never_takes_a_user_messages_id(base: str) -> None:
    edit = {"id": "c1", "messages": [USER], "trigger": "submit-message", "messageId": "u1"}
    run_id, chunks = _post(base, edit)
    assert chunks[0] == {"type": "start", "messageId": run_id}  # (not "u1": it would replace it)
    regenerate = {**edit, "trigger": "regenerate-message"}
    run_id, chunks = _post(base, regenerate)
    assert chunks[0]["messageId"] == run_id
    assistant = {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "so far"}]}
    tool_round = {
        "id": "c1",
        "messages": [USER, assistant],
        "trigger": "submit-message",
        "messageId": "a1",
    }
    _, chunks = _post(base, tool_round)
    assert chunks[0]["messageId"] == "a1"  # (continuing the assistant's own message)


@pytest.mark.parametrize("late", [False, True])
def test_the_post_answer_is_every_chunk_of_the_log_exactly(base: str, late: bool) -> None:
    body = {"messages": [USER]}  # the Workflow transport's default body: no trigger
    run_id, posted = _post(base, body, "?late=1" if late else "")
    logged = _chunks(httpx.get(f"{base}/api/chat/{run_id}/stream?startIndex=0").content)
    assert posted == logged
    deltas = [c["delta"] for c in posted if c["type"] == "text-delta"]
    assert deltas == [f"w{i} " for i in range(6)]  # one per write: not compacted
    assert not any(c["type"].startswith("data-") for c in posted)  # (no transient part)


def test_default_chat_transport_bodies_get_transient_parts_live(base: str) -> None:
    body = {"id": "c2", "messages": [USER], "trigger": "submit-message", "messageId": None}
    run_id, posted = _post(base, body)
    transient = [c for c in posted if c["type"] == "data-progress"]
    assert transient == [{"type": "data-progress", "data": {"i": 2}, "transient": True}]
    logged = _chunks(httpx.get(f"{base}/api/chat/{run_id}/stream?startIndex=0").content)
    assert [c for c in posted if c not in transient] == logged


def test_a_host_answer_never_500s_on_a_body_or_an_unknown_stream() -> None:
    streams = Streams(coalesce_ms=0, secret="s")

    async def chat(request: Request) -> Any:
        body = await request.json()
        if request.query_params.get("unknown"):
            return streams.aisdk_response("st_nobody_started_it", body=body)
        handle = await streams.start(lambda w: w.text("hi"))
        return streams.aisdk_response(handle.id, body=body)

    app = Starlette(routes=[Route("/api/chat", chat, methods=["POST"])], lifespan=streams.lifespan)
    odd = {"id": "a b", "role": "assistant", "parts": []}  # (an id the view cannot send)
    with serve_asgi(app) as url:
        body = {"id": "c", "messages": [USER, odd], "trigger": "submit-message", "messageId": "a b"}
        response = httpx.post(f"{url}/api/chat", json=body, timeout=20)
        assert response.status_code == 200
        run_id = response.headers["x-workflow-run-id"]
        assert _chunks(response.content)[0] == {"type": "start", "messageId": run_id}
        missing = httpx.post(f"{url}/api/chat?unknown=1", json=body, timeout=20)
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "stream_not_found"


def test_the_post_answer_splits_frames_as_the_asgi_routes_do() -> None:
    """``aisdk_response`` takes ``max_frame_bytes`` from ``streams.asgi(...)``: the POST
    answer's chunks and ``?startIndex=0`` of the resume route are the same list, so a
    Workflow client's count is a valid resume index (it used to differ past the bound)."""
    streams = Streams(coalesce_ms=0, secret="s")

    async def produce(w: StreamWriter) -> None:
        await w.text("x" * 20_000)

    async def chat(request: Request) -> Any:
        handle = await streams.start(produce)
        await streams.wait(handle.id, 10)
        return streams.aisdk_response(handle.id, body=await request.json())

    app = Starlette(
        routes=[
            Route("/api/chat", chat, methods=["POST"]),
            Mount("/api/chat", streams.asgi(max_frame_bytes=4096)),
        ],
        lifespan=streams.lifespan,
    )
    with serve_asgi(app) as url:
        run_id, posted = _post(url, {"messages": [USER]})
        again = httpx.get(f"{url}/api/chat/{run_id}/stream", params={"startIndex": "0"})
        assert again.status_code == 200
        assert _chunks(again.content) == posted
        assert len(posted) > 8  # (split at 4096 bytes, not at the default 64 KiB)


@pytest.mark.parametrize("chat_id", ["alice@example.com", "chat with space", "c" * 200])
def test_any_chat_id_the_post_records_resumes_and_stops(chat_id: str) -> None:
    streams = Streams(coalesce_ms=0, secret="s")

    async def produce(w: StreamWriter) -> None:
        await w.text("hi ")
        await asyncio.sleep(30)

    async def chat(request: Request) -> Any:
        handle = await streams.start(produce)
        return streams.aisdk_response(handle.id, body=await request.json())

    app = Starlette(
        routes=[Route("/api/chat", chat, methods=["POST"]), Mount("/api/chat", streams.asgi())],
        lifespan=streams.lifespan,
    )
    body = {"id": chat_id, "messages": [USER], "trigger": "submit-message"}
    with serve_asgi(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        with http.stream("POST", "/api/chat", json=body) as answer:
            run_id = answer.headers["x-workflow-run-id"]
            with http.stream("GET", f"/api/chat/{chat_id}/stream") as resumed:
                assert resumed.status_code == 200  # (it used to be 204: "nothing active")
                first = next(resumed.iter_lines())
                assert '"type":"start"' in first
            stop = http.post(f"/api/chat/{chat_id}/stop")
            assert stop.status_code == 202, stop.text
        snap = http.get(f"/api/chat/{run_id}").json()
        assert snap["status"] == "cancelled", snap


def test_a_chat_id_no_route_could_find_is_refused() -> None:
    from tokenwire.errors import InvalidArgument

    streams = Streams(coalesce_ms=0, secret="s")
    for chat_id in ("a/b", "..", " ", "x\n"):
        with pytest.raises(InvalidArgument, match="chat_id"):
            streams.aisdk_response("st_whatever", chat_id=chat_id)
        # Taken from the body (the stream already runs): answered, just not as the chat's.
        body = {"id": chat_id, "messages": [USER], "trigger": "submit-message"}
        answer = streams.aisdk_response("st_whatever", body=body)
        assert answer.chat_id is None


def test_user_files_become_the_chat_apis_content_parts() -> None:
    """``useChat`` attaches files as parts with a ``data:`` URL: images go as ``image_url``,
    other files as OpenAI's ``file`` part (``file_data`` plus the file's name)."""
    from tokenwire.gateway.aisdk import chat_messages

    pdf = "data:application/pdf;base64,JVBERi0xLjQK"
    png = "data:image/png;base64,iVBORw0KGgo="
    messages = chat_messages(
        [
            {
                "id": "u1",
                "role": "user",
                "parts": [
                    {"type": "text", "text": "Read these"},
                    {
                        "type": "file",
                        "mediaType": "application/pdf",
                        "filename": "a.pdf",
                        "url": pdf,
                    },
                    {"type": "file", "mediaType": "image/png", "url": png},
                ],
            }
        ]
    )
    assert messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Read these"},
                {"type": "file", "file": {"file_data": pdf, "filename": "a.pdf"}},
                {"type": "image_url", "image_url": {"url": png}},
            ],
        }
    ]
