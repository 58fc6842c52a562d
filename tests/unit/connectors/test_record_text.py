"""A quarantined row's record (SourceStream.record_text): dates, timestamps and decimals made text in
Arrow (connectors.base.json_text_ready) give exactly the JSON the per-value Python path gave."""
from __future__ import annotations

import datetime as dt
import decimal

import orjson
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import SourceStream, json_text_ready

UTC = dt.timezone.utc


def _by_python(raw: pa.Table) -> list[str]:
    """What record_text wrote before: every cell a Python object, orjson with str() for the rest."""
    cols = [c for c in raw.column_names if not c.startswith("_")]
    return [orjson.dumps(r, default=str).decode() for r in raw.select(cols).to_pylist()]


def _texts(column: pa.Array) -> list:
    ready = json_text_ready(pa.chunked_array([column]))
    return [None if v is None else orjson.dumps(v, default=str).decode() for v in ready.to_pylist()]


def _python_texts(column: pa.Array) -> list:
    return [None if v is None else orjson.dumps(v, default=str).decode() for v in column.to_pylist()]


moments = st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31, 23, 59, 59, 999999))
whole = moments.map(lambda m: m.replace(microsecond=0))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), moments, whole), max_size=40))
def test_timestamps_naive_and_utc_in_every_unit_read_as_orjson_writes_them(values: list) -> None:
    for tz in (None, "UTC", "+00:00", "Etc/UTC"):
        cells = [v if v is None or tz is None else v.replace(tzinfo=UTC) for v in values]
        micro = pa.array(cells, pa.timestamp("us", tz=tz))
        assert _texts(micro) == _python_texts(micro)
        for unit in ("s", "ms"):
            coarse = micro.cast(pa.timestamp(unit, tz=tz), safe=False)
            assert _texts(coarse) == _python_texts(coarse)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.dates()), max_size=40))
def test_dates_read_as_orjson_writes_them(values: list) -> None:
    for kind in (pa.date32(), pa.date64()):
        column = pa.array(values, kind)
        assert _texts(column) == _python_texts(column)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 9), st.lists(st.one_of(st.none(), st.integers(-10**17, 10**17)), max_size=40))
def test_decimals_read_as_str_writes_them_and_large_scales_keep_the_python_path(scale: int, units: list) -> None:
    kind = pa.decimal128(18, scale)
    column = pa.array([None if u is None else decimal.Decimal(u).scaleb(-scale) for u in units], kind)
    assert _texts(column) == _python_texts(column)
    assert (json_text_ready(pa.chunked_array([column])).type == pa.string()) == (scale <= 6)


def test_other_types_and_timezones_are_left_as_they_are() -> None:
    shanghai = pa.array([dt.datetime(2024, 1, 1, 8, tzinfo=UTC)], pa.timestamp("us", tz="Asia/Shanghai"))
    nanos = pa.array([1], pa.timestamp("ns"))
    for column in (shanghai, nanos, pa.array([1]), pa.array(["文本"]), pa.array([dt.time(1, 2)]), pa.array([True])):
        chunked = pa.chunked_array([column])
        assert json_text_ready(chunked) is chunked


def test_a_sql_rows_record_is_the_json_it_always_was() -> None:
    raw = pa.table({
        "_key": ["1", "2", "3"], "_cursor": ["a", None, "c"],
        "project_id": [1, 2, None], "title": ["智能制造 产业学院", None, '引号"与\\反斜杠'],
        "approved_on": pa.array([dt.date(2024, 12, 10), None, dt.date(1999, 1, 1)], pa.date32()),
        "budget": pa.array([decimal.Decimal("620400.82"), decimal.Decimal("-0.01"), None], pa.decimal128(18, 2)),
        "updated_at": pa.array([dt.datetime(2024, 11, 2, 10, 18, 27, 743216, tzinfo=UTC), None,
                                dt.datetime(1969, 12, 31, 23, 59, 59, tzinfo=UTC)], pa.timestamp("us", tz="UTC")),
        "seen": pa.array([dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, 0, 0, 0, 5), None], pa.timestamp("ms")),
        "ratio": [0.5, None, 1e-7], "active": [True, False, None],
    })
    got = SourceStream.record_text(raw).to_pylist()
    assert got == _by_python(raw)
    assert got[0] == ('{"project_id":1,"title":"智能制造 产业学院","approved_on":"2024-12-10","budget":"620400.82",'
                      '"updated_at":"2024-11-02T10:18:27.743216+00:00","seen":"2024-01-01T00:00:00","ratio":0.5,'
                      '"active":true}')
    assert SourceStream.record_text(raw.select(["_key"])).to_pylist() == ["{}"] * 3
