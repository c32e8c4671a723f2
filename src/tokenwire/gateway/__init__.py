"""The gateway: an ASGI app that runs detached generations and serves resumable op streams."""

from tokenwire.gateway.app import Gateway, app_from_env, create_app
from tokenwire.gateway.settings import Settings

__all__ = ["Gateway", "Settings", "app_from_env", "create_app"]
