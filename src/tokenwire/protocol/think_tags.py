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
        # Scan by position (slicing the rest after every "<" would be quadratic on hostile
        # content such as "<<<<…").
        pos = 0
        size = len(buf)
        while pos < size:
            closing = self._inside
            if closing is None:
                at = buf.find("<", pos)
                if at < 0:
                    self._emit(out, "text", buf[pos:])
                    break
                if at > pos:
                    self._emit(out, "text", buf[pos:at])
                    pos = at
                for opener, closer in self._openers.items():
                    if buf.startswith(opener, pos):
                        self._inside = closer
                        self._lstrip = True
                        pos += len(opener)
                        break
                else:
                    if size - pos <= _longest(self._openers) and any(
                        o.startswith(buf[pos:]) for o in self._openers
                    ):
                        self._held = buf[pos:]  # maybe the start of a tag: wait for more
                        break
                    # Not a tag: the "<" and the text up to the next "<" are text.
                    nxt = buf.find("<", pos + 1)
                    end = size if nxt < 0 else nxt
                    self._emit(out, "text", buf[pos:end])
                    pos = end
            else:
                at = buf.find(closing, pos)
                if at >= 0:
                    self._emit(out, "reasoning", buf[pos:at])
                    self._inside = None
                    self._lstrip = True
                    pos = at + len(closing)
                    continue
                keep = min(_partial_suffix(buf, closing), size - pos)
                self._emit(out, "reasoning", buf[pos : size - keep])
                self._held = buf[size - keep :]
                break
        self.idle = not self._held and self._inside is None and not self._lstrip
        return _merge(out)

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
            out.append((kind, text))
        return out


def _merge(out: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """One piece per run of a kind, not one per "<" (joined once: appending piece by piece
    would be quadratic)."""
    if len(out) < 2:
        return out
    merged: list[tuple[str, str]] = []
    run: list[str] = []
    kind = out[0][0]
    for piece_kind, text in out:
        if piece_kind != kind:
            merged.append((kind, "".join(run)))
            run = []
            kind = piece_kind
        run.append(text)
    merged.append((kind, "".join(run)))
    return merged


@functools.lru_cache(maxsize=64)
def _longest_cached(openers: tuple[str, ...]) -> int:
    return max((len(o) for o in openers), default=0)


def _longest(openers: dict[str, str]) -> int:
    return _longest_cached(tuple(openers))


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of ``tag``."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


@functools.lru_cache(maxsize=64)
def _openers(tags: tuple[str, ...]) -> dict[str, str]:
    return {f"<{tag}>": f"</{tag}>" for tag in tags}
