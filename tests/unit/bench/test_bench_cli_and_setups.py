"""The command line (scales, unknown scenarios, --list) and the cached, checked preparation of sources."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bench.__main__ import main, parse_scale
from bench.setups import SetupError, cached, require_postgres


@pytest.mark.parametrize("text,rows", [("50000", 50_000), ("50k", 50_000), ("1M", 1_000_000),
                                       ("1_000_000", 1_000_000), ("2.5m", 2_500_000), ("200,000", 200_000)])
def test_scales_read_as_row_counts(text: str, rows: int) -> None:
    assert parse_scale(text) == rows


@pytest.mark.parametrize("text", ["lots", "10", "-5k", ""])
def test_a_bad_scale_is_refused_with_the_option_named(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="--scale"):
        parse_scale(text)


def test_list_shows_every_scenario_and_goal(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for sid in ("S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9"):
        assert f"\n{sid}  " in f"\n{out}"
    assert "goal municipal_1m_vs_dlt" in out and "peers (dlt):" in out


def test_an_unknown_scenario_is_named_and_nothing_runs(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["S1", "S99"]) == 2
    assert "unknown scenario(s): S99" in capsys.readouterr().err


def test_a_prepared_source_is_reused_until_it_is_no_longer_valid(tmp_path: Path) -> None:
    calls: list[Path] = []

    def prepare(folder: Path) -> dict[str, object]:
        calls.append(folder)
        (folder / "data.txt").write_text("rows")
        return {"n": len(calls)}

    assert cached(tmp_path, "src", prepare)["n"] == 1
    assert cached(tmp_path, "src", prepare)["n"] == 1  # ready.json: not prepared again
    assert cached(tmp_path, "src", prepare, still_valid=lambda info: False)["n"] == 2
    assert json.loads((tmp_path / "setup" / "src" / "ready.json").read_text())["n"] == 2


def test_a_half_prepared_source_is_thrown_away_and_prepared_again(tmp_path: Path) -> None:
    def broken(folder: Path) -> dict[str, object]:
        (folder / "partial.bin").write_bytes(b"x")
        raise RuntimeError("seeding died")

    with pytest.raises(RuntimeError, match="seeding died"):
        cached(tmp_path, "src", broken)
    assert not (tmp_path / "setup" / "src" / "ready.json").exists()
    assert cached(tmp_path, "src", lambda folder: {"ok": True})["ok"] is True
    assert not (tmp_path / "setup" / "src" / "partial.bin").exists()


def test_an_unreachable_postgresql_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IEHUB_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:1/postgres")
    with pytest.raises(SetupError, match=r"PostgreSQL at 127\.0\.0\.1:1 is unreachable .*IEHUB_BENCH_PG_URL"):
        require_postgres()


def test_the_code_fingerprint_follows_the_sources(tmp_path: Path) -> None:
    from bench.setups import code_fingerprint

    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / "one.py").write_text("y = 1\n")
    before = code_fingerprint(("pkg", "one.py"), tmp_path)
    assert code_fingerprint(("pkg", "one.py"), tmp_path) == before
    (tmp_path / "pkg" / "a.py").write_text("x = 2\n")
    changed = code_fingerprint(("pkg", "one.py"), tmp_path)
    assert changed != before
    (tmp_path / "one.py").write_text("y = 2\n")
    assert code_fingerprint(("pkg", "one.py"), tmp_path) != changed


def test_a_source_prepared_by_other_code_is_prepared_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import setups

    calls: list[int] = []

    def prepare(folder: Path) -> dict[str, object]:
        calls.append(1)
        return {"n": len(calls)}

    monkeypatch.setattr(setups, "code_fingerprint", lambda packages: "v1")
    assert cached(tmp_path, "home", prepare)["n"] == 1
    assert cached(tmp_path, "home", prepare)["n"] == 1
    monkeypatch.setattr(setups, "code_fingerprint", lambda packages: "v2")  # the hub changed since
    assert cached(tmp_path, "home", prepare)["n"] == 2
