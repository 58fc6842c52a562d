"""Sources the scenarios measure against, prepared once and reused across repeats and runs.

Why cached: seeding five million rows into PostgreSQL or writing a million-row GBK file takes
longer than syncing them, and every repeat (hub and peers alike) must read the very same data.
Each prepared source lives under ``bench/.work/setup/<name>`` (git-ignored) and is trusted only
when its ``ready.json`` exists, written last; a half-prepared directory is thrown away and
rebuilt. Databases on the PostgreSQL server carry a marker row so a database reseeded by
someone else is noticed and prepared again. Servers (the Lingang platform) are not cached:
they start once per harness run and stop with it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Callable

from bench.runner import REPO, Measure, child_env, run_measure

#: prepared sources and run folders; IEHUB_BENCH_WORK points elsewhere (e.g. one folder per concurrent run)
WORK = Path(os.environ["IEHUB_BENCH_WORK"]) if os.environ.get("IEHUB_BENCH_WORK") else REPO / "bench" / ".work"
PG_URL_ENV = "IEHUB_BENCH_PG_URL"
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SETUP_TIMEOUT = 7200.0


class SetupError(RuntimeError):
    """A source could not be prepared (a server is missing, a seed failed); the message says which."""


@dataclass
class Context:
    """What a scenario's plan gets: its scale, the seed, where to work, and where to register teardown."""

    scale: int
    seed: int
    quick: bool
    work: Path = WORK
    servers: "ServerPool | None" = None
    notes: list[str] = field(default_factory=list)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
    os.replace(tmp, path)


#: what generated data depends on, and what a prepared home (lake, ledger, warehouse) depends on
SOURCE_CODE = ("sandbox",)
HUB_CODE = ("sandbox", "schemas", "connectors", "quality", "warehouse", "iehub")


def code_fingerprint(packages: tuple[str, ...], root: Path = REPO) -> str:
    """A hash of the packages' (or single files') Python sources: a prepared source made by other code is stale.

    A home synced by last week's hub holds last week's ledger, lake and warehouse layout; reusing
    it would measure (or break) today's code against yesterday's state.
    """
    digest = hashlib.sha256()
    for package in packages:
        where = root / package
        for path in [where] if where.is_file() else sorted(where.rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cached(work: Path, name: str, prepare: Callable[[Path], dict[str, Any]],
           still_valid: Callable[[dict[str, Any]], bool] = lambda info: True,
           depends: tuple[str, ...] = SOURCE_CODE) -> dict[str, Any]:
    """The prepared source `name`: read from its ready.json while still valid and made by the same code
    (`depends`), else prepared afresh by `prepare(dir)`."""
    folder = work / "setup" / name
    ready = folder / "ready.json"
    fingerprint = code_fingerprint(depends)
    if ready.exists():
        info = json.loads(ready.read_text(encoding="utf-8"))
        if info.get("_code") == fingerprint and still_valid(info):
            return info
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    info = {**prepare(folder), "_code": fingerprint}
    _write_json(ready, info)
    return info


def _age(folder: Path, seconds: float = 120.0, only: Path | None = None) -> None:
    """Make dropped files look settled: the file kind leaves alone a file modified moments ago.
    `only`: just that file (a district drops a new file; the ones it dropped before stay untouched)."""
    past = time.time() - seconds
    for p in [only] if only is not None else folder.iterdir():
        os.utime(p, (past, past))


def _helper_run(measure: Measure, work: Path, what: str) -> dict[str, Any]:
    """Run a hub measure to prepare a source (e.g. the first sync of an incremental scenario)."""
    try:
        return run_measure(measure, work_dir=work / "runs", timeout=SETUP_TIMEOUT).to_dict()
    except Exception as exc:  # noqa: BLE001 - re-raised with what was being prepared
        raise SetupError(f"preparing {what} failed: {exc}") from exc


# ------------------------------------------------------------------------------ PostgreSQL
def pg_server_url() -> str:
    return os.environ.get(PG_URL_ENV) or DEFAULT_PG_URL


def require_postgres() -> str:
    """The server URL, after checking it answers; a SetupError names the server when it does not."""
    import sqlalchemy as sa

    url = pg_server_url()
    engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure to connect means the same thing here
        where = sa.make_url(url)
        raise SetupError(f"PostgreSQL at {where.host}:{where.port or 5432} is unreachable "
                         f"({type(exc).__name__}); this scenario needs it: start the server or set {PG_URL_ENV}") from exc
    finally:
        engine.dispose()
    return url


def pg_database(name: str) -> str:
    """URL of database `name` on the bench server, created when missing."""
    import sqlalchemy as sa

    admin = sa.create_engine(require_postgres(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.exec_driver_sql("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).first():
                conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        return admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        admin.dispose()


def _marker(url: str, value: str | None = None) -> str | None:
    """Read (or, given `value`, write) the bench marker row of a database."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS bench_marker (marker TEXT NOT NULL)")
            if value is not None:
                conn.exec_driver_sql("DELETE FROM bench_marker")
                conn.exec_driver_sql("INSERT INTO bench_marker (marker) VALUES (%s)" if url.startswith("postgresql")
                                     else "INSERT INTO bench_marker (marker) VALUES (?)", (value,))
                return value
            row = conn.exec_driver_sql("SELECT marker FROM bench_marker").first()
            return row[0] if row else None
    except sa.exc.SQLAlchemyError:
        return None
    finally:
        engine.dispose()


def _table_bytes(url: str, table: str) -> int:
    """On-disk size of `table` (PostgreSQL heap) or of the SQLite file: the bytes a full read scans."""
    import sqlalchemy as sa

    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).stat().st_size
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.exec_driver_sql(f"SELECT pg_relation_size('{table}')").scalar_one())
    finally:
        engine.dispose()


def _seed_municipal(url: str, rows: int, seed: int) -> dict[str, int]:
    from sandbox import municipal

    return municipal.seed(url, scale=rows / municipal.BASE_SIZES["projects"], seed=seed,
                          tables=("organizations", "projects"))


def municipal_db(ctx: Context, dialect: str, rows: int, *, state: str = "pristine") -> dict[str, Any]:
    """The municipal project database holding `rows` projects, on PostgreSQL or in a SQLite file.

    `state` names what was done to it after seeding ("pristine": nothing), so a database that a
    scenario mutates never serves one that expects it untouched.
    """
    name = f"municipal-{dialect}-{rows}-s{ctx.seed}-{state}"
    if dialect == "postgresql":
        url = pg_database(f"iehub_bench_{rows}_s{ctx.seed}_{state}")
    elif dialect == "sqlite":
        url = f"sqlite:///{ctx.work / 'setup' / name / 'municipal.sqlite'}"
    else:
        raise SetupError(f"municipal database: unknown dialect {dialect!r} (postgresql or sqlite)")

    def prepare(folder: Path) -> dict[str, Any]:
        marker = uuid.uuid4().hex
        counts = _seed_municipal(url, rows, ctx.seed)
        _marker(url, marker)
        return {"url": url, "marker": marker, "rows": counts["projects"], "source_bytes": _table_bytes(url, "projects")}

    return cached(ctx.work, name, prepare, lambda info: info.get("url") == url and _marker(url) == info.get("marker"))


def municipal_incremental(ctx: Context, rows: int) -> dict[str, Any]:
    """A PostgreSQL municipal database synced once into a home, then changed by 1% at the source;
    plus a second home that has synced the change too (for the nothing-changed sync)."""
    name = f"municipal-postgresql-{rows}-s{ctx.seed}-changed1pct"
    url = pg_database(f"iehub_bench_{rows}_s{ctx.seed}_changed1pct")

    def prepare(folder: Path) -> dict[str, Any]:
        from bench.floors import floor_table
        from sandbox import municipal

        marker = uuid.uuid4().hex
        _seed_municipal(url, rows, ctx.seed)
        base, synced = folder / "home-before-change", folder / "home-after-change"
        _helper_run(Measure("hub_municipal", {"url": url, "home": str(base), "full": True}), ctx.work,
                    f"the first sync of {rows:,} municipal projects")
        # the incremental floor's copy of the table as it was (bench/floors.py)
        floor_db = folder / "floor-before-change.duckdb"
        cursor = floor_table(url, "projects", floor_db)
        # the dlt peer's pipeline and DuckDB file as its full load left them (bench/measures.py)
        dlt_dir = folder / "dlt-before-change"
        if importlib.util.find_spec("dlt") is not None:
            from bench.measures import prepare_dlt_incremental

            prepare_dlt_incremental(url, dlt_dir)
        changed = municipal.mutate(url, changed=0.01, seed=1)["projects"]
        shutil.copytree(base, synced, symlinks=True)
        _helper_run(Measure("hub_municipal", {"url": url, "home": str(synced), "full": False}), ctx.work,
                    "the sync of the 1% change")
        _marker(url, marker)
        return {"url": url, "marker": marker, "changed": changed, "home_before_change": str(base),
                "home_after_change": str(synced), "source_bytes": _table_bytes(url, "projects"),
                "floor_db": str(floor_db), "floor_cursor": cursor,
                "dlt_dir": str(dlt_dir) if dlt_dir.exists() else None}

    return cached(ctx.work, name, prepare, lambda info: _marker(url) == info.get("marker"),
                  depends=(*HUB_CODE, "bench/setups.py", "bench/floors.py"))


# ---------------------------------------------------------------------------- district files
DAY_ONE = date(2024, 3, 1)


def yangpu_csv(ctx: Context, rows: int, dirty_ratio: float) -> dict[str, Any]:
    """A 杨浦 drop folder with one GBK CSV snapshot of `rows` projects, `dirty_ratio` of them with a bad date."""
    name = f"yangpu-csv-{rows}-s{ctx.seed}-dirty{dirty_ratio:g}"

    def prepare(folder: Path) -> dict[str, Any]:
        from sandbox.districts.data import base_projects
        from sandbox.districts.files import write_yangpu

        drop = folder / "drop"
        path = write_yangpu(drop, base_projects(ctx.seed, rows / 2000, "YP", DAY_ONE, dirty_ratio=dirty_ratio), DAY_ONE)
        _age(drop)
        return {"drop": str(drop), "rows": rows, "source_bytes": path.stat().st_size}

    return cached(ctx.work, name, prepare)


def minhang_excel(ctx: Context, rows: int) -> dict[str, Any]:
    """A 闵行 drop folder with one monthly workbook of `rows` project rows (title row, merged headers, 合计)."""
    name = f"minhang-xlsx-{rows}-s{ctx.seed}"

    def prepare(folder: Path) -> dict[str, Any]:
        from sandbox.districts.data import base_projects, trainees
        from sandbox.districts.files import write_minhang

        drop = folder / "drop"
        projects = base_projects(ctx.seed, rows / 2000, "MH", date(2024, 1, 1), dirty_ratio=0.001)
        path = write_minhang(drop, projects, trainees(projects[:10], ctx.seed, "310112", 0), date(2024, 1, 1))
        _age(drop)
        return {"drop": str(drop), "rows": rows, "source_bytes": path.stat().st_size}

    return cached(ctx.work, name, prepare)


def yangpu_two_snapshots(ctx: Context, rows: int) -> dict[str, Any]:
    """Day one's snapshot synced into a home, and day two's (1% changed: updates, inserts, deletes) dropped."""
    name = f"yangpu-diff-{rows}-s{ctx.seed}"

    def prepare(folder: Path) -> dict[str, Any]:
        from sandbox.districts.data import base_projects, change_projects
        from sandbox.districts.files import write_yangpu

        drop, home = folder / "drop", folder / "home-day-one"
        projects = base_projects(ctx.seed, rows / 2000, "YP", DAY_ONE, dirty_ratio=0.001)
        write_yangpu(drop, projects, DAY_ONE)
        _age(drop)
        _helper_run(Measure("hub_district", {"source": "district_yangpu", "stream": "projects",
                                             "drop_env": "IEHUB_YANGPU_DROP", "drop": str(drop), "home": str(home)}),
                    ctx.work, f"the day-one sync of {rows:,} 杨浦 rows")
        day_two = DAY_ONE + timedelta(days=1)
        path = write_yangpu(drop, change_projects(projects, ctx.seed, "YP", 1, 0.01, day_two), day_two)
        # only day two's file: touching day one's too made every diff hash it again (0.12 s) as a
        # file whose modification time changed, which a real drop folder does not do
        _age(drop, only=path)
        return {"drop": str(drop), "home_day_one": str(home), "rows": len(projects),
                "source_bytes": path.stat().st_size}

    return cached(ctx.work, name, prepare, depends=HUB_CODE)


# ---------------------------------------------------------------------------------- warehouse
def warehouse_lake(ctx: Context, rows: int) -> dict[str, Any]:
    """A home with `rows` projects and as many reports landed and built once, then a 1% change landed
    (not built): the incremental build applies it, the full build redoes everything."""
    name = f"warehouse-{rows}"

    def prepare(folder: Path) -> dict[str, Any]:
        from bench.warehouse_build import PROJECT_SQL, REPORT_SQL, land_sql
        from warehouse.build import build
        from warehouse.catalog import Catalog

        home = folder / "home"
        catalog = Catalog.for_home(home)
        try:
            base = {"start": 0, "stop": rows, "changed": "false", "where": "true", "reports": 1}
            land_sql(home, catalog, "project", PROJECT_SQL.format(**base), "initial")
            land_sql(home, catalog, "project_report", REPORT_SQL.format(**base), "initial")
            build(home, catalog)
            change = {**base, "changed": "true", "where": "i % 100 = 0"}
            changed = land_sql(home, catalog, "project", PROJECT_SQL.format(**change), "change-1")
            changed += land_sql(home, catalog, "project_report", REPORT_SQL.format(**change), "change-1")
        finally:
            catalog.dispose()
        return {"home": str(home), "rows": rows, "changed_rows": changed}

    return cached(ctx.work, name, prepare, depends=(*HUB_CODE, "bench/warehouse_build.py"))


# ------------------------------------------------------------------------------- servers
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerPool:
    """Servers started for this harness run, shared by scenarios that ask for the same one, stopped at the end."""

    def __init__(self, stack: ExitStack) -> None:
        self._stack = stack
        self._servers: dict[tuple[Any, ...], dict[str, Any]] = {}

    def lingang(self, records: int, seed: int, dirty_ratio: float) -> dict[str, Any]:
        key = ("lingang", records, seed, dirty_ratio)
        if key not in self._servers:
            self._servers[key] = self._start_lingang(records, seed, dirty_ratio)
        return self._servers[key]

    def _start_lingang(self, records: int, seed: int, dirty_ratio: float) -> dict[str, Any]:
        """The simulated Lingang platform in its own process (its own GIL, as a real source would be)."""
        import requests

        from sandbox.lingang.data import BASE_SIZES
        from sandbox.lingang.server import MODULE_PATHS

        scale = records / sum(BASE_SIZES.values())
        port, client_id, secret = _free_port(), "iehub-bench", secrets.token_urlsafe(16)
        env = child_env({"SANDBOX_LINGANG_CLIENT_ID": client_id, "SANDBOX_LINGANG_CLIENT_SECRET": secret})
        log = (WORK / "logs")
        log.mkdir(parents=True, exist_ok=True)
        err = open(log / f"lingang-{port}.log", "w", encoding="utf-8")  # noqa: SIM115 - closed on teardown
        proc = subprocess.Popen([sys.executable, "-m", "sandbox.lingang", "--host", "127.0.0.1", "--port", str(port),
                                 "--scale", f"{scale:.6f}", "--seed", str(seed), "--dirty-ratio", str(dirty_ratio),
                                 "--stats-interval", "3600"],
                                cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=err)

        def stop() -> None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            err.close()

        self._stack.callback(stop)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 900
        while True:
            if proc.poll() is not None:
                raise SetupError(f"the Lingang sandbox exited with {proc.returncode} while starting "
                                 f"(log: {log / f'lingang-{port}.log'})")
            try:
                if requests.get(f"{base}/api/v1/health", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise SetupError(f"the Lingang sandbox ({records:,} records) did not answer on {base} within 900 s")
            time.sleep(0.3)
        total, body_bytes = self._pull_all(base, port, client_id, secret)
        return {"base_url": base, "client_id": client_id, "client_secret": secret, "records": total,
                "source_bytes": body_bytes, "modules": dict(MODULE_PATHS)}

    @staticmethod
    def _pull_all(base: str, port: int, client_id: str, secret: str) -> tuple[int, int]:
        """One lean pass over every module: counts records and body bytes (the MB/s base), and warms the
        server's serialised-record cache so the first measured run does not pay for it."""
        import requests

        from bench.sandbox_throughput import pull_lean

        resp = requests.post(f"{base}/api/v1/auth/token", data={"grant_type": "client_credentials",
                                                                  "client_id": client_id, "client_secret": secret},
                             timeout=30)
        token = resp.json()["data"]["accessToken"]
        return pull_lean("127.0.0.1", port, token, 500, parse=False)
