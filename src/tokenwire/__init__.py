"""tokenwire: move LLM output from model servers to people with minimal overhead.

The public API is small: the sans-IO core lives in ``tokenwire.protocol``; the gateway app,
the clients and the core's main types are re-exported here. The re-exports are resolved
lazily, so ``import tokenwire.protocol`` never pulls in the HTTP stack.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AsyncClient": "tokenwire.client",
    "Client": "tokenwire.client",
    "GatewayError": "tokenwire.client",
    "Settings": "tokenwire.gateway",
    "create_app": "tokenwire.gateway",
    "EncodedOp": "tokenwire.protocol",
    "Message": "tokenwire.protocol",
    "Pipeline": "tokenwire.protocol",
    "apply_op": "tokenwire.protocol",
    "assemble_response": "tokenwire.protocol",
    "decode_op": "tokenwire.protocol",
    "Streams": "tokenwire.streams",
    "StreamWriter": "tokenwire.streams",
    "PipeResult": "tokenwire.streams",
    "TokenwireError": "tokenwire.errors",
}

__all__ = [
    "AsyncClient",
    "Client",
    "EncodedOp",
    "GatewayError",
    "Message",
    "PipeResult",
    "Pipeline",
    "Settings",
    "StreamWriter",
    "Streams",
    "TokenwireError",
    "__version__",
    "apply_op",
    "assemble_response",
    "create_app",
    "decode_op",
]

if TYPE_CHECKING:
    from tokenwire.client import AsyncClient, Client, GatewayError
    from tokenwire.errors import TokenwireError
    from tokenwire.gateway import Settings, create_app
    from tokenwire.protocol import (
        EncodedOp,
        Message,
        Pipeline,
        apply_op,
        assemble_response,
        decode_op,
    )
    from tokenwire.streams import PipeResult, Streams, StreamWriter


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenwire' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
