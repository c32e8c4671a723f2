"""The gateway: an ASGI app that runs detached generations and serves resumable op streams.

Exports resolve lazily, so importing a submodule (``tokenwire.gateway.errors``, ``.streaming``)
does not build the whole app module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "Gateway": "tokenwire.gateway.service",
    "Settings": "tokenwire.gateway.settings",
    "StreamRequest": "tokenwire.gateway.producer",
    "app_from_env": "tokenwire.gateway.app",
    "create_app": "tokenwire.gateway.app",
}

__all__ = ["Gateway", "Settings", "StreamRequest", "app_from_env", "create_app"]

if TYPE_CHECKING:
    from tokenwire.gateway.app import app_from_env, create_app
    from tokenwire.gateway.producer import StreamRequest
    from tokenwire.gateway.service import Gateway
    from tokenwire.gateway.settings import Settings


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenwire.gateway' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
