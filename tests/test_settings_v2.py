"""Settings added with the library: CORS origins and the secret (flags, env, data dir)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from tokenwire.cli import CommandError, build_parser
from tokenwire.commands import serve
from tokenwire.gateway import Settings


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))


def test_cors_origins_from_flags_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TOKENWIRE_CORS_ORIGINS", raising=False)
    base = ("serve", "--upstream", "http://u/v1", "--data-dir", str(tmp_path))
    args = parse(*base, "--cors-origin", "https://a.example", "--cors-origin", "http://b:3000")
    settings = serve.build_settings(args)
    assert settings.cors_origins == ("https://a.example", "http://b:3000")
    with pytest.raises(CommandError, match="cors-origin"):
        serve.build_settings(parse(*base, "--cors-origin", "https://a.example/path"))
    monkeypatch.setenv("TOKENWIRE_CORS_ORIGINS", "*")
    assert serve.build_settings(parse(*base)).cors_origins == ("*",)
    assert Settings.from_env(settings.to_env()).cors_origins == settings.cors_origins


def test_secret_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    assert Settings(secret="given").resolved_secret() == "given"
    assert Settings().resolved_secret() is None  # (no data dir: random per process)
    first = Settings(data_dir=str(tmp_path)).resolved_secret()
    assert first and len(first) >= 32
    assert Settings(data_dir=str(tmp_path)).resolved_secret() == first  # a restart: same
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0


def test_named_choices_are_checked_when_settings_are_made() -> None:
    """A bad ``upstream_api`` / ``continuation`` fails at ``Settings(...)`` with a message
    naming the field and its variable, not first at the app's startup."""
    from tokenwire.errors import InvalidArgument
    from tokenwire.gateway import create_app

    for field_name, bad in (("upstream_api", "foo"), ("continuation", "later")):
        with pytest.raises(InvalidArgument, match=f"TOKENWIRE_{field_name.upper()}.*{bad}"):
            Settings(**{field_name: bad})
    for api in ("chat", "responses", "anthropic"):
        assert create_app(Settings(upstream_api=api)).state  # (each choice still builds)
