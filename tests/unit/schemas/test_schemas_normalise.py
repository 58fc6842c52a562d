"""Normalisers: scalar rules and their Arrow versions must agree."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.normalise import (
    NORMALISERS,
    clean_text,
    coerce,
    excel_serial_to_date,
    get_normaliser,
    parse_bool,
    parse_date,
    parse_int,
    parse_local_timestamp,
    parse_utc_timestamp,
    parse_yuan,
    to_halfwidth,
    wan_to_yuan,
)

UTC = timezone.utc
MONEY = pa.decimal128(18, 2)


# --- text ---------------------------------------------------------------------------------------


def test_to_halfwidth() -> None:
    assert to_halfwidth("９１３１０１１５ＭＡ１ＧＸ") == "91310115MA1GX"
    assert to_halfwidth("（临港）　集团，１２．５") == "(临港) 集团,12.5"
    assert to_halfwidth("上海电机学院。") == "上海电机学院。"  # ideographic full stop is not ASCII


def test_clean_text() -> None:
    assert clean_text("  上海海事大学\u3000\u3000物流\u00a0 工程  ") == "上海海事大学 物流 工程"
    assert clean_text("\ufeff临港集团\n") == "临港集团"
    assert clean_text("上海电力大学") == "上海电力大学"


def test_text_normalisers_on_arrow() -> None:
    arr = pa.array(["\u3000上海积塔半导体有限公司 ", "ａｂｃ", "  ", None, "91310115ma1h7x"])
    assert NORMALISERS["trim"](arr).values.to_pylist() == ["上海积塔半导体有限公司", "ａｂｃ", "", None, "91310115ma1h7x"]
    assert NORMALISERS["halfwidth"](arr).values.to_pylist()[1] == "abc"
    assert NORMALISERS["upper"](arr).values.to_pylist()[4] == "91310115MA1H7X"
    assert NORMALISERS["null_if_blank"](arr).values.to_pylist()[2] is None
    assert NORMALISERS["clean_text"](pa.array(["上海 \u3000 商汤"])).values.to_pylist() == ["上海 商汤"]
    for name in ("trim", "halfwidth", "upper", "null_if_blank", "clean_text"):
        assert NORMALISERS[name](arr).errors is None


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet="ａＢ１２ 　临港ab1\u00a0", max_size=8)), max_size=20))
def test_arrow_text_normalisers_agree_with_scalar(values: list[str | None]) -> None:
    arr = pa.array(values, type=pa.string())
    assert NORMALISERS["halfwidth"](arr).values.to_pylist() == [None if v is None else to_halfwidth(v) for v in values]
    assert NORMALISERS["clean_text"](arr).values.to_pylist() == [None if v is None else clean_text(v) for v in values]


_TRICKY_TEXT = ("ａＢ１２（）～！　 临港ab1\u00a0\u0085\t\n\x0b\x1c\u1680\u2000\u200a\u2028\u202f\u205f"
                "\u200b\u200d\u2060\ufeff—“”…。、€\uff5f\uff00\u3001\u30000")


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=_TRICKY_TEXT, max_size=12)), max_size=25),
       st.integers(min_value=0, max_value=5))
def test_byte_level_text_normalisers_agree_with_scalar_on_slices(values: list[str | None], cut: int) -> None:
    # slices start mid-buffer (non-zero offsets) and hold every width of UTF-8 sequence
    arr = pa.array(values, type=pa.string()).slice(min(cut, len(values)))
    kept = values[min(cut, len(values)):]
    assert NORMALISERS["halfwidth"](arr).values.to_pylist() == [None if v is None else to_halfwidth(v) for v in kept]
    assert NORMALISERS["clean_text"](arr).values.to_pylist() == [None if v is None else clean_text(v) for v in kept]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(alphabet=_TRICKY_TEXT, max_size=6), st.text(max_size=6)), max_size=25),
       st.integers(min_value=0, max_value=5))
def test_trim_only_touches_what_arrows_trims_change(values: list[str | None], cut: int) -> None:
    # the byte pre-check may pass rows over; it must never pass over one Arrow's trims would change
    arr = pa.array(values, type=pa.string()).slice(min(cut, len(values)))
    reference = pc.utf8_trim_whitespace(pc.utf8_trim(arr, characters="\u200b\u200c\u200d\u2060\ufeff"))
    assert NORMALISERS["trim"](arr).values.to_pylist() == reference.to_pylist()


def test_halfwidth_and_clean_text_on_real_looking_rows() -> None:
    arr = pa.array(["上海电机学院校企合作实训基地（１２）", "９１３１０１１５ＭＡ１ＧＸ　", None,
                    "上海临港经济发展（集团）有限公司", "临港\u200b集团\u3000 \u00a0研究院 ", "“双师型”教师—培养…", ""])
    assert NORMALISERS["halfwidth"](arr).values.to_pylist() == [
        "上海电机学院校企合作实训基地(12)", "91310115MA1GX ", None, "上海临港经济发展(集团)有限公司",
        "临港\u200b集团  \u00a0研究院 ", "“双师型”教师—培养…", ""]
    assert NORMALISERS["clean_text"](arr).values.to_pylist() == [
        "上海电机学院校企合作实训基地（１２）", "９１３１０１１５ＭＡ１ＧＸ", None, "上海临港经济发展（集团）有限公司",
        "临港集团 研究院", "“双师型”教师—培养…", ""]
    assert NORMALISERS["halfwidth"](pa.nulls(3, pa.string())).values.null_count == 3
    assert NORMALISERS["clean_text"](pa.array([], pa.string())).values.to_pylist() == []


# --- dates --------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    "2023-04-27", "2023/4/27", "2023/04/27", "2023.04.27", "2023.4.27", "20230427", "2023年4月27日",
    "2023年04月27日", " 2023-04-27\u3000", "２０２３－０４－２７", "２０２３年４月２７日", "2023 年 4 月 27 日",
])  # fmt: skip
def test_parse_date_forms(text: str) -> None:
    assert parse_date(text) == date(2023, 4, 27)


def test_parse_date_single_digit_parts() -> None:
    assert parse_date("2023-4-7") == date(2023, 4, 7)


@pytest.mark.parametrize("text,reason", [
    ("2023-02-30", "is not a real date"),
    ("2023-13-01", "is not a real date"),
    ("20230230", "is not a real date"),
    ("2023年2月29日", "is not a real date"),
    ("2023-04/27", "not a recognised date"),
    ("27/04/2023", "not a recognised date"),
    ("2023-04-27 10:00:00", "not a recognised date"),
    ("2023年4月", "not a recognised date"),
    ("", "not a recognised date"),
    ("明天", "not a recognised date"),
    ("1899-12-31", "before 1900"),
])  # fmt: skip
def test_parse_date_failures(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_date(text)


def test_parse_date_leap_day() -> None:
    assert parse_date("2024-02-29") == date(2024, 2, 29)


def test_date_normaliser_fast_and_slow_paths() -> None:
    arr = pa.array(["2023-04-27", "2023/4/27", None, "2023-02-30", "2023年4月27日", "x"])
    result = NORMALISERS["date"](arr)
    assert result.values.type == pa.date32()
    assert result.values.to_pylist() == [date(2023, 4, 27), date(2023, 4, 27), None, None, date(2023, 4, 27), None]
    assert result.errors.to_pylist() == [
        None, None, None, "is not a real date", None,
        "is not a recognised date (expected e.g. 2023-04-27, 2023/4/27, 20230427, 2023年4月27日)",
    ]  # fmt: skip
    clean = NORMALISERS["date"](pa.array(["2023-04-27"] * 3))
    assert clean.errors is None


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(
    st.none(),
    st.dates(min_value=date(1890, 1, 1), max_value=date(2100, 1, 1)).map(lambda d: d.isoformat()),
    st.dates(min_value=date(1900, 1, 1)).map(lambda d: f"{d.year}/{d.month}/{d.day}"),
    st.from_regex(r"\A(19|20)[0-9]{2}-[0-9]{2}-[0-9]{2}\Z"),
    st.text(max_size=10),
), max_size=15))  # fmt: skip
def test_arrow_date_agrees_with_parse_date(values: list[str | None]) -> None:
    result = NORMALISERS["date"](pa.array(values, type=pa.string()))
    errors = result.errors.to_pylist() if result.errors is not None else [None] * len(values)
    for value, got, error in zip(values, result.values.to_pylist(), errors):
        if value is None:
            assert got is None and error is None
            continue
        try:
            expected = parse_date(value)
        except ValueError as exc:
            assert got is None and error is not None and str(exc).endswith(error)
        else:
            assert got == expected and error is None


def test_date_from_typed_columns() -> None:
    assert NORMALISERS["date"](pa.array([date(2023, 4, 27)])).values.to_pylist() == [date(2023, 4, 27)]
    assert NORMALISERS["date"](pa.array([20230427])).values.to_pylist() == [date(2023, 4, 27)]
    # 2023-04-26 20:00 UTC is already 27 April in Shanghai.
    ts = pa.array([datetime(2023, 4, 26, 20, 0, tzinfo=UTC)], pa.timestamp("us", tz="UTC"))
    assert NORMALISERS["date"](ts).values.to_pylist() == [date(2023, 4, 27)]


# --- Excel -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("serial,expected", [
    (1, date(1900, 1, 1)), (59, date(1900, 2, 28)), (61, date(1900, 3, 1)), (45043, date(2023, 4, 27)),
    (45043.75, date(2023, 4, 27)), (2958465, date(9999, 12, 31)), (25569, date(1970, 1, 1)),
])  # fmt: skip
def test_excel_serials(serial: float, expected: date) -> None:
    assert excel_serial_to_date(serial) == expected


@pytest.mark.parametrize("serial,reason", [(60, "1900-02-29"), (0, "out of range"), (-5, "out of range"),
                                           (float("nan"), "out of range"), (2958466, "out of range")])
def test_excel_serial_failures(serial: float, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        excel_serial_to_date(serial)


def test_excel_date_normaliser_matches_scalar() -> None:
    serials = [1.0, 59.0, 60.0, 61.0, 45043.5, None, 0.0, 2958465.0]
    result = NORMALISERS["excel_date"](pa.array(serials))
    expected = []
    for s in serials:
        try:
            expected.append(None if s is None else excel_serial_to_date(s))
        except ValueError:
            expected.append(None)
    assert result.values.to_pylist() == expected
    assert [e is not None for e in result.errors.to_pylist()] == [False, False, True, False, False, False, True, False]
    ints = NORMALISERS["excel_date"](pa.array([45043], pa.int64()))
    assert ints.values.to_pylist() == [date(2023, 4, 27)]


def test_excel_date_refuses_text() -> None:
    result = NORMALISERS["excel_date"](pa.array(["45043", None]))
    assert result.values.to_pylist() == [None, None]
    assert result.errors.to_pylist() == ["is not a numeric Excel date serial", None]


# --- money --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [
    ("12.5", "125000.00"), ("0.01", "100.00"), ("12345.6789", "123456789.00"), ("0.000001", "0.01"),
    ("1,234.5", "12345000.00"), ("１２．５", "125000.00"), (" 3 ", "30000.00"), ("-2.5", "-25000.00"),
    ("12.5万元", "125000.00"), ("8万", "80000.00"), ("0", "0.00"), ("0.0000010", "0.01"),
])  # fmt: skip
def test_wan_to_yuan_is_exact(text: str, expected: str) -> None:
    got = wan_to_yuan(text)
    assert got == Decimal(expected)
    assert got.as_tuple().exponent == -2


def test_wan_to_yuan_decimal_input() -> None:
    assert wan_to_yuan(Decimal("12.5")) == Decimal("125000.00")


@pytest.mark.parametrize("text,reason", [
    ("0.0000001", "more than 2 decimal places"), ("abc", "not a number"), ("", "not a number"),
    ("1e3", "not a number"), ("12.5元", "not a number"), ("1,23.4", "not a number"), ("NaN", "not a number"),
    ("1000000000000", "too large"),
])  # fmt: skip
def test_wan_to_yuan_rejects(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        wan_to_yuan(text)


@settings(max_examples=500, deadline=None)
@given(st.decimals(min_value=Decimal("-99999999"), max_value=Decimal("99999999"), places=6, allow_nan=False))
def test_wan_to_yuan_round_trips(wan: Decimal) -> None:
    yuan = wan_to_yuan(str(wan))
    assert yuan / 10000 == wan


def test_money_normalisers_fast_and_slow_agree() -> None:
    values = ["12.5", "0.01", "1,234.5", None, "12345.6789", "x", "0.0000001", "１２．５"]
    result = NORMALISERS["wan_to_yuan"](pa.array(values))
    assert result.values.type == MONEY
    assert result.values.to_pylist() == [
        Decimal("125000.00"), Decimal("100.00"), Decimal("12345000.00"), None, Decimal("123456789.00"),
        None, None, Decimal("125000.00"),
    ]  # fmt: skip
    assert result.errors.to_pylist()[5] == "is not a number"
    assert result.errors.to_pylist()[6] == "needs more than 2 decimal places in yuan"
    assert NORMALISERS["wan_to_yuan"](pa.array(["1", "2.5"])).errors is None
    assert NORMALISERS["wan_to_yuan"](pa.array([12.5, 0.1])).values.to_pylist() == [Decimal("125000.00"), Decimal("1000.00")]
    assert NORMALISERS["wan_to_yuan"](pa.array([3], pa.int32())).values.to_pylist() == [Decimal("30000.00")]


def test_yuan_normaliser() -> None:
    result = NORMALISERS["yuan"](pa.array(["8500", "8,500.50", "8500.555", "8500元", None]))
    assert result.values.to_pylist() == [Decimal("8500.00"), Decimal("8500.50"), None, Decimal("8500.00"), None]
    assert result.errors.to_pylist()[2] == "needs more than 2 decimal places in yuan"
    assert parse_yuan("0.1") == Decimal("0.10")
    assert NORMALISERS["yuan"](pa.array([0.1, 0.2])).values.to_pylist() == [Decimal("0.10"), Decimal("0.20")]


# --- ints and booleans ----------------------------------------------------------------------------------


def test_int_parsing() -> None:
    assert parse_int("1,234") == 1234
    assert parse_int(" １２ ") == 12
    assert parse_int("12.0") == 12
    with pytest.raises(ValueError, match="whole number"):
        parse_int("12.5")
    result = NORMALISERS["int"](pa.array(["30", "1,200", "三十", None, "7.0"]))
    assert result.values.to_pylist() == [30, 1200, None, None, 7]
    assert result.errors.to_pylist()[2] == "is not a whole number"


@pytest.mark.parametrize("text,expected", [
    ("1", True), ("0", False), ("true", True), ("False", False), ("是", True), ("否", False), ("Y", True),
    ("n", False), (" ｙ ", True),
])  # fmt: skip
def test_bool_parsing(text: str, expected: bool) -> None:
    assert parse_bool(text) is expected


def test_bool_normaliser() -> None:
    result = NORMALISERS["bool"](pa.array(["是", "否", "也许", None, "1"]))
    assert result.values.to_pylist() == [True, False, None, None, True]
    assert "yes/no" in result.errors.to_pylist()[2]
    assert NORMALISERS["bool"](pa.array([1, 0])).values.to_pylist() == [True, False]


# --- timestamps -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", ["2023-04-27 10:30:00", "2023/04/27 10:30:00", "2023-04-27T10:30:00",
                                  "2023/4/27 10:30:00", "2023-04-27 10:30"])
def test_parse_local_timestamp(text: str) -> None:
    assert parse_local_timestamp(text) == datetime(2023, 4, 27, 2, 30, tzinfo=UTC)


def test_parse_local_timestamp_rejects() -> None:
    for bad in ("2023-02-30 10:00:00", "2023-04-27 25:00:00", "2023-04-27", "昨天"):
        with pytest.raises(ValueError):
            parse_local_timestamp(bad)


def test_parse_utc_timestamp() -> None:
    assert parse_utc_timestamp("2023-04-27T02:30:00Z") == datetime(2023, 4, 27, 2, 30, tzinfo=UTC)
    assert parse_utc_timestamp("2023-04-27T10:30:00+08:00") == datetime(2023, 4, 27, 2, 30, tzinfo=UTC)
    assert parse_utc_timestamp("2023-04-27 02:30:00") == datetime(2023, 4, 27, 2, 30, tzinfo=UTC)


def test_local_timestamp_normaliser() -> None:
    arr = pa.array(["2023-04-27 10:30:00", "2023/4/27 10:30:00", None, "2023-02-30 10:00:00", "2024-01-01 00:00:00"])
    result = NORMALISERS["local_timestamp"](arr)
    assert result.values.type == pa.timestamp("us", tz="UTC")
    assert result.values.to_pylist() == [
        datetime(2023, 4, 27, 2, 30, tzinfo=UTC), datetime(2023, 4, 27, 2, 30, tzinfo=UTC), None, None,
        datetime(2023, 12, 31, 16, 0, tzinfo=UTC),
    ]  # fmt: skip
    assert result.errors.to_pylist()[3] == "is not a real date and time"
    naive = pa.array([datetime(2023, 4, 27, 10, 30)], pa.timestamp("us"))
    assert NORMALISERS["local_timestamp"](naive).values.to_pylist() == [datetime(2023, 4, 27, 2, 30, tzinfo=UTC)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.datetimes(min_value=datetime(1992, 1, 1), max_value=datetime(2090, 1, 1)), max_size=10))
def test_local_timestamp_vectorised_equals_scalar(moments: list[datetime]) -> None:
    texts = [m.replace(microsecond=0).strftime("%Y-%m-%d %H:%M:%S") for m in moments]
    got = NORMALISERS["local_timestamp"](pa.array(texts, pa.string())).values.to_pylist()
    assert got == [parse_local_timestamp(t) for t in texts]
    assert all(g == datetime.strptime(t, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC) - timedelta(hours=8)
               for g, t in zip(got, texts))  # fmt: skip


def test_utc_timestamp_normaliser() -> None:
    arr = pa.array(["2023-04-27T02:30:00Z", "2023-04-27T10:30:00+08:00", "2023-04-27 02:30:00", "nope", None])
    result = NORMALISERS["utc_timestamp"](arr)
    expected = datetime(2023, 4, 27, 2, 30, tzinfo=UTC)
    assert result.values.to_pylist() == [expected, expected, expected, None, None]
    assert result.errors.to_pylist()[3] == "is not an ISO 8601 date and time"


# --- code lists -------------------------------------------------------------------------------------------


def test_code_normalisers() -> None:
    industry = NORMALISERS["lingang_industry"](pa.array(["集成电路", "IC", "新能源汽车", "房地产", None]))
    assert industry.values.to_pylist() == ["IC", "IC", "NEV", None, None]
    assert industry.errors.to_pylist()[3] == "is not a Lingang 4+2+2 industry"
    education = NORMALISERS["education_level"](pa.array(["本科", "硕士研究生", "小学"]))
    assert education.values.to_pylist() == ["bachelor", "master", None]
    district = NORMALISERS["code.district"](pa.array(["浦东新区", "杨浦区", "310112", "闸北区"]))
    assert district.values.to_pylist() == ["310115", "310110", "310112", None]


def test_unknown_normaliser() -> None:
    with pytest.raises(KeyError, match="unknown normaliser 'dates'"):
        get_normaliser("dates")


def test_chunked_and_dictionary_inputs_are_accepted() -> None:
    chunked = pa.chunked_array([["2023-04-27"], ["2023/4/27", None]])
    assert NORMALISERS["date"](chunked).values.to_pylist() == [date(2023, 4, 27), date(2023, 4, 27), None]
    dictionary = pa.array(["集成电路", "人工智能", "集成电路"]).dictionary_encode()
    assert NORMALISERS["lingang_industry"](dictionary).values.to_pylist() == ["IC", "AI", "IC"]


# --- coercion to the target type ----------------------------------------------------------------------------


def test_coerce_to_targets() -> None:
    rule, result = coerce(pa.array(["12", "70000", None]), pa.int16())
    assert rule == "int"
    assert result.values.type == pa.int16()
    assert result.values.to_pylist() == [12, None, None]
    assert result.errors.to_pylist()[1] == "is out of range for int16"
    rule, result = coerce(pa.array(["8500.5"]), MONEY)
    assert (rule, result.values.to_pylist()) == ("yuan", [Decimal("8500.50")])
    rule, result = coerce(pa.array(["2023/4/27"]), pa.date32())
    assert (rule, result.values.to_pylist()) == ("date", [date(2023, 4, 27)])
    rule, result = coerce(pa.array([1001, 1002]), pa.string())
    assert result.values.to_pylist() == ["1001", "1002"]
    assert coerce(pa.nulls(2), pa.timestamp("us", tz="UTC"))[1].values.type == pa.timestamp("us", tz="UTC")
    with pytest.raises(TypeError, match="local_timestamp"):
        coerce(pa.array(["2023-04-27 10:00:00"]), pa.timestamp("us", tz="UTC"))


def test_one_impossible_date_sends_only_its_own_block_to_the_per_value_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """An Arrow cast fails a whole column for one 2023-02-30; the clean values still take the
    vectorised path and only the failing one's few neighbours meet the rule (same results)."""
    import schemas.normalise as normalise

    start = datetime(2024, 1, 1, 8, 0, 0)
    texts = [(start + timedelta(minutes=i)).strftime("%Y-%m-%d %H:%M:%S") for i in range(5000)]
    texts[3217] = "2023-02-30 10:00:00"
    texts[4100] = "2023-13-01 10:00:00"
    seen: list[str] = []
    rule = normalise._local_ts
    monkeypatch.setattr(normalise, "_local_ts", lambda v, tz=normalise.SHANGHAI: (seen.append(v), rule(v, tz))[1])
    result = NORMALISERS["local_timestamp"](pa.array(texts))
    assert len(seen) <= 2 * normalise.FAST_SPLIT_MIN_ROWS and "2023-02-30 10:00:00" in seen
    errors = result.errors.to_pylist()
    assert errors[3217] == "is not a real date and time" and errors[4100] == "is not a real date and time"
    assert sum(e is not None for e in errors) == 2
    values = result.values.to_pylist()
    assert values[0] == parse_local_timestamp(texts[0]) and values[4999] == parse_local_timestamp(texts[4999])
    assert values[3216] == parse_local_timestamp(texts[3216]) and values[3217] is None
