"""Masking personal fields for feeds and exports, and a keyed pseudonym of the ID number.

Which columns are personal comes from the schema's PII grade (never from a column's name:
an organisation's ``name`` is not personal, a teacher's is). How a value is masked follows
the habits of Chinese government data portals, so consumers recognise the shapes:

- ID number (``id_number``): first 6 and last 4 kept, ``310115********002X``;
- mobile (``phone``): first 3 and last 4 kept, ``138****5678``;
- names and other personal text (``name``, ``contact_name``…): the surname kept (compound
  surnames such as 欧阳 and 诸葛 whole), every other character a ``*``: ``张**``, ``欧阳*``.

Values too short to keep anything safely are starred whole; NULLs stay NULL. Everything is
Arrow compute on whole columns except the keyed digests below, HMACs, which Arrow has no kernel
for (the pseudonym in Python per distinct ID, the lineage digests in DuckDB per page).

``id_pseudonym`` (HMAC-SHA256 of the normalised ID under the server secret, 32 hex characters)
is added next to ``id_number`` whether or not the key sees personal data, so a platform can
join records of the same person across datasets and across keys without learning who it is.

Masking a field is worthless if something else served lets a consumer compute it back, so the
two lineage columns that can carry or fingerprint personal data are keyed here too:

- ``_record_hash`` is, in the warehouse, an unkeyed MD5 over every business field, the unmasked
  name, ID and phone included: from a masked row, a known name and the few hidden digits, a
  loop finds the ID and phone whose MD5 matches in minutes. Every key (with or without the
  personal grant, so the value is one per record) therefore receives
  ``HMAC-SHA256(k_record_hash, stored _record_hash)``, 32 hex characters, where ``k_record_hash``
  is derived from the hub secret, which is never served. It still changes exactly when the
  record does, which is what a consumer uses it for; without the secret it cannot be tested
  against a guess. Keyed rather than recomputed over the served form: one value for every key,
  no second digest recipe to keep stable, and no guess can be tested whatever the mask keeps.
- ``_source_key`` is the record's key in its source system, which a source may take from a
  personal field (a district keying its roster on 身份证号), and which ``core.organization``
  inherits from the trainee or teacher row that mentioned an organisation. The hub cannot tell
  from a value whether it is personal, so a key without the personal grant receives
  ``HMAC-SHA256(k_source_key, _source_key)``, 32 hex characters, in every dataset, in changes,
  deletes and exports alike (so a delete still matches the record it removes).

The digests are computed in the feed process's in-memory DuckDB (SHA-256 is built in; the HMAC
is the RFC 2104 construction over it, checked against Python's ``hmac`` by a test) in one call
per page, which releases the GIL. Sub-keys are derived from the hub secret per purpose, so no
digest here can be confused with a cursor MAC or an ID pseudonym.
"""

from __future__ import annotations

import hmac
from hashlib import sha256

import pyarrow as pa
import pyarrow.compute as pc

from feeds.arrowsql import select_from
from schemas import get_entity

__all__ = [
    "PSEUDONYM", "COMPOUND_SURNAMES", "RECORD_HASH", "SOURCE_KEY", "derive_key", "keyed_digest", "keyed_digests",
    "mask_table", "output_columns", "pseudonymise", "mask_column",
]

PSEUDONYM = "id_pseudonym"
ID_NUMBER = "id_number"
PHONE = "phone"
RECORD_HASH = "_record_hash"
SOURCE_KEY = "_source_key"
PSEUDONYM_HEX = 32  # 128 bits: no collisions among a country's IDs, short enough to read
DIGEST_HEX = 32  # the lineage digests: as long as the pseudonym, and as the warehouse's MD5
MIN_SECRET_BYTES = 16
_BLOCK = 64  # SHA-256's block size, for the HMAC pads

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


def derive_key(secret: bytes, purpose: str) -> bytes:
    """The sub-key of the hub secret for one purpose (``_record_hash``, ``_source_key``)."""
    _check_secret(secret)
    return hmac.digest(secret, b"iehub feeds digest v1\x00" + purpose.encode("utf-8"), sha256)


def keyed_digest(value: str, secret: bytes, purpose: str) -> str:
    """One keyed digest in Python: the reference for :func:`keyed_digests` (and what tests check against)."""
    return hmac.digest(derive_key(secret, purpose), value.encode("utf-8"), sha256).hex()[:DIGEST_HEX]


def _hmac_sql(column: str) -> str:
    """HMAC-SHA256 (RFC 2104) of a text column in DuckDB, taking the outer and inner pads as parameters."""
    return f"left(sha256(?::BLOB || unhex(sha256(?::BLOB || encode({column})))), {DIGEST_HEX})"


def _pads(key: bytes) -> list[bytes]:
    block = key.ljust(_BLOCK, b"\x00")  # derived keys are 32 bytes: never longer than a block
    return [bytes(b ^ 0x5C for b in block), bytes(b ^ 0x36 for b in block)]


def keyed_digests(table: pa.Table, secret: bytes, purposes: dict[str, str]) -> dict[str, pa.ChunkedArray]:
    """``{column: keyed digest of each value}`` for ``purposes`` (column → purpose); NULL stays NULL.

    One DuckDB call for all the columns of a page (see the module doc).
    """
    columns = [c for c in purposes if c in table.column_names]
    if not columns:
        return {}
    text = table.select(columns)
    text = pa.table({f"c{i}": pc.cast(col, pa.string()) for i, col in enumerate(text.columns)})
    select = ", ".join(f"{_hmac_sql(f't.c{i}')} AS c{i}" for i in range(len(columns)))
    params = [pad for c in columns for pad in _pads(derive_key(secret, purposes[c]))]
    out = select_from(text, select, params)
    return {c: out.column(i).cast(pa.string()) for i, c in enumerate(columns)}


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


def _mask_struct(values: pa.ChunkedArray, pii: dict[str, str]) -> pa.ChunkedArray:
    """A struct column (a delete's natural ``key``) with its personal members masked as the records' are."""
    t = values.type
    if not any(t.field(i).name in pii for i in range(t.num_fields)):
        return values
    chunks = []
    for chunk in values.chunks:
        members, fields = [], []
        for i in range(t.num_fields):
            field, member = t.field(i), chunk.field(i)
            if field.name in pii:
                member = mask_column(member, field.name).combine_chunks()
                field = field.with_type(member.type)
            members.append(member)
            fields.append(field)
        chunks.append(pa.StructArray.from_arrays(members, fields=fields,
                                                 mask=chunk.is_null() if chunk.null_count else None))
    return pa.chunked_array(chunks) if chunks else values


def mask_table(table: pa.Table, dataset: str, *, personal: bool, secret: bytes) -> pa.Table:
    """``table`` as a key with (``personal``) or without the personal grant receives it.

    For every key: ``id_pseudonym`` added after ``id_number``, ``_record_hash`` keyed. Without
    the grant also: personal fields masked (members of a struct column, such as a delete's
    natural ``key``, too) and ``_source_key`` pseudonymised. Only columns present are touched
    (the API may have projected ``fields``); works on feed pages, delete pages and export batches.
    The pseudonym is computed from the unmasked ID, so it is the same for every key.
    """
    _check_secret(secret)
    pii = _personal_columns(dataset)
    if ID_NUMBER in table.column_names and PSEUDONYM not in table.column_names:
        index = table.schema.get_field_index(ID_NUMBER) + 1
        meta = {b"zh": "身份证号假名（密钥HMAC）".encode(), b"en": b"Keyed pseudonym of id_number", b"pii": b"none"}
        table = table.add_column(index, pa.field(PSEUDONYM, pa.string(), metadata=meta),
                                 pseudonymise(table.column(ID_NUMBER), secret))
    purposes = {RECORD_HASH: RECORD_HASH} if personal else {RECORD_HASH: RECORD_HASH, SOURCE_KEY: SOURCE_KEY}
    for name, digests in keyed_digests(table, secret, purposes).items():
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index).with_type(pa.string()), digests)
    if personal:
        return table
    for name in table.column_names:
        index = table.schema.get_field_index(name)
        old = table.schema.field(index)
        if name in pii:
            table = table.set_column(index, pa.field(name, pa.string(), nullable=old.nullable, metadata=old.metadata),
                                     mask_column(table.column(index), name))
        elif pa.types.is_struct(old.type):
            masked = _mask_struct(table.column(index), pii)
            table = table.set_column(index, old.with_type(masked.type), masked)
    return table
