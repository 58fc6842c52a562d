"""The lake's invariants, as functions a test and the soak benchmark (bench/lake_soak.py) both check.

A *hub under test* is one IEHUB_HOME synced from the embedded sandbox sources (the municipal
SQLite database and the 杨浦 CSV drop folder). After any sequence of syncs, mutations, bad and
late files, full resyncs, replays and builds:

1. the ledger reconciles: every landed batch has rows_in = rows_loaded + rows_quarantined;
2. no natural key is live twice in core, and none is both live and a tombstone;
3. every source delete is a tombstone: a key the hub ever landed that the source no longer
   holds live is not in core and is in ``core._tombstones``;
4. the warehouse equals a fresh full load of the source state (current rows, business columns,
   keys that were ever quarantined left out: core keeps their last good version by design);
5. ``build --full`` from the lake equals the incremental warehouse (:mod:`warehouse.compare`).

Each check returns a list of violations (empty when it holds), so the benchmark can count drift
instead of stopping at the first difference.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Iterator

import duckdb
import sqlalchemy as sa

from connectors.spec import load_spec
from iehub import pipeline
from iehub.config import Settings
from sandbox import municipal
from sandbox.districts import YANGPU_DAY0, DistrictDrops
from sandbox.districts.files import write_atomic, write_yangpu, yangpu_csv_text
from warehouse.build import build
from warehouse.compare import core_drift
from warehouse.publish import current_path

MUNICIPAL, YANGPU = "municipal_projects", "district_yangpu"
MUNICIPAL_STREAMS = {"projects": ("project", "project_id", "projects"),
                     "training_bases": ("training_base", "training_base_id", "training_bases")}
#: (entity, key column) of the core tables compared, with the sources that feed them.
COMPARED = (("project", "project_id"), ("training_base", "training_base_id"))
PER_RUN = ("_batch_id", "_extracted_at", "change_version")


def _spec(source: str):
    spec = load_spec(source)
    if source != MUNICIPAL:
        return spec
    # reconcile hard deletes on every pass, so "every delete is a tombstone" holds after each sync
    streams = {n: s.model_copy(update={"reconcile_every_hours": 0}) for n, s in spec.streams.items()}
    return spec.model_copy(update={"streams": streams})


def age(folder: Path, seconds: float = 30) -> None:
    """Make dropped files look settled (the spec waits a moment for a file to stop changing)."""
    for path in folder.iterdir():
        if path.is_file():
            os.utime(path, (time.time() - seconds, time.time() - seconds))


class Sources:
    """The sandbox source systems of one scenario: a municipal SQLite file and a 杨浦 drop folder."""

    def __init__(self, root: Path, *, seed: int, scale: float = 0.01) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.url = f"sqlite:///{root / 'municipal.sqlite'}"
        municipal.seed(self.url, scale=scale, seed=seed)
        self.drops = DistrictDrops(root / "districts")
        self.drops.seed(seed=seed, scale=scale * 5)
        age(self.drops.yangpu)
        self.extra_files = 0

    @contextmanager
    def environment(self) -> Iterator[None]:
        saved = {k: os.environ.get(k) for k in ("IEHUB_MUNICIPAL_DB_URL", "IEHUB_YANGPU_DROP")}
        os.environ["IEHUB_MUNICIPAL_DB_URL"] = self.url
        os.environ["IEHUB_YANGPU_DROP"] = str(self.drops.yangpu)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    # -- mutations --------------------------------------------------------------------------
    def mutate_municipal(self, changed: float, seed: int) -> None:
        municipal.mutate(self.url, changed=changed, seed=seed)

    def mutate_yangpu(self, changed: float) -> None:
        self.drops.mutate(changed=changed)
        age(self.drops.yangpu)

    def _current_day(self) -> date:
        return YANGPU_DAY0 + timedelta(days=len(self.drops._state()["rounds"]))

    def drop_bad_file(self, kind: str) -> None:
        """A snapshot of the current state with one defect, named for the current period (applied after it).

        ``duplicate``: one key twice with different content; ``control``: an escape character in a
        title; ``late``: an older period's snapshot, refused as late.
        """
        import dataclasses

        projects = self.drops.projects("YP")
        clean = [p for p in projects if not p.dirty]
        self.extra_files += 1
        if kind == "late":
            write_yangpu(self.drops.yangpu, clean[: len(clean) // 2], YANGPU_DAY0 - timedelta(days=30), utf8_bom=True)
            age(self.drops.yangpu)
            return
        target = clean[self.extra_files % len(clean)]
        if kind == "duplicate":
            i = projects.index(target)
            projects = projects[: i + 1] + [dataclasses.replace(target, lead_name="上海积塔半导体有限公司")] + projects[i + 1:]
        else:
            projects = [dataclasses.replace(p, title=p.title + "\x1b[0m") if p is target else p for p in projects]
        day = self._current_day()
        # same period as the current snapshot, a later name: applied after it (never over its file)
        write_atomic(self.drops.yangpu / f"yangpu_projects_{day:%Y%m%d}_{self.extra_files:03d}{kind[0]}.csv",
                     ("\ufeff" + yangpu_csv_text(projects, day)).encode("utf-8"))
        age(self.drops.yangpu)

    # -- the source state -------------------------------------------------------------------
    def live_keys(self) -> dict[str, set[tuple[str, str]]]:
        """entity → {(source, key)} the sources hold live now."""
        engine = sa.create_engine(self.url)
        out: dict[str, set[tuple[str, str]]] = {"project": set(), "training_base": set()}
        try:
            with engine.connect() as conn:
                for _, (entity, _, table) in MUNICIPAL_STREAMS.items():
                    pk = municipal.PRIMARY_KEYS[table]
                    out[entity] |= {(MUNICIPAL, str(k)) for (k,) in conn.exec_driver_sql(
                        f"SELECT {pk} FROM {table} WHERE deleted_at IS NULL")}
        finally:
            engine.dispose()
        out["project"] |= {(YANGPU, p.project_id) for p in self.drops.projects("YP")}
        return out


def sync(home: Path, *, full: bool = False) -> list[dict]:
    """Every compared stream of both sources, then an incremental build."""
    settings = Settings.from_env(home)
    out = []
    for source, streams in ((MUNICIPAL, list(MUNICIPAL_STREAMS)), (YANGPU, ["projects"])):
        spec = _spec(source)
        for stream in streams:
            out.append(pipeline.sync_stream(settings, source, stream, full=full, spec=spec))
    build(home, settings.catalog())
    return out


def replay(home: Path) -> None:
    from iehub.replay import replay as run_replay

    settings = Settings.from_env(home)
    run_replay(settings)
    build(home, settings.catalog())


# ------------------------------------------------------------------------------ invariants
def _con(home: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(current_path(home)), read_only=True)


def ledger_violations(home: Path) -> list[str]:
    return [f"batch {b.batch_id}: rows_in {b.rows_in} != {b.rows_loaded} loaded + {b.rows_quarantined} quarantined"
            for b in Settings.from_env(home).catalog().landed_batches()
            if b.rows_in != b.rows_loaded + b.rows_quarantined]


def duplicate_violations(home: Path) -> list[str]:
    con = _con(home)
    try:
        out = []
        for entity, key in COMPARED:
            out += [f"{entity} {s}/{k} live {n} times" for s, k, n in con.execute(
                f"SELECT _source, {key}, count(*) FROM core.{entity} GROUP BY ALL HAVING count(*) > 1").fetchall()]
            out += [f"{entity} {s}/{k} both live and a tombstone" for s, k in con.execute(
                f"SELECT c._source, c.{key} FROM core.{entity} c JOIN core._tombstones t ON t.entity = '{entity}' "
                f"AND t.natural_key = json_object('_source', c._source, '{key}', c.{key})::VARCHAR").fetchall()]
        return out
    finally:
        con.close()


def _quarantined(home: Path, entity: str) -> set[tuple[str, str]]:
    files = [str(p) for p in (home / "lake" / "quarantine" / entity).rglob("*.parquet")]
    if not files:
        return set()
    return {(s, k) for s, k in duckdb.sql(f"SELECT DISTINCT _source, _key FROM read_parquet({files}) "
                                          "WHERE _key IS NOT NULL").fetchall()}


def _landed(home: Path, entity: str, key: str) -> set[tuple[str, str]]:
    settings = Settings.from_env(home)
    files = [str(home / b.std_path) for b in settings.catalog().landed_batches(entity) if b.rows_loaded]
    if not files:
        return set()
    return set(duckdb.sql(f"SELECT DISTINCT _source, {key} FROM read_parquet({files}, union_by_name = true) "
                          "WHERE NOT coalesce(_is_deleted, false)").fetchall())


def tombstone_violations(home: Path, sources: Sources) -> list[str]:
    live = sources.live_keys()
    con = _con(home)
    try:
        out = []
        for entity, key in COMPARED:
            core_keys = set(con.execute(f"SELECT _source, {key} FROM core.{entity}").fetchall())
            tombs = set(con.execute(
                f"SELECT natural_key::JSON->>'_source', natural_key::JSON->>'{key}' FROM core._tombstones "
                f"WHERE entity = '{entity}'").fetchall())
            gone = _landed(home, entity, key) - live[entity]
            out += [f"{entity} {s}/{k}: deleted in the source but live in core" for s, k in sorted(core_keys & gone)]
            out += [f"{entity} {s}/{k}: deleted in the source, no tombstone" for s, k in sorted(gone - tombs)]
        return out
    finally:
        con.close()


def fresh_load_violations(home: Path, sources: Sources) -> list[str]:
    """Sync the sources' current state into a new home and compare core with ``home``'s."""
    fresh = Path(tempfile.mkdtemp(prefix="fresh-", dir=sources.root))
    try:
        sync(fresh, full=True)
        out = []
        con = duckdb.connect()
        try:
            con.execute(f"ATTACH '{current_path(home)}' AS inc (READ_ONLY)")
            con.execute(f"ATTACH '{current_path(fresh)}' AS fresh (READ_ONLY)")
            for entity, key in COMPARED:
                skip = _quarantined(home, entity) | _quarantined(fresh, entity)
                con.execute("CREATE OR REPLACE TEMP TABLE skip (s VARCHAR, k VARCHAR)")
                if skip:
                    con.executemany("INSERT INTO skip VALUES (?, ?)", sorted(skip))  # a few keys, not a load
                cols = [c for (c,) in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE database_name = 'inc' AND schema_name = 'core' "
                    "AND table_name = ? ORDER BY column_index", [entity]).fetchall() if c not in PER_RUN]
                sel = ", ".join(f'"{c}"' for c in cols)
                for a, b, label in (("inc", "fresh", "only incremental"), ("fresh", "inc", "only fresh load")):
                    rows = con.execute(
                        f"SELECT _source, {key} FROM (SELECT {sel} FROM {a}.core.{entity} EXCEPT ALL "
                        f"SELECT {sel} FROM {b}.core.{entity}) AS d "
                        f"WHERE NOT EXISTS (SELECT 1 FROM skip WHERE skip.s = d._source AND skip.k = d.{key})"
                    ).fetchall()
                    out += [f"{entity} {s}/{k}: {label}" for s, k in rows]
        finally:
            con.close()
        return out
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def rebuild_violations(home: Path) -> list[str]:
    """``build --full`` from the lake against the incremental warehouse (which it then replaces)."""
    kept = home / "incremental.duckdb"
    shutil.copyfile(current_path(home), kept)
    try:
        build(home, Settings.from_env(home).catalog(), full=True)
        return [f"core.{d.table}: {d.only_left} rows only incremental, {d.only_right} only rebuilt"
                for d in core_drift(kept, current_path(home)) if d.rows]
    finally:
        kept.unlink(missing_ok=True)


def all_violations(home: Path, sources: Sources, *, fresh: bool = True, rebuild: bool = True) -> dict[str, list[str]]:
    out = {"ledger": ledger_violations(home), "duplicates": duplicate_violations(home),
           "tombstones": tombstone_violations(home, sources)}
    if fresh:
        out["fresh_load"] = fresh_load_violations(home, sources)
    if rebuild:
        out["rebuild"] = rebuild_violations(home)
    return out
