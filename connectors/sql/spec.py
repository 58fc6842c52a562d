"""The SQL kind's spec: a database URL, and per stream a table (or a query) with its key and cursor."""
from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.spec import BaseSourceSpec, BaseStreamSpec, SecretRef, _Model, register_spec_kind

#: the column types a query stream declares (table streams are reflected)
TYPE_PATTERN = r"^(int|text|float|bool|date|timestamp|timestamptz|decimal\(\d{1,2},\s*\d{1,2}\))$"


class Connection(_Model):
    """Where the database is. The URL is a secret (it may carry a password); `default_url` is not."""

    url: SecretRef
    default_url: str | None = Field(default=None, description="used when the secret is unset: an embedded default "
                                    "without credentials, e.g. sqlite:///${IEHUB_HOME:-./var}/sandbox/x.sqlite")
    backend: Literal["auto", "adbc", "connectorx", "sqlalchemy"] = "auto"
    batch_rows: int = Field(default=100_000, ge=1, le=2_000_000, description="rows per page written to the lake")
    max_attempts: int = Field(default=4, ge=1, le=20, description="tries of one pass: a dropped connection resumes "
                              "after the last row read until the pass has used them up")
    backoff_seconds: float = Field(default=1.0, ge=0)


class SoftDelete(_Model):
    """A row is deleted at the source when `column` is set (`values` absent) or holds one of `values`."""

    column: str
    values: tuple[str, ...] | None = None


class SqlStreamSpec(BaseStreamSpec):
    table: str | None = None
    query: str | None = None
    columns: dict[str, str] = Field(default_factory=dict, description="types of a query's columns (table: reflected)")
    cursor_column: str | None = None
    soft_delete: SoftDelete | None = None
    reconcile_every_hours: float | None = Field(
        default=24.0, ge=0, description="how often the key-only diff turns hard deletes into tombstones; "
        "0 = every run, null = never (a full resync always does)")

    @model_validator(mode="after")
    def _table_or_query(self) -> "SqlStreamSpec":
        if (self.table is None) == (self.query is None):
            raise ValueError("a SQL stream reads exactly one of 'table' or 'query'")
        if self.query is not None and not self.columns:
            raise ValueError("a query stream declares the types of its columns in 'columns'")
        if self.query is not None and self.primary_key not in self.columns:
            raise ValueError(f"primary_key {self.primary_key!r} is not among the query's columns")
        if self.query is not None and self.cursor_column and self.cursor_column not in self.columns:
            raise ValueError(f"cursor_column {self.cursor_column!r} is not among the query's columns")
        return self

    @field_validator("columns")
    @classmethod
    def _known_types(cls, value: dict[str, str]) -> dict[str, str]:
        for name, kind in value.items():
            if not re.match(TYPE_PATTERN, kind.strip()):
                raise ValueError(f"column {name}: unknown type {kind!r} (int, text, float, bool, date, timestamp, "
                                 "timestamptz, decimal(p,s))")
        return value

    @field_validator("query")
    @classmethod
    def _one_select(cls, value: str | None) -> str | None:
        if value is not None and (";" in value.strip().rstrip(";") or not re.match(r"(?is)^\s*(select|with)\b", value)):
            raise ValueError("a query is one SELECT (or WITH … SELECT) statement")
        return value.strip().rstrip(";") if value else value


class SqlSourceSpec(BaseSourceSpec):
    kind: Literal["sql"]
    connection: Connection
    overlap_seconds: int = Field(default=300, ge=0, description="re-read window behind the cursor for late commits")
    streams: dict[str, SqlStreamSpec]


register_spec_kind("sql", SqlSourceSpec)
