"""Per-rule results per batch, kept in the ops catalog next to the ledger (`ops.quality_results`)."""
from __future__ import annotations

from dataclasses import asdict
from datetime import datetime, timezone
from typing import Any

import sqlalchemy as sa

from quality.runner import RuleResult

metadata = sa.MetaData()
quality_results = sa.Table(
    "quality_results", metadata,
    sa.Column("batch_id", sa.String(200), nullable=False),
    sa.Column("source", sa.String(100), nullable=False),
    sa.Column("entity", sa.String(100), nullable=False),
    sa.Column("rule", sa.String(200), nullable=False),
    sa.Column("level", sa.String(10), nullable=False),        # row | batch
    sa.Column("expectation", sa.String(200), nullable=False),
    sa.Column("column_name", sa.String(200), nullable=False),
    sa.Column("action", sa.String(20), nullable=False),       # quarantine | warn | fail
    sa.Column("element_count", sa.BigInteger, nullable=False),
    sa.Column("unexpected_count", sa.BigInteger, nullable=False),
    sa.Column("unexpected_percent", sa.Float, nullable=False),
    sa.Column("success", sa.Boolean, nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("checked_at", sa.String(40), nullable=False),   # ISO UTC
    sa.PrimaryKeyConstraint("batch_id", "rule", name="pk_quality_results"),
    comment="质量校验结果 / one row per batch and rule: how many rows each expectation checked and failed",
)


def ensure(engine: sa.Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


def record(engine: sa.Engine, *, batch_id: str, source: str, entity: str, results: list[RuleResult],
           batch_checks: list[dict[str, Any]]) -> None:
    """Replace the batch's results (a rerun of a batch replaces its own rows)."""
    ensure(engine)
    now = datetime.now(timezone.utc).isoformat()
    merged: dict[str, dict[str, Any]] = {}  # a batch validated in chunks has one result per rule and chunk
    for r in results:
        row = merged.get(r.rule)
        if row is None:
            merged[r.rule] = {**{k: v for k, v in asdict(r).items() if k != "column"}, "column_name": r.column,
                              "level": "row", "message": None, "batch_id": batch_id, "source": source,
                              "entity": entity, "checked_at": now}
            continue
        row["element_count"] += r.element_count
        row["unexpected_count"] += r.unexpected_count
        row["success"] = row["success"] and r.success
        row["unexpected_percent"] = 100.0 * row["unexpected_count"] / row["element_count"] \
            if row["element_count"] else 0.0
    rows = list(merged.values())
    rows += [{"batch_id": batch_id, "source": source, "entity": entity, "level": "batch", "checked_at": now,
              "expectation": "iehub_batch_rule", "column_name": "", **check} for check in batch_checks]
    with engine.begin() as conn:
        conn.execute(quality_results.delete().where(quality_results.c.batch_id == batch_id))
        if rows:
            conn.execute(quality_results.insert(), rows)


def pass_rates(engine: sa.Engine, *, last_batches: int = 20) -> list[dict[str, Any]]:
    """Per source and entity over its most recent batches: rows checked, rows failing, pass rate."""
    ensure(engine)
    q = quality_results
    recent = sa.select(q.c.batch_id, q.c.source, q.c.entity, sa.func.max(q.c.checked_at).label("at")) \
        .where(q.c.level == "row").group_by(q.c.batch_id, q.c.source, q.c.entity).subquery()
    ranked = sa.select(recent, sa.func.row_number().over(
        partition_by=(recent.c.source, recent.c.entity), order_by=recent.c.at.desc()).label("rn")).subquery()
    stmt = (sa.select(q.c.source, q.c.entity, sa.func.count(sa.distinct(q.c.batch_id)).label("batches"),
                      sa.func.sum(q.c.element_count).label("checks"),
                      sa.func.sum(q.c.unexpected_count).label("failures"),
                      sa.func.max(q.c.checked_at).label("last_checked_at"))
            .join(ranked, sa.and_(ranked.c.batch_id == q.c.batch_id, ranked.c.rn <= last_batches))
            .where(q.c.level == "row").group_by(q.c.source, q.c.entity).order_by(q.c.source, q.c.entity))
    with engine.connect() as conn:
        out = []
        for row in conn.execute(stmt).mappings():
            checks, failures = int(row["checks"] or 0), int(row["failures"] or 0)
            out.append({**row, "pass_rate": 1.0 - failures / checks if checks else 1.0})
        return out


def failing_rules(engine: sa.Engine) -> list[dict[str, Any]]:
    """Rules with failing rows (row level) or failed verdicts (batch level), most rows first."""
    ensure(engine)
    q = quality_results
    failing = sa.or_(sa.and_(q.c.level == "row", q.c.unexpected_count > 0), sa.and_(q.c.level == "batch", ~q.c.success))
    stmt = (sa.select(q.c.source, q.c.entity, q.c.rule, q.c.action, sa.func.sum(q.c.unexpected_count).label("rows"))
            .where(failing).group_by(q.c.source, q.c.entity, q.c.rule, q.c.action)
            .order_by(sa.desc("rows")))
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(stmt).mappings()]
