"""`iehub keys create|list|revoke`, `iehub audit verify` and `iehub export` through the real CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from feeds.keys import KeyStore
from iehub.cli import main
from tests.unit.feeds.access_fixtures import build_people_home

pytestmark = pytest.mark.integration


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("IEHUB_FEEDS_DB_URL", "IEHUB_FEED_SECRET"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "home"


def iehub(home: Path, *args: str):  # -> click.testing.Result
    return CliRunner().invoke(main, ["--home", str(home), *args], catch_exceptions=False)


def test_keys_create_prints_only_the_key_on_stdout_then_list_and_revoke(home: Path) -> None:
    created = iehub(home, "keys", "create", "--consumer", "杨浦区产教融合平台", "--datasets", "notice,project",
                    "--districts", "310110", "--expires-days", "30")
    assert created.exit_code == 0, created.output
    assert re.fullmatch(r"iehub_[0-9a-f]{16}\.[A-Za-z0-9_-]{43}\n", created.stdout)
    token = created.stdout.strip()
    key_id = token[len("iehub_"):].split(".")[0]
    assert key_id in created.stderr and "not shown again" in created.stderr and token not in created.stderr
    store = KeyStore(f"sqlite:///{home / 'feeds' / 'feeds.db'}")
    grant = store.authenticate(token)
    assert grant.districts == frozenset({"310110"}) and grant.datasets == frozenset({"notice", "project"})
    listed = iehub(home, "keys", "list")
    assert listed.exit_code == 0 and key_id in listed.stdout and "杨浦区产教融合平台" in listed.stdout
    assert token.split(".")[1] not in listed.stdout and "active" in listed.stdout
    revoked = iehub(home, "keys", "revoke", key_id)
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert "revoked" in iehub(home, "keys", "list").stdout
    store.dispose()


def test_keys_create_refuses_bad_scopes_naming_them(home: Path) -> None:
    bad = iehub(home, "keys", "create", "--consumer", "x", "--datasets", "trainees", "--districts", "all")
    assert bad.exit_code == 1 and "unknown datasets 'trainees'" in bad.stderr and bad.stdout == ""
    bad = iehub(home, "keys", "create", "--consumer", "x", "--datasets", "all", "--districts", "310110,310000")
    assert bad.exit_code == 1 and "'310000'" in bad.stderr
    missing = iehub(home, "keys", "revoke", "0123456789abcdef")
    assert missing.exit_code == 1 and "no key with id" in missing.stderr


def test_export_then_audit_verify_then_tamper(home: Path, tmp_path: Path) -> None:
    build_people_home(home)
    result = iehub(home, "export", "teacher", "trainee", "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output
    packages = sorted((tmp_path / "out").glob("*/*/datapackage.json"))
    assert [p.parts[-3] for p in packages] == ["teacher", "trainee"]
    assert json.loads(packages[0].read_text())["iehub"]["personal"] is False
    assert "张伟" not in (packages[0].parent / "teacher.csv").read_text(encoding="utf-8")
    ok = iehub(home, "audit", "verify")
    assert ok.exit_code == 0 and "2 rows" in ok.stdout
    unknown = iehub(home, "export", "students")
    assert unknown.exit_code == 1 and "unknown dataset" in unknown.stderr
    engine = sa.create_engine(f"sqlite:///{home / 'feeds' / 'feeds.db'}")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER feed_audit_no_delete")
        conn.exec_driver_sql("DELETE FROM feed_audit WHERE seq = 1")
    engine.dispose()
    broken = iehub(home, "audit", "verify")
    assert broken.exit_code == 1 and "row 1" in broken.stderr and "deleted" in broken.stderr


def test_export_before_any_build_says_what_to_do(home: Path) -> None:
    result = iehub(home, "export")
    assert result.exit_code == 1 and "iehub build" in result.stderr


def test_an_unreachable_feed_database_is_one_clear_error_without_its_password(home: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEHUB_FEEDS_DB_URL", "postgresql+psycopg://feeds:s3cret-pw@127.0.0.1:1/feeds")
    for args in (["keys", "list"], ["audit", "verify"]):
        result = iehub(home, *args)
        assert result.exit_code == 1 and "127.0.0.1:1" in result.stderr
        assert "s3cret-pw" not in result.output
