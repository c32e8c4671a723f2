"""`tokenwire serve` / `demo` / `tail` and the settings they build."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import sys
import threading
import time

import httpx
import pytest
from conftest import free_port, serve_asgi, wait_healthy

from tokenwire.cli import CommandError, build_parser
from tokenwire.commands import serve, tail
from tokenwire.gateway import Settings, create_app
from tokenwire.mock import create_mock_app


def test_settings_from_env_and_overrides() -> None:
    env = {
        "TOKENWIRE_UPSTREAM": "http://up/v1",
        "TOKENWIRE_PORT": "9000",
        "TOKENWIRE_API_KEYS": "a, b,",
        "TOKENWIRE_COALESCE_MS": "5",
        "TOKENWIRE_RETENTION_S": "1.5",
        "TOKENWIRE_DATA_DIR": "/tmp/x",
    }
    settings = Settings.from_env(env, port=9001, host=None)
    assert settings.upstream == "http://up/v1" and settings.port == 9001
    assert settings.api_keys == ("a", "b") and settings.coalesce_ms == 5.0
    assert settings.retention_s == 1.5 and settings.data_dir == "/tmp/x"
    assert settings.host == "127.0.0.1"
    with pytest.raises(ValueError, match="TOKENWIRE_PORT"):
        Settings.from_env({"TOKENWIRE_PORT": "eighty"})


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_serve_flags_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TOKENWIRE_UPSTREAM", raising=False)
    with pytest.raises(CommandError, match="no upstream"):
        serve.build_settings(parse("serve"))
    with pytest.raises(CommandError, match="http"):
        serve.build_settings(parse("serve", "--upstream", "ftp://x"))
    with pytest.raises(CommandError, match="NO_SUCH_VAR_TW"):
        serve.build_settings(
            parse("serve", "--upstream", "http://u/v1", "--upstream-api-key-env", "NO_SUCH_VAR_TW")
        )
    monkeypatch.setenv("TOKENWIRE_API_KEYS", "env-key")
    monkeypatch.setenv("UPKEY_TW", "sk-1")
    args = parse(
        "serve", "--upstream", "http://u/v1", "--upstream-api-key-env", "UPKEY_TW",
        "--api-key", "k1", "--api-key", "k2", "--coalesce-ms", "0", "--data-dir", "/tmp/d",
    )  # fmt: skip
    settings = serve.build_settings(args)
    assert settings.api_keys == ("k1", "k2") and settings.coalesce_ms == 0
    assert settings.resolved_upstream_key() == "sk-1" and settings.data_dir == "/tmp/d"


def test_upstream_api_setting_flag_and_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from tokenwire.gateway.upstream_api import stream_format, upstream_endpoint

    assert Settings.from_env({}).upstream_api == "chat"
    assert Settings.from_env({"TOKENWIRE_UPSTREAM_API": "anthropic"}).upstream_api == "anthropic"
    monkeypatch.setenv("TOKENWIRE_UPSTREAM_API", "responses")
    settings = serve.build_settings(parse("serve", "--upstream", "http://u/v1"))
    assert settings.upstream_api == "responses"
    assert settings.to_env()["TOKENWIRE_UPSTREAM_API"] == "responses"  # (for the workers)
    args = parse("serve", "--upstream", "http://u/v1", "--upstream-api", "anthropic")
    assert serve.build_settings(args).upstream_api == "anthropic"
    monkeypatch.setenv("TOKENWIRE_UPSTREAM_API", "gemini")
    with pytest.raises(CommandError, match="TOKENWIRE_UPSTREAM_API"):
        serve.build_settings(parse("serve", "--upstream", "http://u/v1"))
    with pytest.raises(SystemExit):
        parse("serve", "--upstream-api", "gemini")

    path, headers = upstream_endpoint("chat", "sk-1")
    assert path == "chat/completions" and headers["Authorization"] == "Bearer sk-1"
    path, headers = upstream_endpoint("responses", None)
    assert path == "responses" and "Authorization" not in headers
    path, headers = upstream_endpoint("anthropic", "sk-ant\n")
    assert path == "messages" and headers["x-api-key"] == "sk-ant"
    assert headers["anthropic-version"] == "2023-06-01" and "Authorization" not in headers
    assert [stream_format(api) for api in ("chat", "responses", "anthropic")] == [
        "chat",
        "responses",
        "anthropic",
    ]
    with pytest.raises(ValueError, match="unknown upstream API"):
        upstream_endpoint("gemini")


def test_serve_command_runs(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with serve_asgi(create_mock_app()) as mock_url:
        port = free_port()
        env = {**os.environ, "TOKENWIRE_UPSTREAM": f"{mock_url}/v1", "UPKEY_TW": "sk-hidden"}
        cmd = [sys.executable, "-m", "tokenwire", "serve", "--port", str(port)]
        cmd += ["--data-dir", str(tmp_path), "--upstream-api-key-env", "UPKEY_TW"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, proc, 15)
            created = httpx.post(
                f"{url}/v1/streams",
                json={"model": "mock", "messages": [{"role": "user", "content": "x"}]},
            )
            stream_id = created.json()["id"]
            events = httpx.get(f"{url}/v1/streams/{stream_id}/events?catchup=exact")
            assert b"message.end" in events.content
        finally:
            proc.terminate()
            output = proc.communicate(timeout=15)[0].decode()
        assert "sk-hidden" not in output
        assert (tmp_path / "tokenwire.sqlite3").exists()


def test_serve_never_prints_the_upstream_urls_password(tmp_path) -> None:  # type: ignore[no-untyped-def]
    upstream = f"http://tw:pw-hidden@127.0.0.1:{free_port()}/v1"
    proc = _serve(free_port(), str(tmp_path), upstream)
    proc.terminate()
    output = proc.communicate(timeout=15)[0].decode()
    assert "-> http://tw:[REDACTED]@127.0.0.1" in output and "pw-hidden" not in output
    bad = subprocess.run(
        [sys.executable, "-m", "tokenwire", "serve", "--upstream", "ftp://tw:pw-hidden@h/v1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "pw-hidden" not in bad.stderr + bad.stdout


def _serve(port: int, data_dir: str, upstream: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "tokenwire", "serve", "--port", str(port), "--data-dir", data_dir]
    env = {**os.environ, "TOKENWIRE_UPSTREAM": upstream}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 15
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.1)


def test_sigterm_with_an_open_reader_stops_promptly_and_ends_the_stream(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A reader of a long running stream used to keep a stopping ``serve`` alive until the
    stream ended (minutes); now it is cut after the grace and the stream ends "shut down"."""
    with serve_asgi(create_mock_app(tps=5, ttft_ms=0)) as mock_url:  # (256 tokens: ~50 s)
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = _serve(port, str(tmp_path), f"{mock_url}/v1")
        try:
            body = {"model": "mock", "messages": [{"role": "user", "content": "x"}]}
            stream_id = httpx.post(f"{url}/v1/streams", json=body).json()["id"]
            reading = threading.Event()

            def reader() -> None:  # reads until the server ends the connection
                with contextlib.suppress(httpx.HTTPError):
                    events = f"{url}/v1/streams/{stream_id}/events"
                    with httpx.stream("GET", events, timeout=120) as r:
                        for _ in r.iter_raw():
                            reading.set()

            thread = threading.Thread(target=reader, daemon=True)
            thread.start()
            assert reading.wait(10)
            stopping = time.monotonic()
            proc.terminate()
            proc.wait(timeout=serve.SHUTDOWN_GRACE_S + 10)
            took = time.monotonic() - stopping
            thread.join(10)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=15)
        assert took < serve.SHUTDOWN_GRACE_S + 5, took
        port = free_port()  # (the old port may linger in TIME_WAIT)
        again = _serve(port, str(tmp_path), f"{mock_url}/v1")  # the same store
        try:
            stored = httpx.get(f"http://127.0.0.1:{port}/v1/streams/{stream_id}").json()
            assert stored["status"] == "failed", stored
            assert "shut down" in str(stored), stored
        finally:
            again.terminate()
            again.communicate(timeout=15)


def test_tail_renders_every_block_type() -> None:
    from rich.console import Console

    from tokenwire.protocol import Block, Message

    message = Message("st_x", "m", status="failed", error={"message": "boom"})
    message.blocks = [
        Block("reasoning", text="hmm"),
        Block("text", text="**hi**"),
        Block("tool_call", attrs={"id": "call_1", "name": "get_weather"}, text='{"a":1}'),
        Block("refusal", text="no"),
        Block("source", attrs={"url": "https://x", "title": "X"}),
    ]
    console = Console(record=True, width=80)
    console.print(tail.render(message))
    text = console.export_text()
    for needle in (
        "hmm",
        "hi",
        "get_weather",
        '{"a":1}',
        "refusal: no",
        "[source] X",
        "failed",
        "boom",
    ):
        assert needle in text


def test_tail_against_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    with (
        serve_asgi(create_mock_app()) as mock_url,
        serve_asgi(create_app(Settings(upstream=f"{mock_url}/v1"))) as url,
    ):
        assert tail.run(parse("tail", "--url", url, "--prompt", "hi", "--model", "mock-tools")) == 0
        assert "completed" in capsys.readouterr().out
        with pytest.raises(CommandError, match="404"):
            tail.run(parse("tail", "--url", url, "st_doesnotexistdoesnotexist"))
        with pytest.raises(CommandError):
            tail.run(parse("tail", "--url", url))


def test_a_busy_port_is_one_line_and_exit_2() -> None:
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        for argv in (
            ["mock", "--port", port],
            ["serve", "--upstream", "http://127.0.0.1:9/v1", "--port", port],
            ["demo", "--no-browser", "--port", port],
        ):
            result = subprocess.run(
                [sys.executable, "-m", "tokenwire", *argv],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert result.returncode == 2, (argv, result.stderr)
            assert result.stdout == ""  # nothing announced for a server that never started
            assert "cannot listen on 127.0.0.1:" in result.stderr
            assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["serve", "--upstream-api", "foo"], "invalid choice: 'foo'"),
        (["mock", "--port", "abc"], "invalid int value: 'abc'"),
        (["nope"], "invalid choice: 'nope'"),
    ],
)
def test_a_usage_error_is_one_line_and_exit_2(
    argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from tokenwire.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args(argv)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err and "--help" in err, err


@pytest.mark.parametrize(
    ("argv", "env", "said"),
    [
        (["--coalesce-ms", "2000000"], {}, "--coalesce-ms must be 0 to 999999"),
        ([], {"TOKENWIRE_COALESCE_MS": "nan"}, "coalesce_ms (TOKENWIRE_COALESCE_MS) must be"),
        ([], {"TOKENWIRE_COALESCE_MS": "inf"}, "--coalesce-ms must be 0 to 999999"),
        ([], {"TOKENWIRE_RETENTION_S": "inf"}, "--retention-s finite"),
        ([], {"TOKENWIRE_STORE_RETENTION_S": "nan"}, "TOKENWIRE_STORE_RETENTION_S"),
        ([], {"TOKENWIRE_KEEPALIVE_S": "nan"}, "TOKENWIRE_KEEPALIVE_S"),
        ([], {"TOKENWIRE_MAX_BODY_BYTES": "-1"}, "TOKENWIRE_MAX_BODY_BYTES"),
        (["--upstream", "http://"], {}, "with a host"),
        (["--upstream", "http://u:pw-hidden@"], {}, "with a host"),
    ],
)
def test_serve_refuses_settings_that_would_fail_later(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], env: dict[str, str], said: str
) -> None:
    """Values that used to pass the checks (nan passes every ``< 0`` test; a URL without a
    host) and then failed at app start with a traceback: one CommandError up front."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(CommandError, match=re.escape(said)) as caught:
        serve.build_settings(parse("serve", "--upstream", "http://u/v1", *argv))
    assert "pw-hidden" not in str(caught.value)


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--coalesce-ms", "nan"],
        ["mock", "--tps", "inf"],
        ["mock", "--ttft-ms", "nan"],
        ["replay", "--coalesce-ms", "inf", "x.sse"],
        ["tail", "--prompt", "hi", "--coalesce-ms", "nan"],
        ["demo", "--tps", "nan"],
    ],
)
def test_float_flags_refuse_nan_and_inf_in_one_line(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tokenwire", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2 and "must be a finite number" in done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
