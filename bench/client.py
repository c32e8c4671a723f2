"""A light HTTP/1.1 load client on raw asyncio streams, so the client is not the bottleneck.

No HTTP library: one connection per request (``Connection: close``), a hand-written chunked
decoder, and token counters that look at bytes with C-speed ``bytes.count``. Only the typed
op stream is decoded (with msgspec), because coalesced ops carry several tokens each.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import msgspec

_READ = 1 << 16


class Counter(Protocol):
    done: bool

    def feed(self, data: bytes) -> int:
        """Consume body bytes; return how many tokens they completed."""
        ...


class _EventBuffer:
    """Keeps the bytes after the last complete SSE event for the next read."""

    __slots__ = ("carry", "done")

    def __init__(self) -> None:
        self.carry = b""
        self.done = False  # the stream's end was seen

    def complete(self, data: bytes) -> bytes:
        if self.carry:
            data = self.carry + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.carry = data
            return b""
        self.carry = data[cut + 2 :]
        return data[: cut + 2]


class OpenAICounter(_EventBuffer):
    """OpenAI chat-completion chunks: one token per non-empty ``content`` delta."""

    __slots__ = ()

    def feed(self, data: bytes) -> int:
        events = self.complete(data)
        if not events:
            return 0
        if b"data: [DONE]" in events:
            self.done = True
        # Compact JSON from every subject here; tolerate one space after the colon as well.
        filled = events.count(b'"content":"') + events.count(b'"content": "')
        empty = events.count(b'"content":""') + events.count(b'"content": ""')
        return filled - empty


class EventCounter(_EventBuffer):
    """One token per ``data: {`` event (the whole-answer-per-event relay)."""

    __slots__ = ()

    def feed(self, data: bytes) -> int:
        events = self.complete(data)
        if b"data: [DONE]" in events:
            self.done = True
        return events.count(b"data: {")


class _Op(msgspec.Struct):
    type: str
    text: str = ""
    status: str | None = None


_decode_op = msgspec.json.Decoder(_Op).decode


class TypedCounter(_EventBuffer):
    """tokenwire ops. Delta text is mapped back to tokens with the answer's known token sizes."""

    __slots__ = ("chars", "cum", "status", "tokens")

    def __init__(self, cum: Sequence[int]) -> None:
        super().__init__()
        self.cum = cum  # cum[i]: characters in the first i+1 tokens of the answer
        self.chars = 0
        self.tokens = 0
        self.status: str | None = None

    def feed(self, data: bytes) -> int:
        events = self.complete(data)
        if not events:
            return 0
        for event in events.split(b"\n\n"):
            start = event.find(b"data:")
            if start < 0:
                continue
            op = _decode_op(event[start + 5 :])  # JSON ignores a space after the colon
            if op.type == "block.delta":
                self.chars += len(op.text)
            elif op.type == "message.end":
                self.done = True
                self.status = op.status
        tokens = bisect.bisect_right(self.cum, self.chars)
        added, self.tokens = tokens - self.tokens, tokens
        return added


@dataclass(slots=True)
class Result:
    status: int = 0
    tokens: int = 0
    body_bytes: int = 0
    started: float = 0.0
    first: float | None = None  # arrival of the first token
    times: list[float] | None = None  # arrival of every token (when recorded)
    done: bool = False
    error: str | None = None
    extra: dict[str, object] = field(default_factory=dict)


async def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    *,
    counter: Counter | None = None,
    result: Result | None = None,
    record_times: bool = False,
    headers: Sequence[tuple[str, str]] = (),
) -> tuple[Result, bytes]:
    """Send one request; feed the body to ``counter`` as it arrives (else return the body).

    ``result`` may be passed in so a caller that cancels this coroutine still sees the
    partial counts.
    """
    res = result or Result()
    if not res.started:
        res.started = time.perf_counter()
    if record_times:
        res.times = []
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    kept: list[bytes] = []
    try:
        head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
        head += [f"{k}: {v}" for k, v in headers]
        if body is not None:
            head += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + (body or b""))
        raw = await reader.readuntil(b"\r\n\r\n")
        res.status = int(raw[9:12])
        lowered = raw.lower()
        clock = time.perf_counter

        def take(data: bytes) -> None:
            res.body_bytes += len(data)
            if counter is None:
                kept.append(data)
                return
            n = counter.feed(data)
            if n:
                now = clock()
                if res.first is None:
                    res.first = now
                res.tokens += n
                if res.times is not None:
                    res.times.extend([now] * n)

        if b"transfer-encoding: chunked" in lowered:
            while True:
                line = await reader.readline()
                size = int(line.split(b";", 1)[0], 16)
                if size == 0:
                    break
                take((await reader.readexactly(size + 2))[:-2])
        else:
            marker = lowered.find(b"content-length:")
            remaining = -1
            if marker >= 0:
                remaining = int(lowered[marker + 15 : lowered.find(b"\r\n", marker)])
            while remaining:
                data = await reader.read(_READ if remaining < 0 else min(_READ, remaining))
                if not data:
                    break
                take(data)
                if remaining > 0:
                    remaining -= len(data)
        res.done = counter.done if counter is not None else True
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        res.error = f"{type(exc).__name__}: {exc}"
    finally:
        writer.transport.abort()
    return res, b"".join(kept)


async def post_json(port: int, path: str, data: object) -> tuple[int, object]:
    res, body = await request(port, "POST", path, msgspec.json.encode(data))
    if res.error:
        raise ConnectionError(res.error)
    return res.status, (msgspec.json.decode(body) if body else None)


async def get_json(port: int, path: str) -> tuple[int, object]:
    res, body = await request(port, "GET", path)
    if res.error:
        raise ConnectionError(res.error)
    return res.status, (msgspec.json.decode(body) if body else None)
