"""The snapshot guard: one rule, for every kind, on whether a full read may replace what the hub holds.

A full read (a file snapshot, a SQL or REST read from the beginning) says "this is everything";
the hub turns what it lacks into deletes. A cut-short export, a file of only a header and a 合计
row, or a query against a half-loaded table says the same thing with less data, and would delete
most of a source's rows with exit 0. So a full read that would delete more than
`max_delete_share` of the live rows, or holds fewer than `(1 - max_row_drop)` of the rows of the
last accepted full read, is held as suspect: the caller applies nothing from it and says why with
these figures. A real shrink is accepted by an operator (`iehub quarantine accept FILE` for files),
never by the guard guessing. The file kind calls this per file before emitting a row; the
pipeline's quality gate calls it for every other kind's full reads: one rule, one wording.
"""
from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class SnapshotGuard(BaseModel):
    """`snapshot_guard:` in a stream's spec; the defaults hold for every source that says nothing."""

    model_config = ConfigDict(extra="forbid", frozen=True)  # as the spec models (no import: spec imports this)

    max_delete_share: float = Field(default=0.2, ge=0, le=1,
                                    description="largest share of live rows one full read may delete")
    max_row_drop: float = Field(default=0.5, ge=0, le=1,
                                description="largest fall in rows against the last accepted full read")
    min_live_rows: int = Field(default=10, ge=0,
                               description="below this many live rows the guard does not judge (tiny sources)")


@dataclass(frozen=True)
class ShrinkFigures:
    """What a full read would do: rows it holds, live rows before it, how many it would delete."""

    rows: int
    live: int
    deleting: int
    previous_rows: int | None = None  # rows of the last accepted full read, if known

    def describe(self) -> str:
        share = self.deleting / self.live if self.live else 0.0
        text = f"it holds {self.rows} rows and would delete {self.deleting} of {self.live} live rows ({share:.0%})"
        if self.previous_rows is not None:
            text += f"; the last accepted one held {self.previous_rows}"
        return text


def shrink_reason(figures: ShrinkFigures, guard: SnapshotGuard) -> str | None:
    """Why this full read is suspect, with the figures and the limit it breaks; None when it may apply."""
    if figures.live < guard.min_live_rows and (figures.previous_rows or 0) < guard.min_live_rows:
        return None
    if figures.live and figures.deleting > guard.max_delete_share * figures.live:
        return (f"suspect snapshot: {figures.describe()}, above the limit of "
                f"{guard.max_delete_share:.0%} (snapshot_guard.max_delete_share)")
    if figures.previous_rows and figures.rows < (1 - guard.max_row_drop) * figures.previous_rows:
        return (f"suspect snapshot: {figures.describe()}: fewer than {1 - guard.max_row_drop:.0%} of it "
                "(snapshot_guard.max_row_drop)")
    return None


__all__ = ["ShrinkFigures", "SnapshotGuard", "shrink_reason"]
