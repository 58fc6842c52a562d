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
