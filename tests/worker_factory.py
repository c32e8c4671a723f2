"""An app factory as ``tokenwire.gateway.app:app_from_env`` is meant to call the worker check
(used by test_store_retention.py's real ``uvicorn --workers`` run)."""

from __future__ import annotations

from tokenwire.gateway import create_app
from tokenwire.gateway.settings import Settings, enforce_worker_setup


def app():  # type: ignore[no-untyped-def]
    settings = Settings.from_env()
    enforce_worker_setup(settings)
    return create_app(settings)
