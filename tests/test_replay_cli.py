"""`tokenwire replay` as a user runs it: a real process, real files, real exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FIXTURES = Path(__file__).parent / "fixtures"


def replay(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tokenwire", "replay", *args],
        input=stdin,
        capture_output=True,
        timeout=60,
    )


def test_message_format_is_canonical_json() -> None:
    result = replay(str(FIXTURES / "deepseek_reasoning_content.sse"))
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout)
    assert [b["type"] for b in message["blocks"]] == ["reasoning", "text"]
    assert list(message) == ["id", "model", "status", "finish_reason", "usage", "error", "blocks"]


def test_ops_format_and_coalescing_from_stdin() -> None:
    body = (FIXTURES / "openai_text.sse").read_bytes()
    plain = replay("-", "--format", "ops", stdin=body)
    merged = replay("-", "--format", "ops", "--coalesce-ms", "50", stdin=body)
    assert plain.returncode == merged.returncode == 0
    plain_ops = [json.loads(line) for line in plain.stdout.splitlines()]
    merged_ops = [json.loads(line) for line in merged.stdout.splitlines()]
    # Structural ops state their seq; deltas carry none (each is the previous seq + 1).
    for position, op in enumerate(plain_ops, start=1):
        assert op.get("seq", position) == position
        assert ("seq" in op) != (op["type"] == "block.delta")
    assert len(merged_ops) < len(plain_ops)
    deltas = [o["text"] for o in merged_ops if o["type"] == "block.delta"]
    # A recording has no clock: the first delta goes out at once, the rest of the run merges.
    assert deltas == ["Hello", ", world! ✓ café"]


def test_markdown_format() -> None:
    result = replay(str(FIXTURES / "openai_parallel_tools.sse"), "--format", "markdown")
    assert result.returncode == 0
    out = result.stdout.decode()
    assert "`get_weather`" in out and '"city": "Paris"' in out and "```json" in out


def test_upstream_error_still_exits_zero() -> None:
    result = replay(str(FIXTURES / "error_mid_stream.sse"))
    assert result.returncode == 0
    assert json.loads(result.stdout)["status"] == "failed"


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("this is not a stream\n")
    cases = [
        (str(tmp_path / "missing.sse"), None, "no such file"),
        (str(junk), None, "no chat-completion chunks found"),
        (str(tmp_path), None, "is a directory"),
        ("-", b'{"hello": "world"}', "neither 'choices' nor 'error'"),
        ("-", b"", "no chat-completion chunks found"),
    ]
    for path, stdin, needle in cases:
        result = replay(path, stdin=stdin)
        err = result.stderr.decode()
        assert result.returncode == 2, (path, err)
        assert needle in err and err.count("\n") == 1 and "Traceback" not in err
        assert result.stdout == b""


def test_each_upstream_api_is_detected_and_can_be_forced() -> None:
    cases = {
        "responses_function_calls.sse": "responses",
        "responses_body.json": "responses",
        "anthropic_thinking.sse": "anthropic",
        "anthropic_message.json": "anthropic",
        "harmony_llamacpp_final.sse": "chat",
    }
    for name, fmt in cases.items():
        detected = replay(str(FIXTURES / name))
        forced = replay(str(FIXTURES / name), "--format-in", fmt)
        assert detected.returncode == forced.returncode == 0, detected.stderr
        assert detected.stdout == forced.stdout
        assert json.loads(detected.stdout)["status"] == "completed"
    # Forcing the wrong format finds nothing of it: one line, exit 2.
    wrong = replay(str(FIXTURES / "openai_text.sse"), "--format-in", "anthropic")
    assert wrong.returncode == 2
    assert b"no Anthropic Messages events found" in wrong.stderr


def _named_events(events: list[dict]) -> bytes:
    return b"".join(
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode()) for e in events
    )


def test_an_event_past_the_limit_ends_the_message_failed_in_every_mode(tmp_path: Path) -> None:
    """A recording with one event over max_event_bytes (16 MiB): detection (auto) once crashed
    with a traceback while checking for an op log; now every mode keeps the text before it."""
    start = {"type": "message_start", "message": {"id": "m", "model": "claude", "content": []}}
    events = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a "}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "x" * (17 * 1024 * 1024)},
        },
    ]
    path = tmp_path / "big.sse"
    path.write_bytes(_named_events(events))
    for fmt in ("auto", "anthropic"):
        result = replay(str(path), "--format-in", fmt)
        assert result.returncode == 0, result.stderr.decode()[-500:]
        message = json.loads(result.stdout)
        assert message["status"] == "failed"
        assert message["error"]["type"] == "event_too_large"
        assert message["blocks"][0]["text"] == "a "
    refused = replay(str(path), "--format-in", "ops")
    assert refused.returncode == 2
    assert b"Traceback" not in refused.stderr and b"not a tokenwire op log" in refused.stderr


def test_an_op_log_with_a_snapshot_past_16_mib_replays(tmp_path: Path) -> None:
    """An op log's snapshot of a long answer may be bigger than an upstream event may be: the
    file is read whole, so its size is the only bound."""
    text = "y" * (17 * 1024 * 1024)
    snapshot = {
        "type": "snapshot",
        "seq": 9,
        "message": {
            "id": "m",
            "model": "x",
            "status": "completed",
            "finish_reason": "stop",
            "blocks": [{"type": "text", "text": text}],
        },
    }
    path = tmp_path / "ops.sse"
    path.write_bytes(b"id: 9\ndata: %s\n\n" % json.dumps(snapshot).encode())
    for fmt in ("auto", "ops"):
        result = replay(str(path), "--format-in", fmt)
        assert result.returncode == 0, result.stderr.decode()[-500:]
        message = json.loads(result.stdout)
        assert message["status"] == "completed"
        assert len(message["blocks"][0]["text"]) == len(text)
