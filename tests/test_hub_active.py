"""The hub's active-stream-of-a-chat API (set_active / get_active / clear_active) on both
hubs, and the AI SDK chat routes across two gateway workers sharing a real Redis."""

from __future__ import annotations

import asyncio
import secrets

import httpx
import msgspec
import pytest
from conftest import serve_asgi

from tokenwire.gateway import Settings, create_app
from tokenwire.hub import MemoryHub
from tokenwire.hub.redis import RedisHub
from tokenwire.mock import create_mock_app
from tokenwire.protocol import SSEDecoder


async def _check(a, b) -> None:  # (a and b: two handles on one hub, e.g. two processes)
    assert await a.get_active("k1") is None
    await a.set_active("k1", "st_one", 30)
    assert await b.get_active("k1") == "st_one"
    await b.clear_active("k1", "st_other")  # not the active one: kept
    assert await a.get_active("k1") == "st_one"
    await a.set_active("k1", "st_two m9", 30)  # a newer stream replaces it
    await b.clear_active("k1", "st_one")
    assert await a.get_active("k1") == "st_two m9"
    await b.clear_active("k1", "st_two m9")
    assert await a.get_active("k1") is None
    await a.set_active("k2", "st_x", 0.05)
    await asyncio.sleep(0.1)
    assert await b.get_active("k2") is None  # expired


async def test_memory_hub_active() -> None:
    hub = MemoryHub()
    await _check(hub, hub)


async def test_redis_hub_active_shared(redis_server) -> None:
    prefix = "t" + secrets.token_hex(4)
    a, b = (
        RedisHub(redis_server.url, key_prefix=prefix),
        RedisHub(redis_server.url, key_prefix=prefix),
    )
    await a.start()
    await b.start()
    try:
        await _check(a, b)
    finally:
        await a.close()
        await b.close()


@pytest.fixture(scope="module")
def mock_url():
    with serve_asgi(create_mock_app()) as url:
        yield url


def test_chat_resume_and_stop_on_another_worker(redis_server, mock_url: str) -> None:
    """POST on worker A; worker B resumes the chat (same messageId, from `start`) and stops
    it; A's generation ends cancelled."""
    prefix = "t" + secrets.token_hex(4)
    settings = Settings(
        upstream=f"{mock_url}/v1",
        coalesce_ms=0,
        keepalive_s=0.5,
        redis_url=redis_server.url,
        redis_prefix=prefix,
        secret="s" * 32,
    )
    with serve_asgi(create_app(settings)) as wa, serve_asgi(create_app(settings)) as wb:
        a = httpx.Client(base_url=wa, timeout=20)
        b = httpx.Client(base_url=wb, timeout=20)
        body = {
            "id": "chat-x",
            "messageId": "msg-7",
            "messages": [
                {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "hi"}]},
                # (the answer continues the last, assistant message: it keeps its id)
                {"id": "msg-7", "role": "assistant", "parts": [{"type": "text", "text": "so"}]},
            ],
            "trigger": "submit-message",
            "model": "mock",
            "mock": {"tps": 100},
        }
        with a.stream("POST", "/v1/aisdk/chat", json=body) as response:
            run_id = response.headers["x-workflow-run-id"]
            next(response.iter_raw())
        with b.stream("GET", "/v1/aisdk/chat/chat-x/stream") as resumed:
            assert resumed.status_code == 200
            head = next(resumed.iter_raw())
        first = msgspec.json.decode(head.split(b"\n")[0][6:])
        assert first == {"type": "start", "messageId": "msg-7"}
        stopped = b.post("/v1/aisdk/chat/chat-x/stop")
        assert stopped.status_code == 202 and stopped.json() == {
            "id": run_id,
            "status": "cancelled",
        }
        snap = a.get(f"/v1/streams/{run_id}").json()
        assert snap["status"] == "cancelled"
        assert b.get("/v1/aisdk/chat/chat-x/stream").status_code == 204
        rest = a.get(f"/v1/aisdk/chat/{run_id}/stream?startIndex=-2").content
        assert [e.data for e in SSEDecoder().feed(rest)][-1] == "[DONE]"
        # Resumed by run id from chunk 0 (the Workflow transport, its POST cut early), on the
        # other worker, with the key or a read token: the same messageId as the POST's.
        token = a.post(f"/v1/streams/{run_id}/token").json()["token"]
        for params in ({"startIndex": 0}, {"startIndex": 0, "token": token}):
            whole = b.get(f"/v1/aisdk/chat/{run_id}/stream", params=params).content
            first = msgspec.json.decode(SSEDecoder().feed(whole)[0].data)
            assert first == {"type": "start", "messageId": "msg-7"}, params
        a.close()
        b.close()
