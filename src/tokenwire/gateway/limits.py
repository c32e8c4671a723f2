"""Bounds on a client's request head for ``tokenwire serve``: its size and the time to send it.

uvicorn's httptools protocol has neither: a client may send header bytes without end (llhttp
keeps every byte of an unfinished header) or trickle them one a minute (slowloris), and the
keep-alive timeout only runs between requests. :class:`BoundedHttpToolsProtocol` is uvicorn's
protocol plus both bounds: a head larger than ``max_head_bytes`` gets ``431`` and the
connection closed; a head not complete ``head_timeout_s`` after the connection opened (or the
previous response ended) gets ``408`` and closed. Pass it as ``uvicorn.run(..., http=…)``.

It also gives each connection lists where uvicorn makes three empty deques (760 bytes each:
its queue of pipelined requests and the waiters of two ``asyncio.Event``s), a fifth of the
memory of an idle stream reader; a type check makes that a no-op should uvicorn change them.

The limits are class attributes, read from ``TOKENWIRE_MAX_REQUEST_HEAD_BYTES`` and
``TOKENWIRE_REQUEST_HEAD_TIMEOUT_S`` at import (so worker processes that uvicorn spawns get
them too), or set with :func:`configure`.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 64 * 1024
DEFAULT_HEAD_TIMEOUT_S = 10.0

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "")
    try:
        return float(raw) if raw else default
    except ValueError:
        return default


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a size and a time limit on each request head."""

    # Slots, not instance attributes: uvicorn's protocol has 27, and past 30 an instance's
    # __dict__ stops sharing its keys with the class (288 -> 1,584 bytes per connection,
    # measured: +1.3 KiB per open stream reader).
    __slots__ = ("_head_bytes", "_head_timer", "_in_head", "_rejected")

    max_head_bytes: int = int(
        _env_number("TOKENWIRE_MAX_REQUEST_HEAD_BYTES", DEFAULT_MAX_HEAD_BYTES)
    )
    head_timeout_s: float = _env_number("TOKENWIRE_REQUEST_HEAD_TIMEOUT_S", DEFAULT_HEAD_TIMEOUT_S)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._in_head = True  # the bytes that arrive now are a request head
        self._head_bytes = 0
        self._rejected = False
        self._head_timer: asyncio.TimerHandle | None = None
        # An empty deque is 760 bytes (one 64-slot block made up front): uvicorn holds three
        # per open connection (this pipeline, the flow control's and the request cycle's
        # asyncio.Event waiters), ~2.2 KiB per idle stream reader. Lists hold none until used.
        if type(self.pipeline) is deque and not self.pipeline:
            self.pipeline = _Pipeline()  # type: ignore[assignment]
        super().connection_made(transport)
        _lean_event(getattr(self.flow, "_is_writable_event", None))
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._rejected:
            return
        if self._in_head:
            self._head_bytes += len(data)
        # (uvicorn's data_received, except that our own refusal is not a 400)
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if not self._rejected:
                msg = "Invalid HTTP request received."
                self.logger.warning(msg)
                self.send_400_response(msg)
            return
        # Still inside a head after this read: llhttp holds what it has of it.
        if self._in_head and self._head_bytes > self.max_head_bytes:
            self._reject(431, f"request head over {self.max_head_bytes} bytes")

    def on_headers_complete(self) -> None:
        self._cancel_head_timer()
        self._in_head = False
        # The whole head may have come in one read: measure it as parsed (the request line
        # "METHOD url HTTP/1.1\r\n", each "name: value\r\n", the blank line).
        size = len(self.parser.get_method()) + len(self.url) + 12
        size += sum(len(n) + len(v) + 4 for n, v in self.headers) + 2
        if size > self.max_head_bytes:
            self._reject(431, f"request head over {self.max_head_bytes} bytes")
            raise _Refused  # stops the parser (llhttp reports a callback error)
        super().on_headers_complete()
        if self.cycle is not None:
            _lean_event(getattr(self.cycle, "message_event", None))

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True  # what follows is the next request's head
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self._head_timer is None:
            self._arm_head_timer()

    # -- helpers ---------------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        if self.head_timeout_s > 0:
            self._head_timer = self.loop.call_later(self.head_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if not self._in_head or self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a response is still going out (pipelined head after it): not idle
        if self._head_bytes:
            self._reject(408, f"request head not complete within {self.head_timeout_s:g}s")
        else:
            self.transport.close()  # an idle connection: nothing to answer

    def _reject(self, status: int, reason: str) -> None:
        self._rejected = True
        self._cancel_head_timer()
        body = reason.encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s"
            % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()
        client = "%s:%d " % self.client if self.client else ""  # noqa: UP031
        self.logger.info("%s%d: %s; connection closed", client, status, reason)


class _Pipeline(list):  # type: ignore[type-arg]
    """uvicorn's queue of pipelined requests (``appendleft``, ``pop``, truthiness) on a list:
    empty, 56 bytes instead of a deque's 760; pipelined requests are rare and few."""

    __slots__ = ()

    def appendleft(self, item: Any) -> None:
        self.insert(0, item)


def _lean_event(event: Any) -> None:
    """Give an ``asyncio.Event`` with no waiters a list for them instead of its empty deque
    (``Event`` only appends, iterates and removes: a list serves as well)."""
    waiters = getattr(event, "_waiters", None)
    if type(waiters) is deque and not waiters:
        event._waiters = []


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing a refused request."""


def configure(max_head_bytes: int, head_timeout_s: float) -> type[BoundedHttpToolsProtocol]:
    """Set the limits in this process; returns the protocol class for ``uvicorn.run(http=…)``."""
    BoundedHttpToolsProtocol.max_head_bytes = max_head_bytes
    BoundedHttpToolsProtocol.head_timeout_s = head_timeout_s
    return BoundedHttpToolsProtocol
