"""Lineage columns and the record hash."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pytest

from schemas.entities import get_entity
from schemas.lineage import add_lineage, record_hash
from schemas.mapping import apply_mapping, parse_mapping

UTC = timezone.utc
NOTICE = get_entity("notice")
WHEN = datetime(2023, 4, 27, 3, 0, tzinfo=UTC)


def _mapped(titles: list[str | None], deleted: list[str] | None = None) -> pa.Table:
    spec = {"fields": {"notice_id": "id", "title": "title", "district_code": {"const": "310115"},
                       "published_at": {"from": "time", "normalise": ["local_timestamp"]}},
            "deleted": "del"}  # fmt: skip
    n = len(titles)
    raw = pa.table({
        "id": [f"N{i}" for i in range(n)], "title": titles,
        "time": ["2023-04-27 10:00:00"] * n, "del": deleted or ["0"] * n,
    })  # fmt: skip
    return apply_mapping(raw, parse_mapping("notice", spec, "x.yaml: m")).table


def test_output_conforms_exactly_to_the_entity_schema() -> None:
    landed = add_lineage(_mapped(["临港新片区产教融合政策"]), NOTICE, source="lingang", batch_id="b-1", extracted_at=WHEN)
    assert landed.schema.equals(NOTICE.arrow_schema(), check_metadata=True)
    row = landed.to_pylist()[0]
    assert (row["_source"], row["_batch_id"], row["_source_key"]) == ("lingang", "b-1", "N0")
    assert row["_extracted_at"] == WHEN
    assert len(row["_record_hash"]) == 32 and int(row["_record_hash"], 16) >= 0
    assert row["_is_deleted"] is False


def test_hash_is_stable_across_runs_and_independent_of_lineage() -> None:
    table = _mapped(["通知一", "通知二", "通知三"])
    a = add_lineage(table, NOTICE, source="lingang", batch_id="b-1", extracted_at=WHEN)
    b = add_lineage(table, NOTICE, source="other", batch_id="b-2", extracted_at=WHEN + timedelta(days=1),
                    source_key=pa.array(["x", "y", "z"]))  # fmt: skip
    assert a["_record_hash"].to_pylist() == b["_record_hash"].to_pylist()
    assert len(set(a["_record_hash"].to_pylist())) == 3


def test_hash_is_pinned_to_its_documented_recipe() -> None:
    # md5 of the business values joined by U+001F, nulls as U+0000, timestamps as epoch µs.
    # If this changes, every stored record would look changed on the next batch.
    payload = "\x1f".join(["N0", "临港新片区产教融合政策", "\x00", "\x00", "\x00", "310115",
                           str(1682560800000000), "\x00", "\x00", "\x00"])  # fmt: skip
    expected = hashlib.md5(payload.encode()).hexdigest()
    assert expected == "91bc2cc40a8d6367896029b546fb1451"
    assert record_hash(_mapped(["临港新片区产教融合政策"]), NOTICE).to_pylist() == [expected]


def test_hash_changes_when_a_business_value_changes() -> None:
    before = record_hash(_mapped(["关于开展2023年产教融合型企业申报的通知"]), NOTICE).to_pylist()[0]
    after = record_hash(_mapped(["关于开展2024年产教融合型企业申报的通知"]), NOTICE).to_pylist()[0]
    assert before != after


def test_null_and_empty_string_hash_differently() -> None:
    table = _mapped(["x", "y"])
    nulls = table.set_column(table.schema.get_field_index("summary"), "summary", pa.array([None, None], pa.string()))
    empty = table.set_column(table.schema.get_field_index("summary"), "summary", pa.array(["", ""], pa.string()))
    assert record_hash(nulls, NOTICE).to_pylist() != record_hash(empty, NOTICE).to_pylist()


def test_hash_ignores_the_tombstone_flag_but_lineage_keeps_it() -> None:
    live = _mapped(["通知"], ["0"])
    gone = _mapped(["通知"], ["1"])
    a = add_lineage(live, NOTICE, source="s", batch_id="b", extracted_at=WHEN)
    b = add_lineage(gone, NOTICE, source="s", batch_id="b", extracted_at=WHEN)
    assert a["_record_hash"] == b["_record_hash"]
    assert b["_is_deleted"].to_pylist() == [True]


def test_hash_follows_the_canonical_value_not_the_delivery_type() -> None:
    demand = get_entity("talent_demand")
    base = {f.name: pa.nulls(1, f.type) for f in demand.business_fields}
    base["demand_id"] = pa.array(["D1"])
    base["org_name"] = pa.array(["上海商汤科技开发有限公司"])
    typed = pa.table({**base, "salary_min_amount": pa.array([Decimal("12000.00")], pa.decimal128(18, 2))})
    other = pa.table({**base, "salary_min_amount": pa.array([Decimal("12000")], pa.decimal128(10, 0))})
    assert record_hash(typed, demand) == record_hash(other, demand)


def test_extracted_at_must_be_aware_and_business_fields_present() -> None:
    table = _mapped(["通知"])
    with pytest.raises(ValueError, match="timezone-aware"):
        add_lineage(table, NOTICE, source="s", batch_id="b", extracted_at=datetime(2023, 4, 27))
    with pytest.raises(ValueError, match="lacks business fields"):
        add_lineage(table.drop_columns(["url"]), NOTICE, source="s", batch_id="b", extracted_at=WHEN)
    with pytest.raises(ValueError, match="source_key has 2 values for 1 rows"):
        add_lineage(table, NOTICE, source="s", batch_id="b", extracted_at=WHEN, source_key=pa.array(["a", "b"]))


def test_extracted_at_is_stored_in_utc() -> None:
    shanghai = timezone(timedelta(hours=8))
    landed = add_lineage(_mapped(["通知"]), NOTICE, source="s", batch_id="b",
                         extracted_at=datetime(2023, 4, 27, 11, 0, tzinfo=shanghai))  # fmt: skip
    assert landed["_extracted_at"].to_pylist() == [WHEN]


def test_empty_table() -> None:
    landed = add_lineage(_mapped([]), NOTICE, source="s", batch_id="b", extracted_at=WHEN)
    assert landed.num_rows == 0 and landed.schema.equals(NOTICE.arrow_schema(), check_metadata=True)


def test_organization_default_source_key_is_its_key() -> None:
    org = get_entity("organization")
    table = pa.table({f.name: pa.nulls(1, f.type) for f in org.business_fields})
    table = table.set_column(0, "org_id", pa.array(["91310115MA1H7GPB6X"]))
    landed = add_lineage(table, org, source="municipal", batch_id="b", extracted_at=WHEN)
    assert landed["_source_key"].to_pylist() == ["91310115MA1H7GPB6X"]


def test_hashes_stay_in_row_order_when_duckdb_hashes_batches_on_several_threads(monkeypatch) -> None:
    import schemas.lineage

    monkeypatch.setattr(schemas.lineage, "_md5", None)  # DuckDB's way, the one without the C loop
    monkeypatch.setattr(schemas.lineage, "HASH_BATCH_ROWS", 16)  # 3,000 rows: 188 batches
    titles = [f"第{i}号通知" for i in range(3000)]
    table = _mapped(titles)
    expected = [hashlib.md5("\x1f".join([f"N{i}", title, "\x00", "\x00", "\x00", "310115", str(1682560800000000),
                                         "\x00", "\x00", "\x00"]).encode()).hexdigest()
                for i, title in enumerate(titles)]  # fmt: skip
    assert record_hash(table, NOTICE).to_pylist() == expected
