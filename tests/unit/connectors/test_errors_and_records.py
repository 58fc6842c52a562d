from __future__ import annotations

import pyarrow as pa
import pytest

from connectors.errors import Action, Actor, ConnectorError, classify_status, parse_retry_after
from connectors.records import flatten, parse_json_lines, to_json_lines


@pytest.mark.parametrize("status,action", [
    (500, Action.RETRY), (502, Action.RETRY), (503, Action.RETRY), (429, Action.RETRY), (408, Action.RETRY),
    (401, Action.REFRESH_AUTH), (400, Action.FAIL), (403, Action.FAIL), (404, Action.FAIL), (418, Action.FAIL),
])
def test_status_table(status: int, action: Action) -> None:
    assert classify_status(status).action is action


def test_retry_after_is_honoured() -> None:
    assert classify_status(429, "7").wait_hint == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2026 07:28:00 GMT") == 1.0
    assert parse_retry_after("-3") == 0.0


def test_error_message_names_where_and_who_acts() -> None:
    exc = ConnectorError("boom", source="lingang_platform", stream="notices", endpoint="/api/v1/notice/list",
                         page=3, actor=Actor.SOURCE)
    assert str(exc) == ("boom [source lingang_platform, stream notices, endpoint /api/v1/notice/list, page 3; "
                        "to act: source]")


def test_flatten_keeps_every_value_as_text() -> None:
    records = [
        {"id": "TD1", "headcount": 5, "salaryMin": "8000", "isDeleted": 0, "org": {"name": "上海积塔半导体有限公司"}},
        {"id": "TD2", "headcount": "5", "flag": True, "tags": ["a", "b"], "org": None},
        {"id": "TD3", "extra": None},
    ]
    table = flatten(records)
    assert table.schema.types == [pa.string()] * table.num_columns
    cols = table.to_pydict()
    assert cols["headcount"] == ["5", "5", None]
    assert cols["org.name"] == ["上海积塔半导体有限公司", None, None]
    assert cols["flag"] == [None, "true", None]
    assert cols["tags"] == [None, '["a","b"]', None]
    assert cols["isDeleted"] == ["0", None, None]


def test_json_lines_round_trip_chinese() -> None:
    records = [{"id": "NT1", "title": "关于开展2025年度产教融合型企业申报工作的通知"}]
    lines = to_json_lines(records)
    assert parse_json_lines(pa.array(lines)) == records


def test_flatten_empty() -> None:
    assert flatten([]).num_rows == 0


def test_extract_columns_agrees_with_flatten() -> None:
    from connectors.records import extract_columns

    records = [
        {"id": "TD1", "headcount": 5, "salary": 8000.5, "flag": True, "org": {"name": "上海电机学院", "a.b": 1}},
        {"id": "TD2", "headcount": "5", "tags": ["a", "b"], "org": None, "quote\"d": "x"},
        {"id": "TD3"},
    ]
    names = ["id", "headcount", "flag", "org.name", "tags", "missing", "quote\"d"]
    got = extract_columns(pa.array(to_json_lines(records)), names)
    assert got.column_names == names and all(t == pa.string() for t in got.schema.types)
    flat = flatten(records)
    for name in ("id", "headcount", "flag", "org.name", "tags"):
        assert got.column(name).to_pylist() == flat.column(name).to_pylist(), name
    assert got.column("missing").to_pylist() == [None, None, None]
    assert got.column("quote\"d").to_pylist() == [None, "x", None]
