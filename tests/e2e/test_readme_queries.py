"""Every example query in the README's "Asking questions" section returns sensible rows on demo data (#17 item 4).

The demo's sources (all sandboxes, small scale) are synced and built once; each `iehub sql "…"`
of that section is run as printed. A query that returns nothing, or a shortage list that is all
surpluses, is a README that misleads the analyst who copies it.
"""
from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from iehub.cli import main

README = Path(__file__).resolve().parents[2] / "README.md"
SOURCES = ["lingang_platform", "municipal_projects", "lingang_group", "district_yangpu", "district_minhang",
           "district_jiading"]


def readme_queries() -> list[str]:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Asking questions", 1)[1].split("\n## ", 1)[0]
    return [" ".join(q.split()) for q in re.findall(r'iehub sql "(.*?)"', section, flags=re.S)]


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from iehub import pipeline
    from iehub.config import Settings
    from iehub.sandboxes import systems
    from warehouse.build import build

    home = tmp_path_factory.mktemp("readme") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IEHUB_HOME", str(home))
        settings = Settings.from_env(home).ensure()
        running = []
        try:
            for system in systems().values():
                run = system.start(settings, scale=0.05, seed=7)
                running.append(run)
                for k, v in run.env.items():
                    mp.setenv(k, v)
            for source in SOURCES:
                pipeline.sync(settings, [source])
        finally:
            for run in running:
                run.stop()
        build(home, settings.catalog())
        yield home


def run_sql(home: Path, query: str) -> list[dict[str, str]]:
    result = CliRunner().invoke(main, ["--home", str(home), "sql", "--format", "csv", query],
                                env={"IEHUB_HOME": str(home)})
    assert result.exit_code == 0, f"{query}\n{result.output}"
    return list(csv.DictReader(io.StringIO(result.output)))


def test_the_readme_has_the_examples_this_test_reads() -> None:
    queries = readme_queries()
    assert len(queries) >= 5 and any("talent_balance_by_major" in q for q in queries)


def test_every_readme_query_returns_rows(demo_home: Path) -> None:
    for query in readme_queries():
        assert run_sql(demo_home, query), f"README query returned no rows on demo data: {query}"


def test_readme_queries_answer_their_question(demo_home: Path) -> None:
    queries = {q.split(" from ", 1)[1].split()[0]: q for q in readme_queries()}
    coverage = run_sql(demo_home, queries["marts.talent_balance_by_major"])
    ratios = [float(r["coverage"]) for r in coverage]
    assert ratios == sorted(ratios) and ratios[0] < 1  # least covered first, and it is a real shortage
    as_of = run_sql(demo_home, queries["core.project_history"])
    assert sum(int(r["projects"]) for r in as_of) > 0
    indicators = run_sql(demo_home, queries["marts.evaluation_indicators"])
    codes = [r["indicator_code"] for r in indicators]
    assert codes == sorted(codes) and len(codes) == 13
    values = {r["indicator_code"]: r["value"] for r in indicators}
    assert values["EI08"] not in ("", None) and 0 < float(values["EI08"]) <= 100  # employment rate computed
    assert all(re.fullmatch(r"-?\d+(\.\d{1,2})?", v) for v in values.values() if v)  # rounded
