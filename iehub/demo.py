"""`iehub demo`: the whole hub on embedded defaults, driven through Airflow's own DAG runs."""
from __future__ import annotations

import time

from rich.console import Console

from iehub import orchestration
from iehub.assets import source_streams
from iehub.config import Settings


def run_demo(settings: Settings, *, scale: float, seed: int, console: Console, serve: bool) -> None:
    from iehub.sandboxes import systems

    log_file = settings.logs / "demo-airflow.log"
    started = time.monotonic()
    console.print(f"iehub demo — home {settings.home}")
    running, env = [], {}
    try:
        for system in systems().values():
            run = system.start(settings, scale=scale, seed=seed)
            running.append(run)
            env.update(run.env)
            console.print(f"• sandbox: {run.description} (seed {seed}, scale {scale})")
        console.print("• Airflow metadata DB (SQLite under IEHUB_HOME/airflow) …")
        orchestration.ensure_airflow_db(settings, log_file)
        dag_ids = [f"iehub_sync_{source}" for source in source_streams()] + ["iehub_warehouse"]
        before = landed_so_far(settings)
        t0 = time.monotonic()
        console.print(f"• running {len(dag_ids)} DAGs through Airflow (dag.test), one Airflow start-up for all …")
        states = orchestration.run_dags(settings, dag_ids, log_file, env)
        for dag_id, state in states.items():
            console.print(f"  {dag_id}: {state}")
        console.print(f"  done in {time.monotonic() - t0:.1f}s")
        console.print(run_summary(settings, before), markup=False, highlight=False)
    finally:
        for run in running:
            run.stop()
    from iehub.cli import status_table

    console.print(status_table(settings))
    console.print(f"Demo finished in {time.monotonic() - started:.0f}s. Airflow logs: {log_file}")
    console.print("Query it: `iehub sql` (or DuckDB 1.4+, e.g. `pip install duckdb-cli`: duckdb -readonly "
                  f"{settings.home / 'published' / 'CURRENT' / 'warehouse.duckdb'}); `iehub status` any time.")
    from iehub.quality_site import site_dir

    report = site_dir(settings.home) / "index.html"  # written by the warehouse DAG's build
    if report.exists():
        console.print(f"Quality report (opens offline): {report.as_uri()}", markup=False, highlight=False)
    if serve:
        serve_feeds(settings, console=console)


def landed_so_far(settings: Settings) -> int:
    """The newest landed_seq in the ledger (0 before the first batch)."""
    return max((b.landed_seq or 0 for b in settings.catalog().landed_batches()), default=0)


def run_summary(settings: Settings, before: int) -> str:
    """One line saying what this run loaded, and that a rerun was incremental (the status table shows totals)."""
    new = [b for b in settings.catalog().landed_batches() if (b.landed_seq or 0) > before]
    read, loaded = sum(b.rows_in for b in new), sum(b.rows_loaded for b in new)
    quarantined = sum(b.rows_quarantined for b in new)
    figures = f"{len(new)} batches landed, {read:,} rows read, {loaded:,} loaded, {quarantined:,} quarantined"
    if before == 0:
        return f"• first run, a full load: {figures}"
    return (f"• incremental run: only what changed since the last run was read — {figures} "
            "(the status table below shows the totals)")


def serve_feeds(settings: Settings, *, console: Console, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Create a one-day demo key (all datasets and districts, personal fields masked), show how to use it, serve.

    The key is printed once, on its own line; only its hash is kept.
    """
    from datetime import timedelta

    from feeds.config import FeedConfig
    from feeds.keys import KeyStore
    from feeds.server import serve

    config = FeedConfig.from_env(settings.home)
    store = KeyStore(config.db_url)
    try:
        grant, token = store.create("demo", None, None, personal=False, expires_in=timedelta(days=1))
    finally:
        store.dispose()
    base = f"http://{host}:{port}"
    console.print(f"• feed API key for consumer 'demo' (id {grant.key_id}, expires in 1 day, personal fields masked):")
    print(token, flush=True)
    console.print(f"• serving the feed API on {base} (docs {base}/docs); Ctrl-C stops. "
                  "Put the key above in IEHUB_KEY and try:", highlight=False)
    auth = "-H \"Authorization: Bearer $IEHUB_KEY\""
    for line in (f"curl {auth} {base}/v1/feeds",
                 f"curl {auth} '{base}/v1/feeds/talent_demand?limit=5'",
                 f"curl {auth} '{base}/v1/feeds/notice?format=csv&limit=5'",
                 f"curl {auth} {base}/v1/feeds/notice/deletes"):
        console.print(f"  {line}", highlight=False, soft_wrap=True)
    serve(config, host, port)
