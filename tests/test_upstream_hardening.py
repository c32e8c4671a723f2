"""Issue 12, item 9: the upstream client (HEAD, the base URL's query, TLS with a CA of one's
own, idle pooled connections expire, a response-head timeout, a cap on whole bodies)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
import time
from pathlib import Path

import pytest
from test_upstream import client, read_all, reply_and_hold, scripted

from tokenwire.gateway.upstream import UpstreamBroken, UpstreamClient, UpstreamTooLarge


async def test_head_does_not_wait_for_the_body_its_content_length_announces() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n")
            await writer.drain()

    async with scripted(handler) as (server, url):
        up = client(url, read_timeout_s=5.0)
        start = time.monotonic()
        for _ in range(2):  # and the connection is reusable after it
            async with up.request("HEAD", "models") as response:
                assert response.status_code == 200
                assert await response.aread() == b""
        assert time.monotonic() - start < 1.0
        await up.aclose()
    assert server.connections == 1


async def test_the_base_urls_query_string_is_kept() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    async with scripted(handler) as (server, url):
        base = url.replace("/v1", "/openai/deployments/gpt?api-version=2024-10-21")
        up = client(base)
        assert await read_all(up, "chat/completions") == (200, b"ok")
        assert "api-version" not in up.base_url  # (error messages do not repeat the query)
        await up.aclose()
    assert server.requests[0].startswith(
        b"POST /openai/deployments/gpt/chat/completions?api-version=2024-10-21 HTTP/1.1\r\n"
    )


async def test_idle_pooled_connections_expire() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        while True:
            await server.read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    async with scripted(handler) as (server, url):
        up = client(url, idle_timeout_s=0.2)
        await read_all(up)
        assert len(up._idle) == 1
        await asyncio.wait_for(server.closed.wait(), 2.0)  # the client closed it by itself
        assert up._idle == []
        await read_all(up)
        await up.aclose()
    assert server.connections == 2


async def test_a_silent_upstream_hits_the_head_timeout_not_the_read_timeout() -> None:
    async with scripted(reply_and_hold(b"", 10)) as (server, url):
        up = client(url, head_timeout_s=0.2, read_timeout_s=60.0, retries=1)
        start = time.monotonic()
        with pytest.raises(Exception, match="response head"):
            await read_all(up)
        assert time.monotonic() - start < 3.0
        assert server.connections == 2  # retried once, each at the head timeout


async def test_the_read_timeout_still_applies_after_the_head() -> None:
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with scripted(reply_and_hold(head, 5)) as (_, url):
        up = client(url, head_timeout_s=5.0, read_timeout_s=0.2)
        with pytest.raises(UpstreamBroken, match=r"waiting for the response$"):
            await read_all(up)


async def test_aread_is_capped() -> None:
    body = b"x" * 10_000
    reply = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    async with scripted(reply_and_hold(reply, 5)) as (_, url):
        up = client(url, max_body_bytes=4096)
        with pytest.raises(UpstreamTooLarge, match="4096"):
            await read_all(up)
        assert isinstance(UpstreamTooLarge("x"), UpstreamBroken)


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_upstream_with_a_ca_file_and_with_an_ssl_context(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\ntls")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    tcp = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=server_ctx)
    url = f"https://127.0.0.1:{tcp.sockets[0].getsockname()[1]}/v1"
    try:
        # The system trust store does not know the certificate: refused.
        with pytest.raises(Exception, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            await read_all(UpstreamClient(url, retries=0))
        assert await read_all(UpstreamClient(url, retries=0, ca_file=str(cert))) == (200, b"tls")
        ctx = ssl.create_default_context(cafile=str(cert))
        assert await read_all(UpstreamClient(url, retries=0, ssl_context=ctx)) == (200, b"tls")
    finally:
        tcp.close()


async def test_a_request_may_wait_longer_for_its_head_than_the_clients_default() -> None:
    async def handler(reader, writer, n):  # type: ignore[no-untyped-def]
        await server.read_request(reader)
        await asyncio.sleep(0.5)  # a non-streamed completion: the head comes when it is done
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
        await writer.drain()

    async with scripted(handler) as (server, url):
        up = client(url, head_timeout_s=0.1, read_timeout_s=5.0)
        async with up.request("POST", "x", content=b"{}", head_timeout_s=5.0) as response:
            assert await response.aread() == b"ok"
