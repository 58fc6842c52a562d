"""Issue #15 item 4: an insider with write access to feeds.db cannot rewrite the audit unseen.

Each test plays the insider with plain SQL on the audit store (triggers dropped first, as
someone with write access would), then runs the real `iehub audit verify`: it must exit 1
naming the first bad row, and never write to the store. The serving path must refuse (503)
rather than start a new chain over a damaged one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from datetime import timezone
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from fastapi.testclient import TestClient

from feeds.app import create_app
from feeds.audit import AuditLog, feed_audit
from feeds.config import FeedConfig
from feeds.keys import KeyStore
from iehub.cli import main
from tests.unit.feeds.feed_fixtures import FeedHome
from tests.unit.feeds.test_audit import append

pytestmark = pytest.mark.integration

HASHED = ("seq", "at", "key_id", "consumer", "dataset", "endpoint", "params", "rows", "fields", "personal",
          "digest", "snapshot", "prev_hash")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("IEHUB_FEEDS_DB_URL", "IEHUB_FEED_SECRET", "IEHUB_AUDIT_KEY", "IEHUB_AUDIT_DIR"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    (home / "feeds").mkdir(parents=True)
    return home


def db_url(home: Path) -> str:
    return f"sqlite:///{home / 'feeds' / 'feeds.db'}"


def write_chain(home: Path, rows: int = 10) -> None:
    """What the feed API leaves behind after serving ``rows`` responses and stopping."""
    log = AuditLog(db_url(home))
    append(log, rows)
    log.dispose()


def verify(home: Path, *args: str):  # -> click.testing.Result
    return CliRunner().invoke(main, ["--home", str(home), "audit", "verify", *args], catch_exceptions=False)


# -- the insider's tools ----------------------------------------------------------------------


def body(row: dict[str, Any]) -> dict[str, Any]:
    out = {name: row[name] for name in HASHED}
    out["at"] = row["at"].astimezone(timezone.utc).isoformat(timespec="microseconds")
    out["personal"] = bool(row["personal"])
    return out


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def unkeyed(row: dict[str, Any]) -> str:
    """The first version's recipe: SHA-256 of the canonical row, which anyone can recompute.

    Where the store has a key-id column, the row poses as one written before keyed audit.
    """
    if "mac_key_id" in row:
        row["mac_key_id"] = None
    return hashlib.sha256(canonical(body(row))).hexdigest()


def guessed_key(row: dict[str, Any]) -> str:
    """The keyed recipe (the code is public) under a key the insider guessed."""
    message = body(row)
    message["mac_key_id"] = row.get("mac_key_id")
    return hmac.new(b"guessed-audit-key-0123456789abcdef", b"iehub-audit-row\x00" + canonical(message),
                    hashlib.sha256).hexdigest()


def rows_of(conn: sa.Connection) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(sa.select(feed_audit).order_by(feed_audit.c.seq)).mappings()]


def tamper(home: Path, action: Callable[[sa.Connection], None]) -> None:
    engine = sa.create_engine(db_url(home))
    with engine.begin() as conn:
        for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        action(conn)
    engine.dispose()


def set_head(conn: sa.Connection, seq: int, row_hash: str) -> None:
    conn.execute(sa.text("UPDATE feed_audit_head SET seq = :s, row_hash = :h"), {"s": seq, "h": row_hash})


def rechain_from(conn: sa.Connection, start: int, recipe: Callable[[dict[str, Any]], str]) -> None:
    """Recompute prev_hash and row_hash of every row from ``start`` on, and the head: a consistent rewrite."""
    rows = rows_of(conn)
    prev = rows[start - 2]["row_hash"] if start > 1 else "0" * 64
    for row in rows[start - 1:]:
        row["prev_hash"] = prev
        prev = row["row_hash"] = recipe(row)
        conn.execute(feed_audit.update().where(feed_audit.c.seq == row["seq"]).values(**row))
    set_head(conn, rows[-1]["seq"], prev)


def cut_tail_and_move_head_back(conn: sa.Connection) -> None:
    rows = rows_of(conn)
    conn.exec_driver_sql("DELETE FROM feed_audit WHERE seq > 7")
    set_head(conn, 7, rows[6]["row_hash"])


def edit_and_rechain(recipe: Callable[[dict[str, Any]], str]) -> Callable[[sa.Connection], None]:
    def action(conn: sa.Connection) -> None:
        conn.exec_driver_sql("UPDATE feed_audit SET rows = 0, consumer = '别人' WHERE seq = 3")
        rechain_from(conn, 3, recipe)

    return action


def append_forged(recipe: Callable[[dict[str, Any]], str]) -> Callable[[sa.Connection], None]:
    def action(conn: sa.Connection) -> None:
        last = rows_of(conn)[-1]
        forged = {**last, "seq": last["seq"] + 1, "prev_hash": last["row_hash"], "consumer": "不存在的平台",
                  "dataset": "teacher", "rows": 5000, "personal": True}
        forged["row_hash"] = recipe(forged)
        conn.execute(feed_audit.insert().values(**forged))
        set_head(conn, forged["seq"], forged["row_hash"])

    return action


def swap_rows_2_and_3(conn: sa.Connection) -> None:
    for statement in ("UPDATE feed_audit SET seq = -2 WHERE seq = 2", "UPDATE feed_audit SET seq = 2 WHERE seq = 3",
                      "UPDATE feed_audit SET seq = 3 WHERE seq = -2"):
        conn.exec_driver_sql(statement)


def truncate_everything(conn: sa.Connection) -> None:
    conn.exec_driver_sql("DELETE FROM feed_audit")
    set_head(conn, 0, "0" * 64)


SCENARIOS = {
    "a_tail_cut_and_head_moved_back": (cut_tail_and_move_head_back, 8, "cut from the end"),
    "b_edit_rechained_with_the_old_unkeyed_recipe": (edit_and_rechain(unkeyed), 3, "unkeyed"),
    "b_edit_rechained_with_a_guessed_key": (edit_and_rechain(guessed_key), 3, "seal"),
    "c_forged_row_appended_unkeyed": (append_forged(unkeyed), 11, "unkeyed"),
    "c_forged_row_appended_with_a_guessed_key": (append_forged(guessed_key), 11, "seal"),
    "edit": (lambda c: c.exec_driver_sql("UPDATE feed_audit SET personal = 1 WHERE seq = 4"), 4, "seal"),
    "delete": (lambda c: c.exec_driver_sql("DELETE FROM feed_audit WHERE seq = 5"), 5, "missing"),
    "truncate": (truncate_everything, 1, "cut from the end"),
    "reorder": (swap_rows_2_and_3, 2, "prev_hash"),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_verify_finds_the_first_tampered_row(home: Path, scenario: str) -> None:
    action, bad_seq, why = SCENARIOS[scenario]
    write_chain(home, 10)
    assert verify(home).exit_code == 0
    tamper(home, action)
    result = verify(home)
    assert result.exit_code == 1, result.output
    line = result.stderr.strip()
    assert len(line.splitlines()) == 1 and f"row {bad_seq}:" in line and why in line, line
    assert "ok" not in result.stdout


def test_verify_prints_the_count_and_head_when_ok(home: Path) -> None:
    write_chain(home, 3)
    result = verify(home)
    assert result.exit_code == 0, result.output
    engine = sa.create_engine(db_url(home))
    with engine.connect() as conn:
        head = conn.exec_driver_sql("SELECT row_hash FROM feed_audit_head").scalar_one()
    engine.dispose()
    assert "3 rows verified" in result.stdout and f"head row 3 hash {head}" in result.stdout


def snapshot_files(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.iterdir())
            if not p.name.endswith(("-wal", "-shm"))}


def test_verify_is_read_only_and_never_recreates_a_deleted_head(home: Path) -> None:
    write_chain(home, 4)
    tamper(home, lambda c: c.exec_driver_sql("DELETE FROM feed_audit_head"))
    before = snapshot_files(home / "feeds")
    for _ in range(2):  # the second run must see exactly what the first saw
        result = verify(home)
        assert result.exit_code == 1 and "head row" in result.stderr and "missing" in result.stderr, result.output
    assert snapshot_files(home / "feeds") == before  # feeds.db, the key and the anchors: same bytes, same mtime
    engine = sa.create_engine(db_url(home))
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM feed_audit_head").scalar_one() == 0
    engine.dispose()


def test_verify_on_a_home_without_an_audit_store_creates_nothing(home: Path) -> None:
    result = verify(home)
    assert result.exit_code == 1 and "no audit store" in result.stderr
    assert list((home / "feeds").iterdir()) == []


def test_verify_anchor_pins_the_head_so_a_later_cut_is_caught(home: Path) -> None:
    log = AuditLog(db_url(home), anchor_seconds=1e9)  # a writer that has anchored only its first commit
    append(log, 6)
    assert verify(home, "--anchor").exit_code == 0  # the cron job pins row 6
    log.engine.dispose()  # the writer dies without its closing anchor
    tamper(home, lambda c: (c.exec_driver_sql("DELETE FROM feed_audit WHERE seq > 2"),
                            set_head(c, 2, rows_of(c)[1]["row_hash"])))
    result = verify(home)
    assert result.exit_code == 1 and "row 3:" in result.stderr and "pins row 6" in result.stderr


# -- the serving path ------------------------------------------------------------------------


@pytest.fixture
def served(built: FeedHome, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[FeedConfig, str]]:
    """A feed API config over the built home, with an audit store of its own that has served 3 pages."""
    for name in ("IEHUB_FEEDS_DB_URL", "IEHUB_AUDIT_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("IEHUB_AUDIT_DIR", str(tmp_path))  # key and anchors beside this test's feeds.db
    config = FeedConfig(built.home, db_url=f"sqlite:///{tmp_path / 'feeds.db'}", rate=10_000.0, burst=10_000)
    store = KeyStore(config.db_url, cache_seconds=0)
    token = store.create("audit-tamper", None, None)[1]
    with TestClient(create_app(config, keys=store)) as client:
        for _ in range(3):
            assert client.get("/v1/feeds/project?limit=2", headers={"Authorization": f"Bearer {token}"}).status_code \
                == 200
    yield config, token
    store.dispose()


def serve_one(config: FeedConfig, token: str) -> int:
    store = KeyStore(config.db_url, cache_seconds=0)
    try:
        with TestClient(create_app(config, keys=store), raise_server_exceptions=False) as client:
            return client.get("/v1/feeds/project?limit=2", headers={"Authorization": f"Bearer {token}"}).status_code
    finally:
        store.dispose()


def counts(url: str) -> tuple[int, int]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.exec_driver_sql("SELECT count(*) FROM feed_audit").scalar_one()
        heads = conn.exec_driver_sql("SELECT count(*) FROM feed_audit_head").scalar_one()
    engine.dispose()
    return rows, heads


@pytest.mark.parametrize("statements", [
    ["DELETE FROM feed_audit_head"],  # the head row alone
    ["DELETE FROM feed_audit", "DELETE FROM feed_audit_head"],  # everything in the store: only the anchors remain
])
def test_serving_fails_closed_instead_of_restarting_the_chain(served: tuple[FeedConfig, str],
                                                               statements: list[str]) -> None:
    config, token = served
    url = str(config.db_url)
    rows_before = counts(url)[0]
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()
    rows_after_tamper = counts(url)[0]
    assert serve_one(config, token) == 503
    assert counts(url) == (rows_after_tamper, 0)  # no genesis row re-created, nothing appended
    assert rows_after_tamper in (0, rows_before)


def test_rotate_key_then_new_rows_are_sealed_with_the_new_key_and_all_verify(home: Path) -> None:
    write_chain(home, 2)
    rotated = CliRunner().invoke(main, ["--home", str(home), "audit", "rotate-key"], catch_exceptions=False)
    assert rotated.exit_code == 0 and "audit key rotated" in rotated.stdout, rotated.output
    key_file = home / "feeds" / "audit.key"
    assert len(key_file.read_text().split()) == 2 and key_file.stat().st_mode & 0o777 == 0o600
    write_chain(home, 2)  # the feed API started again
    result = verify(home, "--anchor")
    assert result.exit_code == 0 and "4 rows verified" in result.stdout, result.output
    key_file.write_text(key_file.read_text().split()[1] + "\n")  # the old key lost: its rows cannot be vouched for
    lost = verify(home)
    assert lost.exit_code == 1 and "row 1:" in lost.stderr
