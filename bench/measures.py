"""What a benchmark child process measures: the hub's steps and the peers' pipelines.

Each measure takes its JSON parameters and a scratch directory (removed by the parent), does
its imports first (timed apart as ``imports_seconds``: Great Expectations alone takes seconds
to import, a cost a long-running worker pays once), then times the work and returns
``{seconds, rows, bytes, stages, extra}``. Peak RSS is not measured here: the parent reads it
from ``wait4`` for this whole process (see bench/runner.py).

Hub stages are the pipeline's own steps, timed one by one: extract, standardise, validate
(the quality gate), land, build (the DuckDB warehouse). Peers report one stage, ``pipeline``
(dlt's extract + normalise + load), because dlt's stages are not the hub's.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

from bench.floors import libpq_url

STAGES = ("extract", "standardise", "validate", "land", "build")
SYNC_STAGES = STAGES[:4]


def _copy_home(template: str | None, scratch: Path) -> Path:
    """A fresh IEHUB_HOME: empty, or a copy of a prepared one (copying is not timed).

    The copy is written to disk before the clock starts: left as dirty pages (the warehouse and
    the lake, ~500 MB at 1M rows), the kernel wrote them back during the measured step, whose
    own fsyncs then waited behind them; a home in service is not copied before each sync.
    """
    home = scratch / "home"
    if template:
        shutil.copytree(template, home, symlinks=True)
        os.sync()
    return home


def _home(params: dict[str, Any], scratch: Path) -> Path:
    """`home` when a setup step syncs into a home it keeps; otherwise a fresh (or copied) scratch home."""
    if params.get("home"):
        return Path(params["home"])
    return _copy_home(params.get("template_home"), scratch)


def _hub_imports() -> float:
    """Import the hub and Great Expectations before the clock starts; returns the seconds spent."""
    t = time.perf_counter()
    import iehub.pipeline  # noqa: F401
    import quality.runner  # noqa: F401
    import warehouse.build  # noqa: F401

    return time.perf_counter() - t


def timed_sync(home: Path, source: str, streams: list[str] | None = None, *, full: bool = False,
               build: bool = True, build_entities: list[str] | None = None) -> dict[str, Any]:
    """Sync `streams` of `source` step by step, then build; seconds per stage and the ledger counts.

    The pipeline's own functions, called as `iehub sync` + `iehub build` call them, so the
    figure is the hub's, with the quality gate in (the gate cannot be switched off).
    """
    from connectors.spec import load_spec
    from iehub import pipeline
    from iehub.config import Settings
    from warehouse.build import build as build_warehouse

    from bench.runner import reset_peak

    settings = Settings.from_env(home).ensure()
    spec = load_spec(source)
    stages = {s: 0.0 for s in STAGES}
    peaks: dict[str, float] = {}

    def peak(stage: str) -> None:
        peaks[stage] = max(peaks.get(stage, 0.0), round(reset_peak(), 1))

    reset_peak()
    totals = {"rows_in": 0, "rows_loaded": 0, "rows_quarantined": 0, "skipped_unchanged": 0}
    t_all = time.perf_counter()
    for name in streams or list(spec.streams):
        t = time.perf_counter()
        m = pipeline.extract(settings, source, name, full=full, spec=spec)
        stages["extract"] += time.perf_counter() - t
        peak("extract")
        t = time.perf_counter()
        m = pipeline.standardise_and_validate(settings, m, spec=spec)
        step = time.perf_counter() - t
        gate = min(step, m["step_seconds"]["validate"])  # one pass: the step says what the gate took
        stages["standardise"] += step - gate
        stages["validate"] += gate
        peak("standardise")
        peaks["validate"] = peaks["standardise"]
        t = time.perf_counter()
        r = pipeline.land(settings, m)
        stages["land"] += time.perf_counter() - t
        peak("land")
        for k in totals:
            totals[k] += int(r.get(k) or 0)
    if build:
        t = time.perf_counter()
        build_warehouse(settings.home, settings.catalog(), entities=build_entities)
        stages["build"] = time.perf_counter() - t
        peak("build")
    seconds = time.perf_counter() - t_all
    return {"seconds": seconds, "rows": totals["rows_in"], "stages": stages,
            "extra": {**totals, "peak_rss_mb_by_stage": peaks}}


# ------------------------------------------------------------------------------------ hub
def hub_municipal(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Municipal projects from a database (PostgreSQL or SQLite) → lake → warehouse, full or incremental."""
    imports = _hub_imports()
    os.environ["IEHUB_MUNICIPAL_DB_URL"] = params["url"]
    out = timed_sync(_home(params, scratch), "municipal_projects", ["projects"], full=bool(params.get("full")),
                     build_entities=["project"])
    return {**out, "bytes": params.get("source_bytes"), "imports_seconds": imports}


def hub_lingang(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """Every Lingang platform stream over loopback → lake → warehouse."""
    imports = _hub_imports()
    os.environ.update(IEHUB_LINGANG_BASE_URL=params["base_url"], IEHUB_LINGANG_CLIENT_ID=params["client_id"],
                      IEHUB_LINGANG_CLIENT_SECRET=params["client_secret"])
    out = timed_sync(_copy_home(params.get("template_home"), scratch), "lingang_platform", full=True)
    return {**out, "bytes": params.get("source_bytes"), "imports_seconds": imports}


def hub_district(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """A district drop folder (杨浦 GBK CSV or 闵行 Excel) → lake → warehouse."""
    imports = _hub_imports()
    os.environ[params["drop_env"]] = params["drop"]
    out = timed_sync(_home(params, scratch), params["source"], [params["stream"]],
                     build_entities=["project"])
    return {**out, "bytes": params.get("source_bytes"), "imports_seconds": imports}


def hub_snapshot_diff(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """The file kind's diff of a new daily snapshot against the one the hub holds (read + digest + compare
    + tombstones), stream alone, as the extract step runs it."""
    t = time.perf_counter()
    from connectors.files.stream import FileSourceStream
    from connectors.spec import load_spec
    from iehub.config import Settings
    from iehub.pipeline import live_keys

    imports = time.perf_counter() - t
    os.environ[params["drop_env"]] = params["drop"]
    home = _copy_home(params["template_home"], scratch)
    settings = Settings.from_env(home).ensure()
    source, stream_name = params["source"], params["stream"]
    spec = load_spec(source)
    entity = spec.streams[stream_name].entity
    state = settings.catalog().get_state(source, entity)
    t0 = time.perf_counter()
    known = live_keys(settings, source, entity)
    stream = FileSourceStream(spec, stream_name)
    work = settings.staging / source / stream_name
    work.mkdir(parents=True, exist_ok=True)
    stream.prepare(state=state, work_dir=work, known_keys=lambda: known)
    emitted = sum(page.table.num_rows for page in stream.read(None))
    seconds = time.perf_counter() - t0
    st = stream.stats()
    stream.close()
    if emitted == 0:
        raise RuntimeError(f"snapshot diff emitted no rows from {params['drop']}: the new snapshot was not read "
                           "(already in the file ledger?); delete the bench work dir to prepare it again")
    return {"seconds": seconds, "rows": int(params["snapshot_rows"]), "bytes": params.get("source_bytes"),
            "stages": {"extract": seconds}, "imports_seconds": imports,
            "extra": {"emitted": emitted, "unchanged": st.get("rows_unchanged", 0), "deletes": st.get("rows_deleted", 0)}}


def hub_warehouse_build(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """The warehouse build on a prepared lake: incremental (new batches only) or `build --full`."""
    t = time.perf_counter()
    from warehouse.build import build
    from warehouse.catalog import Catalog

    imports = time.perf_counter() - t
    home = _copy_home(params["template_home"], scratch)
    catalog = Catalog.for_home(home)
    t0 = time.perf_counter()
    result = build(home, catalog, full=bool(params.get("full")))
    seconds = time.perf_counter() - t0
    catalog.dispose()
    rows = sum(e.rows for e in result.entities.values())
    # The build's own stages (open, core, marts, ops, checkpoint, replace, publish) after the total.
    stages = {"build": seconds, **{f"build.{k}": v for k, v in result.stages.items()}}
    return {"seconds": seconds, "rows": rows, "bytes": None, "stages": stages,
            "imports_seconds": imports, "extra": {"changes": result.changes}}


# ---------------------------------------------------------------------------------- peers
def _dlt_imports() -> float:
    t = time.perf_counter()
    import dlt  # noqa: F401
    import duckdb  # noqa: F401

    return time.perf_counter() - t


def _dlt_run(scratch: Path, source: Any, tables: list[str], dataset: str, **run_kwargs: Any) -> tuple[float, int]:
    """Run a dlt pipeline into a DuckDB file in `scratch`; (seconds, rows loaded into `tables`), counted in
    the destination so a peer that silently loaded less is seen."""
    import dlt
    import duckdb

    db = scratch / "dlt.duckdb"
    pipe = dlt.pipeline(pipeline_name="iehub_bench", destination=dlt.destinations.duckdb(str(db)),
                        dataset_name=dataset, pipelines_dir=str(scratch / "pipelines"))
    t0 = time.perf_counter()
    info = pipe.run(source, **run_kwargs)
    seconds = time.perf_counter() - t0
    info.raise_on_failed_jobs()
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = sum(con.sql(f'SELECT count(*) FROM {dataset}."{t}"').fetchall()[0][0] for t in tables)
    finally:
        con.close()
    return seconds, int(rows)


def peer_dlt_sql(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """dlt `sql_table` (connectorx or pyarrow backend) → DuckDB: dlt's documented fast path for tables,
    Arrow end to end (no row-by-row normalisation), no validation."""
    imports = _dlt_imports()
    t = time.perf_counter()
    from dlt.sources.sql_database import sql_table

    imports += time.perf_counter() - t
    url = libpq_url(params["url"])
    backend = params["backend"]
    # dlt's defaults for both backends: connectorx reads the table as one Arrow table (its fastest mode,
    # protocol "binary"), pyarrow fetches 50,000-row chunks into Arrow; neither normalises row by row
    source = sql_table(credentials=url, table=params.get("table", "projects"), backend=backend)
    seconds, rows = _dlt_run(scratch, source, [params.get("table", "projects")], "municipal")
    return {"seconds": seconds, "rows": rows, "bytes": params.get("source_bytes"), "stages": {"pipeline": seconds},
            "imports_seconds": imports}


def dlt_incremental_source(url: str, table: str = "projects", key: str = "project_id") -> Any:
    """dlt's documented incremental table read: ``sql_table`` (connectorx) with an incremental cursor on
    ``updated_at`` (pushed down as a WHERE), merged by primary key into the destination (delete-insert)."""
    import dlt
    from dlt.sources.sql_database import sql_table

    return sql_table(credentials=libpq_url(url), table=table,
                     backend="connectorx", incremental=dlt.sources.incremental("updated_at"),
                     write_disposition="merge", primary_key=key)


def prepare_dlt_incremental(url: str, folder: Path) -> None:
    """The dlt peer's state before a change: one full incremental-merge load of the table into ``folder``."""
    _, rows = _dlt_run(folder, dlt_incremental_source(url), ["projects"], "municipal")
    if not rows:
        raise RuntimeError(f"dlt loaded no rows of projects from {url} into {folder}")


def peer_dlt_sql_incremental(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """dlt's incremental merge of the change, from a copy of the pipeline and DuckDB file its full load
    left before the change (``dlt_dir``); rows: those the run loaded (its normalize counts)."""
    imports = _dlt_imports()
    t = time.perf_counter()
    import dlt
    from dlt.sources.sql_database import sql_table  # noqa: F401

    imports += time.perf_counter() - t
    shutil.copytree(params["dlt_dir"], scratch, dirs_exist_ok=True)
    seconds, rows = _dlt_run(scratch, dlt_incremental_source(params["url"]), ["projects"], "municipal")
    pipe = dlt.pipeline(pipeline_name="iehub_bench", destination=dlt.destinations.duckdb(str(scratch / "dlt.duckdb")),
                        dataset_name="municipal", pipelines_dir=str(scratch / "pipelines"))
    trace = pipe.last_trace
    loaded = int((trace.last_normalize_info.row_counts if trace and trace.last_normalize_info else {}).get("projects", 0))
    if not loaded:
        raise RuntimeError("dlt's incremental run loaded no changed row: the peer measured nothing")
    return {"seconds": seconds, "rows": loaded, "bytes": None, "stages": {"pipeline": seconds},
            "imports_seconds": imports, "extra": {"table_rows": rows}}


def peer_dlt_rest(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """dlt's RESTClient over the Lingang sandbox (OAuth2 client credentials, page-number paging), every
    module, records written with ``loader_file_format="parquet"`` into DuckDB."""
    imports = _dlt_imports()
    t = time.perf_counter()
    import dlt
    from dlt.sources.helpers.rest_client import RESTClient
    from dlt.sources.helpers.rest_client.auth import OAuth2ClientCredentials
    from dlt.sources.helpers.rest_client.paginators import PageNumberPaginator

    imports += time.perf_counter() - t

    class LingangToken(OAuth2ClientCredentials):
        """The platform wraps the token in its envelope: data.accessToken / data.expiresIn (dlt's
        documented way to adapt the flow is to override these two parsers)."""

        def parse_access_token(self, response_json: Any) -> str:
            return str(response_json["data"]["accessToken"])

        def parse_expiration_in_seconds(self, response_json: Any) -> int:
            return int(response_json["data"]["expiresIn"])

    base = params["base_url"]
    auth = LingangToken(access_token_url=f"{base}/api/v1/auth/token", client_id=params["client_id"],
                        client_secret=params["client_secret"])
    page_size = int(params.get("page_size", 500))
    modules: dict[str, str] = params["modules"]  # module -> path segment

    def module_resource(module: str, path: str) -> Any:
        @dlt.resource(name=module, write_disposition="replace")
        def pages() -> Any:
            client = RESTClient(base_url=base, auth=auth, data_selector="data.list",
                                paginator=PageNumberPaginator(base_page=1, page_param="page", total_path=None,
                                                              stop_after_empty_page=True))
            yield from client.paginate(f"/api/v1/{path}/list", params={"pageSize": page_size})
        return pages

    @dlt.source(name="lingang")
    def lingang() -> Any:
        return [module_resource(m, p) for m, p in modules.items()]

    seconds, rows = _dlt_run(scratch, lingang(), list(modules), "lingang", loader_file_format="parquet")
    return {"seconds": seconds, "rows": rows, "bytes": params.get("source_bytes"), "stages": {"pipeline": seconds},
            "imports_seconds": imports}


def peer_dlt_csv(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """dlt's filesystem source with its ``read_csv`` reader (pandas; the reader that takes an encoding:
    DuckDB's CSV reader has no GBK here) → DuckDB through Parquet load files."""
    imports = _dlt_imports()
    t = time.perf_counter()
    from dlt.sources.filesystem import filesystem, read_csv

    imports += time.perf_counter() - t
    files = filesystem(bucket_url=Path(params["drop"]).resolve().as_uri(), file_glob=params["glob"])
    reader = (files | read_csv(encoding=params["encoding"], chunksize=int(params.get("chunksize", 100_000)),
                               dtype=str)).with_name("projects")
    seconds, rows = _dlt_run(scratch, reader, ["projects"], "district", loader_file_format="parquet")
    return {"seconds": seconds, "rows": rows, "bytes": params.get("source_bytes"), "stages": {"pipeline": seconds},
            "imports_seconds": imports}


def selftest_sleep(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """A measure with known work (allocate, then sleep) for the harness's own tests."""
    t0 = time.perf_counter()
    block = bytearray(int(params.get("allocate_mb", 0)) * 1024 * 1024)
    for i in range(0, len(block), 4096):
        block[i] = 1
    time.sleep(float(params.get("sleep", 0.0)))
    if params.get("fail"):
        raise RuntimeError(str(params["fail"]))
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": int(params.get("rows", 0)), "bytes": int(params.get("bytes", 0)),
            "stages": {"extract": seconds}, "extra": {"scratch_exists": scratch.is_dir()}}


def hub_feed_latency(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from bench.feed_scenario import hub_feed_latency as run

    return run(params, scratch)


def hub_lake_soak(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from bench.lake_soak import hub_lake_soak as run

    return run(params, scratch)


def hub_delivery(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from bench.delivery_scenario import hub_delivery as run

    return run(params, scratch)


def floor_sql(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from bench.floors import floor_sql as run

    return run(params, scratch)


def floor_sql_incremental(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    from bench.floors import floor_sql_incremental as run

    return run(params, scratch)


MEASURES: dict[str, Callable[[dict[str, Any], Path], dict[str, Any]]] = {
    "floor_sql": floor_sql,
    "floor_sql_incremental": floor_sql_incremental,
    "hub_delivery": hub_delivery,
    "hub_feed_latency": hub_feed_latency,
    "hub_lake_soak": hub_lake_soak,
    "hub_municipal": hub_municipal,
    "hub_lingang": hub_lingang,
    "hub_district": hub_district,
    "hub_snapshot_diff": hub_snapshot_diff,
    "hub_warehouse_build": hub_warehouse_build,
    "peer_dlt_sql": peer_dlt_sql,
    "peer_dlt_sql_incremental": peer_dlt_sql_incremental,
    "peer_dlt_rest": peer_dlt_rest,
    "peer_dlt_csv": peer_dlt_csv,
    "selftest_sleep": selftest_sleep,
}
