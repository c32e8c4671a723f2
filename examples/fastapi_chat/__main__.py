"""``python -m examples.fastapi_chat``: the mock model and the chat backend, on one loop."""

from __future__ import annotations

import asyncio
import os
import tempfile

import uvicorn

from examples.fastapi_chat.app import create_app
from tokenwire.mock import create_mock_app


async def main() -> None:
    mock_port = int(os.environ.get("MOCK_PORT", "8900"))
    port = int(os.environ.get("PORT", "8800"))
    db = os.environ.get("CHAT_DB") or os.path.join(tempfile.gettempdir(), "fastapi_chat.sqlite3")
    mock = uvicorn.Server(
        uvicorn.Config(
            create_mock_app(tps=40), host="127.0.0.1", port=mock_port, log_level="warning"
        )
    )
    chat = uvicorn.Server(
        uvicorn.Config(
            create_app(f"http://127.0.0.1:{mock_port}/v1", db),
            host="127.0.0.1",
            port=port,
            log_level="info",
        )
    )
    print(f"chat backend on http://127.0.0.1:{port} (log in as alice / wonderland)", flush=True)
    await asyncio.gather(mock.serve(), chat.serve())


if __name__ == "__main__":
    asyncio.run(main())
