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
than ``MAX_TOKEN`` characters, and a header whose ``<|message|>`` does not end within
``MAX_HEADER`` characters of its start is not a header after all (it is passed on as text).
Work per piece is linear in its length.
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
_SPACE = re.compile(r"\s*")
_BETWEEN, _HEADER, _BODY = 0, 1, 2


def starts_harmony(text: str) -> bool | None:
    """True if ``text`` (the first content) opens with harmony markup, ``None`` if it might
    (a prefix of a start token: wait for more), False if it does not."""
    head = text.lstrip()
    if len(text) - len(head) > MAX_HEADER:
        # This much whitespace first is not markup, however the content was split (and what
        # is held back until it is decided stays small).
        return False
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
        # One buffer scanned by position: slicing or joining the rest of it at every token
        # or header would make hostile input (thousands of "<|start|>") quadratic.
        out: list[tuple[str, str]] = []
        if self._state == _HEADER:
            buf, self._header = self._header + text, ""
        else:
            buf, self._held = self._held + text, ""
        size = len(buf)
        pos = 0
        head = 0  # where the open header starts (its "<|channel|>", or after "<|start|>")
        while pos < size:
            state = self._state
            if state == _BODY:
                start = pos
                while True:
                    at = buf.find("<|", pos)
                    if at < 0:
                        if buf[-1] == "<":  # maybe the start of "<|"
                            self._emit(out, buf[start:-1])
                            self._held = "<"
                        else:
                            self._emit(out, buf[start:])
                        pos = size
                        break
                    end = buf.find("|>", at + 2, at + MAX_TOKEN)
                    if end >= 0 and not _TOKEN_NAME.fullmatch(buf, at + 2, end):
                        end = -1  # ("<| x<|end|>": that "|>" ends the next token)
                    elif end < 0 and size - at < MAX_TOKEN and _TOKEN_PREFIX.fullmatch(buf, at + 2):
                        self._emit(out, buf[start:at])
                        self._held = buf[at:]  # an unfinished token: wait for more
                        pos = size
                        break
                    if end < 0:  # not a token: "<|" is text
                        pos = at + 2
                        continue
                    token = buf[at : end + 2]
                    if token in ENDS or token in OPENERS:
                        self._emit(out, buf[start:at])
                        pos = end + 2
                        if token in ENDS:
                            self._state = _BETWEEN
                            self.called = token == "<|call|>" and self._kind == "arguments"
                        else:  # a new message without an end token
                            self._state = _HEADER
                            head = at if token == CHANNEL else pos
                        break
                    pos = end + 2  # some other token inside a body: body text
            elif state == _HEADER:
                # A header is whole within MAX_HEADER characters, however it was split.
                at = buf.find(MESSAGE, head, head + MAX_HEADER)
                if at >= 0:
                    self._open_body(out, buf[head:at])
                    pos = at + len(MESSAGE)
                elif size - head < MAX_HEADER:
                    self._header = buf[head:]  # (under MAX_HEADER) wait for more
                    pos = size
                else:  # not a header after all: its text is body text
                    self._open_body(out, None)
                    pos = head
                    if buf.startswith(CHANNEL, head):  # its opener is text now (scanning it
                        self._emit(out, CHANNEL)  # again would open it again)
                        pos += len(CHANNEL)
            else:  # between messages
                at = _SPACE.match(buf, pos).end()  # type: ignore[union-attr]
                if at == size:
                    break
                for token in OPENERS:
                    if buf.startswith(token, at):
                        self._state = _HEADER
                        head = at if token == CHANNEL else at + len(token)
                        pos = head
                        break
                else:
                    if size - at < len(CHANNEL) and any(t.startswith(buf[at:]) for t in OPENERS):
                        self._held = buf[at:]
                        break
                    # Text outside any message: show it as text.
                    self._state = _BODY
                    self._kind = "text"
                    pos = at
        if self._state == _HEADER and pos >= size and not self._header and head < size:
            self._header = buf[head:]  # (a header opened by this piece's last token)
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
