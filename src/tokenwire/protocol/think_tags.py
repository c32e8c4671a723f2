"""Split reasoning wrapped in tags (``<think>…</think>``) out of streamed content.

Tags may arrive split across chunks, so a trailing fragment that could still become a tag is
held back until the next piece decides it. Whitespace right after a tag is dropped (models put
newlines there) so the blocks start clean.
"""

from __future__ import annotations

import functools

DEFAULT_THINK_TAGS: tuple[str, ...] = ("think", "thinking", "reasoning")


class ThinkTagSplitter:
    """Feed content text; get ``(kind, text)`` pieces, kind ``"text"`` or ``"reasoning"``."""

    __slots__ = ("_held", "_inside", "_lstrip", "_openers", "idle")

    def __init__(self, tags: tuple[str, ...] = DEFAULT_THINK_TAGS) -> None:
        self._openers = _openers(tags)  # shared: every stream has a splitter
        self._inside: str | None = None  # the closing tag we wait for
        self._held = ""
        self._lstrip = False
        self.idle = True  # outside any tag, nothing held: text without "<" passes as is

    def feed(self, text: str) -> list[tuple[str, str]]:
        if not self._held and self._inside is None and "<" not in text:
            return self._emit([], "text", text)  # the common case: plain text
        out: list[tuple[str, str]] = []
        buf = self._held + text
        self._held = ""
        while buf:
            closing = self._inside
            if closing is None:
                at = buf.find("<")
                if at < 0:
                    self._emit(out, "text", buf)
                    break
                if at:
                    self._emit(out, "text", buf[:at])
                    buf = buf[at:]
                for opener, closer in self._openers.items():
                    if buf.startswith(opener):
                        self._inside = closer
                        self._lstrip = True
                        buf = buf[len(opener) :]
                        break
                else:
                    if any(o.startswith(buf) for o in self._openers):
                        self._held = buf  # maybe the start of a tag: wait for more
                        break
                    self._emit(out, "text", "<")
                    buf = buf[1:]
            else:
                at = buf.find(closing)
                if at >= 0:
                    self._emit(out, "reasoning", buf[:at])
                    self._inside = None
                    self._lstrip = True
                    buf = buf[at + len(closing) :]
                    continue
                keep = _partial_suffix(buf, closing)
                self._emit(out, "reasoning", buf[: len(buf) - keep])
                self._held = buf[len(buf) - keep :]
                break
        self.idle = not self._held and self._inside is None and not self._lstrip
        return out

    def flush(self) -> list[tuple[str, str]]:
        """End of content: a held fragment was not a tag after all."""
        held, self._held = self._held, ""
        out = self._emit([], "reasoning" if self._inside else "text", held)
        self.idle = self._inside is None and not self._lstrip
        return out

    def _emit(self, out: list[tuple[str, str]], kind: str, text: str) -> list[tuple[str, str]]:
        if self._lstrip:
            text = text.lstrip()
            if text:
                self._lstrip = False
                self.idle = not self._held and self._inside is None
        if text:
            if out and out[-1][0] == kind:
                out[-1] = (kind, out[-1][1] + text)  # one piece per run, not one per "<"
            else:
                out.append((kind, text))
        return out


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


@functools.lru_cache(maxsize=64)
def _openers(tags: tuple[str, ...]) -> dict[str, str]:
    return {f"<{tag}>": f"</{tag}>" for tag in tags}
