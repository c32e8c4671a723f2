"""Errors of the Redis hub (re-exported by ``tokenwire.hub.redis``)."""

from __future__ import annotations


class HubUnavailable(RuntimeError):
    """Redis cannot be reached (at start, or right now). The gateway answers 503."""
