"""Floors: the least work that moves a source where the hub moves it, measured beside the hub.

Why: a goal set against a peer (S1: the hub ≥ 1.2× dlt) may be out of reach on this machine
whatever the hub does. The floor is the same table read with a fast reader into Arrow, written
as one Parquet file (zstd, as the lake writes) and loaded into a DuckDB table: no mapping, no
quality gate, no versioning, no history. Its time says how far the hub is from the least
possible work (hub / floor), and dlt's time against it says how much faster than dlt anything
could be here (dlt / floor: if that is below 1.2, so is every hub).

Two readers, each a case of its own (the goals take the faster): ADBC's PostgreSQL driver
streaming record batches over COPY (what the hub's SQL kind uses), and connectorx split in two
ranges of the primary key read in parallel (its fastest mode on two cores).

The incremental floor (S5) is the least work that brings a DuckDB copy of the table up to date
after a change at the source: the rows changed since the cursor read with ADBC, one Parquet file,
and a merge into the table (delete the keys, insert the rows) committed and checkpointed in place.
No versions, history, tombstones, marts or published snapshot (readers of the file would wait
for the writer), and hard deletes are not looked for (the hub's incremental sync does not either
between its key-only reconciliations).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Iterator

READERS = ("adbc", "connectorx")


def libpq_url(url: str) -> str:
    """A SQLAlchemy PostgreSQL URL (``postgresql+psycopg://``) as the libpq URI ADBC, connectorx and dlt take."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def _adbc_batches(uri: str, sql: str) -> Iterator[Any]:
    import adbc_driver_postgresql.dbapi as driver

    conn = driver.connect(uri)
    try:
        cur = conn.cursor()
        try:
            cur.execute(sql)
            yield from cur.fetch_record_batch()
        finally:
            cur.close()
    finally:
        conn.close()


def _connectorx_batches(uri: str, sql: str, key: str) -> Iterator[Any]:
    import connectorx as cx

    # the whole result as Arrow, two key ranges read at once (connectorx materialises the result)
    table = cx.read_sql(uri, sql, return_type="arrow", partition_on=key, partition_num=2)
    yield from table.to_batches()


def floor_sql(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """PostgreSQL table → Arrow (`reader`) → one Parquet file → a DuckDB table; stages extract, land, build."""
    t = time.perf_counter()
    import duckdb
    import pyarrow.parquet as pq

    reader = params["reader"]
    if reader == "adbc":
        import adbc_driver_postgresql.dbapi  # noqa: F401
    elif reader == "connectorx":
        import connectorx  # noqa: F401
    else:
        raise ValueError(f"floor_sql: unknown reader {reader!r} (one of {', '.join(READERS)})")
    imports = time.perf_counter() - t

    uri = libpq_url(params["url"])
    table, key = params.get("table", "projects"), params.get("key", "project_id")
    sql = f"SELECT * FROM {table}"
    path, db = scratch / f"{table}.parquet", scratch / "floor.duckdb"
    batches = _adbc_batches(uri, sql) if reader == "adbc" else _connectorx_batches(uri, sql, key)
    stages = {"extract": 0.0, "land": 0.0, "build": 0.0}
    writer = None
    t0 = time.perf_counter()
    try:
        while True:
            t = time.perf_counter()
            batch = next(batches, None)
            stages["extract"] += time.perf_counter() - t
            if batch is None:
                break
            t = time.perf_counter()
            writer = writer or pq.ParquetWriter(path, batch.schema, compression="zstd")
            writer.write_batch(batch)
            stages["land"] += time.perf_counter() - t
    finally:
        if writer is not None:
            t = time.perf_counter()
            writer.close()
            stages["land"] += time.perf_counter() - t
    if writer is None:
        raise RuntimeError(f"floor_sql: {table} returned no rows")
    t = time.perf_counter()
    con = duckdb.connect(str(db))
    try:
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM read_parquet('{path}')")
        rows = int(con.sql(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    finally:
        con.close()  # the checkpoint that makes the table durable is part of the load
    stages["build"] = time.perf_counter() - t
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": rows, "bytes": params.get("source_bytes"), "stages": stages,
            "imports_seconds": imports, "extra": {"reader": reader, "parquet_bytes": path.stat().st_size}}


def floor_table(url: str, table: str, db: Path) -> str:
    """Copy ``table`` from PostgreSQL into a DuckDB file (the incremental floor's state before a change);
    returns the cursor to read changes from (the table's newest ``updated_at``, ISO)."""
    import duckdb
    import pyarrow as pa

    data = pa.Table.from_batches(list(_adbc_batches(libpq_url(url), f"SELECT * FROM {table}")))
    con = duckdb.connect(str(db))
    try:
        con.register("_copy", data)
        con.execute(f"CREATE TABLE {table} AS SELECT * FROM _copy")
        newest = con.execute(f"SELECT max(updated_at) FROM {table}").fetchall()[0][0]
    finally:
        con.close()
    return newest.isoformat()


def floor_sql_incremental(params: dict[str, Any], scratch: Path) -> dict[str, Any]:
    """The rows changed since ``cursor`` → Arrow (ADBC) → one Parquet file → merged into a copy of the
    DuckDB table made before the change (``floor_db``); stages extract, land, build."""
    import shutil

    t = time.perf_counter()
    import adbc_driver_postgresql.dbapi  # noqa: F401
    import duckdb
    import pyarrow.parquet as pq

    imports = time.perf_counter() - t
    uri = libpq_url(params["url"])
    table, key = params.get("table", "projects"), params.get("key", "project_id")
    db = scratch / "floor.duckdb"
    shutil.copyfile(params["floor_db"], db)
    path = scratch / f"{table}-changed.parquet"
    stages = {"extract": 0.0, "land": 0.0, "build": 0.0}
    t0 = time.perf_counter()
    batches = list(_adbc_batches(uri, f"SELECT * FROM {table} WHERE updated_at > '{params['cursor']}'"))
    stages["extract"] = time.perf_counter() - t0
    changed = sum(b.num_rows for b in batches)
    if not changed:
        raise RuntimeError(f"floor_sql_incremental: no row of {table} changed after {params['cursor']}")
    t = time.perf_counter()
    with pq.ParquetWriter(path, batches[0].schema, compression="zstd") as writer:
        for batch in batches:
            writer.write_batch(batch)
    stages["land"] = time.perf_counter() - t
    t = time.perf_counter()
    con = duckdb.connect(str(db))
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute(f"DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM read_parquet('{path}'))")
        con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet('{path}')")
        con.execute("COMMIT")
        table_rows = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    finally:
        con.close()  # the checkpoint that writes the merge into the file is part of it
    stages["build"] = time.perf_counter() - t
    seconds = time.perf_counter() - t0
    return {"seconds": seconds, "rows": changed, "bytes": None, "stages": stages, "imports_seconds": imports,
            "extra": {"cursor": params["cursor"], "table_rows": table_rows}}
