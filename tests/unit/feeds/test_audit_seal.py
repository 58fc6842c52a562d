"""The audit's seal and anchors: the key outside the store, rotation, anchor records, chains from before keys."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from feeds.audit import AuditError, AuditLog
from feeds.audit_anchors import ANCHOR_FILE, FileAnchorSink
from feeds.audit_keys import AUDIT_KEY_ENV, KEY_FILE, AuditKeyError, Keyring
from tests.unit.feeds.test_audit import append, tamper


@pytest.fixture(autouse=True)
def no_env_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(AUDIT_KEY_ENV, raising=False)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feeds.db'}"


@pytest.fixture
def log(url: str) -> Iterator[AuditLog]:
    audit = AuditLog(url)
    yield audit
    audit.dispose()


def read_only(url: str) -> AuditLog:
    return AuditLog(url, read_only=True)


# -- the key ----------------------------------------------------------------------------------


def test_the_key_is_made_once_0600_outside_the_database_and_never_stored_in_it(log: AuditLog, url: str,
                                                                              tmp_path: Path) -> None:
    append(log, 2)
    key_file = tmp_path / KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = key_file.read_text().strip()
    assert len(bytes.fromhex(key)) == 32
    assert key.encode() not in (tmp_path / "feeds.db").read_bytes()
    again = AuditLog(url)  # a second worker: same key, one chain
    append(again, 1)
    again.dispose()
    assert key_file.read_text().strip() == key
    assert read_only(url).verify().rows == 3


def test_a_key_file_other_users_may_read_is_refused(log: AuditLog, url: str, tmp_path: Path) -> None:
    os.chmod(tmp_path / KEY_FILE, 0o644)
    with pytest.raises(AuditError, match="chmod 600"):
        AuditLog(url)


def test_verify_without_the_key_cannot_vouch_for_sealed_rows_and_does_not_make_one(log: AuditLog, url: str,
                                                                                  tmp_path: Path) -> None:
    append(log, 2)
    (tmp_path / KEY_FILE).unlink()
    with pytest.raises(AuditError, match="no audit key"):
        read_only(url).verify()
    assert not (tmp_path / KEY_FILE).exists()


def test_a_key_from_the_environment_is_used_and_must_differ_from_the_feed_secret(
        url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUDIT_KEY_ENV, "k" * 40)
    audit = AuditLog(url)
    append(audit, 2)
    audit.dispose()
    assert not (tmp_path / KEY_FILE).exists()
    assert read_only(url).verify().ok
    monkeypatch.setenv(AUDIT_KEY_ENV, "z" * 40)  # another key: the rows no longer verify
    report = read_only(url).verify()
    assert not report.ok and report.first_bad_seq == 1 and "does not hold" in (report.reason or "")
    with pytest.raises(AuditError, match="equals the feed secret"):
        AuditLog(url, feed_secret=b"z" * 40)
    monkeypatch.setenv(AUDIT_KEY_ENV, "short")
    with pytest.raises(AuditError, match="at least 32"):
        AuditLog(url)


# -- rotation ---------------------------------------------------------------------------------


def test_rotation_keeps_old_rows_verifiable_and_seals_new_rows_with_the_new_key(log: AuditLog, url: str,
                                                                               tmp_path: Path) -> None:
    append(log, 2)
    log.dispose()
    old, new = Keyring.rotate(tmp_path)
    assert old != new and Keyring.load(tmp_path, create=False).ids() == [old, new]
    assert (tmp_path / KEY_FILE).stat().st_mode & 0o777 == 0o600
    restarted = AuditLog(url)
    append(restarted, 2)
    restarted.dispose()
    report = read_only(url).verify()
    assert report.ok and report.rows == 4
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert [k for (k,) in conn.exec_driver_sql("SELECT mac_key_id FROM feed_audit ORDER BY seq")] == \
            [old, old, new, new]
    engine.dispose()


def test_a_row_sealed_with_a_retired_key_after_the_new_one_is_reported_as_forged(log: AuditLog, url: str,
                                                                                 tmp_path: Path) -> None:
    append(log, 1)
    Keyring.rotate(tmp_path)
    stale = log  # a worker still running with the old key (it was not restarted)
    fresh = AuditLog(url)
    append(fresh, 1)
    append(stale, 1)
    fresh.dispose()
    report = read_only(url).verify()
    assert not report.ok and report.first_bad_seq == 3 and "retired key" in (report.reason or "")


def test_a_row_sealed_with_a_key_the_keyring_lacks_is_reported(log: AuditLog, url: str, tmp_path: Path) -> None:
    append(log, 2)
    log.dispose()
    keys = (tmp_path / KEY_FILE).read_text()
    Keyring.rotate(tmp_path)
    append(AuditLog(url), 1)
    (tmp_path / KEY_FILE).write_text(keys)  # the newer key lost
    report = read_only(url).verify()
    assert not report.ok and report.first_bad_seq == 3 and "does not hold" in (report.reason or "")


def test_rotation_refuses_keys_that_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(AUDIT_KEY_ENV, "k" * 40)
    with pytest.raises(AuditKeyError, match="append a new key"):
        Keyring.rotate(tmp_path)


# -- anchors ----------------------------------------------------------------------------------


def anchor_lines(tmp_path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (tmp_path / ANCHOR_FILE).read_text().splitlines()]


def test_the_writer_anchors_its_first_commit_every_n_rows_and_on_close(url: str, tmp_path: Path) -> None:
    audit = AuditLog(url, anchor_rows=4, anchor_seconds=1e9)
    append(audit, 9)
    audit.dispose()
    assert [a["seq"] for a in anchor_lines(tmp_path)] == [1, 5, 9]
    assert (tmp_path / ANCHOR_FILE).stat().st_mode & 0o777 == 0o600
    assert read_only(url).verify().anchors == 3


def test_a_forged_or_edited_anchor_line_is_tampering_and_a_torn_last_line_is_not(log: AuditLog, url: str,
                                                                                tmp_path: Path) -> None:
    append(log, 3)
    log.dispose()
    path = tmp_path / ANCHOR_FILE
    good = path.read_bytes()
    with path.open("ab") as out:
        out.write(b'{"seq": 9')  # a crash mid-append
    assert read_only(url).verify().ok
    lines = [json.loads(x) for x in good.decode().splitlines()]
    lines[0]["seq"] = 2
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    report = read_only(url).verify()
    assert not report.ok and "line 1 fails its seal" in (report.reason or "")


def test_a_missing_anchor_log_is_tampering_when_the_chain_has_rows(log: AuditLog, url: str, tmp_path: Path) -> None:
    append(log, 2)
    log.dispose()
    (tmp_path / ANCHOR_FILE).unlink()
    report = read_only(url).verify()
    assert not report.ok and "no anchor" in (report.reason or "")


def test_a_writer_refuses_to_continue_a_chain_shorter_than_its_anchors(log: AuditLog, url: str) -> None:
    append(log, 5)
    log.dispose()  # anchors row 5
    rows = sa.create_engine(url)
    with rows.connect() as conn:
        hash3 = conn.exec_driver_sql("SELECT row_hash FROM feed_audit WHERE seq = 3").scalar_one()
    rows.dispose()
    tamper(url, "DELETE FROM feed_audit WHERE seq > 3", f"UPDATE feed_audit_head SET seq = 3, row_hash = '{hash3}'")
    restarted = AuditLog(url)
    with pytest.raises(AuditError, match="pinned row 5"):
        append(restarted, 1)
    restarted.dispose()


def test_anchor_sink_interface_lets_another_sink_keep_the_anchors(url: str, tmp_path: Path) -> None:
    class Remote:
        """Stands for a timestamping service: keeps anchors in memory."""

        name = "remote timestamping service"

        def __init__(self) -> None:
            self.kept: list[Any] = []

        def record(self, anchor: Any) -> None:
            self.kept.append(anchor)

        def read(self) -> tuple[list[Any], list[str]]:
            return list(self.kept), []

    remote = Remote()
    keyring = Keyring.load(tmp_path, create=True)
    audit = AuditLog(url, keyring=keyring, sinks=[remote])
    append(audit, 3)
    audit.dispose()
    assert [a.seq for a in remote.kept] == [1, 3] and not (tmp_path / ANCHOR_FILE).exists()
    assert AuditLog(url, read_only=True, keyring=keyring, sinks=[remote]).verify().ok
    assert FileAnchorSink(tmp_path / ANCHOR_FILE, keyring).read() == ([], [])


# -- chains from before keyed audit ------------------------------------------------------------


def old_chain(url: str, rows: int) -> None:
    """A feeds.db written by the first version: no mac_key_id column, plain SHA-256 hashes, no anchors."""
    engine = sa.create_engine(url)
    prev = "0" * 64
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE feed_audit (seq BIGINT PRIMARY KEY, at DATETIME NOT NULL, key_id VARCHAR(64) NOT NULL, "
            "consumer VARCHAR(200) NOT NULL, dataset VARCHAR(100) NOT NULL, endpoint VARCHAR(200) NOT NULL, "
            "params TEXT NOT NULL, rows BIGINT NOT NULL, fields TEXT NOT NULL, personal BOOLEAN NOT NULL, "
            "digest VARCHAR(200) NOT NULL, snapshot VARCHAR(100) NOT NULL, prev_hash VARCHAR(64) NOT NULL, "
            "row_hash VARCHAR(64) NOT NULL)")
        conn.exec_driver_sql("CREATE TABLE feed_audit_head (id INTEGER PRIMARY KEY, seq BIGINT NOT NULL, "
                             "row_hash VARCHAR(64) NOT NULL)")
        for seq in range(1, rows + 1):
            row = {"seq": seq, "at": f"2025-03-0{seq}T08:00:00.000000+00:00", "key_id": "0123456789abcdef",
                   "consumer": "杨浦区产教融合平台", "dataset": "trainee", "endpoint": "changes",
                   "params": '{"limit":100}', "rows": seq, "fields": '["trainee_id"]', "personal": False,
                   "digest": "sha256:" + "0" * 64, "snapshot": "20250301T080000000000Z", "prev_hash": prev}
            body = json.dumps(row, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
            row["row_hash"] = prev = hashlib.sha256(body.encode("utf-8")).hexdigest()
            row["at"] = f"2025-03-0{seq} 08:00:00.000000"
            conn.execute(sa.text("INSERT INTO feed_audit VALUES (:seq, :at, :key_id, :consumer, :dataset, "
                                 ":endpoint, :params, :rows, :fields, :personal, :digest, :snapshot, :prev_hash, "
                                 ":row_hash)"), row)
        conn.execute(sa.text("INSERT INTO feed_audit_head VALUES (1, :s, :h)"), {"s": rows, "h": prev})
    engine.dispose()


def test_an_old_unkeyed_chain_is_adopted_once_and_continued_with_seals(url: str, tmp_path: Path) -> None:
    old_chain(url, 3)
    audit = AuditLog(url)  # the upgrade: adds the key-id column and anchors the old head as adopted
    assert [(a["seq"], a["kind"]) for a in anchor_lines(tmp_path)] == [(3, "adopt")]
    append(audit, 2)
    audit.dispose()
    report = read_only(url).verify()
    assert report.ok and report.rows == 5, report
    AuditLog(url).dispose()  # a second start adopts nothing more
    assert [a["kind"] for a in anchor_lines(tmp_path)].count("adopt") == 1


def test_an_adopted_old_row_rewritten_with_the_old_recipe_is_caught(url: str) -> None:
    old_chain(url, 3)
    AuditLog(url).dispose()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for (name,) in conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
            conn.exec_driver_sql(f"DROP TRIGGER {name}")
        conn.exec_driver_sql("UPDATE feed_audit SET rows = 0 WHERE seq = 2")
    engine.dispose()
    report = read_only(url).verify()
    assert not report.ok and report.first_bad_seq == 2
