"""Run the mock model server, the gateway and the demo page together, on embedded defaults
(in-process hub, SQLite in a temporary directory). Runs until Ctrl-C."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time

from tokenwire.cli import finite_float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, default=8787, help="gateway port (default 8787; 0 picks a free one)"
    )
    parser.add_argument("--no-browser", action="store_true", help="do not open a browser")
    parser.add_argument(
        "--tps",
        type=finite_float,
        default=40,
        help="mock tokens per second per stream (default 40)",
    )


def can_open_browser() -> bool:
    """Never try on CI or on a Linux box without a display."""
    if os.environ.get("CI"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def run(args: argparse.Namespace) -> int:
    import shutil
    import tempfile
    import webbrowser

    import uvicorn

    from tokenwire.cli import CommandError
    from tokenwire.commands._ports import free_port, require_free_port
    from tokenwire.commands.demo_agent import agent_producer
    from tokenwire.commands.serve import uvicorn_options
    from tokenwire.gateway import Settings, create_app
    from tokenwire.mock import create_mock_app

    if args.tps < 0:
        raise CommandError("--tps must not be negative")
    port = args.port or free_port(args.host)
    if not 0 < port < 65536:
        raise CommandError(f"invalid port {port}")
    require_free_port(args.host, port, "pass --port N (or --port 0 for any)")

    mock_port = free_port("127.0.0.1")
    mock = uvicorn.Server(
        uvicorn.Config(
            create_mock_app(tps=args.tps, ttft_ms=250),
            host="127.0.0.1",
            port=mock_port,
            log_level="warning",
        )
    )
    mock_thread = threading.Thread(target=mock.run, name="tokenwire-mock", daemon=True)
    mock_thread.start()

    data_dir = tempfile.mkdtemp(prefix="tokenwire-demo-")
    settings = Settings(
        upstream=f"http://127.0.0.1:{mock_port}/v1", host=args.host, port=port, data_dir=data_dir
    )
    gateway = uvicorn.Server(
        uvicorn.Config(
            # mock-agent's answer is built here, by the host: a status line, a tool run
            # between two model calls (the other models: the upstream call piped as it is)
            create_app(settings, producers={"mock-agent": agent_producer()}),
            # (serve's: the bounds on request heads and WebSocket input, a graceful shutdown
            # that an open page cannot hold up, logs without credentials)
            **uvicorn_options(settings, "warning"),
        )
    )
    url = f"http://{'127.0.0.1' if args.host in ('0.0.0.0', '::') else args.host}:{port}"

    def announce() -> None:
        while not gateway.started:
            if gateway.should_exit:
                return
            time.sleep(0.05)
        body = '{"model":"mock-reasoning","messages":[{"role":"user","content":"hi"}]}'
        print(
            f"tokenwire demo\n"
            f"  open       {url}/\n"
            f"  gateway    {url}  (mock model server at http://127.0.0.1:{mock_port}/v1)\n"
            "  models     mock, mock-reasoning, mock-tools, mock-error, mock-truncated,"
            " mock-html,\n             mock-agent (its tool round is run by the demo)\n"
            f"  try        curl -s {url}/v1/streams -H 'Content-Type: application/json' "
            f"-d '{body}'\n"
            f"             curl -N {url}/v1/streams/<id>/events\n"
            f"             tokenwire tail --url {url} --model mock-reasoning --prompt hi\n"
            f"  data       {data_dir}\n"
            f"Ctrl-C to stop.",
            flush=True,
        )
        if not args.no_browser and can_open_browser():
            try:
                webbrowser.open(f"{url}/")
            except Exception:  # a missing browser is not worth failing the demo
                pass

    threading.Thread(target=announce, daemon=True).start()
    try:
        gateway.run()
    finally:
        mock.should_exit = True
        mock_thread.join(timeout=5)
        shutil.rmtree(data_dir, ignore_errors=True)
    return 0
