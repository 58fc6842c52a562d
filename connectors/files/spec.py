"""The file kind's spec: a drop folder (any location scheme), a glob, and how to read each file.

Everything a district's files need is stated here, in a small vocabulary: which encodings to try,
where the header is, which rows are totals or notes, which columns must arrive as text, and
whether each file is a full snapshot (the hub derives inserts, updates and deletes) or a set of
changed rows, which period a file describes (snapshots apply in that order, never in arrival
order), and the caps a file must stay under before it is expanded. How much one snapshot may
delete is `snapshot_guard:`, common to every kind (connectors/guard.py). No Python per district.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from connectors.spec import BaseSourceSpec, BaseStreamSpec, _Model, interpolate_env

DELETED_COLUMN = "_deleted"  # the flag the file kind sets on tombstone rows; specs read it with `deleted:`


class HeaderRule(_Model):
    """Where the header is: the first row holding `find` in any cell (within `search_rows`),
    or row `row` (1-based) when `find` is not given; `rows` > 1 joins merged header rows."""

    find: str | None = None
    row: int = Field(default=1, ge=1)
    rows: int = Field(default=1, ge=1, le=5)
    search_rows: int = Field(default=30, ge=1, le=1000)
    joiner: str = "/"


class SkipRule(_Model):
    """Rows that are not data (合计 totals, 注 notes): `column`'s text matches the regex `matches`.

    Skipped rows are counted in the sync result, never dropped silently.
    """

    column: str
    matches: str


class CompletenessRule(_Model):
    """When a file counts as complete: unchanged for `settle_seconds`; CSV ends with a newline
    (a half-written last line does not); a file that still fails to parse after
    `give_up_seconds` is quarantined whole instead of waited for."""

    settle_seconds: float = Field(default=5.0, ge=0)
    require_final_newline: bool = True
    give_up_seconds: float = Field(default=3600.0, ge=0)


class FileLimits(_Model):
    """Per-file caps, checked before a file is expanded: bytes on disk (and, for a workbook, the
    uncompressed size of its parts), rows (CSV lines, a sheet's declared or read rows) and cells
    (rows × columns). A file over a cap is quarantined whole, never read in part."""

    max_bytes: int = Field(default=2 << 30, ge=1)
    max_rows: int = Field(default=10_000_000, ge=1)
    max_cells: int = Field(default=200_000_000, ge=1)
    # a sheet is expanded in memory (~160 bytes a cell) where a CSV streams: 5M cells is ~0.8 GB,
    # far above any district's workbook and below what a 2 MB zip bomb of a million rows expands to
    max_workbook_cells: int = Field(default=5_000_000, ge=1)


DEFAULT_PERIOD = r"(?<!\d)(\d{4})[-_.]?(0[1-9]|1[0-2])(?:[-_.]?(0[1-9]|[12]\d|3[01]))?(?!\d)"


class PeriodRule(_Model):
    """Which period a snapshot describes, from its file name: the regex's groups are year, month
    and (optionally) day. Snapshots apply in period order; a file older than the current snapshot
    is refused as late. A name without a match has no period and applies in name order."""

    from_name: str = DEFAULT_PERIOD

    @field_validator("from_name")
    @classmethod
    def _compiles(cls, value: str) -> str:
        import re

        try:
            if re.compile(value).groups < 2:
                raise ValueError("the period regex needs groups for year and month (and optionally day)")
        except re.error as exc:
            raise ValueError(f"not a valid regex: {exc}") from None
        return value


class FileStreamSpec(BaseStreamSpec):
    pattern: str = Field(description="glob of the stream's files inside the location, e.g. projects_*.csv")
    format: Literal["csv", "excel"]
    mode: Literal["snapshot", "changes"] = "snapshot"
    encodings: tuple[str, ...] = ("utf-8-sig", "gb18030")
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    sheet: str | int | None = None  # excel: sheet name or 0-based index; default the first
    header: HeaderRule = HeaderRule()
    skip: tuple[SkipRule, ...] = ()
    note_lines: str | None = Field(default=None, description="csv: regex of lines that are notes, not rows")
    text_columns: tuple[str, ...] = Field(
        default=(), description="columns that must arrive as text (IDs, phones): a number there is quarantined")
    complete: CompletenessRule = CompletenessRule()
    limits: FileLimits = FileLimits()
    period: PeriodRule = PeriodRule()
    max_files_per_pass: int = Field(default=10, ge=1, le=1000)
    page_rows: int = Field(default=100_000, ge=1, le=5_000_000)

    @field_validator("encodings")
    @classmethod
    def _known_encodings(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        import codecs

        if not value:
            raise ValueError("give at least one encoding")
        for name in value:
            try:
                codecs.lookup(name)
            except LookupError:
                raise ValueError(f"unknown encoding {name!r}") from None
        return value

    @model_validator(mode="after")
    def _snapshot_reads_tombstones(self) -> FileStreamSpec:
        # A snapshot's deletes arrive as tombstone rows; without the rule they would be rejected
        # as rows missing their fields, and the deletes lost.
        if self.mode == "snapshot":
            deleted = self.mapping.get("deleted") if isinstance(self.mapping, dict) else None
            source = deleted.get("from") if isinstance(deleted, dict) else deleted
            if source != DELETED_COLUMN:
                raise ValueError(f"a snapshot stream's mapping needs `deleted: {{from: {DELETED_COLUMN}}}` "
                                 "so rows missing from a new snapshot become deletes")
        return self


class FileSourceSpec(BaseSourceSpec):
    kind: Literal["file"]
    location: str = Field(description="where files are dropped: a path or URL (file:///…); "
                                      "other schemes (sftp://, s3://) plug in via connectors.files.location")
    streams: dict[str, FileStreamSpec]

    def resolved_location(self) -> str:
        return interpolate_env(self.location)
