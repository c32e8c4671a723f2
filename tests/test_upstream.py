"""The upstream HTTP/1.1 client against scripted servers on real 127.0.0.1 sockets."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from conftest import free_port

from tokenwire import timeouts
from tokenwire.gateway.upstream import UpstreamBroken, UpstreamClient, UpstreamUnavailable

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]


class Scripted:
    """A TCP server running ``handler(reader, writer, n)`` for its n-th connection."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.closed = asyncio.Event()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self.closed.set()

    async def read_request(self, reader: asyncio.StreamReader) -> bytes:
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        request = head + await reader.readexactly(length)
        self.requests.append(request)
        return request


def reply_and_hold(data: bytes, hold_s: float) -> Handler:
    """A handler that reads the request, writes ``data``, then keeps the connection open."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(data)
        await writer.drain()
        await asyncio.sleep(hold_s)

    return handler


@contextlib.asynccontextmanager
async def scripted(handler: Handler) -> AsyncIterator[tuple[Scripted, str]]:
    server = Scripted(handler)
    tcp = await asyncio.start_server(server._serve, "127.0.0.1", 0)
    port = tcp.sockets[0].getsockname()[1]
    try:
        yield server, f"http://127.0.0.1:{port}/v1"
    finally:
        tcp.close()


def client(url: str, **options: float) -> UpstreamClient:
    return UpstreamClient(url, retries=int(options.pop("retries", 0)), backoff_s=0.01, **options)  # type: ignore[arg-type]


async def read_all(up: UpstreamClient, path: str = "chat/completions") -> tuple[int, bytes]:
    async with up.request("POST", path, content=b"{}") as response:
        return response.status_code, await response.aread()


async def test_chunked_body_in_awkward_pieces_and_request_head() -> None:
    pieces = [
        b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r",
        b"\n\r\n5\r\nda",
        b"ta:\r\n",
        b"3\r\n \xc3\xa9\r\n0\r",
        b"\n\r\n",
    ]

    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(0.01)
        await reader.read()  # keep-alive: the client holds the connection

    async with scripted(handler) as (server, url):
        up = UpstreamClient(url, api_key="sk-up")
        headers = {"Content-Type": "application/json"}
        async with up.request("POST", "chat/completions", content=b'{"a":1}', headers=headers) as r:
            assert (r.status_code, r.reason_phrase) == (200, "OK")
            assert r.headers.get("content-type") == "text/event-stream"
            assert "CONTENT-TYPE" in r.headers and "x-missing" not in r.headers
            body = b"".join([chunk async for chunk in r.aiter_raw()])
        await up.aclose()
    assert body == "data: é".encode()
    head = server.requests[0]
    assert head.startswith(b"POST /v1/chat/completions HTTP/1.1\r\n")
    for line in (
        b"Content-Length: 7",
        b"Authorization: Bearer sk-up",
        b"Accept-Encoding: identity",
    ):
        assert line in head
    assert head.endswith(b'\r\n\r\n{"a":1}')


async def test_keep_alive_reuses_one_connection() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with scripted(handler) as (server, url):
        up = client(url)
        results = [await read_all(up) for _ in range(3)]
        await up.aclose()
    assert results == [(200, b"ok")] * 3
    assert server.connections == 1


async def test_body_until_close() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nfirst ")
        await writer.drain()
        await asyncio.sleep(0.02)
        writer.write(b"second")

    async with scripted(handler) as (server, url):
        assert await read_all(client(url)) == (200, b"first second")


async def test_stale_pooled_connection_is_replaced_without_a_retry() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n" + str(n).encode())
        # ... and the server closes the keep-alive connection while it sits in the pool

    async with scripted(handler) as (server, url):
        up = client(url, retries=0)
        assert await read_all(up) == (200, b"1")
        await asyncio.wait_for(server.closed.wait(), 5)
        await asyncio.sleep(0.05)
        assert await read_all(up) == (200, b"2")  # no UpstreamUnavailable: nothing was seen
        await up.aclose()


async def test_connection_cut_mid_body_is_broken() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with scripted(reply_and_hold(head + b"4\r\npart\r\n", 0.05)) as (_, url):
        got = []
        with pytest.raises(UpstreamBroken, match="mid-response"):
            async with client(url).request("POST", "x", content=b"") as response:
                async for chunk in response.aiter_raw():
                    got.append(chunk)
    assert got == [b"part"]  # what arrived before the cut is delivered first


@pytest.mark.parametrize("coarse", [False, True], ids=["exact-timer", "coarse-timeout"])
async def test_silent_upstream_hits_the_read_timeout(
    coarse: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if coarse:  # (as with the default 300 s read timeout, in a test's time)
        monkeypatch.setattr(timeouts, "EXACT_BELOW_S", 0.0)
        monkeypatch.setattr(timeouts, "RESOLUTION_S", 0.05)
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with scripted(reply_and_hold(head, 5)) as (_, url):
        with pytest.raises(UpstreamBroken, match="no data from the upstream"):
            async with client(url, read_timeout_s=0.2).request("GET", "models") as response:
                await response.aread()


async def test_unreachable_and_invalid_upstreams_are_unavailable_after_retries() -> None:
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        await read_all(client(f"http://127.0.0.1:{free_port()}/v1", retries=1))

    async with scripted(reply_and_hold(b"SMTP ready\r\n\r\n", 1)) as (server, url):
        with pytest.raises(UpstreamUnavailable, match="invalid HTTP"):
            await read_all(client(url, retries=2))
    assert server.connections == 3  # the first try plus two retries


async def test_503_is_retried_and_the_last_answer_returned() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        status = b"503 Service Unavailable" if n < 3 else b"200 OK"
        writer.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: 1\r\n\r\n" + str(n).encode())
        await writer.drain()
        await reader.read()

    async with scripted(handler) as (server, url):
        assert await read_all(client(url, retries=2)) == (200, b"3")
    async with scripted(handler) as (server, url):
        assert await read_all(client(url, retries=1)) == (503, b"2")


async def test_leaving_early_closes_the_connection() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while True:  # an endless stream, until the client goes away
            writer.write(b"2\r\nab\r\n")
            await writer.drain()
            await asyncio.sleep(0.01)

    async with scripted(handler) as (server, url):
        up = client(url)
        async with up.request("POST", "x", content=b"") as response:
            async for _ in response.aiter_raw():
                break
        await asyncio.wait_for(server.closed.wait(), 5)  # the upstream saw the abort
        assert up._idle == []


async def test_slow_consumer_pauses_reading() -> None:
    block = b"x" * 65536
    total = 64

    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(block) * total))
        for _ in range(total):
            writer.write(block)
            await writer.drain()

    async with scripted(handler) as (server, url), client(url).request("GET", "big") as response:
        conn = response._conn
        size = 0
        async for chunk in response.aiter_raw():
            size += len(chunk)
            if size < 1 << 20:
                await asyncio.sleep(0.05)  # fall behind: the client must stop reading
                assert conn.buffered <= 2 * 256 * 1024
    assert size == len(block) * total


def test_header_injection_is_refused() -> None:
    up = UpstreamClient("http://127.0.0.1:1/v1")
    with pytest.raises(ValueError, match="invalid header"):
        up.request("POST", "x", content=b"", headers={"Accept": "a\r\nX-Evil: 1"})
    with pytest.raises(ValueError, match="http:// or https://"):
        UpstreamClient("ftp://127.0.0.1/v1")


# -- regressions from review: each of these failed before its fix ------------------------------
async def test_interim_1xx_answers_are_skipped_and_nothing_leaks_into_the_next_request() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        while True:
            request = await server.read_request(reader)
            name = request.rsplit(b"\r\n\r\n", 1)[1]
            writer.write(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(name), name))
            await writer.drain()

    async with scripted(handler) as (server, url):
        up = client(url)
        for name in (b"A", b"B"):
            async with up.request("POST", "x", content=name) as response:
                assert response.status_code == 200 and "link" not in response.headers
                assert await response.aread() == name
        await up.aclose()


async def test_bytes_after_the_response_make_the_connection_unusable() -> None:
    extra = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale"
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + extra
    async with scripted(reply_and_hold(reply, 1)) as (_, url):
        up = client(url)
        assert await read_all(up) == (200, b"ok")
        assert up._idle == []  # not pooled: the next request would read "stale"


async def test_endless_response_head_is_refused() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        for i in range(100_000):
            writer.write(b"X-Filler-%d: %s\r\n" % (i, b"y" * 64))
            await writer.drain()

    async with scripted(handler) as (server, url):
        with pytest.raises(UpstreamUnavailable, match="response head is over"):
            await read_all(client(url))


async def test_reset_during_a_body_delimited_by_close_is_broken() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"trunc')
        await writer.drain()
        await asyncio.sleep(0.05)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST, not FIN: the body did not end

    async with scripted(handler) as (server, url):
        with pytest.raises(UpstreamBroken, match="mid-response"):
            await read_all(client(url))


async def test_a_request_that_kills_pooled_connections_is_replayed_once_at_most() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        while True:
            request = await server.read_request(reader)
            if request.endswith(b"poison"):
                return  # the upstream dies on it: closes without answering
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with scripted(handler) as (server, url):
        up = client(url, retries=0)
        await asyncio.gather(*(read_all(up) for _ in range(6)))
        assert len(up._idle) == 6
        with pytest.raises(UpstreamUnavailable):
            async with up.request("POST", "x", content=b"poison"):
                pass
    assert sum(r.endswith(b"poison") for r in server.requests) == 2  # pooled, then one fresh


def test_api_key_is_checked_for_control_characters() -> None:
    with pytest.raises(ValueError, match="control characters"):
        UpstreamClient("http://127.0.0.1:1/v1", api_key="sk-1\r\nX-Injected: 1")
    up = UpstreamClient("http://127.0.0.1:1/v1", api_key="sk-from-a-file\n")
    assert b"Authorization: Bearer sk-from-a-file\r\n" in up._common_head


async def test_headers_can_be_left_unkept_without_changing_the_framing() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nX-Big: " + b"h" * 500 + b"\r\n")
            writer.write(b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n")
            await writer.drain()

    async with scripted(handler) as (server, url):
        up = client(url)
        for _ in range(2):
            async with up.request("POST", "x", content=b"", keep_headers=False) as response:
                assert response.headers.raw == [] and response.status_code == 200
                assert await response.aread() == b"ok"
        await up.aclose()
    assert server.connections == 1  # chunked framing still seen: the connection was reused
