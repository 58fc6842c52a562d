"""Failure alerts for the DAGs, through Airflow's notifier mechanism (BaseNotifier).

One notifier serves both a failed task (which stream, which batch, what error) and a failed
DAG run (a timeout, a failed stream): it always writes one log line, and when the deployment
defines the Airflow Connection `iehub_alerts` it also POSTs the same facts as JSON to it.
So a deployment turns webhooks on by adding a Connection; nothing in the DAG files changes.
A webhook that cannot be reached is logged and never turns a failure into a second failure.

The Connection: `AIRFLOW_CONN_IEHUB_ALERTS='http://host:port/path'` (or host = a full URL);
its password, if set, is sent as `Authorization: Bearer …`.
"""
from __future__ import annotations

import json
import logging
import urllib.request
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger("iehub.alerts")

ALERTS_CONN_ID = "iehub_alerts"
WEBHOOK_TIMEOUT_SECONDS = 10


def _one_line(text: str, limit: int = 500) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def webhook_url(conn: Any) -> str:
    host = conn.host or ""
    if "://" in host:
        return host
    scheme = "https" if (conn.conn_type or "").lower() == "https" else "http"
    port = f":{conn.port}" if conn.port else ""
    path = (conn.schema or "").lstrip("/")
    return f"{scheme}://{host}{port}/{path}"


class IehubFailureNotifier(BaseNotifier):
    """Log line + optional webhook POST for a failed iehub task or DAG run."""

    def __init__(self, source: str, conn_id: str = ALERTS_CONN_ID) -> None:
        super().__init__()
        self.source = source
        self.conn_id = conn_id

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Nothing to template; and a DAG-level callback may hand over a serialized DAG without Jinja."""

    def facts(self, context: Any) -> dict[str, Any]:
        ti = context.get("ti") or context.get("task_instance")
        dag_run = context.get("dag_run")
        task_id = getattr(ti, "task_id", None) if ti is not None else None
        stream = task_id.split(".")[0] if task_id and "." in task_id else None
        batch = None
        if ti is not None and stream:
            try:
                ref = ti.xcom_pull(task_ids=f"{stream}.extract")
                batch = ref.get("batch_id") if isinstance(ref, dict) else None
            except Exception as exc:  # noqa: BLE001 - an alert must go out even if XCom is unreadable
                log.debug("no batch id for %s: %s", task_id, exc)
        error = context.get("exception") or context.get("reason") or "failed"
        return {"source": self.source, "stream": stream, "task": task_id, "batch_id": batch,
                "dag_id": getattr(dag_run, "dag_id", None), "run_id": getattr(dag_run, "run_id", None),
                "try_number": getattr(ti, "try_number", None), "error": _one_line(f"{error}")}

    def notify(self, context: Any) -> None:
        facts = self.facts(context)
        log.error("iehub alert: source=%s stream=%s batch=%s task=%s run=%s error=%s", facts["source"],
                  facts["stream"] or "-", facts["batch_id"] or "-", facts["task"] or "-", facts["run_id"],
                  facts["error"])
        self.post(facts)

    def post(self, facts: dict[str, Any]) -> None:
        from airflow.sdk import Connection
        from airflow.sdk.exceptions import AirflowNotFoundException

        try:
            conn = Connection.get(self.conn_id)
        except AirflowNotFoundException:
            return  # webhooks not configured in this deployment
        url = webhook_url(conn)
        headers = {"Content-Type": "application/json", "User-Agent": "iehub-alerts"}
        if conn.password:
            headers["Authorization"] = f"Bearer {conn.password}"
        request = urllib.request.Request(url, data=json.dumps({"event": "iehub.failure", **facts},
                                                              ensure_ascii=False).encode("utf-8"),
                                         headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_SECONDS) as resp:
                resp.read()
        except OSError as exc:
            log.error("iehub alert: webhook %s (connection %s) not reached: %s; the alert is in this log only",
                      url, self.conn_id, exc)
