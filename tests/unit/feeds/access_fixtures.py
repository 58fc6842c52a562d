"""A small real warehouse with personal data (teachers, trainees) and organisations, for keys/export tests.

Rows go through the real landing and the real build with the real ``schemas.ENTITIES``, so
an export reads exactly what a production snapshot holds.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa

from schemas import get_entity
from schemas.validators import resident_id_check_char
from tests.unit.warehouse.warehouse_fixtures import land, with_record_hash
from warehouse.build import build
from warehouse.catalog import Catalog

UTC = timezone.utc
SECRET = b"test-feed-secret-0123456789abcdef"


def resident_id(first17: str) -> str:
    """A resident ID with a correct check character (some end in X)."""
    return first17 + resident_id_check_char(first17)


TEACHERS: list[dict[str, Any]] = [
    {"teacher_id": "T001", "name": "张伟", "id_number": resident_id("31011519800101002"), "phone": "13812345678",
     "teacher_type": "industry_professor", "org_name": "上海积塔半导体有限公司", "school_name": "上海电机学院"},
    {"teacher_id": "T002", "name": "欧阳娜娜", "id_number": resident_id("31011219851212123"), "phone": "13998765432",
     "teacher_type": "industry_mentor", "org_name": "上海商汤科技开发有限公司", "school_name": "上海电力大学"},
    {"teacher_id": "T003", "name": "诸葛明", "id_number": None, "phone": None,
     "teacher_type": "industry_lecturer", "org_name": "临港集团", "school_name": "上海海事大学"},
    {"teacher_id": "T004", "name": "王芳", "id_number": resident_id("31011019900303004"), "phone": "15000001111",
     "teacher_type": "industry_mentor", "org_name": "上海心玮医疗科技股份有限公司", "school_name": "上海海洋大学"},
]
TRAINEES: list[dict[str, Any]] = [
    {"trainee_id": "S001", "name": "李小龙", "id_number": resident_id("31011520020101003"), "phone": "13700001234",
     "trainee_type": "intern", "school_name": "上海电子信息职院", "district_code": "310115", "major": "集成电路技术",
     "start_date": date(2025, 3, 1)},
    {"trainee_id": "S002", "name": "司马光", "id_number": resident_id("31011220030505006"), "phone": "18600005678",
     "trainee_type": "apprentice", "school_name": "上海农林职院", "district_code": "310112", "major": "智能制造",
     "start_date": date(2025, 4, 1)},
]
ORGANIZATIONS: list[dict[str, Any]] = [
    {"org_id": "91310000MA1FL5A20X", "uscc": "91310000MA1FL5A20X", "name": "上海积塔半导体有限公司",
     "org_type": "enterprise", "district_code": "310115", "is_integration_enterprise": True},
    {"org_id": "12310000425006054Q", "uscc": "12310000425006054Q", "name": "上海电机学院",
     "org_type": "university", "district_code": "310115", "is_integration_enterprise": False},
]


def entity_rows(entity_name: str, source: str, rows: list[dict[str, Any]]) -> pa.Table:
    """Rows of a real entity with every other column NULL and lineage filled in as the pipeline does."""
    entity = get_entity(entity_name)
    schema = entity.arrow_schema()
    key = [k for k in entity.key if not k.startswith("_")][0]
    extracted = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
    full = []
    for row in rows:
        record = {f.name: row.get(f.name) for f in schema}
        record.update({"_source": source, "_source_key": row[key], "_batch_id": "b", "_extracted_at": extracted,
                       "_record_hash": "", "_is_deleted": False,
                       "updated_at": datetime(2025, 2, 28, 16, 30, tzinfo=UTC)})
        full.append(record)
    return with_record_hash(pa.Table.from_pylist(full, schema=schema), entity)


def build_people_home(home: Path) -> Path:
    """Land teachers, trainees and organisations, build, and return ``home`` with a published snapshot."""
    catalog = Catalog.for_home(home)
    try:
        for name, source, rows in (("teacher", "municipal", TEACHERS), ("trainee", "district_minhang", TRAINEES),
                                   ("organization", "municipal", ORGANIZATIONS)):
            land(home, catalog, source, "w1", entity_rows(name, source, rows), entity=get_entity(name))
        build(home, catalog)
    finally:
        catalog.dispose()
    return home
