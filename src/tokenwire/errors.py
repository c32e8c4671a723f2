"""Every error tokenwire raises on purpose derives from ``TokenwireError``.

The typed subclasses say what went wrong; many also derive from the builtin their old
counterpart derived from (``LookupError``, ``ValueError``, ``RuntimeError``), so code written
against the older, untyped errors keeps working. This module imports nothing: the sans-IO core
may use it.
"""

from __future__ import annotations


class TokenwireError(Exception):
    """The root of tokenwire's errors: ``except TokenwireError`` catches every one of them."""


# -- streams and hubs ----------------------------------------------------------------------
class StreamNotFound(TokenwireError, LookupError):
    """No such stream: never created, forgotten after retention, or not the caller's."""


class StreamExists(TokenwireError, ValueError):
    """A stream with that id already exists (a caller-chosen ``stream_id`` was taken)."""


class StreamEnded(TokenwireError, ValueError):
    """The stream has already ended: nothing more can be written to it."""


class InvalidArgument(TokenwireError, ValueError):
    """A call's argument cannot be used (a malformed stream id, a value JSON cannot carry, a
    citation span outside its text). Nothing was written."""


class OutOfOrder(TokenwireError, ValueError):
    """Ops appended to a hub did not continue its log's seqs (another producer wrote too)."""


class BadCursor(TokenwireError, ValueError):
    """A resume position (``after``) outside the stream's log."""


class HubUnavailable(TokenwireError, RuntimeError):
    """The hub's backing service (Redis) cannot be reached right now (HTTP: 503)."""


class StoreUnavailable(TokenwireError, RuntimeError):
    """The store's database cannot be reached, even after the store's bounded retries (HTTP:
    503)."""


class StoreConflict(TokenwireError, RuntimeError):
    """A final message was saved for a stream id the store already holds for another owner."""


class NotStarted(TokenwireError, RuntimeError):
    """``Streams`` was used before it was started (its lifespan did not run) or after it closed."""


class Unauthorized(TokenwireError):
    """The caller is not allowed (no / bad credentials, or a bad, expired or foreign read token)."""


class StreamFailed(TokenwireError):
    """Raise from a producer to end its stream ``failed`` with exactly this error object.

    ``StreamWriter.pipe`` raises it for an upstream error (an error event, an HTTP error status,
    a stream cut short); left uncaught it becomes the message's ``error``. ``status`` is the
    upstream's HTTP error status, when it answered with one (kept in the error object, so the
    detached ``POST /v1/chat/completions`` can answer with it, as OpenAI's own API would).
    """

    def __init__(
        self,
        message: str,
        type: str | None = None,
        code: str | int | None = None,
        *,
        status: int | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.type = type
        self.code = code
        self.status = status


class ProtocolError(TokenwireError, ValueError):
    """An op that cannot be applied (wrong index, op after the end, bad JSON)."""


# -- the gateway's own upstream client ------------------------------------------------------
class UpstreamUnavailable(TokenwireError):
    """The upstream could not be reached (after retries)."""


class UpstreamBroken(TokenwireError):
    """The upstream connection failed, timed out or spoke invalid HTTP after it answered."""


__all__ = [
    "BadCursor",
    "HubUnavailable",
    "InvalidArgument",
    "NotStarted",
    "OutOfOrder",
    "ProtocolError",
    "StoreConflict",
    "StoreUnavailable",
    "StreamEnded",
    "StreamExists",
    "StreamFailed",
    "StreamNotFound",
    "TokenwireError",
    "Unauthorized",
    "UpstreamBroken",
    "UpstreamUnavailable",
]
