"""The feed API (FastAPI): catalogue, change feeds, deletes, versions and schemas per dataset.

Contract (DESIGN.md, "Feeds contract"): Ed-Fi style change queries over immutable published
snapshots, with a signed keyset cursor that keeps a whole pass on the snapshot it started on.

Order of checks on every request, so that the cheapest refusal comes first and nothing is
read for a caller who may not have it: key (401; 503 if the key store cannot be read or the
key's use recorded) → rate (429) → dataset known (404) and in the key's scope (403) →
parameters (400) → format (400/406) → cursor (400/410) → ETag (304) → query → mask → encode
→ audit (503 if it cannot be written) → send.

Fail closed: any failure of the key or audit store is a 503 ``{"error", "message"}`` and no
data, never a 500. Metadata is scoped like the data: ``/versions`` and the catalogue's change
versions are computed over the rows and deletes the key may see, never hub-wide, and
``/schema`` describes the masked records a key without the personal grant receives.

Audit before send: the page (bounded by ``limit``) is encoded into chunks, hashed, the audit
row is written, and only then are the chunks streamed (see :mod:`feeds.formats`). A request
whose audit row cannot be written gets 503 and no data.

Districts always come from the key, never from a parameter; errors are JSON
``{"error": code, "message": …}`` naming the parameter and why, and bad input never gives 500.
"""

# No ``from __future__ import annotations`` here, deliberately: FastAPI reads the endpoint
# annotations at runtime, and they refer to names local to create_app (the dependency, the
# limit bounds taken from the config), which string annotations could not resolve.
import hashlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from enum import Enum
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from feeds import cursors
from feeds.audit import AuditError, AuditLog
from feeds.config import FeedConfig
from feeds import dcat
from feeds.datasets import DATASETS, FORMATS, Dataset, catalogue_entry
from feeds.docs_pages import add_offline_docs
from feeds.formats import Encoded, FormatError, NotAcceptable, encode, etag, etag_matches, negotiate
from feeds.key_changes import fetch_key_changes
from feeds.keys import AuthError, Grant, KeyStore, KeyStoreUnavailable
from feeds.query import (
    MAX_CHANGE_VERSION,
    FieldError,
    NoSnapshot,
    Page,
    SnapshotGone,
    SnapshotPool,
    Window,
    coverage,
    masked_page,
    versions,
)
from feeds.ratelimit import RateLimiter
from feeds.subscriptions_api import add_subscription_routes
from feeds.sharing import (
    AccessError,
    AccessStore,
    AccessStoreUnavailable,
    effective_grant,
    served_datasets,
    share_label,
)
from feeds.tableschema import table_schema
from schemas import SCHEMA_VERSION

__all__ = ["ApiError", "create_app"]

log = logging.getLogger(__name__)

API_VERSION = "1.0.0"
RATE_TABLE = "ratelimit.bin"
# 不予共享 datasets are not in the API at all: their names answer 404 like any unknown dataset.
DatasetName = Enum("DatasetName", {name: name for name in served_datasets()}, type=str)  # type: ignore[misc]
FormatName = Enum("FormatName", {name: name for name in FORMATS}, type=str)  # type: ignore[misc]
DatasetPath = Annotated[DatasetName, Path(description="Dataset name (GET /v1/feeds lists them).")]


class ApiError(Exception):
    """An error answered as ``{"error": code, "message": message}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


# -- OpenAPI models ----------------------------------------------------------------------------


class ErrorBody(BaseModel):
    error: str = Field(description="Machine-readable error code, e.g. bad_parameter, unauthorized, forbidden.")
    message: str = Field(description="What is wrong, which parameter, and what to do.")


class ChangeVersions(BaseModel):
    min: int = Field(description="Lowest change version of the pass (inclusive).")
    max: int = Field(description="Highest change version of the pass (inclusive); fixed when the pass starts.")
    after: int = Field(description="This page holds records with change_version greater than this.")
    last: int | None = Field(description="change_version of the last record on this page.")


class FeedPage(BaseModel):
    dataset: str
    snapshot: str = Field(description="The published snapshot every page of this pass reads.")
    change_versions: ChangeVersions
    count: int = Field(description="Records on this page.")
    next_cursor: str | None = Field(description="Pass it back as cursor= for the next page; null at the end.")
    records: list[dict[str, Any]]


class VersionsBody(BaseModel):
    dataset: str
    snapshot: str
    oldest_change_version: int | None
    newest_change_version: int


class AccessRequestBody(BaseModel):
    datasets: list[str] = Field(min_length=1, max_length=20, description="有条件共享 datasets asked for.")
    districts: list[str] | None = Field(default=None, max_length=20, description="District codes (GB/T 2260); "
                                        "null for every district the key has.")
    purpose: str = Field(min_length=4, max_length=2000, description="What the data will be used for (用途).")


class AccessRequestOut(BaseModel):
    request_id: int
    consumer: str
    key_id: str | None
    datasets: list[str]
    districts: list[str] | None
    purpose: str
    status: str = Field(description="pending, approved, expired (an approval past its date) or rejected.")
    requested_at: str
    decided_at: str | None
    reason: str | None
    expires_at: str | None = Field(description="When an approval ends; the scope it grants ends with it.")


class KeyChange(BaseModel):
    change_version: int = Field(description="The change version of the record under its new key.")
    oldKeyValues: dict[str, Any] = Field(description="The natural key before the change.")
    newKeyValues: dict[str, Any] = Field(description="The natural key after it (the record's key in changes).")


class KeyChangesPage(BaseModel):
    dataset: str
    snapshot: str
    change_versions: ChangeVersions
    count: int
    next_cursor: str | None = Field(description="Pass it back as cursor= for the next page; null at the end.")
    records: list[KeyChange]


class Catalogue(BaseModel):
    snapshot: str
    schema_version: str
    consumer: str
    datasets: list[dict[str, Any]]


_ERRORS = {
    400: "Bad parameter: the message names which one and why.",
    401: "Missing, unknown, expired or revoked API key.",
    403: "The dataset is not in this key's scope.",
    404: "No such dataset or path.",
    406: "No served media type in Accept.",
    410: "The snapshot this cursor's pass started on has been pruned: restart the pass without a cursor.",
    429: "Rate limit for this key exceeded; see Retry-After.",
    503: "Nothing published yet, or the key store or audit log cannot be read or written (the hub fails "
         "closed: nothing is served).",
}


_NOT_MODIFIED: dict[int | str, dict[str, Any]] = {304: {"description": "Not modified (If-None-Match matched the ETag)."}}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorBody, "description": _ERRORS[code]} for code in codes}


_DATA_CONTENT = {
    "application/json": {"schema": {"$ref": "#/components/schemas/FeedPage"}},
    "application/x-ndjson": {"schema": {"type": "string"}},
    "text/csv": {"schema": {"type": "string"}},
    "application/vnd.apache.parquet": {"schema": {"type": "string", "format": "binary"}},
}


def _data_responses() -> dict[int | str, dict[str, Any]]:
    return {
        200: {"description": "One page of records, in the negotiated format.", "content": _DATA_CONTENT,
              "model": FeedPage},
        304: {"description": "Not modified (If-None-Match matched the ETag)."},
        **_responses(400, 401, 403, 404, 406, 410, 429, 503),
    }


# -- the app --------------------------------------------------------------------------------------


def create_app(config: FeedConfig, *, keys: KeyStore | None = None, audit: AuditLog | None = None,
               access: AccessStore | None = None) -> FastAPI:
    """The feed API over ``config.home``'s published snapshots; keys, access requests and audit in ``config.db_url``."""
    secret = config.secret()
    keystore = keys if keys is not None else KeyStore(config.db_url)
    audit_log = audit if audit is not None else AuditLog.from_config(config)  # key and anchors outside the db
    access_store = access if access is not None else AccessStore(config.db_url, audit=audit_log)
    pool = SnapshotPool(config.home, config.snapshot_cache, lease=config.snapshot_lease)
    # Shared by every worker process of `iehub serve --workers N` through a file in the feeds folder.
    limiter = RateLimiter(config.rate, config.burst, path=config.feeds_dir / RATE_TABLE)
    bearer = HTTPBearer(auto_error=False, description="A consumer key from `iehub keys create`.")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        pool.close()
        if audit is None:  # ours: closing it anchors the audit rows written since its last anchor
            audit_log.dispose()

    app = FastAPI(
        lifespan=lifespan,
        title="iehub feed API",
        version=API_VERSION,
        description=(
            "Standard feeds of Shanghai's industry-education integration data hub (上海市产教融合数据交换中心). "
            "Change queries in the manner of Ed-Fi: every record carries a hub-wide `change_version`; a pass "
            "reads one published snapshot from its first page to its last through a signed keyset `next_cursor`; "
            "deletes carry the natural key. Formats: JSON (default), NDJSON, CSV, Parquet by `format=` or Accept. "
            "Send `Authorization: Bearer <key>`."
        ),
        openapi_tags=[{"name": "feeds", "description": "Catalogue, changes, deletes, versions and schemas."}],
        docs_url=None,  # served by add_offline_docs: FastAPI's own pages load Swagger UI and ReDoc from a CDN
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.pool = pool
    app.state.keys = keystore
    app.state.access = access_store
    app.state.audit = audit_log
    app.state.limiter = limiter

    # -- errors ------------------------------------------------------------------------------

    def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse({"error": code, "message": message}, status_code=status, headers=headers)

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.message, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        if any(tuple(e.get("loc", ()))[:2] == ("path", "dataset") for e in exc.errors()):
            return _error(404, "not_found", "unknown dataset; GET /v1/feeds lists the datasets this key may read")
        problems = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p not in ("query", "path", "header"))
            kind = (e.get("loc") or ("parameter",))[0]
            problems.append(f"{kind} parameter {where!r}: {e.get('msg', 'invalid')}")
        return _error(400, "bad_parameter", "; ".join(problems) or "invalid request parameters")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = "no such path; see /docs for the API" if exc.status_code == 404 else str(exc.detail)
        return _error(exc.status_code, code, message, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("feed API: unexpected %s on %s", type(exc).__name__, request.url.path, exc_info=exc)
        return _error(500, "internal", "internal error; the hub's operators have it in their log")

    # -- dependencies ------------------------------------------------------------------------

    def authorised(credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Grant:
        """The caller's grant; 401 without a valid key, 429 past its rate, 503 if the key store fails."""
        challenge = {"WWW-Authenticate": 'Bearer realm="iehub"'}
        if credentials is None:
            raise ApiError(401, "unauthorized", "missing API key: send 'Authorization: Bearer <key>'", challenge)
        try:
            grant = keystore.authenticate(credentials.credentials)
        except AuthError as exc:
            raise ApiError(401, "unauthorized", str(exc), challenge) from None
        except KeyStoreUnavailable as exc:
            log.error("feed API: key store unavailable: %s", exc)
            raise ApiError(503, "key_store_unavailable", "the key store cannot be read or written right now, so "
                           "nothing is served; retry later") from None
        try:
            wait = limiter.check(grant.key_id)
        except OSError as exc:  # the shared rate table in the feeds folder
            log.error("feed API: rate table unavailable: %s", type(exc).__name__)
            raise ApiError(503, "key_store_unavailable", "the rate limit cannot be checked right now, so nothing "
                           "is served; retry later") from None
        if wait > 0:
            raise ApiError(429, "rate_limited", f"rate limit of {config.rate:g} requests/s (burst {config.burst}) "
                           f"for key {grant.key_id} exceeded; retry after the Retry-After seconds",
                           {"Retry-After": limiter.retry_after(wait)})
        return grant

    def approvals(grant: Grant) -> list:
        try:
            return access_store.approvals(grant.key_id)
        except AccessStoreUnavailable as exc:
            log.error("feed API: access store unavailable: %s", exc)
            raise ApiError(503, "key_store_unavailable", "the access requests cannot be read right now, so "
                           "nothing is served; retry later") from None

    def in_scope(name: str, grant: Grant) -> tuple[Dataset, Grant]:
        """The dataset and the grant to read it under (an approval may narrow the key's districts)."""
        dataset = served_datasets().get(name)
        if dataset is None:
            raise ApiError(404, "not_found", f"unknown dataset {name!r}; GET /v1/feeds lists yours")
        effective = effective_grant(grant, dataset, approvals(grant))
        if effective is None:
            if dataset.entity.share_class == "conditional" and not grant.allows_dataset(name):
                why = ("it is 有条件共享 (conditional): file an access request (POST /v1/access-requests) and "
                       "read it once approved")
            elif grant.datasets is None or name in grant.datasets:
                why = "it has no district, so only keys granted every district may read it"
            else:
                why = "it is not among the key's datasets"
            raise ApiError(403, "forbidden", f"dataset {name!r} is out of this key's scope: {why}")
        return dataset, effective

    def current_snapshot() -> str:
        try:
            return pool.current()
        except NoSnapshot as exc:
            raise ApiError(503, "no_snapshot", str(exc)) from None

    def strict(request: Request, allowed: set[str]) -> None:
        """Unknown or repeated query parameters are mistakes worth reporting, not ignoring."""
        names = [k for k, _ in request.query_params.multi_items()]
        unknown = sorted({n for n in names if n not in allowed})
        if unknown:
            names_given = ", ".join(repr(u[:40]) for u in unknown)
            raise ApiError(400, "bad_parameter", f"unknown query parameter(s) {names_given}; "
                           f"allowed: {', '.join(sorted(allowed))}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ApiError(400, "bad_parameter", f"query parameter(s) {', '.join(map(repr, repeated))} given more "
                           "than once; give each once")

    def not_modified(request: Request, tag: str, snapshot: str) -> Response | None:
        if etag_matches(request.headers.get("if-none-match"), tag):
            return Response(status_code=304, headers={"ETag": tag, "X-Snapshot": snapshot})
        return None

    def json_with_etag(request: Request, body: dict[str, Any], parts: dict[str, Any], snapshot: str) -> Response:
        tag = etag(parts)
        return not_modified(request, tag, snapshot) or JSONResponse(
            body, headers={"ETag": tag, "X-Snapshot": snapshot, "Cache-Control": "private, no-cache"})

    # -- endpoints -----------------------------------------------------------------------------

    # Snapshots never change: what a scope sees of one is cached freely.
    @lru_cache(maxsize=512)
    def cached_coverage(version: str, name: str, districts: frozenset[str] | None) -> dict[str, Any]:
        return coverage(pool, version, DATASETS[name], districts)

    @lru_cache(maxsize=512)
    def cached_versions(version: str, name: str, districts: frozenset[str] | None) -> dict[str, Any]:
        return versions(pool, version, DATASETS[name], districts)

    def scoped_versions(snapshot: str, ds: Dataset, grant: Grant) -> dict[str, Any]:
        try:
            return cached_versions(snapshot, ds.name, grant.districts)
        except SnapshotGone as exc:  # CURRENT moved and the old one was pruned in between
            raise ApiError(503, "no_snapshot", str(exc)) from None

    @app.get("/v1/feeds", tags=["feeds"], response_model=Catalogue, responses={**_NOT_MODIFIED,
             **_responses(400, 401, 429, 503)},
             summary="Catalogue of the datasets this key may read (DCAT-style)")
    def catalogue(request: Request, grant: Annotated[Grant, Depends(authorised)]) -> Response:
        strict(request, set())
        snapshot = current_snapshot()
        entries = []
        granted = approvals(grant)
        for dataset in served_datasets().values():
            effective = effective_grant(grant, dataset, granted)
            if effective is not None:
                try:
                    cov = cached_coverage(snapshot, dataset.name, effective.districts)
                except SnapshotGone as exc:
                    raise ApiError(503, "no_snapshot", str(exc)) from None
                entries.append({**catalogue_entry(dataset, base_url=str(request.base_url), coverage=cov,
                                                  snapshot=snapshot), "shareClass": share_label(dataset.name)})
        body = {"snapshot": snapshot, "schema_version": SCHEMA_VERSION, "consumer": grant.consumer,
                "datasets": entries}
        parts = {"what": "catalogue", "snapshot": snapshot, "scope": _scope(grant), "base": str(request.base_url),
                 "entries": [(e["identifier"], e["changeVersions"]["newest"]) for e in entries]}
        return json_with_etag(request, body, parts, snapshot)

    @app.post("/v1/access-requests", tags=["access"], status_code=201, response_model=AccessRequestOut,
              responses=_responses(400, 401, 429, 503),
              summary="File an access request for 有条件共享 datasets (an approver decides; the approval widens this key)")
    def file_access_request(request: Request, body: AccessRequestBody,
                            grant: Annotated[Grant, Depends(authorised)]) -> JSONResponse:
        strict(request, set())
        districts = body.districts if body.districts is not None else (
            None if grant.districts is None else sorted(grant.districts))
        try:
            filed = access_store.request(consumer=grant.consumer, key_id=grant.key_id, datasets=body.datasets,
                                         districts=districts, purpose=body.purpose,
                                         requested_by=f"key:{grant.key_id}")
        except AccessError as exc:
            raise ApiError(400, "bad_parameter", str(exc)) from None
        except AuditError:
            raise ApiError(503, "audit_unavailable", "the audit log cannot be written right now, so the request "
                           "was not filed; retry later") from None
        return JSONResponse(filed.public(), status_code=201)

    @app.get("/v1/access-requests", tags=["access"], response_model=list[AccessRequestOut],
             responses=_responses(400, 401, 429, 503), summary="This key's access requests and their decisions")
    def list_access_requests(request: Request, grant: Annotated[Grant, Depends(authorised)]) -> JSONResponse:
        strict(request, set())
        approvals(grant)  # 503 when the store cannot be read
        return JSONResponse([r.public() for r in access_store.list(key_id=grant.key_id)])

    # -- the public catalogue (DCAT-AP, JSON-LD) ---------------------------------------------------

    @lru_cache(maxsize=64)
    def spatial(version: str, name: str) -> tuple[str, ...]:
        sql = dcat.spatial_sql(DATASETS[name])
        if sql is None:
            return ()
        with pool.cursor(version) as (cur, _):
            return tuple(code for (code,) in cur.execute(sql).fetchall())

    def dcat_node(request: Request, snapshot: str, ds: Dataset) -> dict[str, Any]:
        try:
            cov = cached_coverage(snapshot, ds.name, None)  # hub-wide: the catalogue is public metadata
            where = spatial(snapshot, ds.name)
        except SnapshotGone as exc:
            raise ApiError(503, "no_snapshot", str(exc)) from None
        return dcat.dataset_node(ds, base_url=str(request.base_url), snapshot=snapshot, coverage=cov,
                                 districts=list(where), sources=dcat.read_sources(config.feeds_dir).get(ds.name, []),
                                 packages=dcat.package_files(config.home / "exports", ds.name, snapshot))

    def jsonld(request: Request, body: dict[str, Any], snapshot: str) -> Response:
        tag = etag({"what": "dcat", "body": body})
        return not_modified(request, tag, snapshot) or JSONResponse(
            body, media_type="application/ld+json",
            headers={"ETag": tag, "X-Snapshot": snapshot, "Cache-Control": "public, no-cache"})

    _ld = {200: {"content": {"application/ld+json": {"schema": {"type": "object"}}},
                 "description": "DCAT-AP in JSON-LD."}, 304: {"description": "Not modified (If-None-Match)."}}

    @app.get("/v1/catalog", tags=["catalogue"], responses={**_ld, **_responses(400, 503)},
             response_class=JSONResponse,
             summary="DCAT-AP catalogue (JSON-LD) of every shared dataset, for portals to harvest; no key needed")
    def dcat_catalog(request: Request) -> Response:
        strict(request, set())
        snapshot = current_snapshot()
        nodes = [dcat_node(request, snapshot, ds) for ds in DATASETS.values()]
        return jsonld(request, dcat.catalog(nodes, base_url=str(request.base_url), snapshot=snapshot), snapshot)

    @app.get("/v1/catalog/{dataset}", tags=["catalogue"], responses={**_ld, **_responses(400, 404, 503)},
             response_class=JSONResponse,
             summary="One dataset's DCAT-AP page: links its Table Schema, the OpenAPI and its bulk package files")
    def dcat_dataset(request: Request, dataset: DatasetPath) -> Response:
        strict(request, set())
        snapshot = current_snapshot()
        node = dcat_node(request, snapshot, DATASETS[dataset.value])
        return jsonld(request, {"@context": {**dcat.CONTEXT, "owl": "http://www.w3.org/2002/07/owl#"}, **node,
                                "iehub:openapi": {"@id": f"{str(request.base_url).rstrip('/')}/openapi.json"}},
                      snapshot)

    @app.get("/v1/feeds/{dataset}/package/{file}", tags=["feeds"],
             responses={200: {"description": "One file of the masked bulk package of the current snapshot.",
                              "content": {"text/csv": {"schema": {"type": "string"}},
                                          "application/vnd.apache.parquet": {"schema": {"type": "string",
                                                                                        "format": "binary"}},
                                          "application/json": {"schema": {"type": "object"}}}},
                        **_responses(400, 401, 403, 404, 429, 503)},
             summary="A bulk package file (masked; keys granted every district only: a package holds them all)")
    def package_file(request: Request, dataset: DatasetPath, file: Annotated[str, Path(max_length=200)],
                     grant: Annotated[Grant, Depends(authorised)]) -> Response:
        strict(request, set())
        ds, grant = in_scope(dataset.value, grant)
        if grant.districts is not None:
            raise ApiError(403, "forbidden", f"a bulk package of {ds.name!r} holds every district; this key is "
                           "limited to some: read the change feed instead")
        snapshot = current_snapshot()
        files = {f["path"]: f for f in dcat.package_files(config.home / "exports", ds.name, snapshot)}
        names = {**files, "datapackage.json": None} if files else {}
        if file not in names:
            raise ApiError(404, "not_found", f"no bulk package file {file[:80]!r} of {ds.name!r} for snapshot "
                           f"{snapshot}; GET /v1/catalog/{ds.name} lists them")
        path = config.home / "exports" / ds.name / snapshot / file
        info = files.get(file)
        try:
            audit_log.append(key_id=grant.key_id, consumer=grant.consumer, dataset=ds.name, endpoint="package",
                             params={"file": file}, rows=0, fields=[], personal=False,
                             digest=info["hash"] if info else "-", snapshot=snapshot)
        except AuditError:
            raise ApiError(503, "audit_unavailable", "the audit log cannot be written right now, so no data is "
                           "served; retry later") from None
        media = info["mediatype"] if info else "application/json"
        return FileResponse(path, media_type=media, filename=file, headers={"X-Snapshot": snapshot})

    @app.get("/v1/feeds/{dataset}/versions", tags=["feeds"], response_model=VersionsBody,
             responses={**_NOT_MODIFIED, **_responses(400, 401, 403, 404, 429, 503)},
             summary="Oldest and newest change versions (the range a pass can ask for)")
    def dataset_versions(request: Request, dataset: DatasetPath,
                         grant: Annotated[Grant, Depends(authorised)]) -> Response:
        strict(request, set())
        ds, grant = in_scope(dataset.value, grant)
        snapshot = current_snapshot()
        body = {"dataset": ds.name, "snapshot": snapshot, **scoped_versions(snapshot, ds, grant)}
        parts = {"what": "versions", "snapshot": snapshot, "dataset": ds.name, "scope": _scope(grant)}
        return json_with_etag(request, body, parts, snapshot)

    @app.get("/v1/feeds/{dataset}/schema", tags=["feeds"],
             responses={**_NOT_MODIFIED, **_responses(400, 401, 403, 404, 429, 503)},
             summary="Frictionless Table Schema of the records this key receives")
    def dataset_schema(request: Request, dataset: DatasetPath,
                       grant: Annotated[Grant, Depends(authorised)]) -> Response:
        strict(request, set())
        ds, grant = in_scope(dataset.value, grant)
        body = table_schema(ds.name, personal=grant.personal)
        tag = etag({"what": "schema", "dataset": ds.name, "version": SCHEMA_VERSION, "personal": grant.personal})
        return not_modified(request, tag, "-") or JSONResponse(
            body, media_type="application/json", headers={"ETag": tag, "Cache-Control": "private, no-cache"})

    page_params = {"min_change_version", "max_change_version", "limit", "cursor", "format"}
    MinVersion = Annotated[int | None, Query(ge=0, le=MAX_CHANGE_VERSION,
                                             description="Lowest change version to include (default 0).")]
    MaxVersion = Annotated[int | None, Query(ge=0, le=MAX_CHANGE_VERSION,
                                             description="Highest change version to include (default: the "
                                                         "snapshot's newest, fixed for the pass).")]
    Limit = Annotated[int | None, Query(ge=1, le=config.max_limit,
                                        description=f"Records per page, 1..{config.max_limit} "
                                                    f"(default {config.default_limit}).")]
    CursorParam = Annotated[str | None, Query(min_length=3, max_length=cursors.MAX_CURSOR_LENGTH,
                                              pattern=r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$",
                                              description="next_cursor of the previous page; it fixes the "
                                                          "snapshot, range and fields of the pass.")]
    FormatParam = Annotated[FormatName | None, Query(description="Response format; overrides Accept.")]
    AcceptHeader = Annotated[str | None, Header(include_in_schema=False)]

    @dataclass(frozen=True)
    class PageQuery:
        """The paging parameters both data endpoints share."""

        min_change_version: int | None
        max_change_version: int | None
        limit: int | None
        cursor: str | None
        format: str | None
        accept: str | None

    def page_query(
        min_change_version: MinVersion = None,
        max_change_version: MaxVersion = None,
        limit: Limit = None,
        cursor: CursorParam = None,
        format: FormatParam = None,
        accept: AcceptHeader = None,
    ) -> PageQuery:
        return PageQuery(min_change_version, max_change_version, limit, cursor,
                         format.value if format is not None else None, accept)

    @app.get("/v1/feeds/{dataset}", tags=["feeds"], responses=_data_responses(),
             summary="Records changed within a change-version range, in change-version order")
    def changes(
        request: Request,
        dataset: DatasetPath,
        grant: Annotated[Grant, Depends(authorised)],
        q: Annotated[PageQuery, Depends(page_query)],
        fields: Annotated[str | None, Query(max_length=4000, description="Comma-separated fields to return "
                                           "(change_version and the natural key always come).")] = None,
    ) -> Response:
        strict(request, page_params | {"fields"})
        ds, grant = in_scope(dataset.value, grant)
        return serve_page(request, ds, grant, "changes", q, _parse_fields(fields))

    @app.get("/v1/feeds/{dataset}/deletes", tags=["feeds"], responses=_data_responses(),
             summary="Deletes (tombstones) within a change-version range, each with its natural key")
    def deletes(
        request: Request,
        dataset: DatasetPath,
        grant: Annotated[Grant, Depends(authorised)],
        q: Annotated[PageQuery, Depends(page_query)],
    ) -> Response:
        strict(request, page_params)
        ds, grant = in_scope(dataset.value, grant)
        return serve_page(request, ds, grant, "deletes", q, None)

    @app.get("/v1/feeds/{dataset}/keyChanges", tags=["feeds"], response_model=KeyChangesPage,
             responses={**_NOT_MODIFIED, **_responses(400, 401, 403, 404, 410, 429, 503)},
             summary="Natural-key changes (renames) within a change-version range, old and new key values (Ed-Fi)")
    def key_changes(
        request: Request,
        dataset: DatasetPath,
        grant: Annotated[Grant, Depends(authorised)],
        min_change_version: MinVersion = None,
        max_change_version: MaxVersion = None,
        limit: Limit = None,
        cursor: CursorParam = None,
    ) -> Response:
        strict(request, {"min_change_version", "max_change_version", "limit", "cursor"})
        ds, grant = in_scope(dataset.value, grant)
        scope = _scope(grant)
        size = limit if limit is not None else config.default_limit
        if cursor is not None:
            try:
                cur = cursors.decode(cursor, secret, dataset=ds.name, kind="keyChanges", scope=scope)  # type: ignore[arg-type]
            except cursors.CursorError as exc:
                raise ApiError(400, "bad_parameter", f"query parameter 'cursor': {exc}") from None
            if (min_change_version is not None and min_change_version != cur.min) or (
                    max_change_version is not None and max_change_version != cur.max):
                raise ApiError(400, "bad_parameter", "query parameters min/max_change_version conflict with the "
                               "cursor's; the cursor fixes the pass: drop them or start a new pass")
            snapshot, after, low, high = cur.snapshot, cur.after, cur.min, cur.max
            if limit is None and cur.limit is not None:
                size = min(cur.limit, config.max_limit)
        else:
            snapshot = current_snapshot()
            low = min_change_version if min_change_version is not None else 0
            high = max_change_version if max_change_version is not None else max(
                int(scoped_versions(snapshot, ds, grant)["newest_change_version"]), low - 1)
            if low > high + 1:
                raise ApiError(400, "bad_parameter", f"min_change_version={low} is greater than "
                               f"max_change_version={high}; nothing can match")
            after = low - 1
        tag = etag({"kind": "keyChanges", "snapshot": snapshot, "dataset": ds.name, "after": after, "min": low,
                    "max": high, "limit": size, "scope": scope})
        cached = not_modified(request, tag, snapshot)
        if cached is not None:
            return cached
        try:
            page = fetch_key_changes(pool, snapshot, ds, after=after, low=low, high=high, limit=size,
                                     districts=grant.districts)
        except SnapshotGone as exc:
            raise ApiError(410, "gone", f"{exc} (the pass must be restarted)") from None
        next_cursor = None
        if page.has_more and page.last_change_version is not None:
            next_cursor = cursors.encode(cursors.Cursor(
                snapshot=snapshot, dataset=ds.name, kind="keyChanges", after=page.last_change_version,  # type: ignore[arg-type]
                min=low, max=high, fields=None, scope=scope, limit=size), secret)
        body = {"dataset": ds.name, "snapshot": snapshot,
                "change_versions": {"min": low, "max": high, "after": after, "last": page.last_change_version},
                "count": len(page.records), "next_cursor": next_cursor, "records": page.records}
        encoded = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        digest = hashlib.sha256(encoded).hexdigest()
        try:
            audit_log.append(key_id=grant.key_id, consumer=grant.consumer, dataset=ds.name, endpoint="keyChanges",
                             params={"min": low, "max": high, "after": after, "limit": size,
                                     "cursor": cursor is not None},
                             rows=len(page.records), fields=["change_version", "oldKeyValues", "newKeyValues"],
                             personal=False, digest=digest, snapshot=snapshot)
        except AuditError:
            raise ApiError(503, "audit_unavailable", "the audit log cannot be written right now, so no data is "
                           "served; retry later") from None
        return Response(encoded, media_type="application/json",
                        headers={"ETag": tag, "X-Snapshot": snapshot, "X-Content-SHA256": digest,
                                 "Cache-Control": "private, no-cache"})

    def serve_page(request: Request, ds: Dataset, grant: Grant, kind: cursors.Kind, q: PageQuery,
                   requested: list[str] | None) -> Response:
        min_change_version, max_change_version, limit, cursor_text = (
            q.min_change_version, q.max_change_version, q.limit, q.cursor)
        try:
            fmt = negotiate(q.format, q.accept)
        except FormatError as exc:
            raise ApiError(400, "bad_parameter", str(exc)) from None
        except NotAcceptable as exc:
            raise ApiError(406, "not_acceptable", str(exc)) from None
        scope = _scope(grant)
        size = limit if limit is not None else config.default_limit
        if cursor_text is not None:
            try:
                cur = cursors.decode(cursor_text, secret, dataset=ds.name, kind=kind, scope=scope)
            except cursors.CursorError as exc:
                raise ApiError(400, "bad_parameter", f"query parameter 'cursor': {exc}") from None
            for name, given, fixed in (("min_change_version", min_change_version, cur.min),
                                       ("max_change_version", max_change_version, cur.max)):
                if given is not None and given != fixed:
                    raise ApiError(400, "bad_parameter", f"query parameter {name!r}={given} conflicts with the "
                                   f"cursor's {fixed}; the cursor fixes the pass: drop {name} or start a new pass")
            if requested is not None and tuple(requested) != cur.fields:
                raise ApiError(400, "bad_parameter", "query parameter 'fields' differs from the cursor's; the "
                               "cursor fixes the fields of the pass: drop fields or start a new pass")
            snapshot, after, low, high, requested = cur.snapshot, cur.after, cur.min, cur.max, (
                list(cur.fields) if cur.fields is not None else None)
            if limit is None and cur.limit is not None:  # next_cursor alone keeps the pass's page size
                size = min(cur.limit, config.max_limit)
        else:
            snapshot = current_snapshot()
            low = min_change_version if min_change_version is not None else 0
            if max_change_version is not None:
                high = max_change_version
            else:  # the newest the key may see; past it, the empty window [min, min - 1]: nothing new yet
                high = max(int(scoped_versions(snapshot, ds, grant)["newest_change_version"]), low - 1)
            if low > high + 1:  # [n, n - 1] is the empty window a pass past the newest returns: accepted back
                raise ApiError(400, "bad_parameter", f"min_change_version={low} is greater than "
                               f"max_change_version={high}; nothing can match")
            after = low - 1
        tag = etag({"kind": kind, "snapshot": snapshot, "dataset": ds.name, "after": after, "min": low, "max": high,
                    "fields": requested, "limit": size, "scope": scope, "format": fmt})
        cached = not_modified(request, tag, snapshot)
        if cached is not None:
            return cached
        try:  # the same scoped, masked page push subscriptions deliver (feeds.delivery)
            page, table, wanted = masked_page(pool, snapshot, ds, kind, Window(after, low, high, size),
                                              districts=grant.districts, personal=grant.personal, secret=secret,
                                              requested=requested)
        except FieldError as exc:
            raise ApiError(400, "bad_parameter", f"query parameter 'fields': {exc}") from None
        except SnapshotGone as exc:
            raise ApiError(410, "gone", f"{exc} (the pass must be restarted)") from None
        next_cursor = _next_cursor(page, snapshot, ds, kind, low, high, requested, scope, size)
        envelope = {
            "dataset": ds.name,
            "snapshot": snapshot,
            "change_versions": {"min": low, "max": high, "after": after, "last": page.last_change_version},
            "count": page.count,
            "next_cursor": next_cursor,
        }
        encoded = Encoded.of(fmt, encode(fmt, table, envelope))
        personal_fields = sorted(set(wanted) & set(ds.entity.pii_fields()))
        try:
            audit_log.append(
                key_id=grant.key_id, consumer=grant.consumer, dataset=ds.name,
                endpoint=kind, params={"min": low, "max": high, "after": after, "limit": size, "fields": requested,
                                       "format": fmt, "cursor": cursor_text is not None},
                rows=page.count, fields=wanted, personal=grant.personal and bool(personal_fields),
                digest=encoded.digest, snapshot=snapshot,
            )
        except AuditError as exc:
            log.error("feed API: audit row not written for key %s on %s: %s", grant.key_id, ds.name,
                      type(exc).__name__)
            raise ApiError(503, "audit_unavailable", "the audit log cannot be written right now, so no data is "
                           "served; retry later") from None
        headers = {
            "ETag": tag,
            "X-Snapshot": snapshot,
            "X-Record-Count": str(page.count),
            "X-Content-SHA256": encoded.digest,
            "Content-Length": str(sum(len(c) for c in encoded.chunks)),
            "Cache-Control": "private, no-cache",
        }
        if next_cursor is not None:
            headers["X-Next-Cursor"] = next_cursor
            next_url = request.url.remove_query_params(["cursor", "min_change_version", "max_change_version",
                                                        "fields"]).include_query_params(cursor=next_cursor)
            headers["Link"] = f'<{next_url}>; rel="next"'
        if fmt in ("csv", "parquet"):
            headers["Content-Disposition"] = (f'attachment; filename="{ds.name}-{snapshot}-{after + 1}.'
                                              f'{"csv" if fmt == "csv" else "parquet"}"')
        return StreamingResponse(_stream(encoded.chunks), media_type=encoded.media_type, headers=headers)

    def _next_cursor(page: Page, snapshot: str, ds: Dataset, kind: cursors.Kind, low: int, high: int,
                     requested: list[str] | None, scope: str, size: int) -> str | None:
        if not page.has_more or page.last_change_version is None:
            return None
        return cursors.encode(cursors.Cursor(snapshot=snapshot, dataset=ds.name, kind=kind,
                                             after=page.last_change_version, min=low, max=high,
                                             fields=tuple(requested) if requested is not None else None,
                                             scope=scope, limit=size), secret)

    add_subscription_routes(app, config, keystore, authorised, ApiError)  # /v1/subscriptions (push)

    default_openapi = app.openapi

    def honest_openapi() -> dict[str, Any]:
        """FastAPI documents 422 on every operation with parameters; this API answers 400 instead, so 422 goes."""
        if app.openapi_schema is None:
            schema = default_openapi()
            for item in schema.get("paths", {}).values():
                for operation in item.values():
                    operation.get("responses", {}).pop("422", None)
            components = schema.get("components", {}).get("schemas", {})
            for name in ("HTTPValidationError", "ValidationError"):
                unused = components.pop(name, None)
                if unused is not None and f"#/components/schemas/{name}" in json.dumps(schema):
                    components[name] = unused  # still referenced by something else: keep it
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = honest_openapi  # type: ignore[method-assign]

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        try:
            version: str | None = pool.current()
        except NoSnapshot:
            version = None
        return {"status": "ok", "snapshot": version, "time": datetime.now(timezone.utc).isoformat()}

    return app


def _scope(grant: Grant) -> str:
    return cursors.scope_digest(grant.key_id, grant.districts, grant.personal)


def _parse_fields(fields: str | None) -> list[str] | None:
    """``a,b,c`` → ['a', 'b', 'c'] (order kept, duplicates dropped); empty entries are a 400."""
    if fields is None:
        return None
    names = [f.strip() for f in fields.split(",")]
    if not names or any(not n for n in names):
        raise ApiError(400, "bad_parameter", "query parameter 'fields': give a comma-separated list of field names "
                       "without empty entries (GET /v1/feeds/{dataset}/schema lists them)")
    return list(dict.fromkeys(names))


async def _stream(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk

