"""Rebuild the DuckDB warehouse whenever any source lands a batch (Asset-scheduled)."""
from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, AssetAny, task

from iehub import tasks
from iehub.assets import WAREHOUSE_ASSET_URI, source_streams, std_asset_uri

_inputs = [Asset(std_asset_uri(source, entity)) for source, streams in source_streams().items()
           for entity in streams.values()]

with DAG(
    dag_id="iehub_warehouse",
    description="Merge landed standardised batches into core.* in warehouse.duckdb",
    schedule=AssetAny(*_inputs),
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    tags=["iehub", "warehouse"],
) as dag:

    @task(task_id="build", outlets=[Asset(WAREHOUSE_ASSET_URI)], retries=1)
    def build() -> dict:
        return tasks.build()

    build()
