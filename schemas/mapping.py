"""The mapping engine: a source's raw columns → one canonical entity.

A mapping is configuration (a few lines of YAML per stream), so it is parsed and checked
before any data moves: every mistake is reported with the file and key path where it was
made. Applying a mapping is pure (Arrow in, Arrow out) and never drops a row silently:
every raw row is either accepted or comes back in ``rejects`` with a rule and a reason.

A field is filled from one column (``from: 列``), the first non-empty of several
(``from: [列1, 列2]`` or ``coalesce: [...]``), several joined (``join: [...]``, ``sep``), one part
of a column (``split: {sep: 至, part: 0}``) or a constant; then normalised; then, with ``map:``,
turned from the source's own words into the hub's codes (:mod:`schemas.field_ops`). Map targets
are checked against the field's code list when the spec is loaded, so a typo in a code fails
``iehub spec validate``, not a sync.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.codes import CODE_LISTS
from schemas.entities import ENTITIES
from schemas.field_ops import ValueMap, coalesce_columns, join_columns, split_part, text_or_null
from schemas.model import LINEAGE_NAMES, Entity, Field
from schemas.normalise import NORMALISERS, _plain, coerce

__all__ = [
    "MappingSpecError",
    "FieldMap",
    "EntityMapping",
    "MappingResult",
    "parse_mapping",
    "apply_mapping",
    "REJECTS_SCHEMA",
    "mapping_sources",
    "mapping_column_groups",
    "READ_ERROR",
]

# A raw column a stream kind may add: why it could not read a row (or a whole file). Such rows
# are rejected with that reason (rule ``source.unreadable``), so they reach quarantine, counted.
READ_ERROR = "_read_error"

REJECTS_SCHEMA = pa.schema(
    [
        pa.field("row_index", pa.int64(), nullable=False),
        pa.field("field", pa.string()),
        pa.field("rule", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
    ]
)


class MappingSpecError(ValueError):
    """A mapping spec is wrong; the message starts with the file and key path to fix."""


@dataclass(frozen=True)
class FieldMap:
    """How one canonical field is filled: from raw column(s) or a constant, then normalised and value-mapped.

    ``source`` is the first raw column read (None for a constant); ``sources`` all of them, combined
    by ``combine`` ("coalesce": first non-empty, "join": non-empty ones joined with ``sep``).
    """

    target: str
    source: str | None = None
    const: object = None
    normalise: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    combine: str = "coalesce"
    sep: str = ""
    split: tuple[str, int] | None = None
    value_map: ValueMap | None = None


@dataclass(frozen=True)
class EntityMapping:
    """A parsed, checked mapping of one stream onto one entity."""

    entity: str
    fields: tuple[FieldMap, ...]
    deleted_from: str | None = None
    deleted_values: tuple[str, ...] = ("1", "true", "True")


@dataclass(frozen=True)
class MappingResult:
    """Accepted rows typed as the entity, their raw row indices, and one reject row per refused raw row."""

    table: pa.Table
    accepted: pa.Array
    rejects: pa.Table


# --- parsing --------------------------------------------------------------------------------

_FIELD_KEYS = ("from", "coalesce", "join", "sep", "split", "const", "normalise", "map", "default")


def _fail(path: str, message: str) -> MappingSpecError:
    return MappingSpecError(f"{path}: {message}")


def _parse_normalise(value: object, path: str) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list):
        raise _fail(path, "normalise must be a name or a list of names")
    for i, name in enumerate(names):
        if name not in NORMALISERS:
            raise _fail(f"{path}[{i}]", f"unknown normaliser {name!r} (known: {', '.join(NORMALISERS)})")
    return tuple(names)


def _parse_columns(value: object, path: str) -> tuple[str, ...]:
    names = [value] if isinstance(value, str) else value
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise _fail(path, "must be a column name or a non-empty list of column names")
    return tuple(names)


def _parse_split(value: object, path: str) -> tuple[str, int]:
    if isinstance(value, str):
        value = {"sep": value}
    if not isinstance(value, Mapping) or any(k not in ("sep", "part") for k in value):
        raise _fail(path, "expected {sep: <text>, part: <0-based index>} (e.g. {sep: 至, part: 0})")
    sep, part = value.get("sep"), value.get("part", 0)
    if not isinstance(sep, str) or not sep:
        raise _fail(f"{path}.sep", "must be non-empty text")
    if not isinstance(part, int) or isinstance(part, bool) or part < 0:
        raise _fail(f"{path}.part", "must be a whole number >= 0 (0 is the first part)")
    return sep, part


def _map_label(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _parse_value_map(field: Field, item: Mapping, path: str) -> ValueMap | None:
    if "map" not in item:
        if "default" in item:
            raise _fail(f"{path}.default", "a default belongs to a 'map'; give the map too")
        return None
    entries = item["map"]
    if not isinstance(entries, Mapping) or not entries:
        raise _fail(f"{path}.map", "must map the source's labels to the hub's values, e.g. {订单培养: other}")
    checked: dict[str, object] = {}
    code_list = CODE_LISTS[field.code_list] if field.code_list else None
    for label, target in entries.items():
        if target is None or isinstance(target, (dict, list)):
            raise _fail(f"{path}.map.{label}", "must be one value")
        if code_list is not None and target not in code_list:
            raise _fail(f"{path}.map.{label}", f"{target!r} is not a code of {code_list.name} "
                        f"(codes: {', '.join(code_list.codes)}; `iehub codes {code_list.name}` lists them)")
        checked[_map_label(label)] = target
    default = item.get("default")
    if "default" in item and (default is None or isinstance(default, (dict, list))):
        raise _fail(f"{path}.default", "must be one value (leave it out to quarantine unknown labels)")
    if default is not None and code_list is not None and default not in code_list:
        raise _fail(f"{path}.default", f"{default!r} is not a code of {code_list.name} "
                    f"(codes: {', '.join(code_list.codes)})")
    seen: dict[str, object] = {}
    from schemas.field_ops import match_key

    for label, target in checked.items():
        key = match_key(label)
        if key in seen and seen[key] != target:
            raise _fail(f"{path}.map.{label}", f"matches the same label as another entry (labels are compared "
                        f"without case, width or surrounding spaces) but maps to {target!r}, not {seen[key]!r}")
        seen[key] = target
    return ValueMap(checked, where=f"{path}.map", default=default)


def _parse_field(entity: Entity, target: str, item: object, path: str) -> FieldMap:
    if isinstance(item, str):
        item = {"from": item}
    if not isinstance(item, Mapping):
        raise _fail(path, "expected a source column name or a mapping with 'from' or 'const'")
    unknown = [k for k in item if k not in _FIELD_KEYS]
    if unknown:
        raise _fail(f"{path}.{unknown[0]}", f"unknown key (allowed: {', '.join(_FIELD_KEYS)})")
    given = [k for k in ("from", "coalesce", "join", "const") if k in item]
    if len(given) > 1:
        raise _fail(path, f"give either {' or '.join(repr(g) for g in given)}, not both" if len(given) == 2 else
                    f"give one of {', '.join(repr(g) for g in given)}, not all")
    if not given:
        raise _fail(path, "give 'from' (a source column) or 'const' (a fixed value); "
                    "'coalesce' or 'join' read several columns")
    if "sep" in item and "join" not in item:
        raise _fail(f"{path}.sep", "'sep' belongs to 'join' (use split: {sep: …} to cut a value)")
    normalise = _parse_normalise(item.get("normalise", []), f"{path}.normalise")
    field = entity.field(target)
    if given[0] != "const":
        sources = _parse_columns(item[given[0]], f"{path}.{given[0]}")
        sep = item.get("sep", " ")
        if not isinstance(sep, str):
            raise _fail(f"{path}.sep", "must be text")
        split = _parse_split(item["split"], f"{path}.split") if "split" in item else None
        joined = given[0] == "join"
        return FieldMap(target=target, source=sources[0], sources=sources if len(sources) > 1 or joined else (),
                        normalise=normalise, combine="join" if joined else "coalesce", sep=sep if joined else "",
                        split=split,
                        value_map=_parse_value_map(field, item, path))
    for key in ("split", "map", "default"):
        if key in item:
            raise _fail(f"{path}.{key}", "applies to values read from the source, not to a 'const'")
    const = item["const"]
    if const is None:
        raise _fail(f"{path}.const", "must not be null; leave the field unmapped instead")
    fm = FieldMap(target=target, const=const, normalise=normalise)
    # A constant is data known at parse time: check it now, not on every batch.
    try:
        values, reason, _ = _map_column(pa.repeat(const, 1), fm, field)
    except (TypeError, pa.ArrowException) as exc:
        raise _fail(f"{path}.const", str(exc)) from None
    if reason[0].is_valid:
        raise _fail(f"{path}.const", reason[0].as_py())
    if field.code_list is not None and values[0].as_py() not in CODE_LISTS[field.code_list]:
        raise _fail(f"{path}.const", f"field {target}: {const!r} is not a code of {field.code_list}")
    return fm


def parse_mapping(entity: str, spec: dict, where: str) -> EntityMapping:
    """Check a mapping spec (as loaded from YAML) against the entity; MappingSpecError if wrong.

    ``where`` is the location of the spec node, e.g.
    ``connectors/specs/lingang_platform.yaml: streams.notices.mapping``; messages extend it
    with the key path of the mistake.
    """
    if entity not in ENTITIES:
        raise _fail(where, f"unknown entity {entity!r} (known: {', '.join(ENTITIES)})")
    ent = ENTITIES[entity]
    if not isinstance(spec, Mapping):
        raise _fail(where, "a mapping must be a mapping with 'fields' (and optionally 'deleted')")
    for key in spec:
        if key not in ("fields", "deleted"):
            raise _fail(f"{where}.{key}", "unknown key (allowed: fields, deleted)")
    fields_spec = spec.get("fields")
    if not isinstance(fields_spec, Mapping) or not fields_spec:
        raise _fail(f"{where}.fields", "must map canonical field names to source columns")

    business = [f.name for f in ent.business_fields]
    field_maps: list[FieldMap] = []
    for raw_target, item in fields_spec.items():
        target = str(raw_target)
        path = f"{where}.fields.{target}"
        if target == "_is_deleted":
            raise _fail(path, "the tombstone flag is set by the 'deleted' rule, not mapped as a field")
        if target in LINEAGE_NAMES:
            raise _fail(path, f"lineage field {target!r} is set by the pipeline, not by a mapping")
        if target not in business:
            raise _fail(path, f"unknown field {target!r} of entity {entity} (known: {', '.join(business)})")
        field_maps.append(_parse_field(ent, target, item, path))

    mapped = {fm.target for fm in field_maps}
    missing = [n for n in business if ent.is_required(n) and n not in mapped]
    if missing:
        raise _fail(
            f"{where}.fields",
            f"required field{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} "
            f"of entity {entity} not mapped",
        )

    deleted_from: str | None = None
    deleted_values: tuple[str, ...] = EntityMapping.__dataclass_fields__["deleted_values"].default  # type: ignore[assignment]
    deleted = spec.get("deleted")
    if deleted is not None:
        if isinstance(deleted, str):
            deleted = {"from": deleted}
        if not isinstance(deleted, Mapping):
            raise _fail(f"{where}.deleted", "expected a column name or {from: column, values: [...]}")
        for key in deleted:
            if key not in ("from", "values"):
                raise _fail(f"{where}.deleted.{key}", "unknown key (allowed: from, values)")
        deleted_from = deleted.get("from")
        if not isinstance(deleted_from, str) or not deleted_from:
            raise _fail(f"{where}.deleted.from", "must be a non-empty column name")
        if "values" in deleted:
            values = deleted["values"]
            if not isinstance(values, list) or not values or any(isinstance(v, (dict, list)) or v is None for v in values):
                raise _fail(f"{where}.deleted.values", "must be a non-empty list of values")
            deleted_values = tuple(str(v).lower() if isinstance(v, bool) else str(v) for v in values)
    return EntityMapping(entity=entity, fields=tuple(field_maps), deleted_from=deleted_from, deleted_values=deleted_values)


# --- applying -------------------------------------------------------------------------------------

_NULL_STR = pa.scalar(None, pa.string())


def _describe(field: Field, before: pa.Array, errors: pa.Array) -> pa.Array:
    """'field x: '<value>' <reason>' for ordinary fields, no value for personal ones."""
    if field.pii != "none":
        return pc.binary_join_element_wise(f"field {field.name}: value ", errors, "")
    shown = pc.utf8_slice_codeunits(_plain(before).cast(pa.string()), 0, 60)
    return pc.binary_join_element_wise(f"field {field.name}: '", shown, "' ", errors, "")


def _map_column(column: pa.Array, fm: FieldMap, field: Field) -> tuple[pa.Array, pa.Array, pa.Array]:
    """Normalise and type one column: (values, first reason per row, its rule)."""
    n = len(column)
    reason = pa.nulls(n, pa.string())
    rule = pa.nulls(n, pa.string())

    def record(before: pa.Array, errors: pa.Array | None, rule_name: str) -> None:
        nonlocal reason, rule
        if errors is None:
            return
        described = _describe(field, before, errors)
        new = pc.and_(pc.is_null(reason), pc.is_valid(described))
        reason = pc.if_else(new, described, reason)
        rule = pc.if_else(new, pa.scalar(rule_name), rule)

    current = _plain(column)
    for name in fm.normalise:
        result = NORMALISERS[name](current)
        record(current, result.errors, f"mapping.{name}")
        current = result.values
    if fm.value_map is not None:
        result = fm.value_map.apply(current)
        record(current, result.errors, "mapping.map")
        current = result.values
    rule_name, result = coerce(current, field.type)
    record(current, result.errors, f"mapping.{rule_name}")
    current = result.values
    # Code-list membership is a quality rule (quality/suites.py), declared once in the GX suite,
    # so a spec can relax it visibly; the mapping only converts.
    return current, reason, rule


def _source_column(raw: pa.Table, fm: FieldMap, n: int) -> pa.Array:
    """The raw value(s) a field reads, combined and split as its mapping says (absent columns read as nulls)."""
    if fm.source is None:
        return pa.repeat(fm.const, n)
    names = fm.sources or (fm.source,)
    columns = [raw[name] if name in raw.column_names else pa.nulls(n, pa.string()) for name in names]
    if len(columns) == 1 and fm.split is None and fm.combine == "coalesce":
        return columns[0]  # one column as read: keeps its type (a number stays a number)
    column = join_columns(columns, fm.sep) if fm.combine == "join" else coalesce_columns(columns)
    return split_part(column, *fm.split) if fm.split else text_or_null(column)


def _deleted_flags(raw: pa.Table, mapping: EntityMapping) -> pa.Array:
    n = raw.num_rows
    if mapping.deleted_from is None or mapping.deleted_from not in raw.column_names:
        return pc.is_valid(pa.nulls(n, pa.bool_()))  # all False
    column = _plain(raw[mapping.deleted_from])
    if pa.types.is_boolean(column.type):
        return pc.fill_null(column, False)
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    return pc.fill_null(pc.is_in(text, value_set=pa.array(mapping.deleted_values, pa.string())), False)


def _output_schema(entity: Entity) -> pa.Schema:
    full = entity.arrow_schema()
    names = [f.name for f in entity.business_fields] + ["_is_deleted"]
    return pa.schema([full.field(n) for n in names], metadata=full.metadata)


def apply_mapping(raw: pa.Table, mapping: EntityMapping) -> MappingResult:
    """Map raw source columns onto the entity: typed accepted rows plus reasons for the rest.

    A raw column named in the mapping but missing from ``raw`` reads as nulls (drift is
    reported elsewhere). Rows flagged deleted only need their key: other values that fail
    on a tombstone become null instead of rejecting it, so deletes are never lost.
    """
    entity = ENTITIES[mapping.entity]
    n = raw.num_rows
    by_target = {fm.target: fm for fm in mapping.fields}
    deleted = _deleted_flags(raw, mapping)
    live = pc.invert(deleted)

    columns: list[pa.Array] = []
    row_reason = pa.nulls(n, pa.string())
    row_rule = pa.nulls(n, pa.string())
    row_field = pa.nulls(n, pa.string())
    for field in entity.business_fields:
        fm = by_target.get(field.name)
        if fm is None:
            values: pa.Array = pa.nulls(n, field.type)
            reason = rule = pa.nulls(n, pa.string())
        else:
            column = _source_column(raw, fm, n)
            try:
                values, reason, rule = _map_column(column, fm, field)
            except TypeError as exc:
                raise MappingSpecError(f"entity {entity.name}, field {field.name}: {exc}") from None
        is_key = field.name in entity.key
        if not is_key and reason.null_count < n:
            # Tombstones keep only their key; their other values may be anything.
            reason = pc.if_else(deleted, _NULL_STR, reason)
        if (is_key or field.required) and values.null_count:
            missing = pc.and_(pc.is_null(values), pc.is_null(reason))
            if not is_key:
                missing = pc.and_(missing, live)
            reason = pc.if_else(missing, pa.scalar(f"field {field.name}: required value is missing"), reason)
            rule = pc.if_else(missing, pa.scalar("mapping.required"), rule)
        if reason.null_count < n:  # some row refused by this field: keep each row's first reason
            first = pc.and_(pc.is_null(row_reason), pc.is_valid(reason))
            row_reason = pc.if_else(first, reason, row_reason)
            row_rule = pc.if_else(first, rule, row_rule)
            row_field = pc.if_else(first, pa.scalar(field.name), row_field)
        columns.append(values)

    if READ_ERROR in raw.column_names:
        unreadable = pc.is_valid(_plain(raw[READ_ERROR]))
        if pc.any(unreadable).as_py():
            row_reason = pc.if_else(unreadable, _plain(raw[READ_ERROR]).cast(pa.string()), row_reason)
            row_rule = pc.if_else(unreadable, pa.scalar("source.unreadable"), row_rule)
            row_field = pc.if_else(unreadable, _NULL_STR, row_field)
    ok = pc.is_null(row_reason)
    bad = pc.invert(ok)
    schema = _output_schema(entity)
    if row_reason.null_count == n:  # every row accepted (the common case): nothing to filter
        table = pa.Table.from_arrays(columns + [deleted], schema=schema)
        accepted = pa.array(np.arange(n, dtype=np.int64))
    else:
        table = pa.Table.from_arrays([c.filter(ok) for c in columns] + [deleted.filter(ok)], schema=schema)
        accepted = pc.indices_nonzero(ok).cast(pa.int64())
    rejects = pa.Table.from_arrays(
        [
            pc.indices_nonzero(bad).cast(pa.int64()),
            row_field.filter(bad),
            row_rule.filter(bad),
            row_reason.filter(bad),
        ],
        schema=REJECTS_SCHEMA,
    )
    return MappingResult(table=table, accepted=accepted, rejects=rejects)


def mapping_column_groups(mapping: EntityMapping) -> list[tuple[str, ...]]:
    """The raw columns a mapping needs, as groups of which any one will do.

    A field read from several columns (``from: [a, b]``, ``coalesce``, ``join``) is satisfied by
    whichever of them a source has: a district whose template changed keeps loading, and only a
    source with none of them is missing a column.
    """
    groups: list[tuple[str, ...]] = [fm.sources or (fm.source,) for fm in mapping.fields if fm.source is not None]
    if mapping.deleted_from:
        groups.append((mapping.deleted_from,))
    return list(dict.fromkeys(groups))


def mapping_sources(mapping: EntityMapping) -> list[str]:
    """Raw columns a mapping reads (for schema-drift checks elsewhere)."""
    cols: list[Any] = [name for fm in mapping.fields for name in (fm.sources or (fm.source,)) if name is not None]
    if mapping.deleted_from:
        cols.append(mapping.deleted_from)
    return list(dict.fromkeys(cols))
