"""Render a live stream in the terminal: follow an existing stream by ID, or start one with
--prompt. Blocks are styled by type (reasoning, text, tool calls, refusals, sources). The
stream is resumed automatically if the connection drops; Ctrl-C stops following (it does not
cancel the generation)."""

from __future__ import annotations

import argparse
import os
from typing import Any


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
        "--coalesce-ms", type=float, default=None, help="coalescing window for --prompt"
    )


def render(message: Any) -> Any:
    """A rich renderable of the message so far: one part per block, then a status line."""
    from rich.console import Group
    from rich.markdown import Markdown
    from rich.panel import Panel
    from rich.text import Text

    parts: list[Any] = []
    for block in message.blocks:
        label = f" (choice {block.choice})" if block.choice else ""
        kind = block.type
        if kind == "reasoning":
            parts.append(
                Panel(
                    Text(block.text, style="italic dim"),
                    title=f"reasoning{label}",
                    title_align="left",
                    border_style="dim",
                )
            )
        elif kind == "text":
            parts.append(Markdown(block.text) if block.text else Text(""))
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
            parts.append(Text(f"[source] {title} <{block.attrs.get('url')}>", style="blue"))
        else:
            parts.append(Text(f"[{kind}] {block.text}"))
    parts.append(_status_line(message))
    return Group(*parts)


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
                        live.update(render(stream.message))
                except KeyboardInterrupt:
                    live.update(render(stream.message))
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
