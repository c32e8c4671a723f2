"""The FastAPI chat example end to end over real sockets, including a reload mid-answer."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
from conftest import serve_asgi

from tokenwire.mock import create_mock_app
from tokenwire.protocol import Message, apply_op, decode_op

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # (the repo root: examples/)

from examples.fastapi_chat.app import create_app


def events(raw: bytes) -> list[tuple[int, bytes]]:
    out = []
    for frame in raw.split(b"\n\n"):
        fields = dict(line.split(b":", 1) for line in frame.split(b"\n") if b":" in line)
        if b"id" in fields and b"data" in fields:
            out.append((int(fields[b"id"]), fields[b"data"]))
    return out


def test_answer_survives_a_reload_and_is_saved_before_the_end_is_seen(tmp_path: Path) -> None:
    with serve_asgi(create_mock_app()) as mock_url:
        app = create_app(f"{mock_url}/v1", str(tmp_path / "chat.sqlite3"), secret="example")
        with serve_asgi(app) as url:
            alice = httpx.Client(base_url=url, timeout=20)
            page = httpx.Client(base_url=url, timeout=20)  # the browser page: no session
            bob = httpx.Client(base_url=url, timeout=20)
            with alice, page, bob:
                assert (
                    alice.post("/login", json={"user": "alice", "password": "x"}).status_code == 401
                )
                alice.post("/login", json={"user": "alice", "password": "wonderland"})
                bob.post("/login", json={"user": "bob", "password": "builder"})
                assert alice.get("/").status_code == 200
                started = alice.post(
                    "/api/chats/c1/answer", json={"question": "hi", "pace_tps": 200}
                ).json()
                events_url, token = started["events_url"], started["token"]
                assert page.get(events_url).status_code == 401  # no token, no session
                assert bob.get(f"/tw/{started['id']}").status_code == 404  # not bob's

                # first page load: read a few ops, then the page reloads mid-answer
                seen: list[tuple[int, bytes]] = []
                with page.stream("GET", events_url, params={"token": token}) as response:
                    assert response.status_code == 200
                    buffer = b""
                    for chunk in response.iter_raw():
                        buffer += chunk
                        seen = events(buffer[: buffer.rfind(b"\n\n") + 2])
                        if len(seen) >= 6:
                            break
                last = seen[-1][0]
                snapshot = page.get(f"/tw/{started['id']}", params={"token": token}).json()
                assert snapshot["status"] == "in_progress"  # the reload is mid-answer
                with page.stream(
                    "GET",
                    events_url,
                    params={"token": token, "catchup": "exact"},  # (every op, however late)
                    headers={"Last-Event-ID": str(last)},
                ) as response:
                    assert response.status_code == 200
                    rest = events(response.read())
                ops = seen + rest
                assert [seq for seq, _ in ops] == list(range(1, len(ops) + 1))
                message = Message.empty()
                for _, data in ops:
                    apply_op(message, decode_op(data))
                assert message.status == "completed"
                # saved by on_end before message.end was visible: no waiting needed
                rows = alice.get("/api/chats/c1/messages").json()
                assert [row["id"] for row in rows] == [started["id"]]
                assert rows[0]["message"] == message.to_dict()
                assert bob.get("/api/chats/c1/messages").json() == []
                blocks = message.to_dict()["blocks"]
                kinds = [b["type"] for b in blocks]
                assert kinds[:2] == ["source", "source"]
                assert "tool_call" in kinds and kinds[-1] == "text"
                assert message.usage is not None and message.finish_reason == "stop"
