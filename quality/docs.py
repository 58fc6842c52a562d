"""GX Data Docs for every validation run, under IEHUB_HOME/quality/docs, with bounded history.

Results are stored without row values (counts and percentages only), so the pages never show
personal data; the rows themselves are in quarantine, where access is governed.
"""
from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from quality.offline_docs import Run, make_offline

log = logging.getLogger(__name__)
HISTORY_PER_ENTITY = 20
_VALUE_KEYS = ("partial_unexpected_list", "partial_unexpected_counts", "unexpected_list", "unexpected_index_list",
               "partial_unexpected_index_list", "unexpected_index_query", "unexpected_rows", "details")


def docs_dir(home: Path) -> Path:
    return home / "quality" / "docs"


@contextmanager
def _locked(home: Path) -> Iterator[None]:
    path = home / "quality" / ".docs.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _context(home: Path) -> Any:
    import great_expectations as gx

    context = gx.get_context(mode="file", project_root_dir=str(home / "quality"))
    if context.variables.analytics_enabled is not False:  # saved in great_expectations.yml, for GX's own tools too
        context.variables.analytics_enabled = False
        context.variables.save()
    site = {"class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir(home))},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}
    if context.get_config().data_docs_sites != {"local_site": site}:
        context.variables.data_docs_sites = {"local_site": site}
        context.variables.save()
    return context


def _pending_dir(home: Path) -> Path:
    return home / "quality" / "pending"


def store_results(home: Path, *, entity: str, source: str, batch_id: str, results: list[Any]) -> None:
    """Queue this run's results (values stripped) for the next Data Docs build.

    Results are GX ExpectationSuiteValidationResult documents (or GX objects); they are written
    as JSON without importing Great Expectations, so the validate step of a batch never pays for
    GX's import and file context: `build_site`, once per sync run, moves them into GX's store.
    Only the newest runs per entity are kept while waiting.
    """
    now = datetime.now(timezone.utc)
    folder = _pending_dir(home) / entity
    with _locked(home):
        folder.mkdir(parents=True, exist_ok=True)
        for part, result in enumerate(results):
            doc = result.to_json_dict() if hasattr(result, "to_json_dict") else json.loads(json.dumps(result))
            for r in doc.get("results", []):
                for key in _VALUE_KEYS:
                    (r.get("result") or {}).pop(key, None)
            run_name = batch_id if len(results) == 1 else f"{batch_id}.part{part + 1}"
            entry = {"entity": entity, "source": source, "run_name": run_name, "run_time": now.isoformat(),
                     "result": doc}
            target = folder / f"{now:%Y%m%dT%H%M%S%f}-{part:04d}-{uuid.uuid4().hex[:8]}.json"
            tmp = target.with_suffix(".tmp")
            tmp.write_text(json.dumps(entry, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, target)
        for old in sorted(folder.glob("*.json"))[:-HISTORY_PER_ENTITY]:
            old.unlink(missing_ok=True)


def _ingest_pending(home: Path, context: Any) -> None:
    """Move queued results into GX's validation results store, keeping the newest per entity."""
    from great_expectations.core.expectation_validation_result import expectationSuiteValidationResultSchema
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    store = context.validation_results_store
    entities = set()
    for path in sorted(_pending_dir(home).glob("*/*.json")):
        entry = json.loads(path.read_text(encoding="utf-8"))
        run = RunIdentifier(run_name=entry["run_name"], run_time=datetime.fromisoformat(entry["run_time"]))
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(entry["entity"]), run, entry["source"])
        store.set(key, expectationSuiteValidationResultSchema.load(entry["result"]))
        entities.add(entry["entity"])
        path.unlink()
    for entity in entities:
        keys = [k for k in store.list_keys() if k.expectation_suite_identifier.name == entity]
        keys.sort(key=lambda k: str(k.run_id.run_time))
        for old in keys[:-HISTORY_PER_ENTITY]:
            store.remove_key(old)


def build_site(home: Path) -> Path | None:
    """Rebuild the Data Docs site from the kept results (once per sync run, not per batch)."""
    pending = _pending_dir(home).exists() and any(_pending_dir(home).glob("*/*.json"))
    if not pending and not (home / "quality" / "gx").exists():
        return None
    import quality.expectations  # noqa: F401  (GX renders our custom expectations only once they are registered)

    with _locked(home):
        context = _context(home)
        _ingest_pending(home, context)
        shutil.rmtree(docs_dir(home) / "validations", ignore_errors=True)
        context.build_data_docs()
        make_offline(docs_dir(home), _runs(home, context))  # no CDN, no logo beacon; a static run list
    log.info("quality Data Docs: %s", docs_dir(home) / "index.html")
    return docs_dir(home) / "index.html"


def _runs(home: Path, context: Any) -> list[Run]:
    """Every kept run with its page, for the static index."""
    store, site, runs = context.validation_results_store, docs_dir(home), []
    for key in store.list_keys():
        suite, run = key.expectation_suite_identifier.name, key.run_id
        page = site / "validations" / suite / run.run_name / f"{run.run_time:%Y%m%dT%H%M%S.%fZ}" / \
            f"{key.batch_identifier}.html"
        if page.exists():
            runs.append(Run(entity=suite, source=str(key.batch_identifier), run_name=run.run_name,
                            run_time=run.run_time.isoformat(), success=bool(store.get(key).success),
                            page=page.relative_to(site).as_posix()))
    return runs


def publish(home: Path, *, entity: str, source: str, batch_id: str, results: list[Any]) -> Path | None:
    """Store one run's results and rebuild the site."""
    store_results(home, entity=entity, source=source, batch_id=batch_id, results=results)
    return build_site(home)
