"""The blocking client (httpx)."""

from __future__ import annotations

import time
from collections.abc import Iterator
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


class Client:
    """Talk to a tokenwire gateway: create streams, follow them with resume, cancel them.

    ``api_key``: sent as a bearer header on every call. ``token``: a read token for one stream
    (``POST /v1/streams/{id}/token``), sent as ``?token=`` on reads (events, snapshot, the
    openai view): enough to follow that stream, never to create or cancel one."""

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
        self._http = httpx.Client(**http_options(base_url, api_key, timeout))

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the HTTP connection pool (the client is a context manager too)."""
        self._http.close()

    def create(
        self,
        messages: list[dict[str, Any]],
        *,
        model: str | None = None,
        coalesce_ms: float | None = None,
        on_transient: TransientCallback | None = None,
        catchup: str = "exact",
        **params: Any,
    ) -> Stream:
        """Start a detached generation (``params`` go to the model: ``max_tokens``, …).

        The returned stream follows it from its first op. ``catchup="exact"`` (default) gives
        every op even when this client starts reading after the model has run far ahead (a
        fast model, a slow client); ``"compact"`` lets the gateway send what was missed as one
        ``Snapshot`` op, as ``stream()`` does by default."""
        checked_catchup(catchup)  # before anything starts
        body = create_body(messages, model, coalesce_ms, params)
        with reaching(self._http.base_url):
            data = checked(self._http.post("/v1/streams", json=body)).json()
        return Stream(self, data["id"], on_transient, catchup)

    def stream(
        self,
        stream_id: str,
        *,
        on_transient: TransientCallback | None = None,
        catchup: str = "compact",
    ) -> Stream:
        """Follow an existing stream (``on_transient``: called with each transient op).

        ``catchup="compact"`` (default): when this reader is far behind (a finished stream,
        a late join), what it missed comes as one ``Snapshot`` op, then the live ops;
        ``"exact"``: every op of the log, as it was sent."""
        return Stream(self, stream_id, on_transient, catchup)

    def get(self, stream_id: str) -> dict[str, Any]:
        """``{"id", "status", "seq", "message"}`` as the gateway has it now."""
        with reaching(self._http.base_url):
            return checked(
                self._http.get(stream_path(stream_id), params=read_params(self.token))
            ).json()

    def openai_chunks(self, stream_id: str, *, start_index: int = 0) -> Iterator[dict[str, Any]]:
        """The stream as OpenAI ``chat.completion.chunk`` dicts (the gateway's openai view,
        ``GET /v1/streams/{id}/events?format=openai``), from chunk ``start_index`` on, until the
        end; a dropped connection is resumed by itself at the chunks received so far, so no
        chunk is lost or repeated. For OpenAI SDK objects:
        ``ChatCompletionChunk.model_validate(chunk)``. A failed or cancelled stream raises
        ``GatewayError`` after its last chunk (as the OpenAI SDK raises ``APIError``).

        The usual way in: ``POST /v1/chat/completions`` with ``X-Tokenwire-Detach: 1`` via the
        OpenAI SDK; its response header ``X-Tokenwire-Stream`` names the stream to resume here
        with ``start_index=<chunks the SDK yielded>`` (see docs/views.md)."""
        from tokenwire.protocol import SSEDecoder

        index = start_index
        attempt = 0
        url = stream_path(stream_id, "events")
        while True:
            decoder = SSEDecoder()
            try:
                with (
                    reaching(self._http.base_url),
                    self._http.stream(
                        "GET",
                        url,
                        params=read_params(self.token, format="openai", startIndex=index),
                    ) as response,
                ):
                    if response.status_code in RETRYABLE_STATUS and attempt < self.max_retries:
                        raise httpx.TransportError(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        response.read()
                        checked(response)
                    for raw in response.iter_raw():
                        for event in decoder.feed(raw):
                            chunk = openai_chunk(event.data)
                            if chunk is None:  # [DONE]
                                return
                            index += 1
                            attempt = 0
                            yield chunk
                return  # (an end without [DONE]: nothing more will come)
            except (httpx.TransportError, GatewayUnreachable):
                attempt += 1
                if attempt > self.max_retries:
                    raise
                time.sleep(backoff(attempt))

    def cancel(self, stream_id: str) -> str:
        """Stop the generation; returns the stream's status."""
        with reaching(self._http.base_url):
            response = self._http.post(stream_path(stream_id, "cancel"))
        return checked(response).json()["status"]

    def _ops(self, state: StreamState) -> Iterator[Op]:
        failures = 0
        last: Exception | None = None
        while not state.done:
            progressed = False
            try:
                state.reset_connection()
                with self._http.stream(
                    "GET",
                    stream_path(state.id, "events"),
                    headers=state.headers(),
                    params=read_params(self.token, **state.params),
                ) as response:
                    if response.status_code == 204:  # nothing after our position
                        state.done = True
                        return
                    if response.status_code in RETRYABLE_STATUS and failures < self.max_retries:
                        raise httpx.TransportError(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        raise GatewayError.from_response(response.status_code, response.read())
                    for chunk in response.iter_raw():
                        ops = state.feed(chunk)
                        if ops:
                            progressed = True
                            yield from ops
                        if state.done:
                            return
            except httpx.TransportError as exc:
                last = exc  # reconnect below, resuming after the last seq we applied
            failures = 0 if progressed else failures + 1
            if failures > self.max_retries:
                raise GatewayUnreachable(
                    f"cannot reach the gateway at {self._http.base_url}: stream {state.id}: "
                    f"gave up after {self.max_retries} reconnects ({last or 'no answer'})"
                )
            if not progressed:
                time.sleep(backoff(failures - 1))


class Stream(StreamView):
    """One stream as seen by this client. Iterate it for ops; ``message`` is kept current."""

    def __iter__(self) -> Iterator[Op]:
        """Ops after ``seq``; reconnects and resumes by itself until ``message.end``."""
        return self.client._ops(self._state)

    def wait(self) -> Message:
        """Follow the stream to its end; the final message."""
        for _ in self:
            pass
        return self.message

    def cancel(self) -> str:
        """Cancel the generation on the gateway (every reader sees it end ``cancelled``)."""
        return self.client.cancel(self.id)
