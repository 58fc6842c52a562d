"""Fixtures for the warehouse tests: a hub home and its embedded catalog."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from warehouse.catalog import Catalog


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "home"


@pytest.fixture
def catalog(home: Path) -> Iterator[Catalog]:
    cat = Catalog.for_home(home)
    yield cat
    cat.dispose()


@pytest.fixture(autouse=True)
def every_build_keeps_its_key_directories_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every warehouse a test builds has each core table's key directory list every row of it
    (warehouse.versions.key_directory): checked on the finished building file, before it replaces
    the warehouse, so each scenario here (renames, deletes, revivals, organisations) checks it too."""
    import duckdb

    import warehouse.build as build_module
    from warehouse.versions import KEY_DIRECTORY_PREFIX, directory_gaps

    replace = build_module._replace_warehouse

    def checked(lake) -> None:  # type: ignore[no-untyped-def]
        con = duckdb.connect(str(lake.building_path), read_only=True)
        try:
            names = [t.removeprefix(KEY_DIRECTORY_PREFIX) for (t,) in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE schema_name = 'ops' AND starts_with(table_name, ?)",
                [KEY_DIRECTORY_PREFIX]).fetchall()]
            gaps = {name: directory_gaps(con, name) for name in names}
        finally:
            con.close()
        assert all(n == 0 for n in gaps.values()), f"core rows missing from their key directory: {gaps}"
        replace(lake)

    monkeypatch.setattr(build_module, "_replace_warehouse", checked)
