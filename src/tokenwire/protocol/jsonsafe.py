"""JSON from untrusted peers: bounded nesting, and repair of text that is not valid UTF-8.

msgspec (and the stdlib ``json``) recurse per nesting level, so a body of ``[[[[…`` a few
thousand deep raises ``RecursionError`` -- not a decode error. Everything that decodes JSON
from outside (upstream chunks, request bodies, WebSocket hellos) goes through a depth bound.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec

DEFAULT_MAX_DEPTH = 64
"""Deepest JSON nesting accepted in a request body or WebSocket hello."""


class JSONTooDeep(ValueError):
    """The JSON nests deeper than allowed. Routes answer 400 ``invalid_json`` (a WebSocket
    hello: the same JSON and close code 4400)."""


class InvalidJSON(ValueError):
    """The bytes are not JSON (or not valid UTF-8). Routes answer 400 ``invalid_json``."""


# A whole string, one bracket, or a quote opening a string never closed (possessive: such a
# string fails the first branch in one linear pass, then matches the last, and the scan stops
# there; matching strings lazily instead retried from each later quote: quadratic).
_TOKENS = re.compile(rb'"(?:[^"\\]++|\\.)*+"|[\[\]{}]|"', re.S)


def json_depth_exceeds(data: bytes, max_depth: int) -> bool:
    """True if ``data`` (JSON text) opens more than ``max_depth`` nested arrays/objects.
    Linear in ``len(data)`` whatever it holds (it runs before the JSON is known to be valid).
    """
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False  # cannot nest deeper than it has brackets: the usual case, in C
    depth = 0
    for match in _TOKENS.finditer(data):
        token = match[0]
        if token == b"[" or token == b"{":
            depth += 1
            if depth > max_depth:
                return True
        elif token == b"]" or token == b"}":
            depth -= 1
        elif token == b'"':
            return False  # a string left open: no bracket after it counts (invalid JSON)
    return False


def decode_json_body(
    data: bytes | str, max_depth: int = DEFAULT_MAX_DEPTH, *, type: Any = Any
) -> Any:
    """Decode a request body or WebSocket hello (text frames are ``str``). Raises
    :class:`JSONTooDeep` or :class:`InvalidJSON` (both ``ValueError``), never
    ``RecursionError``."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    if json_depth_exceeds(data, max_depth):
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels")
    try:
        return msgspec.json.decode(data, type=type)
    except RecursionError:  # (only if max_depth is set above the decoder's own limit)
        raise JSONTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise InvalidJSON(str(exc)) from None


# A \uD800-\uDFFF escape (with the escape of a following low surrogate, if any), not itself
# escaped: an even run of backslashes before it is literal backslashes.
_SURROGATE_ESCAPE = re.compile(
    rb"(?<!\\)((?:\\\\)*)\\u([dD][89a-fA-F][0-9a-fA-F]{2})(\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
)


def _fix_surrogate(match: re.Match[bytes]) -> bytes:
    prefix, first, second = match[1], match[2], match[3]
    if second is not None and first[1:2] in b"89abAB":
        return match[0]  # a proper pair
    return prefix + b"\\ufffd" + (b"\\ufffd" if second is not None else b"")


def repair_utf8(data: bytes | str) -> bytes | None:
    """``data`` with undecodable UTF-8 and lone surrogate escapes (``\\ud800``) replaced by
    U+FFFD, or ``None`` if there was nothing to replace."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    fixed = raw.decode("utf-8", "replace").encode()
    if b"\\u" in fixed:
        fixed = _SURROGATE_ESCAPE.sub(_fix_surrogate, fixed)
    return None if fixed == raw else fixed
