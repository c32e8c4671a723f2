"""Port helpers shared by the commands that listen (serve, mock, demo)."""

from __future__ import annotations

import socket

from tokenwire.cli import CommandError


def free_port(host: str) -> int:
    """A port the OS says is free on ``host`` right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def require_free_port(host: str, port: int, hint: str = "pass --port N") -> None:
    """Fail with one line before anything is printed or started; uvicorn would otherwise log
    its own bind error and exit with status 3."""
    with socket.socket() as sock:
        # As uvicorn binds: a port held only by TIME-WAIT sockets (a process just killed, its
        # readers' connections closing) is free to listen on.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror}; {hint}") from None
