"""A real hub home for feed tests: std batches of real entities in several districts, built and published.

Rows go through the same path a sync takes (``add_lineage`` → ``ParquetSink`` → the ledger)
and the real warehouse build, so the feeds read exactly what production snapshots hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas import get_entity
from schemas.lineage import add_lineage
from warehouse.build import build
from warehouse.catalog import BatchRecord, Catalog
from warehouse.landing import ParquetSink
from warehouse.layout import Lake, batch_id

UTC = timezone.utc
#: 浦东 (incl. 临港), 杨浦, 闵行: the districts every feed test spreads its rows over.
DISTRICTS = ("310115", "310110", "310112")
MUNICIPAL = "municipal_db"
LINGANG = "lingang_platform"


def land_rows(home: Path, catalog: Catalog, source: str, entity_name: str, window: str,
              rows: list[dict[str, Any]]) -> str:
    """Land ``rows`` (business fields; missing ones NULL; ``_is_deleted`` optional) as one ledgered batch."""
    entity = get_entity(entity_name)
    schema = entity.arrow_schema(lineage=False).append(pa.field("_is_deleted", pa.bool_()))
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
    bid = batch_id(source, entity_name, window)
    landed = add_lineage(table, entity, source=source, batch_id=bid, extracted_at=datetime.now(UTC))
    lake = Lake(home)
    path = lake.std_path(entity_name, source, date(2025, 6, 1), bid)
    with ParquetSink(path, entity.arrow_schema()) as sink:
        sink.write(landed)
    now = datetime.now(UTC)
    catalog.commit_batch(BatchRecord(bid, source, entity_name, window, window, landed.num_rows, landed.num_rows, 0,
                                     now, now, std_path=lake.relative(path)))
    return bid


def project(i: int, district: str, **extra: Any) -> dict[str, Any]:
    return {"project_id": f"P{i:05d}", "title": f"产教融合协同育人项目{i}", "district_code": district,
            "lead_org_name": "上海电机学院", "budget_amount": Decimal("125000.50") + i, "approved_on": date(2025, 1, 2),
            "status": "ongoing" if i % 2 else None,
            "updated_at": datetime(2025, 3, 1, 8, 0, tzinfo=UTC) + timedelta(hours=i), **extra}


def participant(i: int, project_no: int, **extra: Any) -> dict[str, Any]:
    return {"participant_id": f"PP{i:05d}", "project_id": f"P{project_no:05d}", "org_name": "上海积塔半导体有限公司",
            "updated_at": datetime(2025, 3, 2, tzinfo=UTC), **extra}


def trainee(i: int, district: str, **extra: Any) -> dict[str, Any]:
    return {"trainee_id": f"T{i:05d}", "name": "张三丰", "id_number": "31011519900101002X", "phone": "13812345678",
            "school_name": "上海电子信息职院", "district_code": district, "start_date": date(2025, 2, 1),
            "updated_at": datetime(2025, 3, 3, tzinfo=UTC), **extra}


def teacher(i: int, **extra: Any) -> dict[str, Any]:
    return {"teacher_id": f"TE{i:04d}", "name": "欧阳明", "id_number": "310110198501011234", "phone": "13900001111",
            "org_name": "上海商汤科技开发有限公司", "updated_at": datetime(2025, 3, 4, tzinfo=UTC), **extra}


@dataclass
class FeedHome:
    """A home and its catalog, with helpers to land more and rebuild."""

    home: Path
    catalog: Catalog
    windows: int = 0
    expected: dict[str, Any] = field(default_factory=dict)

    def land(self, source: str, entity: str, rows: list[dict[str, Any]]) -> None:
        self.windows += 1
        land_rows(self.home, self.catalog, source, entity, f"w{self.windows:04d}", rows)

    def build(self) -> str:
        result = build(self.home, self.catalog)
        assert result.snapshot is not None
        return result.snapshot.version


def make_feed_home(home: Path, catalog: Catalog, projects: int = 30) -> FeedHome:
    """Projects, participants, trainees and teachers across DISTRICTS, with some deletes; built twice."""
    fh = FeedHome(home, catalog)
    fh.land(MUNICIPAL, "project", [project(i, DISTRICTS[i % 3]) for i in range(projects)])
    fh.land(MUNICIPAL, "project_participant", [participant(i, i % projects) for i in range(projects * 2)])
    fh.land(MUNICIPAL, "trainee", [trainee(i, DISTRICTS[i % 3]) for i in range(12)])
    fh.land(MUNICIPAL, "teacher", [teacher(i) for i in range(4)])
    fh.build()
    # Second build: a few updates and deletes, so every feed has changes and tombstones.
    fh.land(MUNICIPAL, "project", [project(0, DISTRICTS[0], title="更新后的项目0"),
                                    {**project(1, DISTRICTS[1]), "_is_deleted": True},
                                    {**project(2, DISTRICTS[2]), "_is_deleted": True}])
    fh.land(MUNICIPAL, "trainee", [{**trainee(3, DISTRICTS[0]), "_is_deleted": True}])
    fh.build()
    return fh
