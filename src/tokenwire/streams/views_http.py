"""The views over HTTP: ``GET .../events?format=…``, the AI SDK chat resume / stop routes,
and ``Streams.aisdk_response`` (a host's own POST handler answering with the AI SDK view).

A view response reads the stream's log from seq 0 (every view's frame indexes are a function
of the whole log), sends the catch-up the sans-IO views compute (``catch_up``, ``resume``,
``frames_after``), then feeds the live ops to the same view. See docs/views.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec
from starlette.datastructures import QueryParams
from starlette.requests import HTTPConnection
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from tokenwire.errors import BadCursor, InvalidArgument, StreamNotFound
from tokenwire.gateway.errors import ApiError, api_error_response, bad_request, not_found
from tokenwire.gateway.metrics import Metrics
from tokenwire.gateway.streaming import _PING, _StreamingResponse
from tokenwire.hub import Cursor, StreamInfo
from tokenwire.protocol import EncodedOp, Message, snapshot_op
from tokenwire.protocol.ops import MessageEnd, Snapshot
from tokenwire.protocol.views import (
    AISDK_HEADERS,
    DEFAULT_MAX_FRAME_BYTES,
    DEFAULT_THRESHOLD,
    AISDKView,
    Frame,
    OpenAIChunksView,
    OpsView,
    ResponsesView,
    View,
    catch_up,
    frames_after,
    is_logged,
    resume,
    tail_index,
)
from tokenwire.streams.shared_catch_up import SharedCatchUps
from tokenwire.streams.store import StoredStream

if TYPE_CHECKING:
    from tokenwire.streams.core import Streams

FORMATS = ("ops", "openai", "responses", "aisdk")
DEFAULT_CHAT_TTL_S = 3600.0
"""How long a chat names its active stream (renewed by each new POST)."""
_INT = re.compile(r"-?[0-9]{1,18}")
_MESSAGE_ID = re.compile(r"[^\s]{1,256}")
CHAT_ID = re.compile(r"(?!\.\.?$)(?=.*\S)[^/\x00-\x1f\x7f]{1,256}")
"""An AI SDK chat id: any 1 to 256 characters but ``/`` and control characters (it is a path
segment of ``{api}/{chatId}/stream``), not blank, not ``.`` or ``..`` (as the AI SDK's own
rule). ``useChat`` makes them up, or the app does (a user's e-mail, a database key)."""
CHAT_ID_RULE = "1 to 256 characters, no '/' or control characters, not blank, '.' or '..'"
"""``CHAT_ID`` in words, for errors."""
MIN_FRAME_BYTES = 1024
"""The smallest ``max_frame_bytes`` accepted."""
MAX_CHAT_TTL_S = 10 * 365 * 86400
"""The longest ``chat_ttl_s`` accepted."""
_WRITE_BYTES = 256 * 1024  # a catch-up goes out in sends of about this size


class ViewOptions(msgspec.Struct, frozen=True):
    """Knobs of the view routes (the gateway's ``Settings`` sets them)."""

    threshold: int = DEFAULT_THRESHOLD
    """Frames behind before a reader gets a compacted catch-up."""
    max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES
    """No catch-up frame bigger than this (long texts are split)."""
    chat_ttl_s: float = DEFAULT_CHAT_TTL_S
    """How long a chat's active stream is remembered."""

    def __post_init__(self) -> None:
        if type(self.threshold) is not int or self.threshold < 0:
            raise InvalidArgument(f"catchup_threshold must be an int >= 0, got {self.threshold!r}")
        if type(self.max_frame_bytes) is not int or self.max_frame_bytes < MIN_FRAME_BYTES:
            raise InvalidArgument(
                f"max_frame_bytes must be an int >= {MIN_FRAME_BYTES} (a smaller bound splits "
                f"texts into thousands of tiny frames), got {self.max_frame_bytes!r}"
            )
        if isinstance(self.chat_ttl_s, bool) or not (
            isinstance(self.chat_ttl_s, (int, float)) and 0 < self.chat_ttl_s <= MAX_CHAT_TTL_S
        ):  # (a hub keeps it as whole milliseconds: inf or 1e300 would fail every chat)
            raise InvalidArgument(
                f"chat_ttl_s must be a number of seconds > 0 and <= {MAX_CHAT_TTL_S} "
                f"(ten years), got {self.chat_ttl_s!r}"
            )


def view_options(settings: Any) -> ViewOptions:
    """The view knobs of the gateway's ``Settings`` (``InvalidArgument`` if out of range)."""
    return ViewOptions(settings.catchup_threshold, settings.max_frame_bytes, settings.chat_ttl_s)


def sse_headers(extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    headers = {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
    }
    headers.update(extra or {})
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def aisdk_headers(extra: dict[str, str] | None = None) -> list[tuple[bytes, bytes]]:
    return sse_headers({**AISDK_HEADERS, **(extra or {})})


class ViewResponse(_StreamingResponse):
    """SSE of one view: the catch-up ``first`` (bytes), then the live ops of ``cursor`` fed to
    ``view``, with ``: ping`` comments while idle (every SSE parser the views target skips
    comments)."""

    __slots__ = (
        "cursor",
        "fed",
        "first",
        "headers",
        "keepalive_s",
        "logged_only",
        "metrics",
        "status",
        "view",
    )

    def __init__(
        self,
        cursor: Cursor | None,
        view: View,
        first: list[Frame],
        headers: list[tuple[bytes, bytes]],
        *,
        metrics: Metrics,
        keepalive_s: float,
        logged_only: bool = False,
    ) -> None:
        # ``logged_only``: no transient frames live either (a reader that counts the chunks
        # it got, as its resume index, must get only chunks of the log).
        self.logged_only = logged_only
        # What the view holds (its catch-up's text, then live op bytes): past OFF_LOOP_OP_BYTES
        # its renders of ends go off the loop.
        self.fed = sum(block.length for block in view.state.blocks)
        self.status = 200
        self.cursor = cursor
        self.view = view
        self.first = first
        self.headers = headers
        self.metrics = metrics
        self.keepalive_s = keepalive_s

    async def _send(self, send: Send, body: bytes) -> None:
        await send({"type": "http.response.body", "body": body, "more_body": True})
        self.metrics.bytes_out.inc(len(body))

    async def _write(self, send: Send) -> None:
        gauge = self.metrics.subscribers.labels("sse")
        gauge.inc()
        try:
            chunk: list[bytes] = []
            size = 0
            for frame in self.first:
                chunk.append(frame.data)
                size += len(frame.data)
                if size >= _WRITE_BYTES:
                    await self._send(send, b"".join(chunk))
                    chunk, size = [], 0
            if chunk:
                await self._send(send, b"".join(chunk))
            self.first = []
            cursor, view = self.cursor, self.view
            while cursor is not None and not cursor.done and not view.done:
                ops = await cursor.read(self.keepalive_s)
                if not ops:
                    if not cursor.done:
                        await self._send(send, _PING)
                    continue
                self.metrics.ops_out.inc(len(ops))
                size = len(ops[0].json) if len(ops) == 1 else sum(len(op.json) for op in ops)
                self.fed += size
                if size > OFF_LOOP_OP_BYTES or (
                    self.fed > OFF_LOOP_OP_BYTES
                    and any(op.json.startswith(_RENDERS_WHOLE) for op in ops)
                ):  # (each reader's view renders it: not on the loop)
                    body = await off_loop(self._rendered, ops, live=True)
                else:
                    body = self._rendered(ops)
                if body:
                    await self._send(send, body)
            if not view.done:
                rest = b"".join(f.data for f in view.close())
                if rest:
                    await self._send(send, rest)
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gauge.dec()

    def _rendered(self, ops: list[EncodedOp]) -> bytes:
        view = self.view
        if self.logged_only:
            return b"".join(f.data for op in ops for f in view.feed(op) if is_logged(f))
        return b"".join(f.data for op in ops for f in view.feed(op))

    async def _release(self) -> None:
        if self.cursor is not None:
            await self.cursor.aclose()


OFF_LOOP_OPS = 2_000
"""A catch-up over a log longer than this is computed on a worker thread: it is pure CPU (a
few µs per op: 200,000 ops held the event loop for about 1.8 s), and meanwhile the loop must
keep serving every other stream. One thread: catch-ups queue behind each other rather than
take the interpreter from the loop together."""
OFF_LOOP_OP_BYTES = 1 << 20
"""Live ops bigger than this (together, in one read) are rendered by a reader's view on a
worker thread, and so are the ends of blocks and messages once a reader's view holds this
much: a view may render a block's whole text there (the Responses view's ``….done`` events,
``response.completed``), and a 12 MB text took each of 6 views ~0.1 s of the loop. There
the interpreter switches back to the loop between the pieces. (A thread of their own, not
the catch-up thread: behind a long catch-up they would wait for it.) A catch-up over more
op bytes than this goes to the catch-up thread, however few the ops."""
_RENDERS_WHOLE = (b'{"type":"block.end"', b'{"type":"message.end"', b'{"type":"snapshot"')
_threads: dict[str, ThreadPoolExecutor] = {}  # name -> its one worker thread
_T = TypeVar("_T")


def _long(ops: list[EncodedOp]) -> bool:
    """Whether a catch-up over ``ops`` goes to the catch-up thread: many ops, or few but big
    ones (a 15 MB text in 27 ops took each late reader's view ~0.1 s of the loop)."""
    return len(ops) > OFF_LOOP_OPS or sum(len(op.json) for op in ops) > OFF_LOOP_OP_BYTES


async def computed(ops: list[EncodedOp], fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
    """``fn(*args, **kwargs)``: inline for a short log, on the catch-up thread for a long one."""
    if not _long(ops):
        return fn(*args, **kwargs)
    return await off_loop(lambda: fn(*args, **kwargs))


async def off_loop(fn: Callable[..., _T], *args: Any, live: bool = False) -> _T:
    """``fn(*args)`` on the catch-up thread (``live``: on the live renders' own thread)."""
    thread = worker_thread("tokenwire-render" if live else "tokenwire-catch-up")
    return await asyncio.get_running_loop().run_in_executor(thread, lambda: fn(*args))


def worker_thread(name: str) -> ThreadPoolExecutor:
    """The one worker thread called ``name`` (made on first use)."""
    thread = _threads.get(name)
    if thread is None:
        thread = _threads[name] = ThreadPoolExecutor(1, thread_name_prefix=name)
    return thread


_shared = SharedCatchUps()


async def shared_computed(
    key: Hashable | None,
    ops: list[EncodedOp],
    fn: Callable[..., tuple[list[Frame], View]],
    *args: Any,
    **kwargs: Any,
) -> tuple[list[Frame], View]:
    """``computed``, shared by the readers asking with the same ``key`` together (``None``:
    not shared; see streams/shared_catch_up.py)."""
    if key is None or not _long(ops):
        return await computed(ops, fn, *args, **kwargs)
    return await _shared.get(key, lambda: computed(ops, fn, *args, **kwargs), _frames_bytes)


def _frames_bytes(result: tuple[list[Frame], View]) -> int:
    """About what a kept result holds: its frames' bytes, their bodies (as big), and the
    view's message (a short ``startIndex=-2`` answer still holds the whole message)."""
    frames, view = result
    text = sum(block.length for block in view.state.blocks)
    return 2 * sum(len(frame.data) for frame in frames) + text


def share_key(
    streams: Streams, stream_id: str, ops: list[EncodedOp], cursor: Cursor | None, *rest: Any
) -> Hashable | None:
    """What a finished stream's catch-up depends on besides ``rest`` (the request's view,
    cursor and options); ``None`` while the stream is live or its log does not end with
    ``message.end`` (a view that may still change is never shared)."""
    if cursor is not None or not ops or type(ops[-1].op) is not MessageEnd:
        return None
    return (id(streams), stream_id, ops[-1].seq, len(ops), ops[0].seq, *rest)


async def read_log(
    streams: Streams, stream_id: str, info: StreamInfo | None, row: StoredStream | None
) -> tuple[list[EncodedOp], Cursor | None]:
    """The stream's ops so far (from seq 0; a ``snapshot`` op first if the hub trimmed the
    log; only a snapshot of the stored message once the hub forgot the stream) and the open
    cursor to follow the rest with (``None`` when there is no live rest)."""
    if info is None:
        assert row is not None
        message = Message.from_dict(msgspec.json.decode(row.message))
        return [snapshot_op(message, row.seq)], None
    try:
        cursor = await streams.hub.subscribe(stream_id, 0)
    except (StreamNotFound, BadCursor):
        raise not_found(stream_id) from None
    ops: list[EncodedOp] = []
    try:
        while cursor.position < info.seq and not cursor.done:
            batch = await cursor.read(5.0)
            # Should the hub have trimmed the log past this read meanwhile (a later
            # ``snapshot``, maybe behind live transients), the views work from one base: the
            # newest snapshot, which holds all before it. Looked for per batch, between the
            # yields: a scan of the whole log at the end held the loop (20 readers of a
            # 100,000-op log: 0.6 s).
            start = _newest_snapshot(batch)
            if start is None:
                ops.extend(batch)
            else:
                ops = batch[start:]
            await asyncio.sleep(0)  # (a long log comes in many batches: let others run)
    except BaseException:
        await cursor.aclose()
        raise
    if cursor.done:
        await cursor.aclose()
        return ops, None
    return ops, cursor


def _newest_snapshot(batch: list[EncodedOp]) -> int | None:
    """Index of the last ``snapshot`` op in ``batch``, if any."""
    for index in range(len(batch) - 1, -1, -1):
        if type(batch[index].op) is Snapshot:
            return index
    return None


_POSITIVE = re.compile(r"[1-9][0-9]{0,17}")


def _int_param(raw: str | None, what: str, code: str = "invalid_cursor") -> int | None:
    if raw is None:
        return None
    raw = raw.strip()
    if not _INT.fullmatch(raw):
        raise bad_request(f"{what} must be an integer, got {raw!r}", code)
    return int(raw)


def _seq_param(raw: str | None, what: str, code: str = "invalid_cursor") -> int | None:
    value = _int_param(raw, what, code)
    if value is not None and value < 0:
        raise bad_request(f"{what} must be a non-negative integer, got {raw!r}", code)
    return value


def _op_seq_code(fmt: str) -> str:
    """The error code of a malformed op seq cursor: ``format=ops`` is the op stream, and says
    ``invalid_after`` as it does; the openai view's ids say ``invalid_cursor`` (they may be
    ``<seq>.<k>``)."""
    return "invalid_after" if fmt == "ops" else "invalid_cursor"


def requested_format(query: QueryParams) -> str | None:
    """``?format=`` (``None`` when absent: the op stream as it always was)."""
    fmt = query.get("format")
    if fmt is None:
        return None
    if fmt not in FORMATS:
        raise bad_request(f"unknown format {fmt!r}: one of {', '.join(FORMATS)}", "invalid_format")
    return fmt


# The query cursors each view reads. Another view's cursor is refused, not ignored: ignored,
# it would replay the stream from its start, and the client would show the text twice.
QUERY_CURSORS: dict[str, tuple[str, ...]] = {
    "ops": ("after",),
    "openai": ("after", "startIndex"),
    "responses": ("starting_after",),
    "aisdk": ("startIndex",),
}


def refuse_foreign_cursors(fmt: str | None, query: QueryParams) -> None:
    """A ``400 invalid_cursor`` for a query cursor that ``fmt`` (``None``: the op stream)
    does not read."""
    takes = QUERY_CURSORS[fmt or "ops"]
    for name in ("after", "startIndex", "starting_after"):
        if name in query and name not in takes:
            what = f"format={fmt}" if fmt else "the op stream (no format)"
            cursors = " or ".join(f"?{cursor}=" for cursor in takes)
            raise bad_request(
                f"?{name}= is not a cursor of {what}: it resumes with {cursors}",
                "invalid_cursor",
            )


CATCHUPS = ("compact", "exact")
EXACT = 1 << 62  # a threshold no reader is ever behind by


def requested_threshold(query: QueryParams, options: ViewOptions) -> int:
    """``?catchup=compact`` (the default: far-behind readers get a snapshot or merged deltas)
    or ``?catchup=exact`` (every op / frame of the log as it was sent, however far behind)."""
    mode = query.get("catchup", "compact")
    if mode not in CATCHUPS:
        raise bad_request(
            f"unknown catchup {mode!r}: one of {', '.join(CATCHUPS)}", "invalid_catchup"
        )
    return EXACT if mode == "exact" else options.threshold


def make_view(
    fmt: str,
    stream_id: str,
    created: float,
    options: ViewOptions,
    message_id: str | None = None,
) -> Callable[[], View]:
    bound = options.max_frame_bytes
    if fmt == "openai":
        return lambda: OpenAIChunksView(
            completion_id=f"chatcmpl-{stream_id}", created=int(created), max_frame_bytes=bound
        )
    if fmt == "responses":
        return lambda: ResponsesView(
            response_id=f"resp_{stream_id}", created_at=int(created), max_frame_bytes=bound
        )
    if fmt == "aisdk":
        return lambda: AISDKView(message_id, max_frame_bytes=bound)
    return lambda: OpsView(bound)


def _message_id(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if not _MESSAGE_ID.fullmatch(raw):
        raise bad_request("messageId must be 1 to 256 non-blank characters", "invalid_message_id")
    return raw


async def view_events(
    streams: Streams,
    conn: HTTPConnection,
    stream_id: str,
    fmt: str,
    info: StreamInfo | None,
    row: StoredStream | None,
    options: ViewOptions,
    *,
    metrics: Metrics,
    keepalive_s: float,
    head: bool = False,
) -> Response:
    """``GET .../events?format=fmt`` once access was checked. Cursors by format:

    - ops: ``Last-Event-ID`` / ``?after=`` (op seq);
    - openai: ``Last-Event-ID`` (op seq) or ``?startIndex=N`` (chunks received, exact);
    - responses: ``?starting_after=N`` or ``Last-Event-ID`` (``sequence_number``);
    - aisdk: none (the message from its ``start``, compacted) or ``?startIndex=N`` (exact;
      negative from the tail), with ``?messageId=``.
    """
    headers, query = conn.headers, conn.query_params
    refuse_foreign_cursors(fmt, query)
    seq = info.seq if info is not None else row.seq  # type: ignore[union-attr]
    after_seq: int | None = None
    after_part = 0
    after = -1
    start_index: int | None = None
    # ``Last-Event-ID`` wins over a query cursor in every view: an SSE client (EventSource)
    # reconnects to the same URL with the header, and must get what follows its last event.
    last_id = (headers.get("last-event-id") or "").strip() or None  # (an empty header: none)
    if fmt in ("ops", "openai"):
        if last_id is not None and fmt == "openai" and "." in last_id:
            # ``<seq>.<k>``: k of op seq's frames were delivered (it has more).
            seq_text, _, part = last_id.partition(".")
            if not (_POSITIVE.fullmatch(seq_text) and _POSITIVE.fullmatch(part)):
                raise bad_request(
                    f"Last-Event-ID must be <seq> or <seq>.<k> with seq, k >= 1, got {last_id!r}",
                    "invalid_cursor",
                )
            after_seq, after_part = int(seq_text) - 1, int(part)
            if after_seq >= seq:  # (op seq has not been written: no frame of it was sent)
                raise bad_request(
                    f"cannot resume at Last-Event-ID {last_id!r}: the stream is at seq {seq}",
                    "after_out_of_range",
                )
        elif last_id is not None:
            after_seq = _seq_param(last_id, "Last-Event-ID", _op_seq_code(fmt))
        else:
            after_seq = _seq_param(query.get("after"), "after", _op_seq_code(fmt))
            if fmt == "openai":
                start_index = _seq_param(query.get("startIndex"), "startIndex")
        if after_seq is not None and after_seq > seq:
            raise bad_request(
                f"cannot resume after seq {after_seq}: the stream is at seq {seq}",
                "after_out_of_range",
            )
    elif fmt == "responses":
        if last_id is not None:
            value = _seq_param(last_id, "Last-Event-ID")
        else:
            value = _seq_param(query.get("starting_after"), "starting_after")
        after = -1 if value is None else value
    else:
        start_index = _int_param(query.get("startIndex"), "startIndex")
    threshold = requested_threshold(query, options)
    if fmt == "aisdk" and start_index is None and threshold == EXACT:
        start_index = 0  # (the uncompacted replay: every chunk, from the first)
    message_id = _message_id(query.get("messageId")) if fmt == "aisdk" else None
    created = info.created_at if info is not None else row.created_at  # type: ignore[union-attr]
    factory = make_view(fmt, stream_id, created, options, message_id)
    extra: dict[str, str] = {}
    if head:
        response = Response(status_code=200)
        response.raw_headers = aisdk_headers() if fmt == "aisdk" else sse_headers()
        return response
    ops, cursor = await read_log(streams, stream_id, info, row)
    try:
        # ("<seq>.<k>" with seq up to the snapshot's is refused too: a live reader cut inside
        # message.end holds such an id, and so does one cut inside a restart read's rebuilt
        # snapshot: the id cannot tell which, so resuming at it could repeat the whole text.)
        if last_id is not None:
            given = f"Last-Event-ID {last_id!r}"
        else:
            given = f"starting_after {after}" if fmt == "responses" else f"after {after_seq}"
        _check_cursor(
            fmt, ops, after_seq=after_seq, given=given, start_index=start_index, after=after
        )
        share = share_key(
            streams,
            stream_id,
            ops,
            cursor,
            fmt,
            created,
            message_id,
            start_index,
            after,
            after_seq,
            after_part,
            threshold,
            options.max_frame_bytes,
        )
        if start_index is not None:
            frames, view = await shared_computed(
                share, ops, frames_after, factory, ops, start_index
            )
            if start_index > view.next_index:
                raise bad_request(
                    f"startIndex {start_index} is past the last chunk ({view.next_index - 1})",
                    "start_index_out_of_range",
                )
            if fmt == "aisdk":
                extra["x-workflow-stream-tail-index"] = str(tail_index(view.next_index))
        elif fmt == "aisdk":
            frames, view = await shared_computed(
                share, ops, resume, ops, message_id, max_frame_bytes=options.max_frame_bytes
            )
        else:
            try:
                frames, view = await shared_computed(
                    share,
                    ops,
                    catch_up,
                    factory,
                    ops,
                    after=after,
                    after_seq=after_seq,
                    after_part=after_part,
                    threshold=threshold,
                    max_frame_bytes=options.max_frame_bytes,
                )
            except BadCursor as exc:  # (a ``<seq>.<k>`` id naming no frame of that op)
                raise bad_request(
                    f"cannot resume at Last-Event-ID {last_id!r}: {exc}", "invalid_cursor"
                ) from None
            if after >= view.next_index:
                raise bad_request(
                    f"starting_after {after} is past the last event ({view.next_index - 1})",
                    "starting_after_out_of_range",
                )
    except BaseException:
        if cursor is not None:
            await cursor.aclose()
        raise
    if not frames and cursor is None:
        return Response(status_code=204)  # an ended stream, nothing after the cursor
    out = aisdk_headers(extra) if fmt == "aisdk" else sse_headers(extra)
    return ViewResponse(  # type: ignore[return-value]
        cursor,
        view,
        frames,
        out,
        metrics=metrics,
        keepalive_s=keepalive_s,
        logged_only=start_index is not None,  # (the client counts chunks from its index)
    )


def _check_cursor(
    fmt: str,
    ops: list[EncodedOp],
    *,
    after_seq: int | None,
    given: str,
    start_index: int | None,
    after: int,
) -> None:
    """Refuse (410 ``cursor_expired``) a cursor the log no longer answers exactly.

    When the log starts with a ``snapshot`` (the hub trimmed it, or forgot the stream and only
    the stored final message is left), the frames before the snapshot's seq are gone: a view's
    frame indexes are then this connection's own (rebuilt from the message), and an op seq
    before the snapshot names text the message no longer tells apart. Rather than replay the
    whole text after the client's cursor (duplicating what it has), say so: the client
    restarts from the beginning (no cursor, or ``startIndex=0``) and replaces its copy. The
    ``ops`` view is exempt: a snapshot op is the op stream's own way to resume (it replaces
    the client's message). An op-seq cursor at or after the snapshot is still exact."""
    if fmt == "ops" or not ops or ops[0].type != "snapshot":
        return
    base = ops[0].seq
    gone = (after_seq is not None and 0 < after_seq < base) or (fmt == "responses" and after >= 0)
    if start_index is not None and start_index != 0:
        given = f"startIndex {start_index}"
    elif not gone:
        return
    restart = "startIndex=0" if start_index is not None else "no cursor"
    raise ApiError(
        410,
        f"cannot resume at {given}: the stream's log before seq {base} is gone (only its "
        f"message is kept); restart from the beginning ({restart}) and replace what you have",
        "invalid_request_error",
        "cursor_expired",
    )


# -- chats (the AI SDK routes) --------------------------------------------------------------
def ui_message_id(body: dict[str, Any]) -> str | None:
    """The UI message id to answer a ``POST {api}`` body with: its ``messageId`` only when
    that names the last message and it is the assistant's (a tool round continuing it); the
    AI SDK also sends the id of a *user* message it edits or regenerates from, and an answer
    under that id would replace the user's message. ``None``: a new id (the stream's)."""
    message_id = body.get("messageId")
    messages = body.get("messages")
    if not isinstance(message_id, str) or not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if (
        isinstance(last, dict)
        and last.get("role") == "assistant"
        and last.get("id") == message_id
        and _MESSAGE_ID.fullmatch(message_id)  # (else a new id: never a 500 from a body)
    ):
        return message_id
    return None


def workflow_body(body: dict[str, Any]) -> bool:
    """Whether a ``POST {api}`` body is the Workflow transport's (its default body has no
    ``trigger``, which ``DefaultChatTransport`` always sends): its answer carries no transient
    parts, since that transport counts every chunk it gets as its resume index."""
    return "trigger" not in body


def chat_key(owner: str | None, chat_id: str) -> str:
    """The hub key of a chat: chats are per owner (another owner's chat id is another chat)."""
    tag = "-" if owner is None else hashlib.sha256(owner.encode()).hexdigest()[:24]
    return f"{tag}:{chat_id}"


def run_key(stream_id: str) -> str:
    """The hub key of a run's UI message id (the Workflow transport resumes by run id, the
    stream id, and chunk 0's ``start`` must name the message the POST answered with). Never a
    chat key: those start with ``-:`` or an owner hash."""
    return f"run:{stream_id}"


def active_value(stream_id: str, message_id: str | None) -> str:
    """What the hub keeps for a chat: its stream and the UI message id it answers with."""
    return stream_id if message_id is None else f"{stream_id} {message_id}"


def parse_active(value: str) -> tuple[str, str | None]:
    stream_id, _, message_id = value.partition(" ")
    return stream_id, message_id or None


class AISDKStartResponse(Response):
    """``streams.aisdk_response(...)``: records the chat's active stream, then streams the AI
    SDK view of the stream from its start (a Starlette ``Response``; no body until served)."""

    def __init__(
        self,
        streams: Streams,
        stream_id: str,
        *,
        chat_id: str | None,
        message_id: str | None,
        options: ViewOptions,
        keepalive_s: float,
        metrics: Metrics | None,
        headers: dict[str, str] | None,
        transient: bool = True,
    ) -> None:
        super().__init__(status_code=200)
        self.transient = transient
        self.streams = streams
        self.stream_id = stream_id
        self.chat_id = chat_id
        self.message_id = _message_id(message_id)
        self.options = options
        self.keepalive_s = keepalive_s
        self.metrics = metrics if metrics is not None else Metrics()
        self.extra = {"x-workflow-run-id": stream_id, **(headers or {})}
        self.raw_headers = aisdk_headers(self.extra)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streams, stream_id = self.streams, self.stream_id
        try:
            info, row = await streams.lookup(stream_id)
        except StreamNotFound:  # (a stream id the host did not start, or long gone)
            await api_error_response(not_found(stream_id))(scope, receive, send)
            return
        if self.chat_id is not None and info is not None and info.status == "in_progress":
            await streams.hub.set_active(
                chat_key(info.owner, self.chat_id),
                active_value(stream_id, self.message_id),
                self.options.chat_ttl_s,
            )
        if self.message_id is not None:  # (else it is the stream id: nothing to keep)
            ttl_s = self.options.chat_ttl_s
            await streams.hub.set_active(run_key(stream_id), self.message_id, ttl_s)
        ops, cursor = await read_log(streams, stream_id, info, row)
        factory = make_view("aisdk", stream_id, 0.0, self.options, self.message_id)
        # Every chunk from the first, exact (what is in the log already is not compacted):
        # the Workflow transport resumes at ``?startIndex=`` = the chunks it counted here.
        frames, view = await computed(ops, frames_after, factory, ops, 0)
        response = ViewResponse(
            cursor,
            view,
            frames,
            aisdk_headers(self.extra),
            metrics=self.metrics,
            keepalive_s=self.keepalive_s,
            logged_only=not self.transient,
        )
        await response(scope, receive, send)


__all__ = [
    "DEFAULT_CHAT_TTL_S",
    "FORMATS",
    "AISDKStartResponse",
    "ViewOptions",
    "ViewResponse",
    "active_value",
    "chat_key",
    "make_view",
    "parse_active",
    "read_log",
    "requested_format",
    "run_key",
    "view_events",
]
