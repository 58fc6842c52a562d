"""The municipal and Lingang Group database sandboxes: deterministic, realistically dirty, mutable."""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from sandbox import lingang_group, municipal
from sandbox.lingang.data import uscc_valid


def _digest(path: Path, table: str) -> str:
    con = sqlite3.connect(path)
    rows = con.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
    con.close()
    return hashlib.md5(repr(rows).encode()).hexdigest()


def test_same_seed_same_database(tmp_path: Path) -> None:
    a, b, c = (tmp_path / f"{n}.sqlite" for n in "abc")
    municipal.seed(f"sqlite:///{a}", scale=0.05, seed=3)
    municipal.seed(f"sqlite:///{b}", scale=0.05, seed=3)
    municipal.seed(f"sqlite:///{c}", scale=0.05, seed=4)
    for table in municipal.TABLES:
        assert _digest(a, table) == _digest(b, table), table
    assert _digest(a, "projects") != _digest(c, "projects")


def test_content_is_realistic_and_a_little_dirty(tmp_path: Path) -> None:
    path = tmp_path / "m.sqlite"
    counts = municipal.seed(f"sqlite:///{path}", scale=0.4, seed=7)
    assert counts["projects"] == 2000 and counts["project_members"] > 2 * counts["projects"]
    con = sqlite3.connect(path)
    codes = [u for (u,) in con.execute("SELECT lead_org_uscc FROM projects") if u]
    bad = sum(not uscc_valid(u) for u in codes)
    assert 0 < bad < 0.03 * len(codes)
    backwards = con.execute("SELECT count(*) FROM projects WHERE end_date < start_date").fetchone()[0]
    assert 0 < backwards < 0.02 * counts["projects"]
    late = con.execute("SELECT count(*) FROM performance_reports WHERE substr(submitted_at, 1, 10) > due_on").fetchone()[0]
    missing = con.execute("SELECT count(*) FROM performance_reports WHERE submitted_at IS NULL").fetchone()[0]
    assert late > 0.05 * counts["performance_reports"] and missing > 0
    shared = con.execute("SELECT max(n) FROM (SELECT count(*) n FROM projects GROUP BY updated_at)").fetchone()[0]
    assert shared > 5  # bulk imports stamp many rows with one updated_at
    assert {c for (c,) in con.execute("SELECT DISTINCT category FROM projects")} >= {"就业型实践基地", "现代产业学院"}
    names = {n for (n,) in con.execute("SELECT name FROM organizations")}
    assert {"上海电机学院", "上海积塔半导体有限公司"} <= names
    con.close()


def test_mutate_updates_inserts_and_deletes_with_one_timestamp(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    municipal.seed(url, scale=0.1, seed=7)
    before = municipal.counts(url)
    changes = municipal.mutate(url, changed=0.1, seed=1)
    after = municipal.counts(url)
    for table, c in changes.items():
        assert after[table]["live"] == before[table]["live"] - c["soft_deleted"] - c["hard_deleted"] + c["inserted"] \
            or table in ("project_members", "performance_reports", "training_bases")  # children of deleted projects
        assert after[table]["soft_deleted"] == before[table]["soft_deleted"] + c["soft_deleted"]
    assert changes["organizations"]["hard_deleted"] == 0
    con = sqlite3.connect(tmp_path / "m.sqlite")
    newest = con.execute("SELECT max(updated_at) FROM projects").fetchone()[0]
    stamped = con.execute("SELECT count(*) FROM projects WHERE updated_at = ?", [newest]).fetchone()[0]
    c = changes["projects"]
    assert stamped == c["updated"] + c["inserted"] + c["soft_deleted"]
    con.close()


def test_lingang_group_keeps_its_own_naming_and_local_times(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'g.sqlite'}"
    counts = lingang_group.seed(url, scale=0.2, seed=7)
    assert counts == {"T_QY_JBXX": 120, "T_XQHZ_XM": 300, "T_SXJD": 80}
    con = sqlite3.connect(tmp_path / "g.sqlite")
    cols = [r[1] for r in con.execute("PRAGMA table_info(T_XQHZ_XM)")]
    assert cols[:3] == ["XMID", "XMBH", "HZYX"] and "GXSJ" in cols and "SCBZ" in cols
    assert con.execute("SELECT count(*) FROM T_XQHZ_XM WHERE SCBZ <> '0'").fetchone()[0] == 0
    con.close()
    changes = lingang_group.mutate(url, changed=0.1, seed=1)
    assert changes["T_XQHZ_XM"]["soft_deleted"] > 0 and changes["T_XQHZ_XM"]["hard_deleted"] > 0
    assert len(lingang_group.live_keys(url, "T_XQHZ_XM")) == 300 - sum(
        changes["T_XQHZ_XM"][k] for k in ("soft_deleted", "hard_deleted")) + changes["T_XQHZ_XM"]["inserted"]
