"""Masking of personal fields and the keyed ID pseudonym, on real-looking Chinese data."""

from __future__ import annotations

import hmac
from hashlib import sha256

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feeds.masking import COMPOUND_SURNAMES, PSEUDONYM, mask_column, mask_table, output_columns, pseudonymise

SECRET = b"unit-test-secret-0123456789"


def teachers() -> pa.Table:
    return pa.table({
        "teacher_id": ["T1", "T2", "T3", "T4", "T5"],
        "name": ["张伟", "欧阳娜娜", "诸葛亮", None, "李"],
        "id_number": ["31011519800101002X", "310112198512121234", None, " 31011019900303004x ", "12345"],
        "phone": ["13812345678", "021-58881234", None, "15000001111", "110"],
        "org_name": ["上海积塔半导体有限公司", "上海商汤科技开发有限公司", "临港集团", "上海电机学院", None],
    })  # fmt: skip


def test_personal_fields_are_masked_in_the_usual_shapes() -> None:
    out = mask_table(teachers(), "teacher", personal=False, secret=SECRET).to_pydict()
    assert out["name"] == ["张*", "欧阳**", "诸葛*", None, "李"]
    assert out["id_number"] == ["310115********002X", "310112********1234", None, "310110********004X", "*****"]
    assert out["phone"] == ["138****5678", "021*****1234", None, "150****1111", "***"]
    assert out["org_name"] == teachers().column("org_name").to_pylist()  # organisations are not personal


def test_compound_surname_alone_or_unknown_two_characters_keep_one() -> None:
    names = pa.array(["欧阳", "司马相如", "上官婉儿", "马云", "东方"])
    assert mask_column(names, "name").to_pylist() == ["欧*", "司马**", "上官**", "马*", "东*"]


def test_contact_names_are_masked_like_names_but_organisation_names_never() -> None:
    demand = pa.table({"demand_id": ["D1"], "org_name": ["上海积塔半导体有限公司"], "contact_name": ["司马光"],
                       "phone": ["13700001234"]})
    out = mask_table(demand, "talent_demand", personal=False, secret=SECRET).to_pylist()[0]
    assert out == {"demand_id": "D1", "org_name": "上海积塔半导体有限公司", "contact_name": "司马*",
                   "phone": "137****1234"}
    org = pa.table({"org_id": ["91310000MA1FL5A20X"], "name": ["上海电机学院"]})
    assert mask_table(org, "organization", personal=False, secret=SECRET).column("name").to_pylist() == ["上海电机学院"]


def test_pseudonym_is_keyed_normalised_and_the_same_with_or_without_personal_data() -> None:
    masked = mask_table(teachers(), "teacher", personal=False, secret=SECRET)
    plain = mask_table(teachers(), "teacher", personal=True, secret=SECRET)
    assert masked.column_names == ["teacher_id", "name", "id_number", PSEUDONYM, "phone", "org_name"]
    assert masked.column(PSEUDONYM).equals(plain.column(PSEUDONYM))
    expected = hmac.new(SECRET, b"31011519800101002X", sha256).hexdigest()[:32]
    pseudonyms = masked.column(PSEUDONYM).to_pylist()
    assert pseudonyms[0] == expected and pseudonyms[2] is None
    # " …004x " and "…004X" are one person
    assert pseudonyms[3] == pseudonymise(pa.array(["31011019900303004X"]), SECRET).to_pylist()[0]
    other_key = mask_table(teachers(), "teacher", personal=False, secret=b"another-secret-0123456789")
    assert other_key.column(PSEUDONYM).to_pylist()[0] != expected


def test_personal_grant_leaves_values_as_they_are() -> None:
    plain = mask_table(teachers(), "teacher", personal=True, secret=SECRET)
    for name in ("name", "id_number", "phone"):
        assert plain.column(name).to_pylist() == teachers().column(name).to_pylist()


def test_only_present_columns_are_touched_and_output_columns_says_so() -> None:
    projected = teachers().select(["teacher_id", "phone"])
    out = mask_table(projected, "teacher", personal=False, secret=SECRET)
    assert out.column_names == ["teacher_id", "phone"] == output_columns("teacher", ["teacher_id", "phone"], False)
    assert output_columns("teacher", ["teacher_id", "id_number"], True) == ["teacher_id", "id_number", PSEUDONYM]


def test_chunked_and_empty_tables_keep_their_shape() -> None:
    table = pa.concat_tables([teachers().slice(0, 2), teachers().slice(2)])
    assert table.column("name").num_chunks == 2
    out = mask_table(table, "teacher", personal=False, secret=SECRET)
    assert out.column("name").to_pylist() == ["张*", "欧阳**", "诸葛*", None, "李"]
    empty = mask_table(teachers().slice(0, 0), "teacher", personal=False, secret=SECRET)
    assert empty.num_rows == 0 and PSEUDONYM in empty.column_names


def test_weak_secret_and_unknown_dataset_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        mask_table(teachers(), "teacher", personal=False, secret=b"short")
    with pytest.raises(KeyError, match="unknown entity 'teachers'"):
        mask_table(teachers(), "teachers", personal=False, secret=SECRET)


def reference_mask(value: str, column: str) -> str:
    """The masking rules, one value at a time, to check the vectorised code against."""
    value = value.strip()
    if column == "id_number":
        value, head, tail = value.upper(), 6, 4
    elif column == "phone":
        head, tail = 3, 4
    else:
        head, tail = (2 if value[:2] in COMPOUND_SURNAMES and len(value) > 2 else 1), 0
    stars = len(value) - head - tail
    if stars > 0:
        return value[:head] + "*" * stars + (value[-tail:] if tail else "")
    return "*" * len(value) if column in ("id_number", "phone") else value


TEXT = st.text(alphabet=st.sampled_from(list("张王李欧阳司马诸葛伟芳娜明光0123456789Xx-aB ")), max_size=30)


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.none(), TEXT), max_size=40),
       column=st.sampled_from(["id_number", "phone", "name", "contact_name"]))
def test_vectorised_masking_matches_the_rules_value_by_value(values: list[str | None], column: str) -> None:
    masked = mask_column(pa.array(values, pa.string()), column).to_pylist()
    assert masked == [None if v is None else reference_mask(v, column) for v in values]


def test_free_text_of_many_lengths_takes_the_general_path_with_the_same_result() -> None:
    values = ["欧阳" + "娜" * n for n in range(25)] + ["张" + "伟" * n for n in range(25)] + [None]
    assert len({len(v) for v in values if v}) > 16
    assert mask_column(pa.array(values), "contact_name").to_pylist() == [
        None if v is None else reference_mask(v, "contact_name") for v in values]
    ids = ["31011519800101" + "0" * n for n in range(30)]
    assert mask_column(pa.array(ids), "id_number").to_pylist() == [reference_mask(v, "id_number") for v in ids]


# -- keyed lineage digests (#15 items 1-2) ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=60)), max_size=40))
def test_keyed_digests_in_duckdb_are_rfc_2104_hmac_value_by_value(values: list[str | None]) -> None:
    from feeds.masking import keyed_digest, keyed_digests

    table = pa.table({"_record_hash": pa.array(values, pa.string()), "_source_key": pa.array(values, pa.string())})
    out = keyed_digests(table, SECRET, {"_record_hash": "_record_hash", "_source_key": "_source_key"})
    for column in ("_record_hash", "_source_key"):
        expected = [None if v is None else keyed_digest(v, SECRET, column) for v in values]
        assert out[column].to_pylist() == expected
    if any(v is not None for v in values):  # one purpose, one key: the two columns never share a digest
        assert out["_record_hash"].to_pylist() != out["_source_key"].to_pylist()


def test_keyed_digest_is_hmac_sha256_under_a_derived_key_never_the_secret_itself() -> None:
    from feeds.masking import derive_key, keyed_digest

    key = derive_key(SECRET, "_record_hash")
    assert keyed_digest("abc", SECRET, "_record_hash") == hmac.new(key, b"abc", sha256).hexdigest()[:32]
    assert keyed_digest("abc", SECRET, "_record_hash") != hmac.new(SECRET, b"abc", sha256).hexdigest()[:32]
    assert keyed_digest("abc", SECRET, "_record_hash") != keyed_digest("abc", b"another-secret-0123456789",
                                                                       "_record_hash")


def test_record_hash_is_keyed_for_every_key_and_the_source_key_pseudonymised_without_the_grant() -> None:
    from feeds.masking import keyed_digest

    rows = pa.table({"trainee_id": ["T1", "T2"], "name": ["王小明", "李雷"],
                     "id_number": ["310112199910069205", "310110199507070035"],
                     "_source_key": ["310112199910069205", None],  # a source keyed on 身份证号
                     "_record_hash": ["a" * 32, "b" * 32]})
    masked = mask_table(rows, "trainee", personal=False, secret=SECRET).to_pydict()
    granted = mask_table(rows, "trainee", personal=True, secret=SECRET).to_pydict()
    keyed = [keyed_digest(h, SECRET, "_record_hash") for h in ("a" * 32, "b" * 32)]
    assert masked["_record_hash"] == granted["_record_hash"] == keyed
    assert masked["_source_key"] == [keyed_digest("310112199910069205", SECRET, "_source_key"), None]
    assert granted["_source_key"] == ["310112199910069205", None]
    assert "310112199910069205" not in str(masked)


def test_personal_members_of_a_deletes_key_are_masked_as_the_records_are() -> None:
    """No entity keys on a personal field today; a delete's key object would still never carry one in clear."""
    key = pa.array([{"_source": "district_minhang", "id_number": "310112199910069205"}, None])
    deletes = pa.table({"change_version": [7, 8], "key": key, "_source_key": ["310112199910069205", "x"]})
    masked = mask_table(deletes, "trainee", personal=False, secret=SECRET).to_pylist()
    assert masked[0]["key"] == {"_source": "district_minhang", "id_number": "310112********9205"}
    assert masked[1]["key"] is None
    assert "310112199910069205" not in str(masked)
    granted = mask_table(deletes, "trainee", personal=True, secret=SECRET).to_pylist()
    assert granted[0]["key"]["id_number"] == "310112199910069205"
