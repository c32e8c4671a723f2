"""One error root: every error tokenwire raises on purpose is a ``TokenwireError``."""

from __future__ import annotations

import pytest

from tokenwire import errors
from tokenwire.client import GatewayError
from tokenwire.gateway.errors import ApiError
from tokenwire.gateway.upstream import UpstreamBroken, UpstreamUnavailable
from tokenwire.hub import HubUnavailable, MemoryHub, StreamNotFound
from tokenwire.producer.request import RequestError
from tokenwire.protocol import Pipeline
from tokenwire.protocol.ops import ProtocolError
from tokenwire.protocol.response import NotAChatCompletion


def test_old_import_paths_are_the_typed_errors() -> None:
    assert StreamNotFound is errors.StreamNotFound
    assert HubUnavailable is errors.HubUnavailable
    assert ProtocolError is errors.ProtocolError
    assert UpstreamBroken is errors.UpstreamBroken
    assert UpstreamUnavailable is errors.UpstreamUnavailable
    for cls in (
        GatewayError,
        ApiError,
        RequestError,
        NotAChatCompletion,
        *map(errors.__dict__.get, errors.__all__),
    ):
        assert issubclass(cls, errors.TokenwireError), cls
    # (old base classes kept, so code catching them still works)
    assert issubclass(errors.StreamExists, ValueError)
    assert issubclass(errors.StreamNotFound, LookupError)
    assert Pipeline  # (imported only to show the protocol imports no HTTP stack)


async def test_memory_hub_raises_typed_errors() -> None:
    hub = MemoryHub()
    await hub.create("st_a", owner=None)
    with pytest.raises(errors.StreamExists):
        await hub.create("st_a", owner=None)
    pipe = Pipeline("st_a")
    ops = pipe.feed(b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n')
    ops += pipe.close()
    with pytest.raises(errors.OutOfOrder):
        await hub.append("st_a", ops[1:])
    await hub.append("st_a", ops)
    with pytest.raises(errors.StreamEnded):
        await hub.append("st_a", ops)
    with pytest.raises(errors.BadCursor):
        await hub.subscribe("st_a", 999)
    with pytest.raises(errors.StreamNotFound):
        await hub.subscribe("st_nope", 0)
