"""Rebuild the DuckDB warehouse whenever any source lands a batch (Asset-scheduled).

Parsing reads only the compiled spec summary (see `iehub.assets`); nothing heavy is imported.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, AssetAny, task

from iehub import tasks
from iehub.alerts import IehubFailureNotifier
from iehub.assets import WAREHOUSE_ASSET_URI, source_streams, std_asset_uri

_inputs = [Asset(std_asset_uri(source, entity)) for source, streams in source_streams().items()
           for entity in streams.values()]
_notify = IehubFailureNotifier(source="warehouse")

with DAG(
    dag_id="iehub_warehouse",
    description="Merge landed standardised batches into core.* in warehouse.duckdb",
    doc_md=("### Warehouse build\n\nRuns when any source's `land` publishes its Asset (also a CLI "
            "`iehub sync`, which records the same Asset events): applies new batches to `core.*`, "
            "recomputes the marts whose inputs changed and publishes a snapshot."),
    schedule=AssetAny(*_inputs),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    on_failure_callback=[_notify],
    tags=["iehub", "warehouse"],
) as dag:

    @task(task_id="build", outlets=[Asset(WAREHOUSE_ASSET_URI)], retries=1, retry_delay=timedelta(seconds=30),
          execution_timeout=timedelta(minutes=90), on_failure_callback=[_notify],
          doc_md="Apply newly landed batches to `core.*` (single builder) and publish a snapshot.")
    def build() -> dict:
        return tasks.build()

    build()
