"""Raw records ↔ Arrow: kept as received for the raw lake, flattened to columns for mapping."""
from __future__ import annotations

from typing import Any, Iterable

import orjson
import pyarrow as pa


def to_json_lines(records: Iterable[dict[str, Any]]) -> list[str]:
    """Each record as compact JSON text, the raw lake's lossless form."""
    return [orjson.dumps(r).decode() for r in records]


def _flatten_into(out: dict[str, list[Any]], record: dict[str, Any], prefix: str, row: int) -> None:
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            _flatten_into(out, value, f"{name}.", row)
            continue
        column = out.get(name)
        if column is None:
            column = out[name] = [None] * row
        elif len(column) < row:
            column.extend([None] * (row - len(column)))
        if value is None or isinstance(value, str):
            column.append(value)
        elif isinstance(value, bool):
            column.append("true" if value else "false")
        elif isinstance(value, (int, float)):
            column.append(str(value))
        else:
            column.append(orjson.dumps(value).decode())


def flatten(records: list[dict[str, Any]]) -> pa.Table:
    """Records → a table of string columns; nested objects become dotted names (`org.name`).

    Every value is text, so a source that sends 5 on one row and "5" on the next does not break
    the batch; typing is the mapping's job, which can reject one row with a reason.
    """
    out: dict[str, list[Any]] = {}
    for row, record in enumerate(records):
        _flatten_into(out, record, "", row)
    n = len(records)
    for column in out.values():
        if len(column) < n:
            column.extend([None] * (n - len(column)))
    return pa.table({name: pa.array(values, type=pa.string()) for name, values in out.items()}) if out \
        else pa.table({"_empty": pa.nulls(n, pa.string())})


def parse_json_lines(lines: pa.Array | pa.ChunkedArray) -> list[dict[str, Any]]:
    return [orjson.loads(s) for s in lines.to_pylist()]
