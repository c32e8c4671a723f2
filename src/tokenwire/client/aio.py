"""The asyncio client (httpx)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx

from tokenwire.client._state import (
    RETRYABLE_STATUS,
    GatewayError,
    GatewayUnreachable,
    StreamState,
    StreamView,
    TransientCallback,
    backoff,
    checked,
    checked_catchup,
    create_body,
    http_options,
    openai_chunk,
    reaching,
    read_params,
    stream_path,
)
from tokenwire.protocol import Message, Op


class AsyncClient:
    """The async twin of ``Client`` (same ``api_key`` / ``token`` options)."""

    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8787",
        *,
        api_key: str | None = None,
        token: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 5,
    ) -> None:
        self.api_key = api_key
        self.token = token
        self.max_retries = max_retries
        self._http = httpx.AsyncClient(**http_options(base_url, api_key, timeout))

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP connection pool (the client is an async context manager too)."""
        await self._http.aclose()

    async def create(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        coalesce_ms: float | None = None,
        on_transient: TransientCallback | None = None,
        catchup: str = "exact",
        **params: Any,
    ) -> AsyncStream:
        """As ``Client.create``."""
        checked_catchup(catchup)  # before anything starts
        body = create_body(messages, model, coalesce_ms, params)
        with reaching(self._http.base_url):
            response = await self._http.post("/v1/streams", json=body)
        data = checked(response).json()
        return AsyncStream(self, data["id"], on_transient, catchup)

    def stream(
        self,
        stream_id: str,
        *,
        on_transient: TransientCallback | None = None,
        catchup: str = "compact",
    ) -> AsyncStream:
        """Follow an existing stream (``on_transient``: called with each transient op;
        ``catchup``: as ``Client.stream``)."""
        return AsyncStream(self, stream_id, on_transient, catchup)

    async def get(self, stream_id: str) -> dict[str, Any]:
        """The stream's current snapshot: its id, status and message so far."""
        with reaching(self._http.base_url):
            response = await self._http.get(stream_path(stream_id), params=read_params(self.token))
        return checked(response).json()

    async def openai_chunks(
        self, stream_id: str, *, start_index: int = 0
    ) -> AsyncIterator[dict[str, Any]]:
        """``Client.openai_chunks`` for asyncio: the stream as OpenAI
        ``chat.completion.chunk`` dicts from chunk ``start_index`` on, resumed by itself
        after a dropped connection (docs/views.md)."""
        from tokenwire.protocol import SSEDecoder

        index = start_index
        attempt = 0
        url = stream_path(stream_id, "events")
        while True:
            decoder = SSEDecoder()
            try:
                with reaching(self._http.base_url):
                    async with self._http.stream(
                        "GET",
                        url,
                        params=read_params(self.token, format="openai", startIndex=index),
                    ) as response:
                        if response.status_code in RETRYABLE_STATUS and attempt < self.max_retries:
                            raise httpx.TransportError(f"HTTP {response.status_code}")
                        if response.status_code >= 400:
                            await response.aread()
                            checked(response)
                        async for raw in response.aiter_raw():
                            for event in decoder.feed(raw):
                                chunk = openai_chunk(event.data)
                                if chunk is None:  # [DONE]
                                    return
                                index += 1
                                attempt = 0
                                yield chunk
                return
            except (httpx.TransportError, GatewayUnreachable):
                attempt += 1
                if attempt > self.max_retries:
                    raise
                await asyncio.sleep(backoff(attempt))

    async def cancel(self, stream_id: str) -> str:
        """Cancel the generation ``stream_id`` on the gateway."""
        with reaching(self._http.base_url):
            response = await self._http.post(stream_path(stream_id, "cancel"))
        return checked(response).json()["status"]

    async def _ops(self, state: StreamState) -> AsyncIterator[Op]:
        failures = 0
        last: Exception | None = None
        while not state.done:
            progressed = False
            try:
                state.reset_connection()
                async with self._http.stream(
                    "GET",
                    stream_path(state.id, "events"),
                    headers=state.headers(),
                    params=read_params(self.token, **state.params),
                ) as response:
                    if response.status_code == 204:
                        state.done = True
                        return
                    if response.status_code in RETRYABLE_STATUS and failures < self.max_retries:
                        raise httpx.TransportError(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        body = await response.aread()
                        raise GatewayError.from_response(response.status_code, body)
                    async for chunk in response.aiter_raw():
                        ops = state.feed(chunk)
                        if ops:
                            progressed = True
                            for op in ops:
                                yield op
                        if state.done:
                            return
            except httpx.TransportError as exc:
                last = exc
            failures = 0 if progressed else failures + 1
            if failures > self.max_retries:
                raise GatewayUnreachable(
                    f"cannot reach the gateway at {self._http.base_url}: stream {state.id}: "
                    f"gave up after {self.max_retries} reconnects ({last or 'no answer'})"
                )
            if not progressed:
                await asyncio.sleep(backoff(failures - 1))


class AsyncStream(StreamView):
    """The async twin of ``Stream``."""

    def __aiter__(self) -> AsyncIterator[Op]:
        return self.client._ops(self._state)

    async def wait(self) -> Message:
        """Read the stream to its end; returns the final message."""
        async for _ in self:
            pass
        return self.message

    async def cancel(self) -> str:
        """Cancel the generation on the gateway (every reader sees it end ``cancelled``)."""
        return await self.client.cancel(self.id)
