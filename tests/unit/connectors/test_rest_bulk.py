"""The REST kind's bulk path: records of page bodies turned into raw Arrow in DuckDB."""
from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
import requests

from connectors.errors import FatalError
from connectors.records import to_json_lines
from connectors.rest.rawpages import PageRecords, RawConverter
from connectors.rest.stream import RestSourceStream, explode
from connectors.spec import load_spec
from tests.unit.connectors.test_client import TOKEN, ScriptedAdapter

RECORDS = [
    {"id": "TD001", "orgName": "上海临港智能制造有限公司", "salaryMin": "6500", "headcount": 22,
     "amount": 12.5, "flag": True, "nested": {"org": {"name": "临港集团", "tags": ["a", "b"]}},
     "quote": 'say "hi" \\ back', "ctrl": "tab\there", "emoji": "✓", "empty": None, "updateTime": "2025-01-01 08:00:00"},
    {"id": 7, "updateTime": 20250101, "orgName": "半角ＡＢＣ"},
    {"id": True, "orgName": "布尔主键"},
    {"orgName": "无主键", "updateTime": "2025-01-01 09:00:00"},
]


def envelope(records: list[dict[str, Any]], total: int | None = None) -> bytes:
    return orjson.dumps({"code": 0, "msg": "success", "data": {"total": total if total is not None else len(records),
                                                               "list": records}})


def md5_16(text: str) -> str:
    return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()[:16]


# ---------------------------------------------------------------------------------- converter
def test_converter_writes_each_record_as_orjson_did_with_its_md5() -> None:
    converter = RawConverter("data.list")
    try:
        texts = to_json_lines(RECORDS)
        [(number, table)] = converter.convert([PageRecords(3, len(RECORDS), ["k"] * 4, [None] * 4,
                                                           body=envelope(RECORDS))])
    finally:
        converter.close()
    assert number == 3
    assert table.column("_record").to_pylist() == texts  # digests of earlier passes keep matching
    assert table.column("_digest").to_pylist() == [md5_16(t) for t in texts]
    assert [orjson.loads(t) for t in table.column("_record").to_pylist()] == RECORDS


def test_converter_normalises_a_body_written_differently_as_orjson_would() -> None:
    body = (b'{"code": 0, "data": {"list": [ {"a": 1.0, "b": 1e5, "c": 0.1, "e": 123456789012345678,\n'
            b'  "f": "\\u4e34\\/x", "g": 1.5e-7, "h": [], "i": {}, "j" : 3, "k": "\\u0001"} ]}}')
    converter = RawConverter("data.list")
    try:
        [(_, table)] = converter.convert([PageRecords(1, 1, [None], [None], body=body)])
    finally:
        converter.close()
    assert table.column("_record").to_pylist() == to_json_lines(orjson.loads(body)["data"]["list"])


def test_converter_keeps_only_the_kept_positions_and_splits_pages_in_order() -> None:
    first = [{"id": f"A{i}", "updateTime": "2025-01-01 08:00:00"} for i in range(4)]
    second = [{"id": f"B{i}", "updateTime": "2025-01-01 09:00:00"} for i in range(3)]
    converter = RawConverter("data.list")
    try:
        out = converter.convert([
            PageRecords(1, 4, ["A1", "A3"], ["c1", "c3"], body=envelope(first), keep=[1, 3]),
            PageRecords(2, 0, [], [], body=envelope([])),
            PageRecords(3, 3, ["B0", "B1", "B2"], [None] * 3, body=envelope(second)),
        ])
    finally:
        converter.close()
    assert [n for n, _ in out] == [1, 3]
    assert [orjson.loads(t)["id"] for t in out[0][1].column("_record").to_pylist()] == ["A1", "A3"]
    assert out[0][1].column("_key").to_pylist() == ["A1", "A3"]
    assert out[0][1].column("_cursor").to_pylist() == ["c1", "c3"]
    assert [orjson.loads(t)["id"] for t in out[1][1].column("_record").to_pylist()] == ["B0", "B1", "B2"]
    assert out[1][1].column("_key").to_pylist() == ["B0", "B1", "B2"]


def test_converter_refuses_a_body_that_does_not_hold_what_was_parsed() -> None:
    converter = RawConverter("data.list")
    try:
        with pytest.raises(RuntimeError, match="records unnested"):
            converter.convert([PageRecords(1, 5, ["x"] * 5, [None] * 5, body=envelope(RECORDS[:2]))])
    finally:
        converter.close()


def test_exploded_rows_take_the_same_digest_rule() -> None:
    rows = explode([{"id": "P1", "updateTime": "2025-01-01 08:00:00", "items": [{"sku": "甲"}, {"sku": "乙"}]}],
                   "items", "parent", "updateTime")
    texts = to_json_lines(rows)
    converter = RawConverter("data.list")
    try:
        [(_, table)] = converter.convert([PageRecords(1, 2, ["甲", "乙"], [None, None], texts=texts)])
    finally:
        converter.close()
    assert table.column("_record").to_pylist() == texts
    assert table.column("_digest").to_pylist() == [md5_16(t) for t in texts]


# ---------------------------------------------------------------------------------- the stream
@pytest.fixture
def stream_for(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("IEHUB_LINGANG_CLIENT_ID", "client-a")
    monkeypatch.setenv("IEHUB_LINGANG_CLIENT_SECRET", "very-secret-1")
    monkeypatch.setenv("IEHUB_LINGANG_BASE_URL", "http://platform.test")
    made: list[RestSourceStream] = []

    def make(script, page_size: int = 500):
        spec = load_spec("lingang_platform")
        spec = spec.model_copy(update={"paging": spec.paging.model_copy(update={"page_size": page_size})})
        stream = RestSourceStream(spec, "talent_demands")
        adapter = ScriptedAdapter(script)
        session = requests.Session()
        session.mount("http://", adapter)
        stream.client.session = session
        stream.client.sleep = lambda _: None
        made.append(stream)
        return stream, adapter

    yield make
    for stream in made:
        stream.close()


def test_stream_pages_carry_keys_cursors_digests_and_the_records_as_received(stream_for) -> None:
    page1 = [{"id": f"TD{i}", "orgName": "上海某某科技有限公司", "updateTime": "2025-01-01 08:00:00" if i < 2
              else "2025-01-01 09:00:00"} for i in range(4)]
    # re-anchored on 09:00:00, the platform sends TD2 and TD3 again: they must not come twice
    page2 = page1[2:] + [{"id": "TD4", "orgName": "临港", "updateTime": "2025-01-02 10:00:00"}]
    gbk = ('{"code":0,"msg":"成功","data":{"total":1,"list":[{"id":"TD5","orgName":"临港新片区",'
           '"updateTime":"2025-01-03 00:00:00"}]}}').encode("gbk")
    stream, adapter = stream_for([
        ("/auth/token", 200, TOKEN, {}),
        ("/talent/demand/list", 200, envelope(page1, total=6), {}),
        ("/talent/demand/list", 200, envelope(page2, total=4), {}),
        ("/talent/demand/list", 200, b'{"code":0,"msg":"success","data":{"total":2,"li', {}),  # truncated: retried
        ("/talent/demand/list", 200, gbk, {}),
    ], page_size=4)
    pages = list(stream.read(None))
    adapter.assert_used()
    assert [p.number for p in pages] == [1, 2, 3]
    rows = [r for p in pages for r in p.table.to_pylist()]
    assert [r["_key"] for r in rows] == ["TD0", "TD1", "TD2", "TD3", "TD4", "TD5"]
    assert [r["_cursor"] for r in rows][-2:] == ["2025-01-02 10:00:00", "2025-01-03 00:00:00"]
    assert all(r["_digest"] == md5_16(r["_record"]) for r in rows)
    assert orjson.loads(rows[-1]["_record"])["orgName"] == "临港新片区"
    assert stream.stats()["retries"] == 1


def test_a_failing_page_fails_the_read_with_where(stream_for) -> None:
    stream, adapter = stream_for([("/auth/token", 200, TOKEN, {}),
                                  ("/talent/demand/list", 200, {"code": 40001, "msg": "参数错误: pageSize"}, {})])
    with pytest.raises(FatalError, match="40001"):
        list(stream.read(None))


def test_kept_positions_of_a_tail_and_of_any_ordered_subset() -> None:
    from connectors.rest.stream import kept_positions

    records = [{"id": i} for i in range(6)]
    assert kept_positions(records, records) is None
    assert kept_positions(records, records[2:]) == [2, 3, 4, 5]
    assert kept_positions(records, [records[0], records[3], records[5]]) == [0, 3, 5]
    assert kept_positions(records, [records[1], records[4], records[5]]) == [1, 4, 5]  # as long as a tail, not one
    assert kept_positions(records, []) == []
