"""Bulk exports: one Frictionless data package per dataset and published snapshot.

``<out>/<dataset>/<snapshot>/`` holds ``<dataset>.csv``, ``<dataset>.parquet`` and a
``datapackage.json`` describing both (Table Schema, row count, byte size, SHA-256; the CSV as
the tabular resource, the Parquet as a file resource, so a validator without pandas or the
parquet plugin accepts the package), so a
platform can load a whole dataset once, check it with ``frictionless validate``, and then
follow the feed's change versions from the snapshot's last one.

One snapshot is pinned for the whole run (the resolved file CURRENT pointed at when the
export started), so every dataset of one export is from the same build even if a new build
publishes meanwhile. Rows stream from DuckDB as Arrow record batches through masking into
both writers, so memory is bounded by the batch size. Everything is written to a staging
directory renamed into place at the end: a reader never sees half a package.

Personal fields are masked unless ``personal`` is asked for, by the same :func:`feeds.masking.mask_table`
as the feed API (so ``_record_hash`` is keyed and, masked, ``_source_key`` pseudonymised); the
CSV is written through :func:`feeds.formats.csv_cells`, the one CSV form of the hub (lists as JSON
arrays, text values that a spreadsheet would run as a formula prefixed with ``'``), while the
Parquet keeps every value exactly. When an :class:`AuditLog` is given, each package is recorded
there before it is moved into place (no audit, no export).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from schemas import ENTITIES, get_entity
from warehouse.landing import fsync_dir
from warehouse.publish import current_path

from feeds.audit import AuditLog
from feeds.datasets import LICENCE, PUBLISHER
from feeds.formats import csv_cells
from feeds.masking import mask_table
from feeds.sharing import servable
from feeds.tableschema import feed_columns, table_schema

__all__ = ["ExportError", "ExportResult", "export", "BATCH_ROWS"]

BATCH_ROWS = 65_536
_CHUNK = 1 << 20
Progress = Callable[[str, int, int], None]


class ExportError(RuntimeError):
    """An export cannot be made (unknown dataset, snapshot without a table or column…)."""


@dataclass(frozen=True)
class ExportResult:
    """One written package: where, from which snapshot, how many rows, and each file's size and hash."""

    dataset: str
    version: str
    directory: Path
    rows: int
    personal: bool
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def export(
    home: Path,
    datasets: list[str] | None,
    out_dir: Path,
    *,
    personal: bool = False,
    secret: bytes,
    progress: Progress | None = None,
    audit: AuditLog | None = None,
    batch_rows: int = BATCH_ROWS,
) -> list[ExportResult]:
    """Export ``datasets`` (default: all) of the current snapshot under ``out_dir``."""
    names = [n for n in ENTITIES if servable(n)] if not datasets else list(dict.fromkeys(datasets))
    unknown = [n for n in names if n not in ENTITIES]
    if unknown:
        raise ExportError(f"unknown dataset(s) {', '.join(map(repr, unknown))} (known: {', '.join(ENTITIES)})")
    never = [n for n in names if not servable(n)]
    if never:  # the one gate every way out asks (feeds.sharing)
        raise ExportError(f"dataset(s) {', '.join(never)} are 不予共享 (not shared) and never leave the hub; "
                          "export the others")
    if batch_rows < 1:
        raise ExportError(f"batch_rows must be >= 1 (got {batch_rows})")
    database = current_path(home)  # resolved once: the whole export reads this snapshot
    version = database.parent.name
    con = duckdb.connect(str(database), read_only=True)
    try:
        con.execute("SET TimeZone = 'UTC'")
        con.execute("SET preserve_insertion_order = true")
        return [
            _export_one(con, name, version, Path(out_dir), personal=personal, secret=secret, progress=progress,
                        audit=audit, batch_rows=batch_rows)
            for name in names
        ]
    finally:
        con.close()


def _columns(con: duckdb.DuckDBPyConnection, dataset: str, version: str) -> list[str]:
    present = {c for (c,) in con.execute(
        "SELECT column_name FROM duckdb_columns() WHERE schema_name = 'core' AND table_name = ?", [dataset]
    ).fetchall()}
    if not present:
        raise ExportError(f"snapshot {version} has no table core.{dataset}; run `iehub build`")
    wanted = feed_columns(dataset)
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ExportError(f"core.{dataset} in snapshot {version} lacks columns {missing}; "
                          "it was built with an older schema: run `iehub build --full`")
    return wanted


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _export_one(
    con: duckdb.DuckDBPyConnection,
    dataset: str,
    version: str,
    out_dir: Path,
    *,
    personal: bool,
    secret: bytes,
    progress: Progress | None,
    audit: AuditLog | None,
    batch_rows: int,
) -> ExportResult:
    columns = _columns(con, dataset, version)
    total = int(con.execute(f"SELECT count(*) FROM core.{_quote(dataset)}").fetchall()[0][0])
    # No ORDER BY: sorting would hold the whole table in memory before the first batch. A scan
    # streams, and keeps the snapshot's stored order (preserve_insertion_order), so exporting one
    # snapshot twice gives the same rows in the same order.
    query = f"SELECT {', '.join(map(_quote, columns))} FROM core.{_quote(dataset)}"
    parent = out_dir / dataset
    target = parent / version
    staging = parent / f".{version}.{os.getpid()}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    if personal:  # unmasked personal data: private whatever the umask; the folder first, so no file is ever reachable
        staging.chmod(0o700)
    csv_path, parquet_path = staging / f"{dataset}.csv", staging / f"{dataset}.parquet"
    try:
        reader = con.sql(query).to_arrow_reader(batch_rows)
        empty = mask_table(reader.schema.empty_table(), dataset, personal=personal, secret=secret)
        schema = empty.schema
        rows = 0
        if progress:
            progress(dataset, 0, total)
        with pq.ParquetWriter(parquet_path, schema, compression="zstd") as parquet, \
                pacsv.CSVWriter(csv_path, csv_cells(empty).schema) as csv:
            for batch in reader:
                masked = mask_table(pa.Table.from_batches([batch], reader.schema), dataset, personal=personal,
                                    secret=secret)
                parquet.write_table(masked)
                csv.write_table(csv_cells(masked))
                rows += masked.num_rows
                if progress:
                    progress(dataset, rows, total)
        files = {path.name: _describe(path) for path in (csv_path, parquet_path)}
        package = _package(dataset, version, personal, rows, files)
        (staging / "datapackage.json").write_text(json.dumps(package, ensure_ascii=False, indent=2) + "\n",
                                                  encoding="utf-8")
        if personal:
            for path in staging.iterdir():
                path.chmod(0o600)
        _fsync_tree(staging)
        if audit is not None:
            audit.append(key_id="-", consumer="iehub export (operator)", dataset=dataset, endpoint="export",
                         params={"out": str(target)}, rows=rows, fields=list(schema.names), personal=personal,
                         digest="sha256:" + files[csv_path.name]["sha256"], snapshot=version)
        _move_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ExportResult(dataset, version, target, rows, personal, files)


def _describe(path: Path) -> dict[str, Any]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def _package(dataset: str, version: str, personal: bool, rows: int, files: dict[str, dict[str, Any]]) -> dict[str, Any]:
    entity = get_entity(dataset)
    schema = table_schema(dataset, personal=personal)
    slug = dataset.replace("_", "-")

    def resource(fmt: str, mediatype: str, **extra: Any) -> dict[str, Any]:
        name = f"{dataset}.{fmt}"
        size, digest = files[name]["bytes"], f"sha256:{files[name]['sha256']}"
        # The CSV is the package's table: a plain `pip install frictionless` (no pandas, no parquet
        # plugin) validates it row by row. The Parquet copy is listed as a file (type "file"), so the
        # same validator checks its bytes and hash instead of refusing the package for lack of the
        # plugin; its schema stays beside it for readers (#17 item 5).
        return {
            "name": f"{slug}-{fmt}",
            "path": name,
            **({} if fmt == "csv" else {"type": "file"}),
            "format": fmt,
            "mediatype": mediatype,
            **extra,
            "bytes": size,
            "hash": digest,
            "rowCount": rows,
            "schema": schema if fmt == "csv" else _parquet_schema(schema),
        }

    return {
        "name": f"iehub-{slug}",
        "title": f"{entity.zh} / {entity.en}",
        "description": f"{entity.en} ({entity.zh}), snapshot {version} of the iehub warehouse. "
        f"Grain: {entity.grain}. Personal fields {'included' if personal else 'masked'}.",
        "version": version,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "licenses": [{"name": LICENCE["identifier"], "path": LICENCE["url"], "title": LICENCE["identifier"]}],
        "contributors": [{"title": PUBLISHER["name"], "role": "publisher"}],
        "keywords": ["产教融合", "industry-education integration", "Shanghai", dataset],
        "resources": [
            resource("csv", "text/csv", encoding="utf-8"),
            resource("parquet", "application/vnd.apache.parquet"),
        ],
        "iehub": {"dataset": dataset, "snapshot": version, "personal": personal},
    }


def _parquet_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The Table Schema of the Parquet resource: the CSV's, except that a list field is typed ``any``.

    frictionless reads Parquet through pandas, which hands a list cell over as a numpy array, and
    its ``array`` type accepts only a list or JSON text: every list cell would be reported as a
    type error although the file holds a true ``list<string>``. The field keeps saying what it is
    (``parquetType``, and the CSV resource's ``array``), so nothing is hidden from a reader.
    """
    fields = []
    for field in schema["fields"]:
        if field["type"] == "array":
            field = {**field, "type": "any", "parquetType": "list<string>",
                     "description": field["description"] + " (in Parquet a list column; typed 'any' here only "
                     "because frictionless cannot read Parquet lists as arrays)"}
        fields.append(field)
    return {**schema, "fields": fields}


def _fsync_tree(directory: Path) -> None:
    for path in directory.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    fsync_dir(directory)


def _move_into_place(staging: Path, target: Path) -> None:
    """Rename the finished package in; an earlier export of the same snapshot is replaced whole."""
    old = target.with_name(f".{target.name}.{os.getpid()}.old")
    if target.exists():
        os.rename(target, old)
    os.rename(staging, target)
    fsync_dir(target.parent)
    shutil.rmtree(old, ignore_errors=True)
