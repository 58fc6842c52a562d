"""The Lingang platform end to end through the connector, lake, ledger and warehouse.

Real HTTP on loopback against the sandbox, real Parquet files, a real DuckDB build.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iehub import pipeline
from iehub.config import Settings
from tests.conftest import REPO, start_platform
from tests.integration.helpers import SPEC, core_keys, core_snapshot, ledger_loaded, quarantined_keys
from warehouse.build import build

pytestmark = pytest.mark.integration


def sync_and_build(home: Path) -> list[dict]:
    settings = Settings.from_env(home)
    results = pipeline.sync(settings, ["lingang_platform"])
    build(home, settings.catalog())
    return results


def assert_matches_source(home: Path, platform) -> None:
    """Every live record is in core exactly once (or quarantined with a reason); deleted ones are not."""
    for module, stream in SPEC.streams.items():
        truth = platform.records(module)
        live = {r["id"] for r in truth if int(r["isDeleted"]) == 0}
        deleted = {r["id"] for r in truth if int(r["isDeleted"]) == 1}
        keys = core_keys(home, stream.entity)
        assert len(keys) == len(set(keys)), f"{stream.entity}: duplicate keys in core"
        quarantined = quarantined_keys(home, stream.entity)
        assert set(keys) | (quarantined & live) == live, f"{stream.entity}: core does not match the source"
        assert not set(keys) & deleted, f"{stream.entity}: deleted records still in core"
        assert len(quarantined & live) <= max(3, 0.05 * len(live)), f"{stream.entity}: too much quarantined"


def staged_leftovers(home: Path) -> list[str]:
    """Staged files that are not inputs of a landed batch.

    Land links staged files into the lake and keeps the batch's inputs, so a cleared step can run
    again (#14); the next extraction of the stream removes them. What may stay is therefore a file
    of a batch the ledger holds as landed; a temp file, or a file of any other batch, is a
    leftover of an interrupted pass."""
    landed = {b.batch_id for b in Settings.from_env(home).catalog().landed_batches()}
    return sorted(str(p.relative_to(home)) for p in (home / "staging").rglob("*")
                  if p.is_file() and (p.name.endswith(".tmp")
                                      or p.suffix == ".parquet" and p.name.split(".")[0] not in landed))


def test_full_sync_lands_every_record_once_and_reconciles(iehub_home: Path, lingang) -> None:
    results = sync_and_build(iehub_home)
    assert {r["stream"] for r in results} == set(SPEC.streams)
    for r in results:
        assert r["rows_in"] == r["rows_loaded"] + r["rows_quarantined"]
        assert r["rows_in"] > 0
    assert_matches_source(iehub_home, lingang)
    # the lake layout of DESIGN.md
    assert list((iehub_home / "lake" / "raw" / "lingang_platform" / "notice").glob("dt=*/*.parquet"))
    assert list((iehub_home / "lake" / "std" / "notice" / "source=lingang_platform").glob("dt=*/*.parquet"))
    assert staged_leftovers(iehub_home) == [], "staging must hold only the landed batches' own inputs"


def test_quarantine_keeps_rejected_rows_with_reasons(iehub_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    platform = start_platform(monkeypatch, seed=5, scale=0.1, dirty_ratio=0.05)
    try:
        results = sync_and_build(iehub_home)
    finally:
        platform.stop()
    assert sum(r["rows_quarantined"] for r in results) > 0
    import duckdb

    files = [str(p) for p in (iehub_home / "lake" / "quarantine").rglob("*.parquet")]
    rows = duckdb.connect().execute(
        "select field, rule, reason, _record from read_parquet(?) where reason is not null", [files]).fetchall()
    assert rows and all(reason and rule.startswith(("mapping.", "quality.")) and record.startswith("{") for _, rule, reason, record in rows)


def test_same_sync_twice_changes_nothing(iehub_home: Path, lingang) -> None:
    sync_and_build(iehub_home)
    before, loaded_before = core_snapshot(iehub_home), ledger_loaded(iehub_home)
    second = sync_and_build(iehub_home)
    assert all(r["rows_loaded"] == 0 for r in second), second
    assert core_snapshot(iehub_home) == before
    assert ledger_loaded(iehub_home) == loaded_before
    third = sync_and_build(iehub_home)
    # every pass is an extraction of its own (the lake is append-only, #19): new batch ids, nothing in them;
    # a rerun of the *same* extraction replaces itself (tests/integration/warehouse/test_lake_append_only.py)
    assert not {r["batch_id"] for r in third} & {r["batch_id"] for r in second}
    assert all(r["rows_loaded"] == 0 for r in third), third
    assert core_snapshot(iehub_home) == before


def test_incremental_sync_after_changes(iehub_home: Path, lingang) -> None:
    sync_and_build(iehub_home)
    counts = lingang.mutate(changed=0.05, seed=3)
    assert any(c["updated"] for c in counts.values())
    results = sync_and_build(iehub_home)
    changed = sum(c["updated"] + c["inserted"] + c["soft_deleted"] for c in counts.values())
    total = sum(len(lingang.records(m)) for m in SPEC.streams)
    assert sum(r["rows_in"] for r in results) < total / 3, "an incremental pass must not re-read everything"
    assert sum(r["rows_in"] for r in results) >= changed
    assert_matches_source(iehub_home, lingang)


def test_every_record_arrives_once_under_faults(iehub_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    faults = "5xx=0.1,429=0.08,timeout=0.02,reset=0.1,truncate=0.08,short=0.1,expire=0.08,shift=0.05"
    from sandbox.lingang import FaultPlan

    plan = FaultPlan.parse(faults)
    plan.timeout_seconds = 1.5
    platform = start_platform(monkeypatch, seed=21, scale=0.1, faults=plan, token_ttl=2.0, page_cap=20)
    try:
        spec = SPEC.model_copy(update={"http": SPEC.http.model_copy(update={
            "timeout_seconds": 0.8, "backoff_seconds": 0.01, "backoff_max_seconds": 0.05})})
        settings = Settings.from_env(iehub_home)
        results = [pipeline.sync_stream(settings, "lingang_platform", s, spec=spec) for s in spec.streams]
        build(iehub_home, settings.catalog())
        injected = platform.stats["faults"]
        assert_matches_source(iehub_home, platform)
    finally:
        platform.stop()
    assert sum(r["http"]["retries"] for r in results) > 0
    for kind in ("5xx", "429", "reset", "truncate", "short", "expire"):
        assert injected.get(kind, 0) > 0, f"fault {kind} was never injected: {injected}"


def test_bad_credentials_fail_clearly_without_leaking(iehub_home: Path, lingang, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.errors import FatalError

    monkeypatch.setenv("IEHUB_LINGANG_CLIENT_SECRET", "wrong-secret-value")
    with pytest.raises(FatalError) as info:
        pipeline.sync(Settings.from_env(iehub_home), ["lingang_platform"], streams=["notices"])
    message = str(info.value)
    assert "40101" in message and "lingang_platform" in message and "wrong-secret-value" not in message
    assert Settings.from_env(iehub_home).catalog().get_state("lingang_platform", "notice") is None


def _spawn_sync(home: Path) -> subprocess.Popen:
    env = {**os.environ, "IEHUB_HOME": str(home)}
    return subprocess.Popen([sys.executable, "-m", "iehub.cli", "sync", "lingang_platform"], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_sigkill_mid_sync_then_rerun_equals_clean_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    platform = start_platform(monkeypatch, seed=13, scale=2.0)
    try:
        clean, killed = tmp_path / "clean", tmp_path / "killed"
        monkeypatch.setenv("IEHUB_HOME", str(clean))
        sync_and_build(clean)
        proc = _spawn_sync(killed)
        deadline = time.monotonic() + 60
        # kill once at least one batch has landed and the next one is being extracted
        while time.monotonic() < deadline:
            landed = list((killed / "lake" / "std").rglob("*.parquet"))
            staged = list((killed / "staging").rglob("*.tmp")) + list((killed / "staging").rglob("*.parquet"))
            if landed and staged:
                break
            time.sleep(0.01)
        assert proc.poll() is None, "sync finished before it could be killed; raise the scale"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        monkeypatch.setenv("IEHUB_HOME", str(killed))
        sync_and_build(killed)
        assert core_snapshot(killed) == core_snapshot(clean)
        assert staged_leftovers(killed) == [], "staging left behind"
    finally:
        platform.stop()


def test_live_keys_follow_the_landed_state(iehub_home: Path, lingang) -> None:
    settings = Settings.from_env(iehub_home)
    assert len(pipeline.live_keys(settings, "lingang_platform", "notice")) == 0
    sync_and_build(iehub_home)
    keys = set(pipeline.live_keys(settings, "lingang_platform", "notice").to_pylist())
    assert keys == set(core_keys(iehub_home, "notice"))
    lingang.mutate(changed=0.1, seed=9)
    sync_and_build(iehub_home)
    keys = set(pipeline.live_keys(settings, "lingang_platform", "notice").to_pylist())
    assert keys == set(core_keys(iehub_home, "notice"))
    deleted = {r["id"] for r in lingang.records("notices") if int(r["isDeleted"]) == 1}
    assert deleted and not keys & deleted


def test_raw_rows_are_the_records_as_served_with_their_digests(lingang) -> None:
    """Over real HTTP, the bulk path's raw rows are the platform's records in API order, each
    written as the platform serialised it, keyed and digested as the pipeline compares them."""
    import hashlib

    import orjson

    from connectors.rest.stream import RestSourceStream

    for module in ("notices", "talent_demands"):
        stream = RestSourceStream(SPEC, module)
        try:
            rows = [r for page in stream.read(None) for r in page.table.to_pylist()]
        finally:
            stream.close()
        truth = lingang.records(module)
        assert [r["_record"] for r in rows] == [orjson.dumps(r).decode() for r in truth]
        assert [r["_key"] for r in rows] == [r["id"] for r in truth]
        assert [r["_cursor"] for r in rows] == [r["updateTime"] for r in truth]
        assert all(r["_digest"] == hashlib.md5(r["_record"].encode(), usedforsecurity=False).hexdigest()[:16]
                   for r in rows)
