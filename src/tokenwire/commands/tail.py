"""Render a live stream in the terminal: follow an existing stream by ID, or start one with
--prompt. Blocks are styled by type (reasoning, text, tool calls and results, refusals, files,
sources, app data; steps separated; live transient data below them). The
stream is resumed automatically if the connection drops; Ctrl-C stops following (it does not
cancel the generation)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from tokenwire.cli import finite_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("stream_id", nargs="?", metavar="ID", help="stream to follow")
    parser.add_argument("--prompt", metavar="TEXT", help="start a new stream with this prompt")
    parser.add_argument("--model", default="mock", help="model for --prompt (default mock)")
    parser.add_argument(
        "--url",
        default=os.environ.get("TOKENWIRE_URL", "http://127.0.0.1:8787"),
        help="gateway URL (default $TOKENWIRE_URL or http://127.0.0.1:8787)",
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("TOKENWIRE_API_KEY"),
        help="gateway API key (default $TOKENWIRE_API_KEY)",
    )
    parser.add_argument(
        "--coalesce-ms", type=finite_float, default=None, help="coalescing window for --prompt"
    )


def render(message: Any, transients: dict[str, Any] | None = None) -> Any:
    """A rich renderable of the message so far: one part per block (steps separated by a
    rule), then the live transient values (not part of the message) and a status line."""
    from rich.console import Group
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.rule import Rule
    from rich.text import Text

    from tokenwire.protocol.render import Citations, data_text

    parts: list[Any] = []
    cites = Citations(message.blocks)
    step = message.blocks[0].step if message.blocks else 0
    for index, block in enumerate(message.blocks):
        if block.step > step:
            parts.append(Rule(f"step {block.step}", style="dim"))
        step = block.step
        label = f" (choice {block.choice})" if block.choice else ""
        kind = block.type
        if kind == "reasoning":
            note = ""
            if block.attrs.get("redacted"):
                note = " (redacted)"
            elif block.attrs.get("encrypted") and not block.text:
                note = " (encrypted)"
            parts.append(
                Panel(
                    Text(block.text, style="italic dim"),
                    title=f"reasoning{label}{note}",
                    title_align="left",
                    border_style="dim",
                )
            )
        elif kind == "text":
            text = _numbered(cites, index, block.text)
            parts.append(Markdown(text) if text else Text(""))
        elif kind == "tool_result":
            error = bool(block.attrs.get("error"))
            name = block.attrs.get("name") or "?"
            parts.append(
                Panel(
                    Text(block.text, style="red" if error else "green"),
                    title=f"{'tool error' if error else 'tool result'} {name}{label}",
                    subtitle=block.attrs.get("call_id") or None,
                    title_align="left",
                    border_style="red" if error else "green",
                )
            )
        elif kind == "file":
            url = str(block.attrs.get("url") or "")
            name = block.attrs.get("name") or "file"
            media = block.attrs.get("media_type") or ""
            parts.append(Text(f"[file] {name} ({media}) {url[:80]}", style="magenta"))
        elif kind == "data":
            value = data_text(block.attrs.get("value"))
            parts.append(Text(f"● {block.attrs.get('name')}: {value}", style="yellow"))
        elif kind == "tool_call":
            name = block.attrs.get("name") or "?"
            parts.append(
                Panel(
                    Text(block.text, style="cyan"),
                    title=f"tool call {name}{label}",
                    subtitle=block.attrs.get("id") or None,
                    title_align="left",
                    border_style="cyan",
                )
            )
        elif kind == "refusal":
            parts.append(Text(f"refusal: {block.text}", style="bold red"))
        elif kind == "image":
            url = str(block.attrs.get("url") or "")
            parts.append(Text(f"[image] {url[:80]}", style="magenta"))
        elif kind == "source":
            title = block.attrs.get("title") or block.attrs.get("url")
            number = cites.numbers.get(index)
            mark = f"[{number}] " if number is not None else ""
            line = f"[source] {mark}{title} <{block.attrs.get('url')}>"
            parts.append(Text(line, style="blue"))
        else:
            parts.append(Text(f"[{kind}] {block.text}"))
    for name, value in (transients or {}).items():
        if not message.done:  # live data: only while the answer is being written
            parts.append(Text(f"… {name}: {data_text(value)}", style="dim yellow"))
    parts.append(_status_line(message))
    return Group(*parts)


def _numbered(cites: Any, index: int, text: str) -> str:
    """``text`` with ``[n]`` after each span that source ``n`` cites (a terminal shows no link
    targets: the numbers pair the spans with the numbered source lines below)."""
    spans = sorted(cites.by_block.get(index, ()), key=lambda s: (s[1], s[2]), reverse=True)
    last = len(text)
    for start, end, number in spans:
        if 0 <= start < end <= last:
            text = f"{text[:end]} \\[{number}\\]{text[end:]}"
            last = start  # (overlapping spans: only the last one is marked)
    return text


def _status_line(message: Any) -> Any:
    from rich.text import Text

    styles = {"completed": "green", "cancelled": "yellow", "failed": "bold red"}
    line = Text("● ", style=styles.get(message.status, "blue"))
    line.append(message.status, style=styles.get(message.status, "blue"))
    if message.finish_reason:
        line.append(f"  finish_reason={message.finish_reason}", style="dim")
    if message.usage:
        total = message.usage.get("total_tokens")
        if total is not None:
            line.append(f"  tokens={total}", style="dim")
    if message.error:
        line.append(f"  {message.error.get('message')}", style="red")
    return line


def run(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.live import Live

    from tokenwire.cli import CommandError
    from tokenwire.client import Client, GatewayError, GatewayUnreachable

    if bool(args.stream_id) == bool(args.prompt):
        raise CommandError("give either a stream ID or --prompt TEXT")
    console = Console()
    with Client(args.url, api_key=args.api_key) as client:
        try:
            if args.prompt:
                stream = client.create(
                    [{"role": "user", "content": args.prompt}],
                    model=args.model,
                    coalesce_ms=args.coalesce_ms,
                )
            else:
                client.get(args.stream_id)  # fail fast on an unknown ID
                stream = client.stream(args.stream_id)
            console.print(f"[dim]stream {stream.id}[/dim]")
            with Live(render(stream.message), console=console, refresh_per_second=12) as live:
                try:
                    for _ in stream:
                        live.update(render(stream.message, stream.transients))
                except KeyboardInterrupt:
                    live.update(render(stream.message, stream.transients))
                    live.stop()
                    console.print(f"[yellow]stopped following; stream {stream.id} goes on[/]")
                    return 130
                live.update(render(stream.message))
        except GatewayError as exc:
            raise CommandError(str(exc)) from None
        except GatewayUnreachable as exc:
            raise CommandError(str(exc)) from None
        except ConnectionError as exc:
            raise CommandError(f"cannot reach the gateway at {args.url}: {exc}") from None
    return 1 if stream.message.status == "failed" else 0
