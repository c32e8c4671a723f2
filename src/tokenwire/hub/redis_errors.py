"""Errors of the Redis hub (``HubUnavailable`` lives in ``tokenwire.hub.base``; kept here too)."""

from __future__ import annotations

from tokenwire.hub.base import HubUnavailable

__all__ = ["HubUnavailable"]
