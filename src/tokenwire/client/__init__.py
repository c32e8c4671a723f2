"""Python clients for the gateway: follow a stream's ops with automatic resume.

>>> with Client("http://127.0.0.1:8787") as client:
...     stream = client.create([{"role": "user", "content": "hi"}], model="mock")
...     for op in stream:           # reconnects and resumes after the last seq by itself
...         ...
...     print(stream.message.text)
"""

from tokenwire.client._state import GatewayError, GatewayUnreachable
from tokenwire.client.aio import AsyncClient, AsyncStream
from tokenwire.client.sync import Client, Stream

__all__ = ["AsyncClient", "AsyncStream", "Client", "GatewayError", "GatewayUnreachable", "Stream"]
