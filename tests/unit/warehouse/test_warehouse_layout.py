"""Lake paths follow DESIGN.md and batch ids are stable per window."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from warehouse.layout import Lake, batch_id


def test_paths_follow_the_documented_layout(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    day = date(2025, 3, 1)
    assert lake.raw_path("lingang", "notice", day, "b1") == tmp_path / "lake/raw/lingang/notice/dt=2025-03-01/b1.parquet"
    assert lake.std_path("notice", "lingang", day, "b1") == tmp_path / "lake/std/notice/source=lingang/dt=2025-03-01/b1.parquet"
    assert (
        lake.quarantine_path("notice", "lingang", day, "b1")
        == tmp_path / "lake/quarantine/notice/source=lingang/dt=2025-03-01/b1.parquet"
    )
    assert lake.warehouse_path == tmp_path / "warehouse.duckdb"


def test_batch_id_is_deterministic_per_window() -> None:
    first = batch_id("district_310110", "trainee", "2025-03-01")
    assert first == batch_id("district_310110", "trainee", "2025-03-01")
    assert first.startswith("district_310110-trainee-") and len(first.rsplit("-", 1)[1]) == 16
    assert first != batch_id("district_310110", "trainee", "2025-03-02")
    assert first != batch_id("district_310112", "trainee", "2025-03-01")


@pytest.mark.parametrize("bad", ["../etc", "a/b", "", "嘉定"])
def test_unsafe_names_are_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="safe path segment"):
        Lake(tmp_path).std_path("notice", bad, date(2025, 3, 1), "b1")


def test_ledger_paths_are_relative_to_home(tmp_path: Path) -> None:
    lake = Lake(tmp_path)
    path = lake.std_path("notice", "lingang", date(2025, 3, 1), "b1")
    rel = lake.relative(path)
    assert rel == "lake/std/notice/source=lingang/dt=2025-03-01/b1.parquet"
    assert lake.resolve(rel) == path
    with pytest.raises(ValueError):
        lake.resolve("../outside.parquet")
    with pytest.raises(ValueError):
        lake.relative(Path("/elsewhere/x.parquet"))


def test_batch_ids_are_per_extraction() -> None:
    """A full resync reads the same window as the first load; only its run tells them apart (issue #19/11)."""
    first = batch_id("municipal_projects", "project", "projects|since=beginning", "cli:20261205T010000Z:aa")
    assert first != batch_id("municipal_projects", "project", "projects|since=beginning", "cli:20261206T010000Z:bb")
    assert first == batch_id("municipal_projects", "project", "projects|since=beginning", "cli:20261205T010000Z:aa")
