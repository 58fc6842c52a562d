"""Feed settings and the server secret."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from feeds.config import SECRET_BYTES, SECRET_ENV, FeedConfig


def test_defaults_live_under_home(tmp_path: Path) -> None:
    config = FeedConfig(tmp_path / "home")
    assert config.db_url == f"sqlite:///{tmp_path / 'home' / 'feeds' / 'feeds.db'}"
    assert (tmp_path / "home" / "feeds").is_dir()
    assert FeedConfig(tmp_path, db_url="postgresql+psycopg://x/y").db_url == "postgresql+psycopg://x/y"


def test_secret_is_made_once_private_and_stable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SECRET_ENV, raising=False)
    first = FeedConfig(tmp_path).secret()
    path = tmp_path / "feeds" / "secret"
    assert len(first) == SECRET_BYTES and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert FeedConfig(tmp_path).secret() == first  # another process, same secret
    path.write_bytes(b"short")
    with pytest.raises(ValueError, match="remove it"):
        FeedConfig(tmp_path).secret()


def test_secret_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "x" * 40)
    assert FeedConfig(tmp_path).secret() == b"x" * 40
    assert not (tmp_path / "feeds" / "secret").exists()
    monkeypatch.setenv(SECRET_ENV, "short")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        FeedConfig(tmp_path).secret()


def test_from_env_reads_rate_and_refuses_nonsense(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEHUB_FEED_RATE", "7.5")
    monkeypatch.setenv("IEHUB_FEED_BURST", "9")
    config = FeedConfig.from_env(tmp_path)
    assert (config.rate, config.burst) == (7.5, 9)
    assert FeedConfig.from_env(tmp_path, rate=3.0).rate == 3.0
    monkeypatch.setenv("IEHUB_FEED_RATE", "fast")
    with pytest.raises(ValueError, match="IEHUB_FEED_RATE"):
        FeedConfig.from_env(tmp_path)
    with pytest.raises(ValueError, match="default_limit"):
        FeedConfig(tmp_path, default_limit=20_000)
    with pytest.raises(ValueError, match="rate must be"):
        FeedConfig(tmp_path, rate=0)


def test_workers_default_to_the_cpus_and_are_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.delenv("IEHUB_FEED_WORKERS", raising=False)
    assert FeedConfig.from_env(tmp_path).workers == min(4, os.cpu_count() or 1)
    assert FeedConfig(tmp_path).workers == 1  # an app built in code is one process unless told
    monkeypatch.setenv("IEHUB_FEED_WORKERS", "3")
    assert FeedConfig.from_env(tmp_path).workers == 3
    assert FeedConfig.from_env(tmp_path, workers=2).workers == 2  # --workers wins
    monkeypatch.setenv("IEHUB_FEED_WORKERS", "many")
    with pytest.raises(ValueError, match="IEHUB_FEED_WORKERS"):
        FeedConfig.from_env(tmp_path)
    with pytest.raises(ValueError, match="workers must be within 1..64"):
        FeedConfig(tmp_path, workers=0)


def test_settings_reach_worker_processes_whole_but_never_the_secret(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from feeds import server

    config = FeedConfig(tmp_path, rate=3.5, burst=7, workers=2, snapshot_lease=12.0)
    assert config.secret()
    text = config.to_json()
    assert config.secret().hex() not in text and "secret" not in text
    assert FeedConfig.from_json(text) == config
    monkeypatch.delenv(server.CONFIG_ENV, raising=False)
    with pytest.raises(RuntimeError, match="iehub serve --workers"):
        server.app_from_environment()
