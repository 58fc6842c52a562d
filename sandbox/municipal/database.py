"""Seeding and changing the municipal project database on SQLite or PostgreSQL.

Bulk loads go the fastest way each server offers (COPY on PostgreSQL, executemany in one
transaction on SQLite), so a million projects seed in seconds. `mutate` changes a share of
each table the way the live system does: one UPDATE stamps many rows with the same
`updated_at`, new rows arrive, some rows are soft-deleted and some are hard-deleted.
"""
from __future__ import annotations

from random import Random
from typing import Any, Iterable, Iterator

from sqlalchemy import Engine, bindparam, create_engine, delete, func, insert, select, text, update

from sandbox import sqlload
from sandbox.municipal import data
from sandbox.municipal.models import PRIMARY_KEYS, TABLES, Base, SandboxMeta


def engine_for(url: str) -> Engine:
    return create_engine(url, future=True)


def load_rows(engine: Engine, table: str, rows: Iterable[tuple]) -> int:
    return sqlload.load_rows(engine, table, data.COLUMNS[table], rows)


def read_meta(engine: Engine) -> dict[str, str]:
    try:
        with engine.connect() as conn:
            return {k: v for k, v in conn.execute(select(SandboxMeta.key, SandboxMeta.value))}
    except Exception:  # noqa: BLE001 - no database or no meta table yet: not seeded
        return {}


def seed(url: str, *, scale: float = 1.0, seed: int = 7, tables: Iterable[str] | None = None) -> dict[str, int]:
    """Drop and create the schema, then fill it for (seed, scale). Returns rows per table.

    `tables` limits which tables get rows (benchmarks seed only organisations and projects).
    """
    wanted = set(tables or TABLES)
    engine = engine_for(url)
    try:
        Base.metadata.drop_all(engine)
        Base.metadata.create_all(engine)
        size = data.sizes(scale)
        pool = data.Pool(seed, scale)
        n_projects = size["projects"]
        generators: dict[str, Iterator[tuple]] = {
            "organizations": data.organization_rows(pool, seed),
            "projects": data.project_rows(n_projects, pool, seed),
            "project_members": data.member_rows(n_projects, pool, seed),
            "performance_reports": data.report_rows(n_projects, seed),
            "training_bases": data.base_rows(size["training_bases"], n_projects, pool, seed),
            "teachers": data.teacher_rows(size["teachers"], pool, seed),
        }
        counts = {t: load_rows(engine, t, generators[t]) if t in wanted else 0 for t in TABLES}
        with engine.begin() as conn:
            conn.execute(insert(SandboxMeta), [{"key": "seed", "value": str(seed)}, {"key": "scale", "value": str(scale)},
                                               {"key": "tables", "value": ",".join(sorted(wanted))}])
            if engine.dialect.name == "postgresql":
                for t in TABLES:
                    conn.execute(text(f"ANALYZE {t}"))
        return counts
    finally:
        engine.dispose()


def counts(url: str) -> dict[str, dict[str, int]]:
    """Rows per table: live, soft-deleted."""
    engine = engine_for(url)
    try:
        out = {}
        with engine.connect() as conn:
            for t in TABLES:
                table = Base.metadata.tables[t]
                live = conn.execute(select(func.count()).select_from(table).where(table.c.deleted_at.is_(None))).scalar()
                dead = conn.execute(select(func.count()).select_from(table).where(table.c.deleted_at.is_not(None))).scalar()
                out[t] = {"live": int(live or 0), "soft_deleted": int(dead or 0)}
        return out
    finally:
        engine.dispose()


# What an update changes in each table (besides updated_at).
def _changed_values(table: str, r: Random) -> dict[str, Any]:
    if table == "organizations":
        return {"integration_status": data._pick(r.random, data.INTEGRATION), "address": f"上海市{data._pick(r.random, data._ROADS)}{int(r.random() * 2000) + 1}号"}
    if table == "projects":
        return {"status": data._pick(r.random, data.STATUSES), "budget": f"{(int(r.random() * 400) + 10) * 10000}.00"}
    if table == "project_members":
        return {"role": data._pick(r.random, data.ROLES[1:])}
    if table == "performance_reports":
        return {"students_trained": int(r.random() * 150)}
    if table == "training_bases":
        return {"capacity": 20 + int(r.random() * 40) * 10, "is_active": r.random() < 0.8}
    return {"professional_title": data._pick(r.random, data.TITLES), "is_active": r.random() < 0.9}


def _as_values(table: str, row: tuple) -> dict[str, Any]:
    return dict(zip(data.COLUMNS[table], row))


def _new_rows(table: str, first_id: int, n: int, pool: data.Pool, r: Random, moment: int, n_projects: int) -> list[tuple]:
    times = (moment, moment)
    if table == "projects":
        return [data.project_row(first_id + k, r.random, r, pool, [moment], times) for k in range(n)]
    if table == "teachers":
        return [data.teacher_row(first_id + k, r.random, pool, [moment], times) for k in range(n)]
    if table == "organizations":
        return [(first_id + k, data.make_uscc(r, "91", data.PUDONG), f"上海临港新设企业{first_id + k:06d}有限公司", "企业",
                 data.PUDONG, data._pick(r.random, data.INDUSTRIES), "建设培育", None, "上海市浦东新区环湖西二路1号",
                 data.fmt_us(moment), data.fmt_us(moment), None) for k in range(n)]
    if table == "project_members":
        rows = []
        for k in range(n):
            rows.append((first_id + k, 1 + int(r.random() * n_projects), 1 + data._pick(r.random, pool.companies),
                         "成员单位", data.fmt_day(moment), data.fmt_us(moment), data.fmt_us(moment), None))
        return rows
    if table == "performance_reports":
        ts = data.fmt_us(moment)
        return [(first_id + k, 1 + int(r.random() * n_projects), "2026H1", "2026-01-01", "2026-06-30",
                 int(r.random() * 100), 5, 2, "10000.00", "2026-07-31", ts, "本期按期报送", ts, ts, None)
                for k in range(n)]
    rows = list(data.base_rows(n, n_projects, pool, int(r.random() * 1e9)))
    return [(first_id + k, *row[1:-3], data.fmt_us(moment), data.fmt_us(moment), None) for k, row in enumerate(rows)]


def mutate(url: str, *, changed: float = 0.01, seed: int | None = None, moment: int | None = None) -> dict[str, dict[str, int]]:
    """Change about `changed` of each table's live rows: 75% updated, 15% inserted, 6% soft- and 4% hard-deleted.

    All changes of one call share one `updated_at` (`moment`, default now, and always after
    every stored value), as a bulk UPDATE does. Organisations are never hard-deleted: projects
    and bases point at them.
    """
    rng = Random(f"municipal:mutate:{seed}" if seed is not None else None)
    engine = engine_for(url)
    meta_tables = Base.metadata.tables
    out: dict[str, dict[str, int]] = {}
    try:
        meta = read_meta(engine)
        if not meta:
            raise RuntimeError(f"the municipal sandbox database at {engine.url.render_as_string(hide_password=True)} "
                               "is not seeded: run `iehub sandbox seed municipal`")
        pool = data.Pool(int(meta.get("seed", "7")), float(meta.get("scale", "1")))
        with engine.begin() as conn:
            stamps = [_as_us(conn.execute(select(func.max(meta_tables[t].c.updated_at))).scalar()) for t in TABLES]
            newest_us = max((s for s in stamps if s is not None), default=None)
            moment = moment or data.now_us()
            if newest_us is not None and moment <= newest_us:
                moment = newest_us + 1000
            stamp = data.fmt_us(moment)
            n_projects = conn.execute(select(func.max(meta_tables["projects"].c.project_id))).scalar() or 0
            for t in TABLES:
                table = meta_tables[t]
                pk = table.c[PRIMARY_KEYS[t]]
                live = sorted(k for (k,) in conn.execute(select(pk).where(table.c.deleted_at.is_(None))))
                if not live:
                    out[t] = {"updated": 0, "inserted": 0, "soft_deleted": 0, "hard_deleted": 0}
                    continue
                n = max(1, round(len(live) * changed))
                chosen = rng.sample(live, min(len(live), n))
                n_hard = 0 if t == "organizations" else int(n * 0.04)
                n_soft = int(n * 0.06)
                n_ins = int(n * 0.15)
                hard, soft, upd = chosen[:n_hard], chosen[n_hard:n_hard + n_soft], chosen[n_hard + n_soft:]
                ts_value = _utc(stamp)
                if upd:
                    stmt = update(table).where(pk == bindparam("b_id"))
                    conn.execute(stmt, [{**_changed_values(t, rng), "b_id": k, "updated_at": ts_value} for k in upd])
                for start in range(0, len(soft), 1000):
                    conn.execute(update(table).where(pk.in_(soft[start:start + 1000]))
                                 .values(deleted_at=ts_value, updated_at=ts_value))
                for start in range(0, len(hard), 1000):
                    part = hard[start:start + 1000]
                    if t == "projects":
                        for child in ("project_members", "performance_reports", "training_bases"):
                            conn.execute(delete(meta_tables[child]).where(meta_tables[child].c.project_id.in_(part)))
                    conn.execute(delete(table).where(pk.in_(part)))
                first_id = (conn.execute(select(func.max(pk))).scalar() or 0) + 1
                if n_ins:
                    conn.execute(insert(table), [sqlload.python_values(table, _as_values(t, row))
                                                 for row in _new_rows(t, first_id, n_ins, pool, rng, moment, n_projects)])
                out[t] = {"updated": len(upd), "inserted": n_ins, "soft_deleted": len(soft), "hard_deleted": len(hard)}
        return out
    finally:
        engine.dispose()


def _as_us(value: Any) -> int | None:
    from datetime import datetime, timezone

    if value is None or value == "":
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return int(value.timestamp()) * data.US + value.microsecond


def _utc(stamp: str) -> Any:
    from datetime import datetime, timezone

    return datetime.fromisoformat(stamp).replace(tzinfo=timezone.utc)
