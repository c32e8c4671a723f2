"""Render a message for people: Markdown for terminals and logs."""

from __future__ import annotations

import json
import re
from typing import Any

from tokenwire.protocol.message import Block, Message


class Citations:
    """The sources that cite a span (v1.1), numbered 1, 2, … in message order, grouped by the
    text block they point into."""

    __slots__ = ("by_block", "numbers", "sources")

    def __init__(self, blocks: list[Block]) -> None:
        self.numbers: dict[int, int] = {}  # source block index -> its number
        self.by_block: dict[int, list[tuple[int, int, int]]] = {}  # text index -> spans
        self.sources: list[Block] = []  # in number order
        for index, block in enumerate(blocks):
            span = block.attrs.get("span") if block.type == "source" else None
            if not isinstance(span, dict):
                continue
            start, end, target = span.get("start"), span.get("end"), span.get("block")
            if not (type(start) is int and type(end) is int and type(target) is int):
                continue
            self.sources.append(block)
            number = self.numbers[index] = len(self.sources)
            self.by_block.setdefault(target, []).append((start, end, number))

    def mark(self, index: int, text: str) -> str:
        """``text`` (block ``index``'s) with each cited span as a numbered reference link,
        ``[span][n]``; out-of-range or overlapping spans are left as plain text."""
        spans = self.by_block.get(index)
        if not spans:
            return text
        pieces: list[str] = []
        last = len(text)
        for start, end, number in sorted(spans, reverse=True):
            if not 0 <= start < end <= last:
                continue
            pieces.append(text[end:last])
            pieces.append(f"[{_escape_brackets(text[start:end])}][{number}]")
            last = start
        pieces.append(text[:last])
        return "".join(reversed(pieces))

    def definitions(self) -> str:
        """Markdown reference definitions for the numbers used by ``mark``."""
        lines = []
        for number, block in enumerate(self.sources, 1):
            url = str(block.attrs.get("url") or "")
            title = block.attrs.get("title")
            suffix = f' "{_escape_title(str(title))}"' if title else ""
            lines.append(f"[{number}]: <{url}>{suffix}")
        return "\n".join(lines)


def render_markdown(message: Message) -> str:
    """Reasoning as a quote, tool calls and results as fenced blocks, files and sources as
    links (a source citing a span makes that span a numbered link), app data as status lines,
    steps separated by a rule, text as is."""
    out: list[str] = []
    blocks = message.blocks
    cites = Citations(blocks)
    step = blocks[0].step if blocks else 0
    for index, block in enumerate(blocks):
        if block.step > step:  # a new step (model call / tool round) starts here
            out.append(f"---\n\n*Step {block.step}*")
        step = block.step
        prefix = f"[choice {block.choice}] " if block.choice else ""
        attrs = block.attrs
        if block.type == "text":
            out.append(prefix + cites.mark(index, block.text))
        elif block.type == "reasoning":
            out.append(_reasoning(prefix, block))
        elif block.type == "refusal":
            out.append(f"**{prefix}Refusal:** {block.text}")
        elif block.type == "tool_call":
            name = attrs.get("name") or "tool call"
            call_id = attrs.get("id")
            label = f"`{name}`" + (f" ({call_id})" if call_id else "")
            out.append(f"**{prefix}Tool call** {label}\n\n{_fenced(block.text, 'json')}")
        elif block.type == "tool_result":
            name = attrs.get("name")
            call_id = attrs.get("call_id")
            label = " ".join(x for x in (f"`{name}`" if name else "", f"({call_id})") if x)
            head = "Tool error" if attrs.get("error") else "Tool result"
            out.append(f"**{prefix}{head}** {label}\n\n{_fenced(block.text)}")
        elif block.type == "image":
            out.append(f"{prefix}![image]({_short_url(attrs.get('url') or '')})")
        elif block.type == "file":
            url = str(attrs.get("url") or "")
            name = attrs.get("name") or "file"
            media = attrs.get("media_type")
            out.append(
                f"{prefix}**File:** [{_escape_brackets(str(name))}]({_short_url(url)})"
                + (f" ({media})" if media else "")
            )
        elif block.type == "source":
            url = attrs.get("url") or ""
            title = attrs.get("title") or url
            number = cites.numbers.get(index)
            mark = f"[{number}] " if number is not None else ""
            out.append(f"{prefix}{mark}Source: [{title}]({url})")
        elif block.type == "data":
            out.append(f"{prefix}*{attrs.get('name') or 'data'}:* {data_text(attrs.get('value'))}")
        else:
            out.append(f"{prefix}[{block.type}] {block.text}")
    if cites.sources:
        out.append(cites.definitions())
    if message.status != "completed":
        line = f"*[{message.status}]*"
        if message.error:
            line = f"*[{message.status}: {message.error.get('message')}]*"
        out.append(line)
    return "\n\n".join(out) + "\n"


def data_text(value: Any) -> str:
    """An app data value on one line: strings as they are, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _reasoning(prefix: str, block: Block) -> str:
    note = ""
    if block.attrs.get("redacted"):
        note = " (redacted)"
    elif block.attrs.get("encrypted") and not block.text:
        note = " (encrypted)"
    head = f"> **{prefix}Reasoning**{note}"
    if not block.text:
        return head
    quoted = "\n".join("> " + line if line else ">" for line in block.text.split("\n"))
    return f"{head}\n>\n{quoted}"


def _fenced(text: str, lang: str = "") -> str:
    """``text`` in a code fence: pretty JSON when it parses, else as it is (e.g. arguments
    still streaming); the fence is longer than any backtick run inside."""
    try:
        text = json.dumps(json.loads(text), indent=2, ensure_ascii=False)
        lang = "json"
    except ValueError:
        pass
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{lang}\n{text}\n{fence}"


def _escape_brackets(text: str) -> str:
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


def _escape_title(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def _short_url(url: str) -> str:
    return url if len(url) <= 80 else url[:60] + "…"
