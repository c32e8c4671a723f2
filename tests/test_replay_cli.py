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
