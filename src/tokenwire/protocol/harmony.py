"""Split gpt-oss "harmony" markup out of chat-completion ``content``.

A server that runs gpt-oss without a reasoning parser (llama.cpp, some vLLM setups) passes the
model's raw output through: ``<|channel|>analysis<|message|>…<|end|><|start|>assistant
<|channel|>final<|message|>…<|return|>``. Each message has a header (role, ``<|channel|>`` name,
an optional recipient ``to=functions.x`` and ``<|constrain|>json``) ended by ``<|message|>``,
then a body ended by ``<|end|>``, ``<|return|>`` or ``<|call|>``.

The splitter turns the bodies into pieces: ``analysis`` -> reasoning; ``final`` (and
``commentary`` without a recipient, the model's preamble) -> text; a message with a recipient
-> a tool call (``("tool_call", name)`` then ``("arguments", text)`` pieces). Markup may arrive
split at any point: a trailing fragment that could still be a token is held back, never more
than ``MAX_TOKEN`` characters, and a header longer than ``MAX_HEADER`` is not a header after all
(it is passed on as text). Work per piece is linear in its length.
"""

from __future__ import annotations

import re

START = "<|start|>"
CHANNEL = "<|channel|>"
MESSAGE = "<|message|>"
ENDS = ("<|end|>", "<|return|>", "<|call|>")
OPENERS = (START, CHANNEL)
MAX_TOKEN = 16  # longer than any harmony token: "<|" without "|>" this soon is text
MAX_HEADER = 512

_RECIPIENT = re.compile(r"to=([^\s<]+)")
_TOKEN_NAME = re.compile(r"[a-z_]+")  # what is between "<|" and "|>" in a harmony token
_TOKEN_PREFIX = re.compile(r"[a-z_]*\|?")  # what may still become one
_BETWEEN, _HEADER, _BODY = 0, 1, 2


def starts_harmony(text: str) -> bool | None:
    """True if ``text`` (the first content) opens with harmony markup, ``None`` if it might
    (a prefix of a start token: wait for more), False if it does not."""
    head = text.lstrip()
    if not head:
        return None  # (only whitespace so far: markup may still follow it)
    for token in OPENERS:
        if head.startswith(token):
            return True
        if token.startswith(head):
            return None
    return False


class HarmonySplitter:
    """Feed content text; get ``(kind, text)`` pieces: ``"text"``, ``"reasoning"``,
    ``"tool_call"`` (text: the function name) and ``"arguments"`` (for the last tool_call)."""

    __slots__ = ("_header", "_held", "_kind", "_state", "called", "idle")

    def __init__(self) -> None:
        self._state = _BETWEEN
        self._kind = "text"  # kind of the open body
        self._header = ""
        self._held = ""
        self.idle = False  # plain text (no "<") passes as text as it is
        # The last message was a tool call ended by <|call|>: the model waits for its result
        # (servers without a harmony parser still say finish_reason "stop").
        self.called = False

    def feed(self, text: str) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        buf = self._held + text if self._held else text
        self._held = ""
        while buf:
            state = self._state
            if state == _BODY:
                # Scan by position: slicing after every "<|" would make hostile input quadratic.
                pos = 0
                size = len(buf)
                rest = ""
                while True:
                    at = buf.find("<|", pos)
                    if at < 0:
                        if buf[-1] == "<":  # maybe the start of "<|"
                            self._emit(out, buf[pos:-1])
                            self._held = "<"
                        else:
                            self._emit(out, buf[pos:])
                        break
                    end = buf.find("|>", at + 2, at + MAX_TOKEN)
                    if end >= 0 and not _TOKEN_NAME.fullmatch(buf, at + 2, end):
                        # ("<| x<|end|>": that "|>" ends the next token; this "<|" is text)
                        self._emit(out, buf[pos : at + 2])
                        pos = at + 2
                        continue
                    if end < 0:
                        if size - at < MAX_TOKEN and _TOKEN_PREFIX.fullmatch(buf, at + 2):
                            self._emit(out, buf[pos:at])
                            self._held = buf[at:]  # an unfinished token: wait for more
                            break
                        pos_text = at + 2  # too long for a token: "<|" is text
                        self._emit(out, buf[pos:pos_text])
                        pos = pos_text
                        continue
                    token = buf[at : end + 2]
                    if token in ENDS or token in OPENERS:
                        self._emit(out, buf[pos:at])
                        rest = buf[end + 2 :]
                        if token in ENDS:
                            self._state = _BETWEEN
                            self.called = token == "<|call|>" and self._kind == "arguments"
                        else:  # a new message without an end token
                            self._state = _HEADER
                            self._header = token if token == CHANNEL else ""
                        break
                    # Some other token inside a body: keep it as body text.
                    self._emit(out, buf[pos : end + 2])
                    pos = end + 2
                buf = rest
            elif state == _HEADER:
                header = self._header + buf
                at = header.find(MESSAGE)
                # A header is whole within MAX_HEADER characters, however it was split.
                if at < 0 or at + len(MESSAGE) > MAX_HEADER:
                    if at >= 0 or len(header) >= MAX_HEADER:  # not a header after all
                        self._open_body(out, None)
                        if header.startswith(CHANNEL):  # its opener is text now (scanning
                            self._emit(out, CHANNEL)  # it again would open it again)
                            header = header[len(CHANNEL) :]
                        buf = header
                        continue
                    self._header = header
                    break
                buf = header[at + len(MESSAGE) :]
                self._header = ""
                self._open_body(out, header[:at])
            else:  # between messages
                head = buf.lstrip()
                if not head:
                    break
                for token in OPENERS:
                    if head.startswith(token):
                        self._state = _HEADER
                        self._header = token if token == CHANNEL else ""
                        buf = head[len(token) :]
                        break
                else:
                    if any(token.startswith(head) for token in OPENERS):
                        self._held = head
                        break
                    # Text outside any message: show it as text.
                    self._state = _BODY
                    self._kind = "text"
                    buf = head
        self.idle = self._state == _BODY and self._kind == "text" and not self._held
        return _merge(out)

    def flush(self) -> list[tuple[str, str]]:
        """End of content: a held fragment was not markup; an unfinished header is dropped."""
        out: list[tuple[str, str]] = []
        held, self._held = self._held, ""
        if held and self._state == _BODY:
            self._emit(out, held)
        self._header = ""
        self.idle = self._state == _BODY and self._kind == "text"
        return out

    def _open_body(self, out: list[tuple[str, str]], header: str | None) -> None:
        self._state = _BODY
        self.called = False
        if header is None:
            self._kind = "text"
            return
        match = _RECIPIENT.search(header)
        channel = ""
        at = header.find(CHANNEL)
        if at >= 0:
            rest = header[at + len(CHANNEL) :].split("<|", 1)[0].split()
            channel = rest[0] if rest else ""
        if match is not None:
            name = match.group(1)
            if name.startswith("functions."):
                name = name[len("functions.") :]
            self._kind = "arguments"
            out.append(("tool_call", name))
        elif channel == "analysis":
            self._kind = "reasoning"
        else:
            self._kind = "text"

    def _emit(self, out: list[tuple[str, str]], text: str) -> None:
        if not text:
            return
        out.append((self._kind, text))


def _merge(out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One piece per run of a kind (joined once: appending piece by piece is quadratic)."""
    if len(out) < 2:
        return out
    merged: list[tuple[str, str]] = []
    run: list[str] = []
    kind = out[0][0]
    for piece_kind, text in out:
        if run and (piece_kind != kind or piece_kind == "tool_call"):
            merged.append((kind, "".join(run)))
            run = []
            kind = piece_kind
        run.append(text)
    merged.append((kind, "".join(run)))
    return merged
