"""The ``tokenwire`` command line: one subcommand per module in ``tokenwire.commands``."""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from collections.abc import Sequence
from typing import NoReturn

# name -> (module, one-line help). Modules are imported lazily so `tokenwire replay`
# never pays for importing the server stack.
COMMANDS: dict[str, tuple[str, str]] = {
    "replay": ("tokenwire.commands.replay", "decode a recorded upstream response"),
    "mock": ("tokenwire.commands.mock", "run the deterministic mock model server"),
    "serve": ("tokenwire.commands.serve", "run the gateway"),
    "demo": ("tokenwire.commands.demo", "run mock model + gateway + demo page together"),
    "tail": ("tokenwire.commands.tail", "render a live stream in the terminal"),
}


class CommandError(Exception):
    """A user-facing failure: printed as one line on stderr, exit status 2."""


def finite_float(text: str) -> float:
    """An argparse type: a number, not ``nan`` or ``inf`` (``float()`` takes both)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line, like every other CLI error (argparse's own way prints the
    whole usage block first, which buries the error of a command with many flags)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from tokenwire import __version__

    parser = _Parser(prog="tokenwire", description="LLM output streaming layer.")
    parser.add_argument("--version", action="version", version=f"tokenwire {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not built in this version
                continue
            raise
        command_parser = sub.add_parser(name, help=help_text, description=module.__doc__)
        module.add_arguments(command_parser)
        command_parser.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CommandError as exc:
        print(f"tokenwire {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
