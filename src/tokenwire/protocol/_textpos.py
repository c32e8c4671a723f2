"""Where the assembler's current text block stands, as the decoders see it.

A citation span is a range of code-point offsets into the choice's current text block. The
assembler appends consecutive text facts to one block and starts a new one after any other
block, so a decoder that cites text tracks the same thing: the length of the block its text
facts are going into. ``text()`` on every text fact, ``other()`` on any fact that starts a
non-text block.
"""

from __future__ import annotations


class TextPosition:
    __slots__ = ("length", "open")

    def __init__(self) -> None:
        self.length = 0  # code points in the current (open, else last) text block
        self.open = False

    def text(self, text: str) -> None:
        if not self.open:
            self.open = True
            self.length = 0
        self.length += len(text)

    def other(self) -> None:
        self.open = False

    def next_start(self) -> int:
        """The offset the next text fact will start at."""
        return self.length if self.open else 0
