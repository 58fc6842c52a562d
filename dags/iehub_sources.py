"""One DAG per source spec: for each stream, extract → standardise_and_validate → land.

Thin by design: each task calls one `iehub.tasks` function and passes a manifest path and
counts on. Parsing reads only the compiled spec summary (`iehub.assets.spec_summary`, a small
cached JSON): nothing heavy is imported here, secrets and sources are touched at run time.

Run state is truthful: the `land` tasks are the run's leaves, so any failed stream fails the
run (the other streams still run to the end); `finish` is a teardown (lease release, quality
Data Docs) and never decides the state. Retries have one layer per failure kind: the source's
transient faults (5xx, 429, resets, timeouts) are retried by the connector inside `extract`
(the spec's `http:` policy), so `extract` has no task retries and a dead source fails within
about half a minute; the local steps get one task retry for a lost worker.
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG, Asset, Param, task, teardown

from iehub import tasks
from iehub.alerts import IehubFailureNotifier
from iehub.assets import pool_name, spec_summary, std_asset_uri

EXTRACT_TIMEOUT = timedelta(minutes=60)
STEP_TIMEOUT = timedelta(minutes=30)
RUN_TIMEOUT = timedelta(hours=2)
FULL_PARAM_DOC = ("Full reload: ignore the stored cursors and read every stream from the beginning "
                  "(a new batch per stream; the warehouse keeps change versions). Default: incremental.")

for _source, _info in spec_summary().items():
    _notify = IehubFailureNotifier(source=_source)
    with DAG(
        dag_id=f"iehub_sync_{_source}",
        description=f"Sync {_info['title']} into the iehub lake (extract → standardise and validate → land)",
        doc_md=(f"### {_info['title']}\n\nSource `{_source}` ({_info['kind']}): one chain per stream, "
                f"extract → standardise_and_validate (mapping and quality gate in one pass) → land; each land "
                f"publishes the stream's Asset and the "
                f"warehouse DAG follows. Extracts share the pool `{pool_name(_source)}` "
                f"({_info['pool_slots']} slots). Param `full`: {FULL_PARAM_DOC}"),
        schedule="@hourly",
        start_date=pendulum.datetime(2026, 1, 1, tz="Asia/Shanghai"),
        catchup=False,
        max_active_runs=1,
        dagrun_timeout=RUN_TIMEOUT,
        on_failure_callback=[_notify],
        default_args={"retries": 1, "retry_delay": timedelta(seconds=15), "execution_timeout": STEP_TIMEOUT,
                      "on_failure_callback": [_notify]},
        tags=["iehub", "source", _source],
        params={"full": Param(False, type="boolean", title="Full reload", description=FULL_PARAM_DOC)},
    ) as _dag:
        _lands = []
        for _stream, _s in _info["streams"].items():
            _what = f"`{_stream}` → entity `{_s['entity']}` ({_s['doc']})"

            @task(task_id=f"{_stream}.extract", retries=0, execution_timeout=EXTRACT_TIMEOUT,
                  pool=pool_name(_source), doc_md=f"Extract {_what} into staging; the connector retries "
                  "transient source faults itself.")
            def _extract(source: str = _source, stream: str = _stream, **context) -> dict:
                return tasks.extract(source, stream, full=bool(context["params"].get("full")))

            @task(task_id=f"{_stream}.standardise_and_validate", doc_md=f"Map the staged raw rows of {_what} to "
                  "the canonical schema and run the quality gate (Great Expectations suite) over them in one pass; "
                  "unconvertible and failing rows go to quarantine with their reasons.")
            def _standardise_and_validate(ref: dict) -> dict:
                return tasks.standardise_and_validate(ref)

            @task(task_id=f"{_stream}.land", outlets=[Asset(std_asset_uri(_source, _s["entity"]))],
                  doc_md=f"Land the validated batch of {_what} in the lake and the ledger; publishes its Asset.")
            def _land(ref: dict) -> dict:
                return tasks.land(ref)

            _lands.append(_land(_standardise_and_validate(_extract())))

        @teardown
        @task(task_id="finish", doc_md="Teardown: release the source's lease, rebuild the quality Data Docs. "
                  "Never decides the run's state.")
        def _finish(source: str = _source) -> dict:
            return tasks.finish(source)

        _lands >> _finish()
    globals()[_dag.dag_id] = _dag
