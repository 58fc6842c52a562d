"""Typed source specs: one YAML file per source, validated before anything runs.

Specs are plain configuration (dlt/Airbyte style) with a deliberately small vocabulary; the odd
case escapes to a Python hook rather than growing the language. Validation errors point at the
file, the key path and the line, and never echo secret values.
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from connectors.errors import SpecError
from connectors.guard import SnapshotGuard

SPEC_DIR = Path(__file__).parent / "specs"


def spec_dirs() -> list[Path]:
    """Where specs are found: IEHUB_SPEC_DIR (colon-separated, searched first), then the shipped ones.

    A data engineer adds a source by dropping one YAML file into their own folder; no Python.
    """
    extra = [Path(p).expanduser() for p in os.environ.get("IEHUB_SPEC_DIR", "").split(os.pathsep) if p]
    return [*extra, SPEC_DIR]


def _find_spec(name: str) -> Path | None:
    for folder in spec_dirs():
        candidate = folder / f"{name}.yaml"
        if candidate.exists():
            return candidate
    return None

_ENV_PATTERN = re.compile(r"\$\{([A-Z0-9_]+)(?::-([^}]*))?\}")


def interpolate_env(value: str) -> str:
    """Expand ${NAME} and ${NAME:-default} in non-secret strings (base URLs, paths)."""

    def repl(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise SpecError(f"environment variable {name} is not set and has no default")

    return _ENV_PATTERN.sub(repl, value)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecretRef(_Model):
    env: str | None = None
    airflow_conn: str | None = None
    field: str | None = None

    @model_validator(mode="after")
    def _one_place(self) -> "SecretRef":
        if (self.env is None) == (self.airflow_conn is None):
            raise ValueError("a secret names exactly one of env or airflow_conn")
        return self

    def as_ref(self) -> dict[str, str]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class ClientCredentialsAuth(_Model):
    kind: Literal["client_credentials"]
    token_url: str
    client_id: SecretRef
    client_secret: SecretRef
    token_path: str = "access_token"
    expires_in_path: str = "expires_in"
    # Refresh a little before the stated expiry so a page is not sent with a dying token.
    refresh_margin_seconds: float = Field(default=30.0, ge=0)


class NoAuth(_Model):
    kind: Literal["none"]


class ApiKeyAuth(_Model):
    """A static key sent in a header on every request (district APIs)."""

    kind: Literal["api_key"]
    header: str = "X-Api-Key"
    key: SecretRef


class HttpPolicy(_Model):
    timeout_seconds: float = Field(default=30.0, gt=0)
    connect_timeout_seconds: float = Field(default=5.0, gt=0)
    max_attempts: int = Field(default=6, ge=1, le=20)
    backoff_seconds: float = Field(default=0.5, ge=0)
    backoff_max_seconds: float = Field(default=30.0, ge=0)
    retry_after_max_seconds: float = Field(default=120.0, ge=0)
    retry_budget: int = Field(default=200, ge=0, description="retries allowed over one stream pass")


class Envelope(_Model):
    """Where the platform puts its business status inside an HTTP 200."""

    code_path: str | None = None
    message_path: str | None = None
    success_codes: tuple[int | str, ...] = (0,)
    business_codes: dict[str, Literal["retry", "refresh", "fail"]] = Field(default_factory=dict)
    records_path: str = "data.list"
    total_path: str | None = None


class PageNumberPaging(_Model):
    kind: Literal["page_number"]
    page_param: str = "page"
    size_param: str = "pageSize"
    page_size: int = Field(default=500, ge=1, le=100_000)
    first_page: int = 1


class CursorPaging(_Model):
    kind: Literal["cursor"]
    cursor_param: str = "cursor"
    size_param: str | None = "limit"
    page_size: int = Field(default=500, ge=1, le=100_000)
    next_cursor_path: str = "nextCursor"


class Incremental(_Model):
    cursor_field: str
    param: str
    format: str = "%Y-%m-%d %H:%M:%S"
    overlap_seconds: int = Field(default=300, ge=0)


class BaseStreamSpec(_Model):
    """What every kind's stream states: its canonical entity, its key and its mapping."""

    entity: str
    primary_key: str
    mapping: dict[str, Any]
    # Source fields deliberately not mapped, so schema-drift checks only report real news.
    ignore_fields: list[str] = Field(default_factory=list)
    # Visible per-source tightening/relaxing of the quality policy (see quality/policy.py).
    quality: dict[str, Any] = Field(default_factory=dict)
    # When a full read is held as suspect instead of deleting what it lacks (see connectors/guard.py).
    snapshot_guard: SnapshotGuard = SnapshotGuard()


class BaseSourceSpec(_Model):
    """What every kind's source spec states; each kind subclasses it with its own settings."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    title: str = ""
    kind: str
    # How often the source is expected to deliver; the quality site measures freshness against it.
    schedule: Literal["@hourly", "@daily", "@weekly", "@monthly"] = "@hourly"
    # How many of the source's streams may extract at once: the size of its Airflow pool, so one
    # API or database is not hit by every stream of a run together.
    max_parallel_requests: int = Field(default=2, ge=1, le=32)
    streams: dict[str, BaseStreamSpec]

    @field_validator("streams")
    @classmethod
    def _some_streams(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("a source needs at least one stream")
        return value


class Explode(_Model):
    """Each element of a nested list becomes a row of the stream (a project's members → participants).

    The element keeps its own fields; the record around it is under `parent_as` (map `_parent.projId`).
    """

    path: str
    parent_as: str = "_parent"


class StreamSpec(BaseStreamSpec):
    path: str
    params: dict[str, str] = Field(default_factory=dict)
    explode: Explode | None = None


class RestSourceSpec(BaseSourceSpec):
    kind: Literal["rest"]
    base_url: str
    auth: ClientCredentialsAuth | ApiKeyAuth | NoAuth = Field(discriminator="kind")
    http: HttpPolicy = HttpPolicy()
    envelope: Envelope = Envelope()
    paging: PageNumberPaging | CursorPaging = Field(discriminator="kind")
    incremental: Incremental | None = None
    streams: dict[str, StreamSpec]

    def resolved_base_url(self) -> str:
        return interpolate_env(self.base_url).rstrip("/")


SourceSpec = BaseSourceSpec

# kind → (module that registers it, spec model). A new kind is a package under connectors/
# whose import calls `register_spec_kind` and `connectors.base.register_kind`.
KIND_MODULES: dict[str, str] = {"rest": "connectors.rest.stream", "sql": "connectors.sql", "file": "connectors.files"}
SPEC_MODELS: dict[str, type[BaseSourceSpec]] = {"rest": RestSourceSpec}


def register_spec_kind(kind: str, model: type[BaseSourceSpec]) -> None:
    SPEC_MODELS[kind] = model


def spec_model(kind: object) -> type[BaseSourceSpec] | None:
    """The spec model for a kind, importing the kind's package on first use."""
    import importlib

    if not isinstance(kind, str) or kind not in KIND_MODULES:
        return None
    if kind not in SPEC_MODELS:
        try:
            importlib.import_module(KIND_MODULES[kind])
        except ModuleNotFoundError:
            return None
    return SPEC_MODELS.get(kind)


_DISCRIMINATOR_TAGS = {"client_credentials", "api_key", "none", "page_number", "cursor"}


#: libyaml's safe loader where PyYAML was built with it (the same documents and line marks, ~9x quicker:
#: every sync step, replay and CLI command loads its source's spec, and the DAGs' spec summary is compiled
#: from all of them; the six specs, modules loaded: 81 ms a pass with the Python loader, 9 ms with libyaml).
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _line_of(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Line (1-based) of the deepest YAML node along a pydantic error location."""
    node, line = root, None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                node, line = value_node, key_node.start_mark.line + 1
                break
        else:
            break
    return line


def load_spec(name_or_path: str | Path) -> SourceSpec:
    """Load and validate a spec by source name (connectors/specs/<name>.yaml) or path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = _find_spec(str(name_or_path)) or SPEC_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(available_sources())
        raise SpecError(f"no spec for source '{name_or_path}' ({path}); known sources: {known}")
    text = path.read_text(encoding="utf-8")
    try:
        data = yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader, libyaml's where present
        root = yaml.compose(text, Loader=_SAFE_LOADER)
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}: a spec is a mapping of keys, got {type(data).__name__}")
    model = spec_model(data.get("kind"))
    if model is None:
        known = ", ".join(k for k in KIND_MODULES if spec_model(k) is not None)
        raise SpecError(f"{path}: kind: unknown source kind {data.get('kind')!r} (known: {known})")
    try:
        spec = model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            # drop pydantic's discriminator tags (e.g. 'page_number') from the path
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p in _DISCRIMINATOR_TAGS))
            line = _line_of(root, loc)
            at = f" (line {line})" if line else ""
            lines.append(f"{path}{at}: {'.'.join(str(p) for p in loc)}: {err['msg']}")
        raise SpecError("invalid source spec:\n  " + "\n  ".join(lines)) from None
    _check_mappings(spec, path, root)
    return spec


def _check_mappings(spec: SourceSpec, path: Path, root: yaml.Node | None) -> None:
    """Validate each stream's mapping against its canonical entity before anything runs."""
    from schemas.mapping import MappingSpecError, parse_mapping

    for stream_name, stream in spec.streams.items():
        loc = ("streams", stream_name, "mapping")
        line = _line_of(root, loc)
        where = f"{path}" + (f" (line {line})" if line else "")
        try:
            parse_mapping(stream.entity, stream.mapping, f"{where}: {'.'.join(loc)}")
        except (MappingSpecError, KeyError) as exc:
            raise SpecError(str(exc).strip("'\"")) from None


def available_sources() -> list[str]:
    return sorted({p.stem for folder in spec_dirs() if folder.is_dir() for p in folder.glob("*.yaml")})


#: Key columns named like personal data, whatever the mapping does with them (a key may be mapped to nothing).
_PERSONAL_NAME = re.compile(r"身份证|证件号|护照|手机|电话|姓名|联系人|id_?card|id_?number|id_?no$|phone|mobile",
                            re.IGNORECASE)


def personal_key_warnings(spec: SourceSpec) -> list[str]:
    """What `iehub spec validate` warns about: streams whose key, or a field served in clear, is personal data.

    A stream's ``primary_key`` becomes every record's ``_source_key`` and its deletes' too. The
    feeds pseudonymise ``_source_key`` for keys without the personal grant (see feeds.masking),
    but the value still spreads through the lake, the ledger and every export with the grant,
    and a field that is not graded personal (``trainee_id``) but filled from a personal column
    (``身份证号``) is served in clear to every key. Neither makes the spec invalid, so these are
    warnings; the remedy is the source's own record id (学员编号…) as the key.
    """
    from schemas import ENTITIES
    from schemas.mapping import parse_mapping

    warnings = []
    for name, stream in spec.streams.items():
        entity = ENTITIES[stream.entity]
        maps = parse_mapping(stream.entity, stream.mapping, f"streams.{name}.mapping").fields
        personal = {column: fm.target for fm in maps for column in (fm.sources or (fm.source,))
                    if column is not None and entity.field(fm.target).pii != "none"}
        key = stream.primary_key
        if key in personal or _PERSONAL_NAME.search(key):
            why = f"it fills the personal field {personal[key]}" if key in personal else "its name says so"
            warnings.append(
                f"streams.{name}: primary_key {key!r} is personal data ({why}); it becomes every record's and "
                "every delete's _source_key, which the feeds serve only as a keyed pseudonym to keys without the "
                "personal grant, but which the lake, the ledger and personal exports keep: key the stream on the "
                "source's own record id instead")
        for fm in maps:  # every column a field reads (coalesce and join read several)
            for column in fm.sources or (fm.source,):
                if column in personal and entity.field(fm.target).pii == "none":
                    warnings.append(
                        f"streams.{name}: {fm.target} is mapped from {column!r}, which also fills the personal field "
                        f"{personal[column]}; {fm.target} is not masked, so every key would read it in clear: "
                        f"map {fm.target} from another column")
    return warnings
