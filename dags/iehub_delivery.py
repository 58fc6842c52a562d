"""Push every published snapshot to the subscribers (Standard Webhooks), scheduled on the warehouse Asset.

Thin: one task calls `iehub.delivery.run_delivery` (the same function `iehub deliver` runs) and
returns counts. Parsing imports nothing heavy. A consumer's failing endpoint does not fail the
run (it is retried at the next run and paused after its window); the hub's own failures do.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, task

from iehub.alerts import IehubFailureNotifier
from iehub.assets import WAREHOUSE_ASSET_URI
from iehub.delivery import run_delivery

_notify = IehubFailureNotifier(source="delivery")

with DAG(
    dag_id="iehub_delivery",
    description="Deliver each published snapshot's changes and deletes to push subscriptions",
    doc_md=("### Push delivery\n\nRuns when the warehouse DAG publishes a snapshot (Asset "
            f"`{WAREHOUSE_ASSET_URI}`): every active subscription receives the changes and deletes in its "
            "key's scope after its last acknowledged change version, masked by the key's grant, signed per "
            "Standard Webhooks, each attempt audited. `iehub deliver` runs the same by hand."),
    schedule=[Asset(WAREHOUSE_ASSET_URI)],
    start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
    catchup=False,
    max_active_runs=1,
    dagrun_timeout=timedelta(hours=2),
    on_failure_callback=[_notify],
    tags=["iehub", "feeds", "delivery"],
) as dag:

    @task(task_id="deliver", retries=1, retry_delay=timedelta(seconds=30), execution_timeout=timedelta(minutes=90),
          on_failure_callback=[_notify],
          doc_md="Deliver the current snapshot to every active subscription; returns counts, never records.")
    def deliver() -> dict:
        return run_delivery()

    deliver()
