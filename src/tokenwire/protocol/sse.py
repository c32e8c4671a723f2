"""Server-sent events: an incremental decoder and an encoder.

The decoder follows the WHATWG "event stream interpretation" rules: lines end in CRLF, LF or
CR; a blank line dispatches the event; lines starting with ``:`` are comments; the fields are
``data`` (joined with LF), ``event``, ``id`` and ``retry``; a leading BOM is dropped. It works on
bytes and only decodes whole lines, so a UTF-8 sequence split across reads is never broken.
"""

from __future__ import annotations

import msgspec

_BOM = b"\xef\xbb\xbf"


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
        "_data",
        "_event",
        "_last_id",
        "_retry",
        "_skip_lf",
        "_started",
        "comments",
    )

    def __init__(self) -> None:
        self._buffer = b""
        self._data: list[bytes] = []
        self._event = ""
        self._last_id: str | None = None
        self._retry: int | None = None
        self._skip_lf = False  # the previous piece ended in CR: a leading LF belongs to it
        self._started = False  # past the optional BOM
        self.comments = 0  # count of comment lines (keep-alive pings) seen

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
        buffer = self._buffer + data if self._buffer else data
        if not self._started:
            if len(buffer) < 3 and _BOM.startswith(buffer):
                self._buffer = buffer  # could still be a BOM; wait for more
                return []
            self._started = True
            if buffer.startswith(_BOM):
                buffer = buffer[3:]
        # bytes.splitlines splits on exactly the SSE line ends (CRLF, LF, CR) in one C pass.
        lines = buffer.splitlines()
        last = buffer[-1:]
        if last == b"\n":
            self._buffer = b""
        elif last == b"\r":
            self._buffer = b""
            self._skip_lf = True  # an LF at the start of the next piece ends the same line
        else:
            self._buffer = lines.pop() if lines else b""
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
            else:
                self._field(line)
        return events

    def close(self) -> list[SSEEvent]:
        """End of stream. Per the spec an event without its closing blank line is dropped."""
        self._buffer = b""
        self._data = []
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
