"""Masking personal fields for feeds and exports, and a keyed pseudonym of the ID number.

Which columns are personal comes from the schema's PII grade (never from a column's name:
an organisation's ``name`` is not personal, a teacher's is). How a value is masked follows
the habits of Chinese government data portals, so consumers recognise the shapes:

- ID number (``id_number``): first 6 and last 4 kept, ``310115********002X``;
- mobile (``phone``): first 3 and last 4 kept, ``138****5678``;
- names and other personal text (``name``, ``contact_name``…): the surname kept (compound
  surnames such as 欧阳 and 诸葛 whole), every other character a ``*``: ``张**``, ``欧阳*``.

Values too short to keep anything safely are starred whole; NULLs stay NULL. Everything is
Arrow compute on whole columns except the pseudonym, an HMAC, which Arrow has no kernel for.

``id_pseudonym`` (HMAC-SHA256 of the normalised ID under the server secret, 32 hex characters)
is added next to ``id_number`` whether or not the key sees personal data, so a platform can
join records of the same person across datasets and across keys without learning who it is.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

import pyarrow as pa
import pyarrow.compute as pc

from schemas import get_entity

__all__ = ["PSEUDONYM", "COMPOUND_SURNAMES", "mask_table", "output_columns", "pseudonymise", "mask_column"]

PSEUDONYM = "id_pseudonym"
ID_NUMBER = "id_number"
PHONE = "phone"
PSEUDONYM_HEX = 32  # 128 bits: no collisions among a country's IDs, short enough to read
MIN_SECRET_BYTES = 16

#: Two-character surnames (复姓) in current use; a name starting with one keeps both characters.
COMPOUND_SURNAMES: frozenset[str] = frozenset(
    "欧阳 司马 上官 诸葛 东方 皇甫 尉迟 公孙 慕容 长孙 宇文 司徒 司空 夏侯 令狐 轩辕 端木 独孤 南宫 西门 "
    "百里 呼延 澹台 公冶 太史 申屠 钟离 闻人 赫连 万俟 濮阳 淳于 单于 宗政 拓跋 第五 羊舌 微生 梁丘 左丘 "
    "东郭 公羊 谷梁 仲孙 乐正 漆雕 壤驷 公良 巫马 子车 颛孙 亓官 司寇 段干 鲜于 闾丘 东门 公西 即墨".split()
)
_COMPOUND = pa.array(sorted(COMPOUND_SURNAMES), pa.string())


#: Above this many distinct (length, kept) shapes in a column, masking builds each value instead.
_MAX_SHAPES = 16


def _star(values: pa.ChunkedArray, head: int | pa.ChunkedArray, tail: int, *, star_short: bool) -> pa.ChunkedArray:
    """Keep ``head`` leading and ``tail`` trailing characters of each value and star the rest, one for one.

    ``head`` is a number or a per-row array of small numbers. Values with nothing left to star
    are starred whole (``star_short``: IDs, phones) or kept (a name that is only a surname).
    Fast path: values of one length and head share one fixed replacement, so the column is
    masked by one ``utf8_replace_slice`` per distinct shape and a ``case_when`` to pick.
    """
    length = pc.utf8_length(values)
    heads = pa.chunked_array([pa.array([head] * len(values), pa.int32())]) if isinstance(head, int) \
        else pc.cast(head, pa.int32())
    shape = pc.add(pc.multiply(pc.cast(length, pa.int64()), 8), pc.cast(heads, pa.int64()))
    shapes = [v for v in pc.unique(shape).to_pylist() if v is not None]
    if len(shapes) > _MAX_SHAPES:
        return _star_each(values, length, heads, tail, star_short=star_short)
    if not shapes:
        return pa.chunked_array([pa.nulls(len(values), pa.string())]) if len(values) else \
            pa.chunked_array([], pa.string())
    conditions, cases = [], []
    for code in shapes:
        size, keep = divmod(code, 8)
        stars = size - keep - tail
        if stars > 0:
            cases.append(pc.utf8_replace_slice(values, start=keep, stop=size - tail, replacement="*" * stars))
        elif star_short:
            cases.append(pc.utf8_replace_slice(values, start=0, stop=size, replacement="*" * size))
        else:
            cases.append(values)
        conditions.append(pc.equal(shape, code))
    return pc.case_when(pc.make_struct(*conditions, field_names=[str(c) for c in shapes]), *cases)


def _star_each(values: pa.ChunkedArray, length: pa.ChunkedArray, heads: pa.ChunkedArray, tail: int, *,
               star_short: bool) -> pa.ChunkedArray:
    """The general path of :func:`_star` for free text of many lengths: each value built from parts."""
    middle = pc.subtract(pc.subtract(length, heads), tail)
    # utf8_slice_codeunits takes one start/stop per call: slice by each distinct head.
    head_text = values
    for keep in [v for v in pc.unique(heads).to_pylist() if v is not None]:
        head_text = pc.if_else(pc.equal(heads, keep), pc.utf8_slice_codeunits(values, 0, keep), head_text)
    tail_text = pc.utf8_slice_codeunits(values, -tail) if tail else pc.utf8_slice_codeunits(values, 0, 0)
    kept = pc.binary_join_element_wise(head_text, pc.binary_repeat("*", pc.max_element_wise(middle, 0)), tail_text, "")
    short = pc.binary_repeat("*", length) if star_short else values
    return pc.if_else(pc.greater(middle, 0), kept, short)


def _mask_name(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Surname kept (two characters for a compound surname), the rest starred one for one."""
    compound = pc.and_(pc.is_in(pc.utf8_slice_codeunits(values, 0, 2), value_set=_COMPOUND),
                       pc.greater(pc.utf8_length(values), 2))
    return _star(values, pc.if_else(compound, 2, 1), 0, star_short=False)


def mask_column(values: pa.Array | pa.ChunkedArray, column: str) -> pa.ChunkedArray:
    """The masked form of one personal column (ID, phone, or name-like text)."""
    if isinstance(values, pa.Array):
        values = pa.chunked_array([values])
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        # No masking shape for non-text personal data: withhold it entirely.
        return pa.nulls(len(values), pa.string()) if len(values) else pa.chunked_array([], pa.string())
    values = pc.utf8_trim_whitespace(values)
    if column == ID_NUMBER:
        return _star(pc.utf8_upper(values), 6, 4, star_short=True)
    if column == PHONE:
        return _star(values, 3, 4, star_short=True)
    return _mask_name(values)


def pseudonymise(values: pa.Array | pa.ChunkedArray, secret: bytes) -> pa.Array:
    """HMAC-SHA256 of each normalised ID (trimmed, upper-case X) under ``secret``; NULL stays NULL."""
    _check_secret(secret)
    normal = pc.utf8_upper(pc.utf8_trim_whitespace(values))
    encoded = pc.dictionary_encode(normal)  # one HMAC per distinct ID, not per row
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks() if encoded.num_chunks else pa.DictionaryArray.from_arrays(
            pa.array([], pa.int32()), pa.array([], pa.string()))
    digests = pa.array(
        [hmac.digest(secret, v.encode("utf-8"), sha256).hex()[:PSEUDONYM_HEX] for v in encoded.dictionary.to_pylist()],
        pa.string(),
    )
    return pc.take(digests, encoded.indices)


def _check_secret(secret: bytes) -> None:
    if not isinstance(secret, (bytes, bytearray)) or len(secret) < MIN_SECRET_BYTES:
        raise ValueError(f"the pseudonym secret must be at least {MIN_SECRET_BYTES} bytes")


def _personal_columns(dataset: str) -> dict[str, str]:
    return {f.name: f.pii for f in get_entity(dataset).all_fields if f.pii != "none"}


def output_columns(dataset: str, columns: list[str], personal: bool) -> list[str]:
    """The columns :func:`mask_table` returns for a table with ``columns`` (``id_pseudonym`` added).

    ``personal`` does not change the columns, only their values; it is taken so the API can
    ask one question whatever the grant.
    """
    del personal
    get_entity(dataset)  # unknown dataset: KeyError naming it
    out: list[str] = []
    for name in columns:
        out.append(name)
        if name == ID_NUMBER and PSEUDONYM not in columns:
            out.append(PSEUDONYM)
    return out


def mask_table(table: pa.Table, dataset: str, *, personal: bool, secret: bytes) -> pa.Table:
    """``table`` with personal fields masked unless ``personal``, and ``id_pseudonym`` added.

    Only columns present are touched (the API may have projected ``fields``). The pseudonym
    is computed from the unmasked ID, so it is the same for every key.
    """
    _check_secret(secret)
    pii = _personal_columns(dataset)
    if ID_NUMBER in table.column_names and PSEUDONYM not in table.column_names:
        index = table.schema.get_field_index(ID_NUMBER) + 1
        meta = {b"zh": "身份证号假名（密钥HMAC）".encode(), b"en": b"Keyed pseudonym of id_number", b"pii": b"none"}
        table = table.add_column(index, pa.field(PSEUDONYM, pa.string(), metadata=meta),
                                 pseudonymise(table.column(ID_NUMBER), secret))
    if personal:
        return table
    for name in table.column_names:
        if name not in pii:
            continue
        index = table.schema.get_field_index(name)
        old = table.schema.field(index)
        table = table.set_column(index, pa.field(name, pa.string(), nullable=old.nullable, metadata=old.metadata),
                                 mask_column(table.column(index), name))
    return table
