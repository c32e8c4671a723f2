"""Render a message for people: Markdown for terminals and logs."""

from __future__ import annotations

import json

from tokenwire.protocol.message import Message


def render_markdown(message: Message) -> str:
    """Reasoning as a quote, tool calls as fenced JSON, sources as links, text as is."""
    out: list[str] = []
    for block in message.blocks:
        prefix = f"[choice {block.choice}] " if block.choice else ""
        if block.type == "text":
            out.append(prefix + block.text)
        elif block.type == "reasoning":
            quoted = "\n".join("> " + line if line else ">" for line in block.text.split("\n"))
            out.append(f"> **{prefix}Reasoning**\n>\n{quoted}")
        elif block.type == "refusal":
            out.append(f"**{prefix}Refusal:** {block.text}")
        elif block.type == "tool_call":
            name = block.attrs.get("name") or "tool call"
            call_id = block.attrs.get("id")
            args = block.text
            try:
                args = json.dumps(json.loads(args), indent=2, ensure_ascii=False)
            except ValueError:
                pass  # streamed arguments that are not (yet) valid JSON are shown as they are
            label = f"`{name}`" + (f" ({call_id})" if call_id else "")
            out.append(f"**{prefix}Tool call** {label}\n\n```json\n{args}\n```")
        elif block.type == "image":
            out.append(f"{prefix}![image]({_short_url(block.attrs.get('url') or '')})")
        elif block.type == "source":
            url = block.attrs.get("url") or ""
            title = block.attrs.get("title") or url
            out.append(f"{prefix}Source: [{title}]({url})")
        else:
            out.append(f"{prefix}[{block.type}] {block.text}")
    if message.status != "completed":
        line = f"*[{message.status}]*"
        if message.error:
            line = f"*[{message.status}: {message.error.get('message')}]*"
        out.append(line)
    return "\n\n".join(out) + "\n"


def _short_url(url: str) -> str:
    return url if len(url) <= 80 else url[:60] + "…"
