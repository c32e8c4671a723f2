"""Decode a recorded upstream response and print the canonical message, its ops, or Markdown.
The recording may be an SSE stream or a whole non-streamed JSON body of OpenAI chat
completions, the OpenAI Responses API or the Anthropic Messages API; its format is detected
(--format-in forces it). It may also be a recorded tokenwire stream (an op log): the SSE body of
GET /v1/streams/{id}/events, or one op JSON per line as --format ops prints it — e.g. an agent's
answer built from several model calls, tool results and app data.

Exits 0 whenever the input decoded, even if the upstream reported an error (the message then
has "status": "failed"); exits 2 with a one-line error if the input is not a response of the
format at all."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import msgspec

from tokenwire.cli import CommandError, finite_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="recorded response file, or - for stdin")
    parser.add_argument(
        "--format",
        choices=("message", "ops", "markdown"),
        default="message",
        help="message: canonical JSON (default); ops: one op JSON per line; markdown",
    )
    parser.add_argument(
        "--format-in",
        choices=("auto", "chat", "responses", "anthropic", "ops"),
        default="auto",
        help="the recording's upstream API, or ops for a tokenwire op log (default auto: "
        "detected from the first event or the body's shape)",
    )
    parser.add_argument(
        "--coalesce-ms",
        type=finite_float,
        default=0.0,
        metavar="N",
        help="merge consecutive deltas of a block (a recording has no clock, so with any N > 0 "
        "the first delta of a run goes out alone and the rest of the run is merged)",
    )
    parser.add_argument(
        "--think-tags",
        default=None,
        metavar="TAGS",
        help="comma-separated tag names whose content is reasoning (default: think,thinking,"
        "reasoning; empty string disables)",
    )


def run(args: argparse.Namespace) -> int:
    from tokenwire.protocol import NotAChatCompletion, assemble_response, render_markdown

    data = _read(args.path)
    if args.coalesce_ms < 0:
        raise CommandError("--coalesce-ms must be >= 0")
    tags = None
    if args.think_tags is not None:
        tags = tuple(t.strip() for t in args.think_tags.split(",") if t.strip())
    log = _op_log(data) if args.format_in in ("auto", "ops") else None
    if log is not None:
        ops, message = log
    elif args.format_in == "ops":
        raise CommandError(
            f"{_label(args.path)}: not a tokenwire op log (its first op must be message.start "
            "or snapshot)"
        )
    else:
        try:
            ops, message = assemble_response(
                data, coalesce_ms=args.coalesce_ms, think_tags=tags, format=args.format_in
            )
        except NotAChatCompletion as exc:
            raise CommandError(f"{_label(args.path)}: {exc}") from None
    out = sys.stdout.buffer
    if args.format == "ops":
        out.write(b"".join(op.json + b"\n" for op in ops))
    elif args.format == "markdown":
        out.write(render_markdown(message).encode())
    else:
        out.write(message.to_json() + b"\n")
    out.flush()
    return 0


# Op types no upstream event has: an op log resumed after its start (``?after=N``).
_MID_LOG_OPS = (
    "block.start",
    "block.delta",
    "block.end",
    "block.update",
    "message.end",
    "step.reset",
)


def _op_log(data: bytes) -> tuple[list[Any], Any] | None:
    """A recorded tokenwire stream: its ops (transient ones dropped: they are never part of
    the log) and the message they build; ``None`` when ``data`` is not one. Accepts the SSE of
    ``/events`` (a delta's seq is its event id) and JSON lines (a delta's seq: the previous op's
    + 1, as ``--format ops`` prints them)."""
    from tokenwire.errors import ProtocolError
    from tokenwire.protocol import SSEDecoder, Transient, apply_op, decode_op, encode
    from tokenwire.protocol.message import Message

    body = data.removeprefix(b"\xef\xbb\xbf").lstrip()
    events: list[tuple[bytes, str | None]]
    if body.startswith(b"{"):
        events = [(line, None) for line in body.splitlines() if line.strip()]
    else:
        # The file is in memory already: no event of it can be too big to hold (a long
        # answer's snapshot may pass the upstream limit), so the only bound is its size.
        decoder = SSEDecoder(max_event_bytes=len(body) + 1)
        events = [(e.raw, e.id) for e in [*decoder.feed(body), *decoder.close()] if e.data]
    if not events:
        return None
    try:
        first = msgspec.json.decode(events[0][0])
    except (msgspec.DecodeError, RecursionError):
        return None
    if not isinstance(first, dict):
        return None
    kind = first.get("type")
    if kind in _MID_LOG_OPS:
        raise CommandError(
            f"an op stream that starts mid-way (first op: {kind}): record it without a cursor, "
            "so that its first op is message.start or a snapshot"
        )
    if kind not in ("message.start", "snapshot"):
        return None
    message = Message.empty()
    ops: list[Any] = []
    seq = 0
    try:
        for raw, event_id in events:
            op = decode_op(raw)
            if op is None or type(op) is Transient:
                continue  # (an unknown op type, or live-only data)
            if event_id is not None and event_id.isdigit():
                seq = int(event_id)
            else:
                seq = op.seq or seq + 1
            apply_op(message, op)
            ops.append(encode(op, seq))
    except (ProtocolError, msgspec.DecodeError) as exc:
        raise CommandError(f"op {len(ops) + 1}: {exc}") from None
    return ops, message


def _label(path: str) -> str:
    return "stdin" if path == "-" else path


def _read(path: str) -> bytes:
    if path == "-":
        return sys.stdin.buffer.read()
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise CommandError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CommandError(f"{path}: is a directory") from None
    except OSError as exc:
        raise CommandError(f"{path}: {exc.strerror}") from None
