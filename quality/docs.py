"""GX Data Docs for every validation run, under IEHUB_HOME/quality/docs, with bounded history.

Results are stored without row values (counts and percentages only), so the pages never show
personal data; the rows themselves are in quarantine, where access is governed.
"""
from __future__ import annotations

import fcntl
import logging
import shutil
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

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
    site = {"class_name": "SiteBuilder", "show_how_to_buttons": False,
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir(home))},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"}}
    if context.get_config().data_docs_sites != {"local_site": site}:
        context.variables.data_docs_sites = {"local_site": site}
        context.variables.save()
    return context


def store_results(home: Path, *, entity: str, source: str, batch_id: str, results: list[Any]) -> None:
    """Keep this run's results (values stripped) and only the newest runs per entity."""
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    with _locked(home):
        store = _context(home).validation_results_store
        now = datetime.now(timezone.utc)
        for part, result in enumerate(results):
            for r in result.results:
                for key in _VALUE_KEYS:
                    r.result.pop(key, None)
            run = RunIdentifier(run_name=batch_id if len(results) == 1 else f"{batch_id}.part{part + 1}", run_time=now)
            store.set(ValidationResultIdentifier(ExpectationSuiteIdentifier(entity), run, source), result)
        keys = [k for k in store.list_keys() if k.expectation_suite_identifier.name == entity]
        keys.sort(key=lambda k: str(k.run_id.run_time))
        for old in keys[:-HISTORY_PER_ENTITY]:
            store.remove_key(old)


def build_site(home: Path) -> Path | None:
    """Rebuild the Data Docs site from the kept results (once per sync run, not per batch)."""
    if not (home / "quality" / "gx").exists():
        return None
    with _locked(home):
        context = _context(home)
        shutil.rmtree(docs_dir(home) / "validations", ignore_errors=True)
        context.build_data_docs()
    log.info("quality Data Docs: %s", docs_dir(home) / "index.html")
    return docs_dir(home) / "index.html"


def publish(home: Path, *, entity: str, source: str, batch_id: str, results: list[Any]) -> Path | None:
    """Store one run's results and rebuild the site."""
    store_results(home, entity=entity, source=source, batch_id=batch_id, results=results)
    return build_site(home)
