"""Server-sent events: an incremental decoder and an encoder.

The decoder follows the WHATWG "event stream interpretation" rules: lines end in CRLF, LF or
CR; a blank line dispatches the event; lines starting with ``:`` are comments; the fields are
``data`` (joined with LF), ``event``, ``id`` and ``retry``; a leading BOM is dropped. It works on
bytes and only decodes whole lines, so a UTF-8 sequence split across reads is never broken.

The decoder is linear in its input and bounded: a piece without a line end is only appended to
a list (never re-joined or re-split per read), and an event larger than ``max_event_bytes``
raises :class:`SSEEventTooLarge` instead of buffering without limit.
"""

from __future__ import annotations

import msgspec

_BOM = b"\xef\xbb\xbf"

DEFAULT_MAX_EVENT_BYTES = 16 * 1024 * 1024
"""Largest event (its data lines plus an unfinished line) a decoder buffers by default: far
above any chat chunk, and even a large inline image, yet a bound on hostile input."""
DEFAULT_MAX_STREAM_BYTES = 256 * 1024 * 1024
"""The most bytes one upstream body may stream into a message (``writer.pipe``): an upstream
that never ends must not grow a process without bound."""


class SSEEventTooLarge(ValueError):
    """An event grew past ``max_event_bytes``. ``events`` are the complete events the same
    ``feed`` call dispatched before the oversized one (hand them on, then fail the stream).
    The decoder drops what it had buffered; it should not be fed again."""

    def __init__(self, limit: int, events: list[SSEEvent]) -> None:
        super().__init__(f"an upstream SSE event exceeded {limit} bytes (max_event_bytes)")
        self.limit = limit
        self.events = events


class SSEEvent(msgspec.Struct, gc=False):
    """One dispatched event. ``raw`` is the data as UTF-8 bytes (what JSON decoders want);
    ``data`` is the same as text. ``id`` is the stream's last event ID at dispatch time, as
    EventSource reports it. (A msgspec Struct because its C constructor is several times
    cheaper than a Python ``__init__`` on this per-chunk path.)"""

    raw: bytes
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    @property
    def data(self) -> str:
        return self.raw.decode("utf-8", "replace")


class SSEDecoder:
    """Feed bytes in any pieces; get back the events they complete."""

    __slots__ = (
        "_buffer",
        "_buffered",
        "_data",
        "_data_bytes",
        "_event",
        "_last_id",
        "_retry",
        "_skip_lf",
        "_started",
        "comments",
        "max_event_bytes",
    )

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        # The unfinished last line, as the pieces it came in (joined once, when its line end
        # arrives: joining per read would make a long line quadratic).
        self._buffer: list[bytes] = []
        self._buffered = 0
        self._data: list[bytes] = []
        self._data_bytes = 0  # sum of the current event's data line lengths
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._skip_lf = False  # the previous piece ended in CR: a leading LF belongs to it
        self._started = False  # past the optional BOM
        self.comments = 0  # count of comment lines (keep-alive pings) seen
        self.max_event_bytes = max_event_bytes

    @property
    def last_event_id(self) -> str | None:
        return self._last_id

    def feed(self, data: bytes) -> list[SSEEvent]:
        if not data:
            return []
        if self._skip_lf:
            self._skip_lf = False
            if data[:1] == b"\n":
                data = data[1:]
                if not data:
                    return []
        if self._buffer:
            if b"\n" not in data and b"\r" not in data and self._started:
                # Still inside one line: remember the piece, O(len(data)).
                self._buffer.append(data)
                self._buffered += len(data)
                if self._buffered + self._data_bytes > self.max_event_bytes:
                    self._overflow([])
                return []
            self._buffer.append(data)
            buffer = b"".join(self._buffer)
            self._buffer = []
            self._buffered = 0
        else:
            buffer = data
        if not self._started:
            if len(buffer) < 3 and _BOM.startswith(buffer):
                self._buffer = [buffer]  # could still be a BOM; wait for more
                self._buffered = len(buffer)
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[3:]
        # bytes.splitlines splits on exactly the SSE line ends (CRLF, LF, CR) in one C pass.
        lines = buffer.splitlines()
        last = buffer[-1:]
        if last == b"\n":
            pass
        elif last == b"\r":
            self._skip_lf = True  # an LF at the start of the next piece ends the same line
        elif lines:
            tail = lines.pop()
            self._buffer = [tail]
            self._buffered = len(tail)
        if len(buffer) + self._data_bytes > self.max_event_bytes:
            return self._feed_bounded(lines)  # rare: count every line against the limit
        if (
            len(lines) == 2
            and not lines[1]
            and not self._data
            and not self._event
            and self._retry is None
            and lines[0].startswith(b"data: ")
        ):  # the usual read: exactly one complete "data: ..." event
            return [SSEEvent(lines[0][6:], "message", self._last_id)]
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:
                    self._event = ""
            elif line.startswith(b"data: "):  # the common case, without decoding
                self._data.append(line[6:])
                self._data_bytes += len(line)
            else:
                self._field(line)
        return events

    def _feed_bounded(self, lines: list[bytes]) -> list[SSEEvent]:
        """``feed``'s loop for a read that may hold an oversized event."""
        limit = self.max_event_bytes
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(self._dispatch())
                else:
                    self._event = ""
                continue
            if self._data_bytes + len(line) > limit:
                self._overflow(events)
            if line.startswith(b"data: "):
                self._data.append(line[6:])
                self._data_bytes += len(line)
            else:
                self._field(line)
        if self._buffered + self._data_bytes > limit:
            self._overflow(events)
        return events

    def _overflow(self, events: list[SSEEvent]) -> None:
        limit = self.max_event_bytes
        self.close()  # free what was buffered at once
        raise SSEEventTooLarge(limit, events)

    def close(self) -> list[SSEEvent]:
        """End of stream. Per the spec an event without its closing blank line is dropped."""
        self._buffer = []
        self._buffered = 0
        self._data = []
        self._data_bytes = 0
        self._event = ""
        return []

    @property
    def idle(self) -> bool:
        """Between events with nothing buffered: the next piece starts a fresh event."""
        return (
            self._started
            and not self._buffer
            and not self._data
            and not self._event
            and self._retry is None
            and not self._skip_lf
        )

    @property
    def pending(self) -> bool:
        """True if bytes of an unfinished event are buffered (the stream was cut mid-event)."""
        return bool(self._buffer or self._data)

    def _field(self, line: bytes) -> None:
        if line[0] == 0x3A:  # ':' comment
            self.comments += 1
            return
        raw_name, sep, raw_value = line.partition(b":")
        if sep and raw_value[:1] == b" ":
            raw_value = raw_value[1:]
        if raw_name == b"data":
            self._data.append(raw_value)
            self._data_bytes += len(line)
            return
        name = raw_name.decode("utf-8", "replace")
        value = raw_value.decode("utf-8", "replace")
        if name == "event":
            self._event = value
        elif name == "id":
            if "\x00" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        # any other field name is ignored, as the spec says

    def _dispatch(self) -> SSEEvent:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        event = SSEEvent(data, self._event or "message", self._last_id, self._retry)
        self._data = []
        self._data_bytes = 0
        self._event = ""
        self._retry = None
        return event


def encode_event(
    data: str | bytes,
    *,
    event: str | None = None,
    id: str | int | None = None,
    retry: int | None = None,
) -> bytes:
    """One SSE event as bytes. Multi-line data becomes several ``data:`` lines."""
    if isinstance(data, str):
        data = data.encode()
    parts: list[bytes] = []
    if id is not None:
        parts.append(b"id: %s\n" % (str(id).encode(),))
    if event is not None:
        parts.append(b"event: %s\n" % (event.encode(),))
    if retry is not None:
        parts.append(b"retry: %d\n" % retry)
    if b"\n" in data or b"\r" in data:
        lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
        parts.extend(b"data: %s\n" % line for line in lines)
    else:
        parts.append(b"data: %s\n" % data)
    parts.append(b"\n")
    return b"".join(parts)


def encode_comment(text: str = "") -> bytes:
    """A comment line, used as a keep-alive (``: ping``)."""
    return b": %s\n\n" % text.encode() if text else b":\n\n"
