"""What the sync and async clients share: SSE bytes -> ops -> message, and resume position."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import msgspec

from tokenwire.errors import InvalidArgument, TokenwireError
from tokenwire.protocol import (
    Message,
    MessageEnd,
    Op,
    Snapshot,
    SSEDecoder,
    Transient,
    apply_op,
    decode_op,
)

TransientCallback = Callable[[Transient], None]


class GatewayError(TokenwireError):
    """The gateway answered with an error (``status`` plus its ``{"error": …}`` body)."""

    def __init__(self, status: int, message: str, type: str | None, code: Any) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message
        self.type = type
        self.code = code

    @classmethod
    def from_response(cls, status: int, body: bytes) -> GatewayError:
        try:
            err = msgspec.json.decode(body)["error"]
            return cls(status, str(err.get("message")), err.get("type"), err.get("code"))
        except (msgspec.DecodeError, KeyError, TypeError, AttributeError):
            text = body[:200].decode("utf-8", "replace") or "no body"
            return cls(status, text, None, None)


class GatewayUnreachable(ConnectionError):
    """The gateway could not be reached (refused, unknown host, timed out, cut off). Its
    message is one line: ``cannot reach the gateway at URL: reason``."""


@contextlib.contextmanager
def reaching(base_url: object) -> Iterator[None]:
    """httpx's transport errors (with their long chains) as one :class:`GatewayUnreachable`."""
    try:
        yield
    except httpx.TransportError as exc:
        reason = str(exc) or type(exc).__name__
        raise GatewayUnreachable(f"cannot reach the gateway at {base_url}: {reason}") from None


def checked_catchup(catchup: str) -> str:
    """``catchup`` if it is a mode the gateway knows, else ``InvalidArgument`` (a ValueError)."""
    if catchup not in ("compact", "exact"):
        raise InvalidArgument(f"catchup must be 'compact' or 'exact', not {catchup!r}")
    return catchup


class StreamState:
    """The client side of one stream: applied message, last seq, and an SSE decoder.

    Transient ops (v1.1) are never applied to the message: they are handed to
    ``on_transient`` (if set), their latest value per name is kept in ``transients``, and
    ``feed`` returns them with the other ops so an iterating caller sees them too."""

    def __init__(
        self,
        stream_id: str,
        on_transient: TransientCallback | None = None,
        catchup: str = "compact",
    ) -> None:
        checked_catchup(catchup)
        self.id = stream_id
        # "exact": every op of the log however far behind; "compact": a far-behind reader
        # gets one snapshot op for what it missed (the gateway's default).
        self.params = {"catchup": catchup} if catchup == "exact" else {}
        self.message = Message.empty(stream_id)
        self.seq = 0
        self.done = False
        self.on_transient = on_transient
        self.transients: dict[str, Any] = {}  # live only: the latest value of each name
        self._decoder = SSEDecoder()

    def reset_connection(self) -> None:
        self._decoder = SSEDecoder()  # a new response starts a new event stream

    def feed(self, data: bytes) -> list[Op]:
        """New ops in ``data`` (already applied). Ops at or before ``seq`` are skipped."""
        out: list[Op] = []
        for event in self._decoder.feed(data):
            if not event.data or self.done:
                continue
            op = decode_op(event.raw)
            if op is None:
                continue  # an unknown op type (forward compatibility)
            if type(op) is Transient:
                # No event id and no seq of its own: it does not move the resume position.
                self.transients[op.name] = op.value
                out.append(op)
                if self.on_transient is not None:
                    self.on_transient(op)
                continue
            # The event id is the op's seq (deltas carry none of their own).
            if event.id is not None and event.id.isdigit():
                op.seq = int(event.id)
            if op.seq <= self.seq:
                if isinstance(op, MessageEnd) and op.seq == self.seq:
                    # A reader-only end (the gateway gave up reading for us; the stream may
                    # go on): it ends this follow without claiming a seq of the stream.
                    apply_op(self.message, op)
                    out.append(op)
                    self.done = True
                continue  # one we already have
            apply_op(self.message, op)
            self.seq = op.seq
            out.append(op)
            if isinstance(op, MessageEnd) or (
                type(op) is Snapshot and self.message.status != "in_progress"
            ):  # (a far-behind reader of an ended stream gets only its snapshot)
                self.done = True
        return out

    def headers(self) -> dict[str, str]:
        """Request headers for (re)connecting: resume after the last seq applied."""
        headers = {"Accept": "text/event-stream"}
        if self.seq:
            headers["Last-Event-ID"] = str(self.seq)
        return headers


def http_options(base_url: str, api_key: str | None, timeout: float) -> dict[str, Any]:
    """Keyword arguments for the httpx client of either flavour."""
    return {
        "base_url": base_url.rstrip("/"),
        "headers": {"Authorization": f"Bearer {api_key}"} if api_key else {},
        # The read timeout is generous: the gateway pings idle streams well within it.
        "timeout": httpx.Timeout(timeout, read=max(timeout, 60.0)),
    }


def read_params(token: str | None, **params: Any) -> dict[str, Any]:
    """Query parameters of a read (snapshot, events): ``params`` plus the read token, if any.
    A read token goes in the URL (as an ``EventSource`` must send it), only on reads: it never
    authorizes a create or a cancel."""
    if token is not None:
        params["token"] = token
    return params


def openai_chunk(data: str) -> dict[str, Any] | None:
    """One event of the OpenAI view: its chunk, ``None`` at ``[DONE]``; an error event (the
    stream failed) raises ``GatewayError``."""
    if data == "[DONE]":
        return None
    chunk = msgspec.json.decode(data)
    if "error" in chunk and "choices" not in chunk:
        error = chunk["error"] or {}
        raise GatewayError(200, str(error.get("message")), error.get("type"), error.get("code"))
    return chunk  # type: ignore[no-any-return]


def checked(response: httpx.Response) -> httpx.Response:
    """``response`` itself, or its error body raised as ``GatewayError``."""
    if response.status_code >= 400:
        raise GatewayError.from_response(response.status_code, response.content)
    return response


class StreamView:
    """What both stream flavours expose: the message as of ``seq``, and whether it ended."""

    def __init__(
        self,
        client: Any,
        stream_id: str,
        on_transient: TransientCallback | None = None,
        catchup: str = "compact",
    ) -> None:
        self.client = client
        self.id = stream_id
        self._state = StreamState(stream_id, on_transient, catchup)

    @property
    def on_transient(self) -> TransientCallback | None:
        """Called with each ``Transient`` op as it arrives (live readers only; never part of
        the message). Iterating the stream yields them too."""
        return self._state.on_transient

    @on_transient.setter
    def on_transient(self, callback: TransientCallback | None) -> None:
        self._state.on_transient = callback

    @property
    def transients(self) -> dict[str, Any]:
        """The latest value of each transient name received on this connection's life."""
        return self._state.transients

    @property
    def message(self) -> Message:
        """The message as of ``seq`` (every op received so far applied)."""
        return self._state.message

    @property
    def seq(self) -> int:
        return self._state.seq

    @property
    def done(self) -> bool:
        return self._state.done


def stream_path(stream_id: str, *rest: str) -> str:
    """The gateway path of a stream: its id percent-encoded, so an id given by a user (with
    ``/``, ``..`` or ``?``) cannot reach another route with this client's key."""
    return "/".join(("/v1/streams", quote(stream_id, safe=""), *rest))


def create_body(
    messages: list[dict[str, Any]],
    model: str | None,
    coalesce_ms: float | None,
    params: dict[str, Any],
) -> dict[str, Any]:
    body: dict[str, Any] = {"messages": messages, **params}
    if model is not None:
        body["model"] = model
    if coalesce_ms is not None:
        if isinstance(coalesce_ms, bool) or not isinstance(coalesce_ms, int | float):
            raise InvalidArgument(f"coalesce_ms must be a number, got {coalesce_ms!r}")
        if not math.isfinite(coalesce_ms):  # (JSON cannot carry it)
            raise InvalidArgument(f"coalesce_ms must be a finite number, got {coalesce_ms!r}")
        body["tokenwire"] = {"coalesce_ms": coalesce_ms}
    return body


def backoff(attempt: int) -> float:
    return min(0.1 * (2**attempt), 2.0)


RETRYABLE_STATUS = frozenset({502, 503, 504})
