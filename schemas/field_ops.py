"""Column operations a field mapping may ask for: coalesce, join, split, and value maps.

A district speaks its own words: its register says 订单培养 where the hub stores a code, keeps
the contact in one of two columns, or puts a date range in one cell. These functions turn such
columns into what a canonical field expects, so a new district is connected with YAML alone.

All are pure (Arrow in, Arrow out, no I/O) and row-aligned: row i of the result comes from row i
of the inputs, nothing is dropped or reordered. A value map never guesses: a value it does not
know comes back as an error naming the value's map, so the row goes to quarantine with a reason
a district steward can act on, unless the mapping gives a ``default``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from schemas.normalise import NormResult, _halfwidth_array, _plain, to_halfwidth

__all__ = ["ValueMap", "coalesce_columns", "join_columns", "split_part", "match_key", "text_or_null"]


def match_key(text: str) -> str:
    """How a label is matched: full-width → half-width, trimmed, case-folded (ＡＩ实训 = ai实训)."""
    return to_halfwidth(text).strip().casefold()


def _match_keys(arr: pa.Array) -> pa.Array:
    """:func:`match_key` for a whole string array (``utf8_lower`` equals ``casefold`` for CJK and ASCII)."""
    return pc.utf8_lower(pc.utf8_trim_whitespace(_halfwidth_array(arr)))


def text_or_null(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Values as text, with empty or whitespace-only text as null (an empty cell is not a value)."""
    arr = _plain(arr)
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), pa.string())
    if not pa.types.is_string(arr.type):
        arr = arr.cast(pa.string())
    blank = pc.fill_null(pc.equal(pc.utf8_trim_whitespace(arr), ""), False)
    return pc.if_else(blank, pa.scalar(None, pa.string()), arr)


def coalesce_columns(columns: list[pa.Array | pa.ChunkedArray]) -> pa.Array:
    """Per row, the first non-empty value of ``columns`` (in the order given), as text."""
    texts = [text_or_null(c) for c in columns]
    return texts[0] if len(texts) == 1 else pc.coalesce(*texts)


def join_columns(columns: list[pa.Array | pa.ChunkedArray], sep: str) -> pa.Array:
    """Per row, the non-empty values of ``columns`` joined with ``sep``; null when all are empty."""
    texts = [text_or_null(c) for c in columns]
    # Pairwise, not null_handling="skip": pyarrow 26 drops the rows where every input is null.
    joined = texts[0]
    for text in texts[1:]:
        joined = pc.coalesce(pc.binary_join_element_wise(joined, text, sep), joined, text)
    return joined


def split_part(column: pa.Array | pa.ChunkedArray, sep: str, part: int) -> pa.Array:
    """Per row, part ``part`` (0-based) of the value split at ``sep``, trimmed; null when there is none."""
    text = text_or_null(column)
    # Padding with `part + 1` separators makes every row long enough, so no row can fail.
    padded = pc.binary_join_element_wise(text, pa.scalar(sep * (part + 1)), "")
    pieces = pc.list_element(pc.split_pattern(padded, pattern=sep), part)
    return text_or_null(pc.utf8_trim_whitespace(pieces))


@dataclass(frozen=True)
class ValueMap:
    """A source's own labels → the hub's values, matched width-, case- and space-insensitively.

    ``where`` names the map in the spec (e.g. ``streams.projects.mapping.fields.category.map``), so
    a value it does not know is reported with that place. Values that already are one of the
    targets pass through unchanged (a district that starts sending codes keeps working).
    """

    entries: Mapping[str, object]
    where: str
    default: object = None
    _keys: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _targets: tuple[object, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lookup: dict[str, object] = {}
        for label, target in self.entries.items():
            lookup.setdefault(match_key(str(label)), target)
        for target in self.entries.values():
            lookup.setdefault(match_key(str(target)), target)
        object.__setattr__(self, "_keys", tuple(lookup))
        object.__setattr__(self, "_targets", tuple(lookup.values()))

    def known_labels(self, limit: int = 8) -> str:
        labels = [str(k) for k in self.entries]
        return ", ".join(labels[:limit]) + (f", … ({len(labels)} in all)" if len(labels) > limit else "")

    def apply(self, column: pa.Array | pa.ChunkedArray) -> NormResult:
        """Mapped values (null stays null); errors name the value's map for labels it does not know."""
        text = text_or_null(column)
        index = pc.index_in(_match_keys(text), value_set=pa.array(self._keys, pa.string()))
        targets = pa.array(self._targets)
        mapped = targets.take(index)
        unknown = pc.and_(pc.is_valid(text), pc.is_null(index))
        if self.default is not None:
            mapped = pc.if_else(unknown, pa.scalar(self.default, targets.type), mapped)
            return NormResult(mapped)
        if not pc.any(unknown).as_py():
            return NormResult(mapped)
        reason = f"is not in the value map {self.where} (known: {self.known_labels()}); add it to the map or give a default"
        errors = pc.if_else(unknown, pa.scalar(reason), pa.scalar(None, pa.string()))
        return NormResult(mapped, errors)
