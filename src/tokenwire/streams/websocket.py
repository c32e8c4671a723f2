"""The op stream over WebSocket: one text frame per op (a concept of its own: its hello,
its writer/reader pair and its close codes)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import msgspec
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from tokenwire.errors import StreamNotFound
from tokenwire.gateway.errors import UNAVAILABLE, ApiError, bad_request, not_found, unavailable
from tokenwire.protocol import Message, snapshot_op
from tokenwire.protocol.jsonsafe import InvalidJSON, JSONTooDeep, decode_json_body
from tokenwire.protocol.views import OpsView, catch_up
from tokenwire.protocol.views.base import encode_json
from tokenwire.streams.asgi import _Refused, check_after, parse_seq, requested_after
from tokenwire.streams.views_http import (
    read_log,
    requested_threshold,
    share_key,
    shared_computed,
)

if TYPE_CHECKING:
    from tokenwire.hub import Cursor, StreamInfo
    from tokenwire.streams.asgi import StreamRoutes


async def serve_websocket(routes: StreamRoutes, websocket: WebSocket) -> None:
    """One text frame per op. First message (optional): ``{"after": N}``; or ``?after=N``."""
    stream_id = websocket.path_params["stream_id"]
    await websocket.accept()
    try:
        info, row = await routes.reader(websocket, stream_id)
        after = requested_after(websocket.headers, websocket.query_params)
        threshold = requested_threshold(websocket.query_params, routes.view_options)
        if after is None:
            after = await _ws_hello(websocket, routes.ws_hello_timeout_s)
            if after is None:
                return  # client left
        seq = row.seq if row is not None else info.seq  # type: ignore[union-attr]
        check_after(after, seq)
    except ApiError as exc:
        await _ws_fail(websocket, exc)
        return
    except UNAVAILABLE as exc:
        await _ws_fail(websocket, unavailable(exc))
        return
    except _Refused as exc:
        await _ws_fail(
            websocket, ApiError(exc.response.status_code, "refused", "authentication_error")
        )
        return
    if row is not None:
        if after < row.seq:
            message = Message.from_dict(msgspec.json.decode(row.message))
            await websocket.send_text(snapshot_op(message, row.seq).json.decode())
        await websocket.close(1000)
        return
    first: list[bytes] = []  # (op JSON: the catch-up, sent before the live ops)
    cursor = None
    ended = False  # (a merged catch-up of an ended stream: it is all there is)
    try:
        assert info is not None
        if info.seq - after > threshold:
            caught_up = await routes.snapshot_catch_up(stream_id)
            if caught_up is not None:
                after, snapshot = caught_up
                first = [snapshot.json]
            else:  # (bigger than a frame may be: merged ops, as on SSE)
                first, cursor = await _merged_catch_up(routes, stream_id, info, after, threshold)
                ended = cursor is None
        if cursor is None and not ended:
            cursor = await routes.streams.hub.subscribe(stream_id, after)
    except StreamNotFound:
        await _ws_fail(websocket, not_found(stream_id))
        return
    except ApiError as exc:
        await _ws_fail(websocket, exc)
        return
    except UNAVAILABLE as exc:
        await _ws_fail(websocket, unavailable(exc))
        return
    if cursor is None:  # (ended)
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await _send_all(routes, websocket, first)
            await websocket.close(1000)
        return
    if first:  # (sent once subscribed: nothing after it can be missed)
        try:
            await _send_all(routes, websocket, first)
        except (WebSocketDisconnect, RuntimeError, OSError):  # the client left
            await cursor.aclose()
            return
    gauge = routes.metrics.subscribers.labels("ws")
    gauge.inc()
    writer = asyncio.ensure_future(_ws_write(routes, websocket, cursor))
    reader = asyncio.ensure_future(_ws_drain(websocket))
    try:
        await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        gauge.dec()
        for task in (writer, reader):
            task.cancel()
        await asyncio.gather(writer, reader, return_exceptions=True)
        await cursor.aclose()
    if writer.done() and not writer.cancelled() and writer.exception() is None:
        with contextlib.suppress(Exception):
            await websocket.close(1000)


async def _send_all(routes: StreamRoutes, websocket: WebSocket, texts: list[bytes]) -> None:
    """The catch-up's messages, one by one, letting the loop run between them: ``send``
    yields only once the client's buffer is full, and each message is compressed on the
    loop (20 readers of a long answer at once held it for seconds)."""
    for text in texts:
        await websocket.send_text(text.decode())
        routes.metrics.bytes_out.inc(len(text))
        routes.metrics.ops_out.inc()
        await asyncio.sleep(0)


async def _merged_catch_up(
    routes: StreamRoutes, stream_id: str, info: StreamInfo, after: int, threshold: int
) -> tuple[list[bytes], Cursor | None]:
    """The ops view's catch-up after seq ``after`` (runs of one block's deltas merged into one
    ``block.delta`` stating its seq, as on SSE), one op per message, and the cursor that
    follows the rest (``None``: the stream has ended)."""
    ops, cursor = await read_log(routes.streams, stream_id, info, None)
    try:
        bound = routes.view_options.max_frame_bytes
        # (readers of one finished answer share the computation, as on SSE)
        key = share_key(routes.streams, stream_id, ops, cursor, "ws", after, threshold, bound)
        frames, _ = await shared_computed(
            key,
            ops,
            catch_up,
            lambda: OpsView(bound),
            ops,
            after_seq=after,
            threshold=threshold,
            max_frame_bytes=bound,
        )
    except BaseException:
        if cursor is not None:
            await cursor.aclose()
        raise
    return [encode_json(frame.body) for frame in frames], cursor


async def _ws_write(routes: StreamRoutes, websocket: WebSocket, cursor: Any) -> None:
    keepalive = routes.keepalive_s
    ops_out = routes.metrics.ops_out
    bytes_out = routes.metrics.bytes_out
    send = websocket.send
    while not cursor.done:
        ops = await cursor.read(keepalive)
        for op in ops:
            await send({"type": "websocket.send", "text": op.json.decode()})
            bytes_out.inc(len(op.json))
        ops_out.inc(len(ops))
        # (``send`` yields only once the client's buffer is full, and a read of a long log
        # returns at once: a fast reader of 200,000 ops held the event loop 1.7 s)
        await asyncio.sleep(0)


async def _ws_hello(websocket: WebSocket, timeout: float) -> int | None:
    """Wait briefly for ``{"after": N}``; no message in time means "from the start"."""
    try:
        async with asyncio.timeout(timeout):
            message = await websocket.receive()
    except TimeoutError:
        return 0
    if message["type"] == "websocket.disconnect":
        return None
    raw = message.get("text") or message.get("bytes") or b""
    try:
        hello = decode_json_body(raw)
    except (InvalidJSON, JSONTooDeep):
        raise bad_request('first message must be JSON like {"after": N}', "invalid_after") from None
    after = hello.get("after", 0) if isinstance(hello, dict) else None
    if isinstance(after, str):
        return parse_seq(after, "after")
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise bad_request("'after' must be a non-negative integer", "invalid_after")
    return after


async def _ws_drain(websocket: WebSocket) -> None:
    """Ignore further client messages; return when the client goes away."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _ws_fail(websocket: WebSocket, exc: ApiError) -> None:
    if websocket.client_state != WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        await websocket.send_text(exc.body().decode())
        await websocket.close(4000 + exc.status)  # 4400, 4401, 4404


__all__ = ["serve_websocket"]
