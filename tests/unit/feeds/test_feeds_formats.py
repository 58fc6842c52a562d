"""Formats: negotiation, exact values in every text format, streaming chunks, ETags."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from feeds import formats
from feeds.formats import CHUNK_ROWS, Encoded, FormatError, NotAcceptable, encode, etag, etag_matches, negotiate

UTC = timezone.utc


def page(n: int = 3) -> pa.Table:
    key = pa.StructArray.from_arrays([pa.array(["municipal_db"] * n), pa.array([f"P{i}" for i in range(n)])],
                                     names=["_source", "project_id"])
    return pa.table({
        "change_version": pa.array(range(10, 10 + n), pa.int64()),
        "title": pa.array([f"项目,\"{i}\"\n第二行" if i == 0 else f"项目{i}" for i in range(n)]),
        "budget_amount": pa.array([Decimal("12345678901234.56")] + [None] * (n - 1), pa.decimal128(18, 2)),
        "approved_on": pa.array([date(2025, 1, 2)] * n, pa.date32()),
        "updated_at": pa.array([datetime(2025, 3, 1, 8, 0, 0, 5, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
        "key": key,
    })


@pytest.mark.parametrize(("fmt", "accept", "expected"), [
    (None, None, "json"),
    (None, "", "json"),
    (None, "*/*", "json"),
    (None, "text/csv", "csv"),
    (None, "application/x-ndjson", "ndjson"),
    (None, "application/vnd.apache.parquet", "parquet"),
    (None, "text/html;q=0.9, text/csv;q=0.5, application/x-ndjson;q=0.8", "ndjson"),
    (None, "application/json;q=0, text/csv", "csv"),
    ("CSV", "application/json", "csv"),  # format= wins over Accept
    ("parquet", None, "parquet"),
])
def test_negotiation(fmt: str | None, accept: str | None, expected: str) -> None:
    assert negotiate(fmt, accept) == expected


def test_unknown_format_names_the_served_ones() -> None:
    with pytest.raises(FormatError, match="json, ndjson, csv, parquet"):
        negotiate("xml", None)


def test_unacceptable_accept_is_406_material() -> None:
    with pytest.raises(NotAcceptable, match="text/csv"):
        negotiate(None, "image/png, application/xml;q=0.5")


def test_json_envelope_with_exact_values() -> None:
    body = b"".join(encode("json", page(), {"dataset": "project", "count": 3, "next_cursor": None}))
    doc = json.loads(body)
    assert doc["dataset"] == "project" and doc["count"] == 3 and doc["next_cursor"] is None
    first = doc["records"][0]
    assert first["budget_amount"] == "12345678901234.56"  # exact, a string
    assert first["approved_on"] == "2025-01-02"
    assert first["updated_at"] == "2025-03-01T08:00:00.000005Z"
    assert first["key"] == {"_source": "municipal_db", "project_id": "P0"}
    assert first["title"] == "项目,\"0\"\n第二行"
    assert [r["change_version"] for r in doc["records"]] == [10, 11, 12]


def test_json_of_an_empty_page_is_valid() -> None:
    doc = json.loads(b"".join(encode("json", page().slice(0, 0), {"count": 0})))
    assert doc == {"count": 0, "records": []}


def test_json_streams_in_chunks_that_join_to_one_document() -> None:
    n = CHUNK_ROWS * 2 + 7
    chunks = encode("json", page(n), {"count": n})
    assert len(chunks) >= 4  # head, three record chunks, tail
    assert len(json.loads(b"".join(chunks))["records"]) == n


def test_ndjson_one_record_per_line() -> None:
    lines = b"".join(encode("ndjson", page(), {})).decode().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[2])["change_version"] == 12


def test_csv_has_a_header_flattens_keys_and_quotes() -> None:
    import csv

    text = b"".join(encode("csv", page(CHUNK_ROWS + 1), {})).decode("utf-8")
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == ["change_version", "title", "budget_amount", "approved_on", "updated_at", "key._source",
                       "key.project_id"]
    assert len(rows) == CHUNK_ROWS + 2  # one header only, though encoded in two chunks
    assert rows[1][1] == "项目,\"0\"\n第二行" and rows[1][2] == "12345678901234.56" and rows[2][2] == ""
    assert rows[1][4] == "2025-03-01T08:00:00.000005Z"


def test_csv_of_an_empty_page_is_the_header() -> None:
    assert b"".join(encode("csv", page().slice(0, 0), {})).decode().strip().startswith('"change_version"')


def test_parquet_keeps_types() -> None:
    table = pq.read_table(io.BytesIO(b"".join(encode("parquet", page(), {}))))
    assert table.schema.field("budget_amount").type == pa.decimal128(18, 2)
    assert table.column("budget_amount")[0].as_py() == Decimal("12345678901234.56")
    assert table.schema.field("key").type.num_fields == 2


def test_json_fallback_without_orjson_gives_the_same_document(monkeypatch: pytest.MonkeyPatch) -> None:
    envelope = {"dataset": "project", "count": 3, "next_cursor": "abc.def"}
    with_orjson = json.loads(b"".join(encode("json", page(), envelope)))
    monkeypatch.setattr(formats, "orjson", None)
    monkeypatch.setattr(formats, "_dumps", lambda v: json.dumps(v, ensure_ascii=False).encode())
    assert json.loads(b"".join(encode("json", page(), envelope))) == with_orjson


def test_records_match_a_plain_python_encoding_of_the_same_values() -> None:
    """DuckDB writes the records: every value must read back as Python's json would have written it."""
    n = CHUNK_ROWS + 3
    table = page(n)
    expected = []
    for row in table.to_pylist():
        row["budget_amount"] = None if row["budget_amount"] is None else str(row["budget_amount"])
        row["approved_on"] = row["approved_on"].isoformat()
        row["updated_at"] = row["updated_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        expected.append(row)
    assert json.loads(b"".join(encode("json", table, {})))["records"] == expected
    assert [json.loads(line) for line in b"".join(encode("ndjson", table, {})).splitlines()] == expected


def test_timestamps_are_utc_rfc3339_across_eras_and_keep_nulls() -> None:
    import random
    from datetime import timedelta

    import pyarrow.compute as pc

    rng = random.Random(3)
    values = [datetime(1900, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(0, 6 * 10**15))
              for _ in range(2000)]
    values += [None, datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(1970, 1, 1, tzinfo=UTC),
               datetime(2024, 2, 29, 12, 0, 0, 1, tzinfo=UTC)]
    column = pa.array(values, pa.timestamp("us", tz="UTC"))
    text = formats.published(pa.table({"at": column})).column("at")
    assert text.combine_chunks().equals(pc.strftime(column, format="%Y-%m-%dT%H:%M:%SZ"))
    shanghai = pa.array([datetime(2025, 1, 1, 0, 0, tzinfo=UTC)], pa.timestamp("us", tz="Asia/Shanghai"))
    naive = pa.array([datetime(2025, 1, 1, 0, 0)], pa.timestamp("us"))
    both = formats.published(pa.table({"zoned": shanghai, "naive": naive}))
    assert both.to_pylist() == [{"zoned": "2025-01-01T00:00:00.000000Z", "naive": "2025-01-01T00:00:00.000000Z"}]


def test_floats_are_numbers_and_not_finite_ones_null() -> None:
    table = pa.table({"x": pa.array([0.1, 1e300, -0.0, float("nan"), float("inf"), None], pa.float64())})
    records = json.loads(b"".join(encode("json", table, {})))["records"]
    assert [r["x"] for r in records] == [0.1, 1e300, -0.0, None, None, None]


def test_every_entity_field_type_has_a_published_form() -> None:
    from schemas import ENTITIES

    for entity in ENTITIES.values():
        schema = pa.schema([pa.field(f.name, f.type) for f in entity.all_fields])
        assert formats.published(schema.empty_table()).num_columns == len(schema), entity.name
    with pytest.raises(TypeError, match="binary"):
        encode("json", pa.table({"blob": pa.array([b"x"], pa.binary())}), {})


def test_encoded_digest_covers_every_chunk() -> None:
    import hashlib

    chunks = encode("csv", page(), {})
    enc = Encoded.of("csv", chunks)
    assert enc.digest == hashlib.sha256(b"".join(chunks)).hexdigest()
    assert enc.media_type == "text/csv; charset=utf-8"


def test_etag_depends_on_every_part_and_matches_if_none_match() -> None:
    parts = {"snapshot": "v1", "dataset": "project", "after": 3, "scope": "abc", "format": "json"}
    tag = etag(parts)
    assert tag == etag(dict(reversed(list(parts.items()))))  # order of the parts does not matter
    for key in parts:
        assert etag({**parts, key: "other"}) != tag
    assert etag_matches(tag, tag) and etag_matches(f'"x", W/{tag}', tag) and etag_matches("*", tag)
    assert not etag_matches(None, tag) and not etag_matches('"x"', tag)


def test_hard_strings_survive_json_and_ndjson() -> None:
    nasty = ['简单', 'quote " inside', 'back\\slash', '\\"both\\"', '', None, 'emoji 😀 and 𠀀', '\u2028line sep',
             'tab-free but del \x7f', '{"json": [1,2]}', "it's", '/slashes/', '%s %d {} \\u0000']
    table = pa.table({
        "s": pa.array(nasty),
        "n": pa.array(list(range(len(nasty) - 1)) + [None], pa.int64()),
        "b": pa.array([True, False, None] * 4 + [True]),
        "d": pa.array([Decimal("1.10")] * len(nasty), pa.decimal128(18, 2)),
    })
    expected = [{k: (str(v) if isinstance(v, Decimal) else v) for k, v in row.items()} for row in table.to_pylist()]
    assert json.loads(b"".join(encode("json", table, {}))) == {"records": expected}
    lines = b"".join(encode("ndjson", table, {})).split(b"\n")  # not splitlines(): U+2028 is inside a value
    assert lines[-1] == b"" and [json.loads(line) for line in lines[:-1]] == expected


def test_control_characters_are_escaped() -> None:
    table = pa.table({"s": pa.array(["line\nbreak", "tab\there", "nul\x00"]), "n": pa.array([1, 2, 3])})
    assert [r["s"] for r in json.loads(b"".join(encode("json", table, {})))["records"]] == [
        "line\nbreak", "tab\there", "nul\x00"]
    lines = b"".join(encode("ndjson", table, {})).decode().split("\n")
    assert len(lines) == 4 and lines[-1] == "" and json.loads(lines[0])["s"] == "line\nbreak"


# -- lists, structs and the CSV formula rule (#15 item 3, #19 item 8) --------------------------------------


def test_lists_are_json_arrays_and_one_json_cell_in_csv() -> None:
    table = pa.table({
        "org_id": ["a", "b", "c"],
        "sources": pa.array([["lingang_platform", "municipal_db"], [], None], pa.list_(pa.string())),
        "amounts": pa.array([[Decimal("1.10"), None], None, [Decimal("-3.50")]], pa.list_(pa.decimal128(18, 2))),
        "nested": pa.array([[["x"]], [[]], None], pa.list_(pa.list_(pa.string()))),
    })
    records = json.loads(b"".join(encode("json", table, {})))["records"]
    assert [r["sources"] for r in records] == [["lingang_platform", "municipal_db"], [], None]
    assert [r["amounts"] for r in records] == [["1.10", None], None, ["-3.50"]]
    assert [r["nested"] for r in records] == [[["x"]], [[]], None]
    assert [json.loads(line) for line in b"".join(encode("ndjson", table, {})).splitlines()] == records
    rows = list(csv.DictReader(io.StringIO(b"".join(encode("csv", table, {})).decode())))
    assert [json.loads(r["sources"]) if r["sources"] else None for r in rows] == [r["sources"] for r in records]
    assert rows[0]["amounts"] == '["1.10",null]' and rows[2]["amounts"] == '["-3.50"]'


def test_csv_neutralises_formulas_in_text_only_and_other_formats_keep_them() -> None:
    nasty = ["=HYPERLINK(\"http://x\",\"y\")", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\t=1", "\r=1",
             "a=b", "", None, "'=already quoted", "3-2"]
    table = pa.table({
        "text": pa.array(nasty, pa.string()),
        "budget_amount": pa.array([Decimal("-3.50")] * len(nasty), pa.decimal128(18, 2)),
        "n": pa.array([-1] * len(nasty), pa.int64()),
        "x": pa.array([-0.5] * len(nasty), pa.float64()),
        "key": pa.array([{"trainee_id": v} for v in nasty]),
    })
    body = b"".join(encode("csv", table, {})).decode()
    rows = list(csv.DictReader(io.StringIO(body, newline="")))
    expected = ["'" + v if v and v[0] in "=+-@\t\r" else (v or "") for v in nasty]
    assert [r["text"] for r in rows] == expected
    assert [r["key.trainee_id"] for r in rows] == expected  # struct members are text columns too
    assert {r["budget_amount"] for r in rows} == {"-3.50"} and {r["n"] for r in rows} == {"-1"}
    assert {r["x"] for r in rows} == {"-0.5"}  # numbers stay numbers for the spreadsheet
    assert [r["text"] for r in json.loads(b"".join(encode("json", table, {})))["records"]] == nasty
    assert pq.read_table(io.BytesIO(b"".join(encode("parquet", table, {})))).column("text").to_pylist() == nasty


def test_neutralise_formulas_is_one_rule_for_every_text_type() -> None:
    table = pa.table({
        "s": pa.array(["=1"], pa.string()), "l": pa.array(["=1"], pa.large_string()),
        "d": pa.array(["=1"]).dictionary_encode(), "v": pa.array(["=1"], pa.string_view()),
    })
    out = formats.neutralise_formulas(table)
    assert out.to_pylist() == [{"s": "'=1", "l": "'=1", "d": "'=1", "v": "'=1"}]
    assert formats.FORMULA_STARTS == ("=", "+", "-", "@", "\t", "\r")
