"""The client for the OpenAI-compatible model server: keep-alive HTTP/1.1, bounded retries.

A request is retried only while nothing of a response has been seen (connect errors, a
keep-alive connection the server had already closed, or a 502/503/504 answer whose body we
discard). Once a response is handed to the caller it is never retried, so no output is ever
produced twice.

Written on ``asyncio.Protocol`` + ``httptools`` (the C parser uvicorn uses) rather than httpx,
because this is the gateway's per-token hot path and its per-stream memory: with httpx each
open stream held ~21 KiB of client objects (request, response, httpcore connection, h11
state, anyio wrappers) and each upstream read climbed through four async layers. Here an open
stream holds one protocol object and its parser, and bytes that arrive while the consumer is
busy are handed over in one piece. Only what the gateway needs is implemented: HTTP/1.1,
``Content-Length`` / chunked / until-close bodies, TLS for ``https`` upstreams, no proxies,
no redirects, no content decoding (``Accept-Encoding: identity``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import httptools

from tokenwire import __version__, timeouts
from tokenwire.errors import UpstreamBroken, UpstreamUnavailable
from tokenwire.logredact import redact_text

_RETRY_STATUSES = frozenset({502, 503, 504})
# Pause reading a response once this much body is buffered and unread (the consumer is slow).
_HIGH_WATER = 256 * 1024
# A response head larger than this is refused (a broken or hostile upstream could send
# header lines forever, each one refreshing the read timeout).
_MAX_HEAD = 64 * 1024
DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
"""Largest non-streamed body ``aread`` collects (a whole chat.completion is far smaller)."""


class UpstreamTooLarge(UpstreamBroken):
    """A non-streamed response body is larger than the client's ``max_body_bytes``."""


class _NoResponse(Exception):
    """The connection ended before any byte of a response (retryable)."""


class UpstreamHeaders:
    """Response headers as received: ``raw`` pairs plus case-insensitive lookups."""

    __slots__ = ("raw",)

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        self.raw = raw

    def get(self, name: str, default: str = "") -> str:
        key = name.lower().encode("latin-1")
        for k, v in self.raw:
            if k.lower() == key:
                return v.decode("latin-1")
        return default

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name, "\0") != "\0"


class _Connection(asyncio.Protocol):
    """One upstream connection; serves one request at a time (HTTP/1.1 keep-alive)."""

    __slots__ = (
        "_chunked_or_sized",
        "body",
        "buffered",
        "closed",
        "complete",
        "error",
        "head_bytes",
        "head_only",
        "head_timeout_s",
        "headers",
        "headers_done",
        "idle_since",
        "keep_alive",
        "keep_headers",
        "last_activity",
        "parser",
        "paused",
        "read_timeout_s",
        "reason",
        "received_any",
        "status",
        "timer",
        "transport",
        "waiter",
    )

    def __init__(self, read_timeout_s: float, head_timeout_s: float | None = None) -> None:
        self.transport: asyncio.Transport | None = None
        self.read_timeout_s = read_timeout_s
        # Longest silence while waiting for the response head (None: the read timeout).
        self.head_timeout_s = read_timeout_s if head_timeout_s is None else head_timeout_s
        self.head_only = False  # the request was HEAD: the response has no body
        self.idle_since = 0.0
        self.closed = False
        self.timer: timeouts.Timeout | None = None
        self.keep_headers = True
        self._reset()

    def _reset(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_bytes = 0
        self.headers_done = False
        self.keep_alive = False
        self.complete = False
        self.body: list[bytes] = []
        self.buffered = 0
        self.error: Exception | None = None
        self.received_any = False
        self.paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.last_activity = time.monotonic()
        self._chunked_or_sized = False

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received_any = True
        self.last_activity = time.monotonic()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"invalid HTTP from the upstream: {exc}"))
            self.close()
            return
        if self.buffered > _HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()
        self._wake()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        timeouts.cancel(self.timer, self)
        self.timer = None
        if self.complete or self.error is not None:
            pass
        elif self.headers_done and not self._chunked_or_sized and exc is None:
            self.complete = True  # a body delimited by the connection closing (cleanly)
        else:
            if not self.received_any:
                self._fail(_NoResponse("the upstream closed the connection without answering"))
            else:
                why = f": {exc}" if exc else ""
                self._fail(UpstreamBroken(f"the upstream closed the connection mid-response{why}"))
        self._wake()

    # -- httptools callbacks -------------------------------------------------------------
    def on_message_begin(self) -> None:
        if self.complete and not self.head_only:
            # Bytes after the response: the connection is out of step, never reuse it.
            self._fail(UpstreamBroken("the upstream sent data after its response"))
            self.close()

    def on_status(self, status: bytes) -> None:
        self.reason += status
        self._count_head(len(status))

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"content-length" or (
            lname == b"transfer-encoding" and b"chunked" in value.lower()
        ):
            self._chunked_or_sized = True
        if self.keep_headers:
            self.headers.append((name, value))
        self._count_head(len(name) + len(value) + 4)

    def _count_head(self, size: int) -> None:
        self.head_bytes += size
        if self.head_bytes > _MAX_HEAD and self.error is None:
            self._fail(UpstreamBroken(f"the upstream's response head is over {_MAX_HEAD} bytes"))
            self.close()

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status < 200:
            # An interim answer (100 Continue, 103 Early Hints): the real one follows.
            self.headers = []
            self.reason = b""
            self._chunked_or_sized = False
            return
        self.status = status
        self.keep_alive = self.parser.should_keep_alive()  # (llhttp forgets it at the end)
        self.headers_done = True
        if self.timer is not None and self.head_timeout_s > self.read_timeout_s:
            # The armed timer counts the longer head limit: re-arm at the read timeout.
            timeouts.cancel(self.timer, self)
            self.timer = None
        if self.head_only:
            # A HEAD answer has no body whatever its Content-Length says; httptools cannot be
            # told so (it would wait for that body until the read timeout). The parser is
            # replaced before the connection's next request.
            self.complete = True

    def on_body(self, body: bytes) -> None:
        if self.complete or self.error is not None or self.head_only:
            return  # (after the response, or after we gave up on it)
        self.body.append(body)
        self.buffered += len(body)

    def on_message_complete(self) -> None:
        if self.headers_done:  # (not the end of an interim 1xx answer)
            self.complete = True

    # -- used by the client ----------------------------------------------------------------
    def send(
        self,
        head: bytes,
        content: bytes | None,
        keep_headers: bool,
        head_timeout_s: float | None = None,
    ) -> None:
        self._reset()
        self.keep_headers = keep_headers
        self.head_only = head.startswith(b"HEAD ")
        if head_timeout_s is not None:
            self.head_timeout_s = head_timeout_s
        assert self.transport is not None
        self.transport.write(head + content if content else head)

    def reusable(self) -> bool:
        return (
            not self.closed
            and self.complete
            and self.error is None
            and not self.body
            and self.keep_alive
            and self.transport is not None
            and not self.transport.is_closing()
            and self.transport.get_write_buffer_size() == 0  # (it answered before reading all)
        )

    def close(self) -> None:
        # abort, not close: close would first wait to send what is unsent, forever if the
        # upstream stopped reading (and up to 30 s for a TLS goodbye).
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()

    def _fail(self, error: Exception) -> None:
        if self.error is None:
            self.error = error

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_timer(self) -> None:  # (called as ``_Connection._on_timer(conn)``)
        # One lazily re-armed timer per connection instead of one per read: a read only
        # refreshes ``last_activity``; the timer fails the wait once the upstream went quiet.
        self.timer = None
        if self.waiter is None or self.waiter.done():
            return
        idle = time.monotonic() - self.last_activity
        limit = self.read_timeout_s if self.headers_done else self.head_timeout_s
        if idle >= limit:
            what = "the response" if self.headers_done else "the response head"
            self._fail(
                UpstreamBroken(f"no data from the upstream for {idle:.1f}s waiting for {what}")
            )
            self.close()
            self._wake()
        else:
            self._arm_timer(limit - idle)

    def _arm_timer(self, delay: float) -> None:
        self.timer = timeouts.call_later(delay, _Connection._on_timer, self)

    def _new_waiter(self) -> asyncio.Future[None]:
        """A future resolved by more from the upstream (data, the end, an error or the read
        timeout). Awaited by the caller itself: one coroutine frame less per open stream."""
        waiter = self.waiter = asyncio.get_running_loop().create_future()
        if self.timer is None:
            limit = self.read_timeout_s if self.headers_done else self.head_timeout_s
            self._arm_timer(max(0.0, self.last_activity + limit - time.monotonic()))
        return waiter

    async def wait_headers(self) -> None:
        while not self.headers_done:
            if self.error is not None:
                raise self.error
            await self._new_waiter()

    async def next_body(self) -> bytes | None:
        """Everything buffered so far in one piece; ``None`` once the body is complete."""
        while isinstance(got := self.poll(), asyncio.Future):
            await got
        return got

    def poll(self) -> bytes | asyncio.Future[None] | None:
        """``next_body`` without a coroutine: the bytes, ``None`` at the end, or a future to
        await before polling again. (A reader awaiting the future itself holds one coroutine
        frame less per open stream, and makes none per read.)"""
        if not self.body:
            if self.complete:
                return None
            if self.error is not None:
                raise self.error
            return self._new_waiter()
        body = self.body
        data = body[0] if len(body) == 1 else b"".join(body)
        self.body = []
        self.buffered = 0
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return data


class UpstreamResponse:
    """A response whose body has not been read yet."""

    __slots__ = (
        "_conn",
        "headers",
        "max_body_bytes",
        "poll",
        "read",
        "reason_phrase",
        "status_code",
    )

    def __init__(self, conn: _Connection, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._conn = conn
        self.max_body_bytes = max_body_bytes
        self.read = conn.next_body
        """``await response.read()``: the next piece of the body; ``None`` at its end."""
        self.poll = conn.poll
        """``read`` for hot loops: the next piece, ``None`` at the end, or a future to await
        before polling again."""
        self.status_code = conn.status
        self.reason_phrase = conn.reason.decode("latin-1")
        self.headers = UpstreamHeaders(conn.headers)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body as it arrives (transfer coding removed, content untouched)."""
        read = self.read
        while (data := await read()) is not None:
            yield data

    async def aread(self) -> bytes:
        """The whole body; :class:`UpstreamTooLarge` (and the connection closed) once it
        grows past ``max_body_bytes``."""
        pieces: list[bytes] = []
        size = 0
        read = self.read
        while (data := await read()) is not None:
            size += len(data)
            if size > self.max_body_bytes:
                self._conn.close()
                raise UpstreamTooLarge(
                    f"the upstream's response body is over {self.max_body_bytes} bytes"
                )
            pieces.append(data)
        return b"".join(pieces)

    def abort(self) -> None:
        """Close the connection now (the upstream stops generating); reads end or fail."""
        self._conn.close()


class UpstreamClient:
    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 300.0,
        retries: int = 2,
        backoff_s: float = 0.25,
        max_idle_connections: int = 20,
        head_timeout_s: float | None = None,
        idle_timeout_s: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        ca_file: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        """``head_timeout_s``: longest wait for a response head (``None``: the read
        timeout). ``idle_timeout_s``: a pooled connection unused this long is closed (servers
        and load balancers drop idle ones silently). TLS: ``ssl_context`` as given, else the
        system's trust store plus ``ca_file`` if set. ``max_body_bytes`` bounds ``aread``."""
        url = urlsplit(base_url.strip())
        if url.scheme not in ("http", "https") or not url.hostname or not base_url.isprintable():
            shown = redact_text(base_url)
            raise ValueError(f"upstream must be an http:// or https:// URL, got {shown!r}")
        # (for messages: without the query, which may carry a key)
        self.base_url = urlunsplit((url.scheme, url.netloc, url.path.rstrip("/"), "", ""))
        self.retries = retries
        self.backoff_s = backoff_s
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.max_idle_connections = max_idle_connections
        self.head_timeout_s = head_timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.max_body_bytes = max_body_bytes
        self._host = url.hostname
        self._port = url.port or (443 if url.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = None
        if url.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context(cafile=ca_file)
        self._prefix = url.path.rstrip("/")
        # Kept on every request (Azure OpenAI's ``?api-version=`` lives there).
        self._query = url.query
        self._prune_handle: asyncio.TimerHandle | None = None
        host = url.netloc.rpartition("@")[2]
        common = [
            f"Host: {host}",
            "Accept-Encoding: identity",  # relay bytes exactly as produced
            f"User-Agent: tokenwire/{__version__}",
        ]
        if api_key:
            api_key = api_key.strip()  # (a key file's trailing newline)
            if not api_key.isprintable():
                raise ValueError("the upstream API key contains control characters")
            common.append(f"Authorization: Bearer {api_key}")
        self._common_head = ("\r\n".join(common) + "\r\n").encode("latin-1")
        self._idle: list[_Connection] = []  # LIFO: the most recently used is likeliest alive

    async def aclose(self) -> None:
        if self._prune_handle is not None:
            self._prune_handle.cancel()
            self._prune_handle = None
        while self._idle:
            self._idle.pop().close()

    def request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        keep_headers: bool = True,
        head_timeout_s: float | None = None,
    ) -> _Exchange:
        """``async with client.request(...) as response``: the response with its body unread.

        Retries before the first byte only; the connection goes back to the pool on exit if
        the body was read to the end, and is closed otherwise (which aborts the upstream).
        ``keep_headers=False``: the response's headers are not kept (a caller that only reads
        the status and body saves their memory for the life of the response).
        ``head_timeout_s`` overrides the client's for this request (a non-streamed completion
        only answers once it is whole: give it the read timeout).
        """
        head = self._head(method, path, content, headers)
        if head_timeout_s is None:
            head_timeout_s = self.head_timeout_s
        if head_timeout_s is None:
            head_timeout_s = self.read_timeout_s
        return _Exchange(self, head, content, keep_headers, head_timeout_s)

    def _head(
        self, method: str, path: str, content: bytes | None, headers: Mapping[str, str] | None
    ) -> bytes:
        target = f"{self._prefix}/{path.lstrip('/')}"
        if self._query:
            target += ("&" if "?" in target else "?") + self._query
        lines = [f"{method} {target} HTTP/1.1"]
        for name, value in (headers or {}).items():
            if "\r" in value or "\n" in value or "\r" in name or "\n" in name or ":" in name:
                raise ValueError(f"invalid header for the upstream request: {name!r}")
            lines.append(f"{name}: {value}")
        if content is not None or method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(content or b'')}")
        return ("\r\n".join(lines) + "\r\n").encode("latin-1") + self._common_head + b"\r\n"

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(self.connect_timeout_s):
            _, conn = await loop.create_connection(
                lambda: _Connection(self.read_timeout_s, self.head_timeout_s),
                self._host,
                self._port,
                ssl=self._ssl,
            )
        return conn

    async def _open(
        self, head: bytes, content: bytes | None, keep_headers: bool, head_timeout_s: float
    ) -> _Connection:
        """Send the request and wait for the response head, on a pooled or new connection."""
        while self._idle:
            conn = self._idle.pop()
            if conn.closed or conn.transport is None or conn.transport.is_closing():
                continue
            if time.monotonic() - conn.idle_since >= self.idle_timeout_s:
                conn.close()  # expired (the pruning timer had not come round yet)
                continue
            conn.send(head, content, keep_headers, head_timeout_s)
            try:
                await conn.wait_headers()
                return conn
            except _NoResponse:
                # The server had closed it while it sat in the pool; the others are likely
                # stale too (e.g. it restarted): one fresh connection, at most one replay.
                conn.close()
                while self._idle:
                    self._idle.pop().close()
            except BaseException:
                conn.close()
                raise
        conn = await self._connect()
        conn.send(head, content, keep_headers, head_timeout_s)
        try:
            await conn.wait_headers()
        except BaseException:
            conn.close()
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.reusable() and len(self._idle) < self.max_idle_connections:
            conn.idle_since = time.monotonic()
            self._idle.append(conn)
            if self._prune_handle is None:
                self._schedule_prune(self.idle_timeout_s)
        else:
            conn.close()

    def _schedule_prune(self, delay: float) -> None:
        loop = asyncio.get_running_loop()
        self._prune_handle = loop.call_later(max(delay, 0.01), self._prune)

    def _prune(self) -> None:
        """Close pooled connections idle for ``idle_timeout_s``; re-arm for the rest."""
        self._prune_handle = None
        now = time.monotonic()
        keep = []
        for conn in self._idle:
            if now - conn.idle_since >= self.idle_timeout_s or conn.closed:
                conn.close()
            else:
                keep.append(conn)
        self._idle = keep
        if keep:
            oldest = min(conn.idle_since for conn in keep)
            self._schedule_prune(oldest + self.idle_timeout_s - now)

    def _unreachable(self, exc: BaseException) -> UpstreamUnavailable:
        kind = type(exc).__name__
        detail = str(exc) or kind
        # (a password in the upstream URL never reaches a client or a log line)
        message = f"upstream unreachable ({kind}: {detail}) at {self.base_url}"
        return UpstreamUnavailable(redact_text(message))


class _Exchange:
    """The ``async with`` around one request: retries, then hands over the response."""

    __slots__ = ("_client", "_conn", "_content", "_head", "_head_timeout_s", "_keep_headers")

    def __init__(
        self,
        client: UpstreamClient,
        head: bytes,
        content: bytes | None,
        keep_headers: bool,
        head_timeout_s: float,
    ) -> None:
        self._client = client
        self._head = head
        self._content = content
        self._keep_headers = keep_headers
        self._head_timeout_s = head_timeout_s
        self._conn: _Connection | None = None

    async def __aenter__(self) -> UpstreamResponse:
        client = self._client
        attempt = 0
        while True:
            try:
                conn = await client._open(
                    self._head, self._content, self._keep_headers, self._head_timeout_s
                )
            except (OSError, TimeoutError, UpstreamBroken, _NoResponse) as exc:
                if attempt >= client.retries:
                    raise client._unreachable(exc) from exc
            else:
                if conn.status not in _RETRY_STATUSES or attempt >= client.retries:
                    self._conn = conn
                    # No retries from here on: don't hold the request for the response's life.
                    self._head = b""
                    self._content = None
                    return UpstreamResponse(conn, client.max_body_bytes)
                conn.close()  # its body is discarded with the connection
            await asyncio.sleep(client.backoff_s * (2**attempt))
            attempt += 1

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._conn is not None:
            self._client._release(self._conn)
            self._conn = None
