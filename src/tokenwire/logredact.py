"""Credentials out of log lines: a ``logging.Filter`` for every handler ``tokenwire serve`` uses.

What is redacted (the value becomes ``[REDACTED]``):
- query parameters that carry credentials: ``api_key``, ``api-key``, ``key``, ``token``,
  ``access_token``, ``auth``, ``password``, ``secret``, ``sig``/``signature``, ``code`` — in
  uvicorn's access log line and anywhere else;
- ``Authorization`` / ``Proxy-Authorization`` / ``X-Api-Key`` / ``Api-Key`` / ``Cookie`` /
  ``Set-Cookie`` header values, as text (``Authorization: Bearer …``, what uvicorn's WebSocket
  handshake logs at debug) or as Python tuples and dicts (``(b'authorization', b'…')``);
- any ``Bearer <token>`` and the password in ``scheme://user:password@host`` URLs.

It also drops the traceback record of an exception marked ``logged = True`` (a passthrough
relay cut by its upstream, already reported in one line).

``install()`` adds the filter to the handlers of the root logger and of uvicorn's and
tokenwire's loggers; ``uvicorn_log_config()`` is uvicorn's default logging config with it.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any
from urllib.parse import unquote

REDACTED = "[REDACTED]"

_NAMES = (
    r"api[_-]?key|key|token|access[_-]?token|auth|password|passwd|secret|"
    r"client[_-]?secret|sig|signature|code"
)
_QUERY = re.compile(r"(?i)([?&;](?:" + _NAMES + r")=)[^&;#\s\"']*")
_NAME = re.compile(r"(?i)(?:" + _NAMES + r")")
# A parameter whose name is percent-encoded (``api%5Fkey``): the server decodes names, so it
# authenticates like ``api_key`` and must be redacted like it.
_ENCODED_QUERY = re.compile(r"([?&;])([^=&;#\s\"']*%[0-9A-Fa-f]{2}[^=&;#\s\"']*)=([^&;#\s\"']*)")


def _encoded(match: re.Match[str]) -> str:
    if _NAME.fullmatch(unquote(match[2])):
        return f"{match[1]}{match[2]}={REDACTED}"
    return match[0]


_HEADER = re.compile(
    r"(?i)((?:proxy-)?authorization|x-api-key|api-key|set-cookie|cookie)"
    r"(['\"]?\s*[:=,]\s*b?['\"]?)([^'\"\r\n]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=:-]+")
_URL_PASSWORD = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s/]+@")


def redact_text(text: str) -> str:
    """``text`` with every credential it carries replaced by ``[REDACTED]``."""
    if "=" in text:
        text = _QUERY.sub(r"\1" + REDACTED, text)
        if "%" in text:
            text = _ENCODED_QUERY.sub(_encoded, text)
    lower = text.lower()
    if "auth" in lower or "key" in lower or "cookie" in lower:
        text = _HEADER.sub(lambda m: m[1] + m[2] + REDACTED, text)
    if "bearer" in lower or "basic" in lower:
        text = _BEARER.sub(lambda m: m[1] + " " + REDACTED, text)
    if "@" in text:
        text = _URL_PASSWORD.sub(r"\1" + REDACTED + "@", text)
    return text


def _redact_arg(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes | bytearray):
        return redact_text(bytes(value).decode("latin-1")).encode("latin-1")
    return value


class RedactingFilter(logging.Filter):
    """Rewrites each record so no credential reaches a handler. Never drops a record.

    uvicorn's access formatter reads the request path from ``record.args``: those records keep
    their args (each redacted). Any other record is formatted, redacted as a whole (a header
    name and its value may be separate args) and handed on without args.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and getattr(exc, "logged", False) is True:
            return False  # reported in one line where it was raised: no traceback as well
        try:
            if record.name == "uvicorn.access" and isinstance(record.args, tuple):
                record.args = tuple(_redact_arg(a) for a in record.args)
                return True
            message = record.getMessage()
        except Exception:  # (a broken record: let the handler report it as usual)
            return True
        redacted = redact_text(message)
        if redacted != message or record.args:
            record.msg = redacted
            record.args = None
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        return True


_LOGGERS = ("", "uvicorn", "uvicorn.error", "uvicorn.access", "tokenwire")


def install(names: tuple[str, ...] = _LOGGERS) -> RedactingFilter:
    """Add one :class:`RedactingFilter` to every handler of these loggers (root included)."""
    flt = RedactingFilter()
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(flt)
    return flt


def uvicorn_log_config(level: str = "info") -> dict[str, Any]:
    """uvicorn's default logging config with the filter on its handlers, and tokenwire's own
    loggers (``tokenwire.*``) writing through the same (filtered) handler."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["filters"] = {"redact": {"()": "tokenwire.logredact.RedactingFilter"}}
    for handler in config["handlers"].values():
        handler["filters"] = ["redact"]
    config["loggers"]["tokenwire"] = {
        "handlers": ["default"],
        "level": level.upper(),  # (the --log-level of serve: critical … debug)
        "propagate": False,
    }
    return config
