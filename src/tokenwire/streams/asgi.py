"""What a host mounts: the op routes of ``Streams`` (SSE, WebSocket, snapshot, cancel).

``streams.asgi(authorize=...)`` builds it. Paths are relative to where it is mounted::

    GET  /{id}          snapshot: {"id", "status", "seq", "message"}
    GET  /{id}/events   the op stream over SSE (``?after=N`` / ``Last-Event-ID`` to resume);
                        ``?format=ops|openai|responses|aisdk``: a view of it (docs/views.md)
    WS   /{id}/ws       one text frame per op (``?after=N`` or a first ``{"after": N}``)
    POST /{id}/cancel   cancel the generation (wherever it runs); 202 with the status
    GET  /{chat}/stream the AI SDK resume of a chat's active stream (204: none), or a run's
                        chunks from ``?startIndex=N`` (Workflow transport)
    POST /{chat}/stop   cancel a chat's active stream (204: none)

Mount it at your ``useChat`` ``api`` path (e.g. ``/api/chat``) so ``{api}/{chatId}/stream``
lands here, and answer your own ``POST {api}`` with ``streams.aisdk_response(...)``.

``authorize(request) -> owner`` (sync or async) runs on every route; it refuses by raising
(``Unauthorized``, an ``HTTPException``, an ``ApiError``) or by returning a ``Response`` (sent
as is). A stream is only visible to its owner. ``?token=`` with a read token from
``streams.read_token(id)`` replaces ``authorize`` for reading that one stream (not cancel,
not stop), including its Workflow resume ``/{id}/stream?startIndex=N``.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import operator
import re
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import msgspec
from starlette.applications import Starlette
from starlette.datastructures import Headers, QueryParams
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from tokenwire.errors import (
    BadCursor,
    HubUnavailable,
    InvalidArgument,
    StoreUnavailable,
    StreamNotFound,
    Unauthorized,
)
from tokenwire.gateway.errors import (
    UNAVAILABLE,
    ApiError,
    api_error_response,
    bad_request,
    error_type_of,
    handle_api_error,
    not_found,
    unavailable,
)
from tokenwire.gateway.metrics import Metrics
from tokenwire.gateway.streaming import SSE_HEADERS, OpStreamResponse
from tokenwire.hub import StreamInfo
from tokenwire.protocol import EncodedOp, Message, snapshot_op
from tokenwire.protocol.views import DEFAULT_MAX_FRAME_BYTES, DEFAULT_THRESHOLD
from tokenwire.streams.core import STREAM_ID, owner_of
from tokenwire.streams.store import StoredStream
from tokenwire.streams.views_http import (
    CHAT_ID,
    DEFAULT_CHAT_TTL_S,
    ViewOptions,
    chat_key,
    parse_active,
    refuse_foreign_cursors,
    requested_format,
    requested_threshold,
    run_key,
    view_events,
)

if TYPE_CHECKING:
    from tokenwire.streams.core import Streams

Authorize = Callable[[HTTPConnection], Any]
"""``authorize(request_or_websocket) -> owner`` (or an awaitable of it)."""

_json = msgspec.json.Encoder()
log = logging.getLogger("tokenwire.streams")

_SEQ = re.compile(r"[0-9]{1,18}")


class StreamRoutes:
    """The op routes over one ``Streams``; shared by ``streams.asgi()`` and the gateway."""

    def __init__(
        self,
        streams: Streams,
        authorize: Authorize | None = None,
        *,
        metrics: Metrics | None = None,
        keepalive_s: float = 15.0,
        cancel_wait_s: float = 1.0,
        ws_hello_timeout_s: float = 1.0,
        stream_id_pattern: re.Pattern[str] = STREAM_ID,
        catchup_threshold: int = DEFAULT_THRESHOLD,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        chat_ttl_s: float = DEFAULT_CHAT_TTL_S,
        owns: Callable[[Any, Any], bool] | None = None,
    ) -> None:
        self.streams = streams
        self.authorize = authorize
        # ``owns(stream_owner, owner)``: whether a stream is the caller's (default: equal
        # owners; the gateway also recognizes the owner tags earlier versions stored).
        self.owns = owns if owns is not None else operator.eq
        self.metrics = metrics if metrics is not None else Metrics()
        self.keepalive_s = keepalive_s
        self.cancel_wait_s = cancel_wait_s
        self.ws_hello_timeout_s = ws_hello_timeout_s
        self.stream_id_pattern = stream_id_pattern
        self.view_options = ViewOptions(catchup_threshold, max_frame_bytes, chat_ttl_s)

    def routes(self, prefix: str = "", *, chats: bool = True) -> list[Any]:
        """The routes, under ``prefix`` (e.g. ``/v1/streams``) when not mounted; ``chats``:
        with the AI SDK chat routes (the gateway puts those under ``/v1/aisdk/chat``)."""
        return [
            Route(prefix + "/{stream_id}", self.get_stream, methods=["GET", "HEAD"]),
            Route(prefix + "/{stream_id}/events", self.stream_events, methods=["GET", "HEAD"]),
            Route(prefix + "/{stream_id}/cancel", self.cancel_stream, methods=["POST"]),
            WebSocketRoute(prefix + "/{stream_id}/ws", self.stream_ws),
            *(self.chat_routes(prefix) if chats else ()),
        ]

    def chat_routes(self, prefix: str = "") -> list[Any]:
        """The AI SDK chat routes (resume, stop), under ``prefix`` (e.g. ``/v1/aisdk/chat``)."""
        return [
            Route(prefix + "/{chat_id}/stream", self.chat_stream, methods=["GET"]),
            Route(prefix + "/{chat_id}/stop", self.chat_stop, methods=["POST"]),
        ]

    # -- access ----------------------------------------------------------------------------
    def check_started(self) -> None:
        if not self.streams.started:
            raise ApiError(
                503,
                "tokenwire is not started: give the app its lifespan "
                "(FastAPI(lifespan=streams.lifespan) or Starlette(lifespan=streams.lifespan)), "
                "or run the server inside `async with streams:`",
                "service_unavailable",
                "not_started",
            )

    async def owner(self, conn: HTTPConnection) -> str | None:
        """Run ``authorize``; an ``ApiError`` (401) when it refuses."""
        if self.authorize is None:
            return None
        try:
            result = self.authorize(conn)
            if inspect.isawaitable(result):
                result = await result
        except Unauthorized as exc:
            raise ApiError(401, str(exc) or "unauthorized", "authentication_error") from None
        except HTTPException as exc:  # (its headers too: WWW-Authenticate, Retry-After, ...)
            status = exc.status_code
            raise ApiError(
                status, str(exc.detail), error_type_of(status), None, exc.headers
            ) from None
        if isinstance(result, Response):
            raise _Refused(result)
        try:
            return owner_of(result)  # (an int user id becomes a string, as in ``start``)
        except InvalidArgument as exc:  # (the host's bug: said in JSON, and in its log)
            log.error("authorize returned %.60r: %s", result, exc)
            raise ApiError(
                500, f"authorize returned an unusable owner: {exc}", "server_error", "invalid_owner"
            ) from None

    async def reader(
        self, conn: HTTPConnection, stream_id: str, *, read_only: bool = True
    ) -> tuple[StreamInfo | None, StoredStream | None]:
        """Check access to ``stream_id`` (a read token, else ``authorize`` + owner): 404 / 401."""
        self.check_started()
        token = conn.query_params.get("token") if read_only else None
        if token is None:
            owner: Any = await self.owner(conn)  # (first: without a key, no answer tells more)
        if not self.stream_id_pattern.fullmatch(stream_id):
            raise not_found(stream_id)
        if token is not None:
            try:
                self.streams.check_read_token(token, stream_id)
            except Unauthorized as exc:
                raise ApiError(401, str(exc), "authentication_error", "invalid_token") from None
            except StreamNotFound:
                raise not_found(stream_id) from None
            owner = _ANY
        try:
            info, row = await self.streams.lookup(stream_id)
        except StreamNotFound:
            raise not_found(stream_id) from None
        stream_owner = info.owner if info is not None else row.owner  # type: ignore[union-attr]
        if owner is not _ANY and not self.owns(stream_owner, owner):
            if not read_only and self._reads(conn.query_params.get("token"), stream_id):
                # The caller's own credentials do not reach the stream, and its read token
                # (which shows the stream exists) never writes: say so, not "not found".
                raise ApiError(
                    401,
                    "a read token only reads: cancelling needs the owner's own credentials",
                    "authentication_error",
                    "token_cannot_cancel",
                )
            raise not_found(stream_id)  # (not 403: others' streams do not exist for you)
        return info, row

    def _reads(self, token: str | None, stream_id: str) -> bool:
        """Whether ``token`` is a valid read token of ``stream_id``."""
        if token is None:
            return False
        try:
            self.streams.check_read_token(token, stream_id)
        except (Unauthorized, StreamNotFound):
            return False
        return True

    # -- routes ----------------------------------------------------------------------------
    async def get_stream(self, request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        await self.reader(request, stream_id)
        hub = self.streams.hub
        found = await hub.message(stream_id)  # one hub read: info and message together
        if found is not None:
            info, message = found
            return stream_json(stream_id, info.status, info.seq, message.to_json())
        row = await self.streams.store.get(stream_id)
        if row is None:
            raise not_found(stream_id)
        return stream_json(stream_id, row.status, row.seq, row.message)

    async def stream_events(self, request: Request) -> Response:
        return await self.events(
            request, request.path_params["stream_id"], head=request.method == "HEAD"
        )

    async def events(self, conn: HTTPConnection, stream_id: str, *, head: bool = False) -> Response:
        """The SSE op stream of ``stream_id`` from the requested position, or why not.

        ``head``: answer a HEAD request; it never subscribes (a subscriber would hold the
        connection until the stream ends, sending nothing)."""
        fmt = requested_format(conn.query_params)
        if fmt is not None:
            info, row = await self.reader(conn, stream_id)
            return await view_events(
                self.streams,
                conn,
                stream_id,
                fmt,
                info,
                row,
                self.view_options,
                metrics=self.metrics,
                keepalive_s=self.keepalive_s,
                head=head,
            )
        refuse_foreign_cursors(None, conn.query_params)
        after = requested_after(conn.headers, conn.query_params) or 0
        threshold = requested_threshold(conn.query_params, self.view_options)
        info, row = await self.reader(conn, stream_id)
        if row is not None:
            # The op log is gone; the stored final message stands in for it.
            check_after(after, row.seq)
            if after == row.seq:
                return Response(status_code=204)  # nothing left: tells EventSource to stop
            snapshot = snapshot_op(Message.from_dict(msgspec.json.decode(row.message)), row.seq)
            return raw_response(200, SSE_HEADERS, snapshot.sse)
        assert info is not None
        check_after(after, info.seq)
        if after == info.seq and info.status != "in_progress":
            return Response(status_code=204)
        if head:
            response = Response(status_code=200)
            response.raw_headers = list(SSE_HEADERS)
            return response
        first = b""
        if info.seq - after > threshold:
            # Far behind: one snapshot op instead of the ops it stands for (docs/views.md,
            # "catch-up"), then the live ops after it, on the same fast path.
            caught_up = await self.snapshot_catch_up(stream_id)
            if caught_up is None:  # bigger than one frame may be: the ops view merges deltas
                return await view_events(
                    self.streams,
                    conn,
                    stream_id,
                    "ops",
                    info,
                    None,
                    self.view_options,
                    metrics=self.metrics,
                    keepalive_s=self.keepalive_s,
                )
            after, first = caught_up[0], caught_up[1].sse
        try:
            cursor = await self.streams.hub.subscribe(stream_id, after)
        except (StreamNotFound, BadCursor):
            raise not_found(stream_id) from None
        return OpStreamResponse(  # type: ignore[return-value]
            cursor, metrics=self.metrics, keepalive_s=self.keepalive_s, first=first
        )

    async def snapshot_catch_up(self, stream_id: str) -> tuple[int, EncodedOp] | None:
        """``(seq, snapshot op)`` of the stream as it is now, for a reader far behind; ``None``
        when its SSE frame would pass ``max_frame_bytes``."""
        found = await self.streams.hub.message(stream_id)
        if found is None:
            raise not_found(stream_id)
        info, message = found
        snapshot = snapshot_op(message, info.seq)
        if len(snapshot.sse) > self.view_options.max_frame_bytes:
            return None
        return info.seq, snapshot

    async def events_direct(self, stream_id: str, scope: Scope) -> Response:
        """``GET .../events`` without Starlette's routing and middleware frames, which would
        stay alive for the whole life of the stream (~6 KiB per open stream, measured)."""
        try:
            return await self.events(HTTPConnection(scope), stream_id)
        except ApiError as exc:
            return api_error_response(exc)
        except UNAVAILABLE as exc:
            return unavailable_response(exc)
        except _Refused as exc:
            return exc.response

    async def cancel_stream(self, request: Request) -> Response:
        stream_id = request.path_params["stream_id"]
        info, row = await self.reader(request, stream_id, read_only=False)
        status = row.status if row is not None else "in_progress"
        if info is not None:
            status = info.status
            if status == "in_progress":
                with contextlib.suppress(StreamNotFound):
                    await self.streams.hub.request_cancel(stream_id)
                    status = await self.streams.wait(stream_id, self.cancel_wait_s)
        return json_response({"id": stream_id, "status": status}, 202)

    # -- AI SDK chats ----------------------------------------------------------------------
    async def active_stream(
        self, request: Request, chat_id: str
    ) -> tuple[str, str | None, StreamInfo] | None:
        """The chat's active stream (id, message id, hub info) if it is still in progress
        and the caller's; ``None`` otherwise (an ended stream is cleared from the chat)."""
        self.check_started()
        if not CHAT_ID.fullmatch(chat_id):
            return None
        owner = await self.owner(request)
        key = chat_key(owner, chat_id)
        value = await self.streams.hub.get_active(key)
        if value is None:
            return None
        stream_id, message_id = parse_active(value)
        info = await self.streams.hub.info(stream_id)
        if info is None or info.status != "in_progress":
            await self.streams.hub.clear_active(key, value)
            return None
        if self.authorize is not None and not self.owns(info.owner, owner):
            return None  # (keys are per owner; a mismatch is never served)
        return stream_id, message_id, info

    async def chat_stream(self, request: Request) -> Response:
        """``GET {api}/{chatId}/stream``: the active stream's message from its ``start``
        (compacted), then live; 204 when none. With ``?startIndex=N`` the chat id may be a
        run id (a stream id, ``x-workflow-run-id``): exactly the chunks from N."""
        chat_id = request.path_params["chat_id"]
        query = request.query_params
        # (a bad ?catchup= or cursor is a 400, active or not)
        requested_threshold(query, self.view_options)
        refuse_foreign_cursors("aisdk", query)
        if "startIndex" in query and "token" in query:
            # A Workflow resume with a read token: the chat id is the run id (the stream id)
            # and the token, checked against it, stands in for ``authorize`` (chats are
            # per owner, and a token names no owner, only its one stream).
            stream_id = chat_id
            info, row = await self.reader(request, stream_id)
            message_id = await self.streams.hub.get_active(run_key(stream_id))
            replace_given = message_id is not None  # (else a ``?messageId=`` given stays)
        else:
            active = await self.active_stream(request, chat_id)
            if (
                "startIndex" in query
                and active is None
                and not self.stream_id_pattern.fullmatch(chat_id)
            ):
                return Response(status_code=204)  # (a chat id, not a run id: nothing active)
            if "startIndex" in query:
                stream_id = active[0] if active is not None else chat_id
                message_id = active[1] if active is not None else None
                info, row = await self.reader(request, stream_id)
                if active is None:  # (a run id: the message id its POST answered with, if any)
                    message_id = await self.streams.hub.get_active(run_key(stream_id))
            elif active is None:
                return Response(status_code=204)
            else:
                stream_id, message_id, info = active
                row = None
            replace_given = True
        if replace_given:
            request.scope["query_string"] = _with_message_id(request, message_id)
        return await view_events(
            self.streams,
            HTTPConnection(request.scope),
            stream_id,
            "aisdk",
            info,
            row,
            self.view_options,
            metrics=self.metrics,
            keepalive_s=self.keepalive_s,
        )

    async def chat_stop(self, request: Request) -> Response:
        """``POST {api}/{chatId}/stop``: cancel the chat's active stream wherever it runs;
        202 with its status, 204 when nothing is active."""
        chat_id = request.path_params["chat_id"]
        active = await self.active_stream(request, chat_id)
        if active is None:
            return Response(status_code=204)
        stream_id = active[0]
        with contextlib.suppress(StreamNotFound):
            await self.streams.hub.request_cancel(stream_id)
        status = await self.streams.wait(stream_id, self.cancel_wait_s)
        return json_response({"id": stream_id, "status": status}, 202)

    async def stream_ws(self, websocket: WebSocket) -> None:
        """One text frame per op. First message (optional): ``{"after": N}``; or ``?after=N``."""
        from tokenwire.streams.websocket import serve_websocket  # (it imports this module)

        await serve_websocket(self, websocket)


def _with_message_id(request: Request, message_id: str | None) -> bytes:
    """The query string with the chat's ``messageId`` (the one its POST answered with)."""
    query: list[tuple[str, str]] = [
        (k, v) for k, v in request.query_params.multi_items() if k != "messageId"
    ]
    if message_id is not None:
        query.append(("messageId", message_id))
    return urlencode(query).encode()


class _Any:
    """Owner placeholder for a read token: the token already names the one stream."""


_ANY = _Any()


class _Refused(Exception):
    """``authorize`` returned a response: send it instead."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class StreamsApp(Starlette):
    """``streams.asgi()``: the op routes as a mountable app, plus a direct path for the
    long-lived ``GET .../events`` requests (no routing frames held per open stream)."""

    def __init__(self, routes: StreamRoutes, *, lifespan: Any = None) -> None:
        self.stream_routes = routes
        super().__init__(
            routes=routes.routes(),
            lifespan=lifespan,
            exception_handlers={
                ApiError: handle_api_error,
                HTTPException: http_error,
                HubUnavailable: unavailable_error,
                StoreUnavailable: unavailable_error,
                _Refused: _refused,
            },
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET" and not self.user_middleware:
            path = _relative_path(scope)
            if path.endswith("/events") and path.count("/") == 2:
                stream_id = path[1:-7]
                scope["app"] = self
                response = await self.stream_routes.events_direct(stream_id, scope)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def _relative_path(scope: Scope) -> str:
    """The path inside the mount (Starlette's ``Mount`` keeps ``path`` whole since 0.33 and
    puts the prefix in ``root_path``)."""
    path: str = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


def build_app(streams: Streams, authorize: Authorize | None = None, **options: Any) -> StreamsApp:
    routes = StreamRoutes(streams, authorize, **options)

    @contextlib.asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        async with streams:  # (served on its own; when mounted, the host runs the lifespan)
            yield

    return StreamsApp(routes, lifespan=lifespan)


# -- helpers (shared with the gateway) ------------------------------------------------------
def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(_json.encode(data), status, headers=headers, media_type="application/json")


def stream_json(stream_id: str, status: str, seq: int, message_json: bytes) -> Response:
    head = _json.encode({"id": stream_id, "status": status, "seq": seq})
    return Response(head[:-1] + b',"message":' + message_json + b"}", media_type="application/json")


def raw_response(status: int, headers: list[tuple[bytes, bytes]], content: bytes) -> Response:
    response = Response(content, status)
    # Starlette computed content-length; keep it and add the given headers.
    response.raw_headers = [(b"content-length", str(len(content)).encode()), *headers]
    return response


def parse_seq(raw: str, what: str) -> int:
    if not _SEQ.fullmatch(raw):
        raise bad_request(f"{what} must be a non-negative integer, got {raw!r}", "invalid_after")
    return int(raw)


def requested_after(headers: Headers, query: QueryParams) -> int | None:
    """``Last-Event-ID`` (what a reconnecting EventSource sends) wins over ``?after=``."""
    raw = headers.get("last-event-id")
    if raw:
        return parse_seq(raw.strip(), "Last-Event-ID")
    raw = query.get("after")
    if raw is not None:
        return parse_seq(raw.strip(), "after")
    return None


def check_after(after: int, seq: int) -> None:
    if after > seq:
        raise bad_request(
            f"cannot resume after seq {after}: the stream is at seq {seq}", "after_out_of_range"
        )


def unavailable_response(exc: Exception) -> Response:
    """503 with ``Retry-After`` for an unreachable hub or store (``HubUnavailable``,
    ``StoreUnavailable``)."""
    error = unavailable(exc)
    return Response(error.body(), 503, headers={"Retry-After": "1"}, media_type="application/json")


async def unavailable_error(request: Request, exc: Exception) -> Response:
    return unavailable_response(exc)


async def http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
    return Response(
        ApiError(exc.status_code, str(exc.detail), kind, None).body(),
        exc.status_code,
        headers=exc.headers,
        media_type="application/json",
    )


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, _Refused)
    return exc.response


__all__ = [
    "Authorize",
    "StreamRoutes",
    "StreamsApp",
    "build_app",
    "check_after",
    "json_response",
    "raw_response",
    "requested_after",
    "stream_json",
]
