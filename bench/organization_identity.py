"""What one organisation across sources costs a build: the golden ``core.organization`` at 100k organisations.

    .venv/bin/python bench/organization_identity.py [--orgs 100000] [--projects 1000000]

Lands N organisations from the municipal database (all with a USCC) and N/2 from 临港集团 (half
sharing a USCC with the municipal ones, half without one and spelled with 有限责任公司 and
full-width brackets), plus projects of a district whose 牵头单位 names them (a tenth unknown).
Then times (wall and process CPU): the first build, an incremental build after 1% of the district's projects changed
(the project mentions are re-read, every organisation is re-resolved and diffed), and a build
with nothing new. Prints the organisation step's seconds (``EntityBuild.seconds`` of
``organization``: per-source rows + mentions + matching + golden diff). Asserts nothing.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo, for the tests' lander


from schemas import get_entity
from schemas.lineage import add_lineage
from schemas.validators import org_code_check_char, uscc_check_char
from tests.unit.warehouse.warehouse_fixtures import land as land_std
from warehouse.build import build
from warehouse.catalog import Catalog


def usccs(n: int) -> list[str]:
    out = []
    for i in range(n):
        org_code = f"{i:08d}"
        first17 = "91310115" + org_code + org_code_check_char(org_code)
        out.append(first17 + uscc_check_char(first17))
    return out


def land(home: Path, catalog: Catalog, source: str, entity_name: str, table: pa.Table, window: str) -> None:
    """Land business columns as a sync would: typed to the schema (absent fields NULL), with lineage."""
    entity = get_entity(entity_name)
    table = pa.table({f.name: (table.column(f.name).cast(f.type) if f.name in table.column_names
                               else pa.nulls(table.num_rows, f.type)) for f in entity.arrow_schema(lineage=False)})
    landed = add_lineage(table, entity, source=source, batch_id="b", extracted_at=datetime.now(timezone.utc))
    land_std(home, catalog, source, window, landed, entity=entity)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orgs", type=int, default=100_000)
    parser.add_argument("--projects", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="iehub-bench-org-")) / "home"
    catalog = Catalog.for_home(home)
    n = args.orgs
    codes = pa.table({"i": pa.array(range(n), pa.int64()), "uscc": pa.array(usccs(n))})
    con = duckdb.connect()
    con.register("codes", codes)
    municipal = con.sql("""
        SELECT uscc AS org_id, uscc, '上海临港测试' || i || '科技有限公司' AS name, 'enterprise' AS org_type,
               '310115' AS district_code, TIMESTAMPTZ '2025-01-01 00:00:00+00' AS updated_at FROM codes""").to_arrow_table()
    lingang = con.sql("""
        SELECT CASE WHEN i % 4 = 0 THEN uscc ELSE 'lingang_group:' || i END AS org_id,
               CASE WHEN i % 4 = 0 THEN uscc END AS uscc,
               '上海临港测试' || i || '科技有限责任公司' AS name, 'IC' AS industry_code,
               TIMESTAMPTZ '2025-02-01 00:00:00+00' AS updated_at
        FROM codes WHERE i % 2 = 0""").to_arrow_table()
    project_sql = """
        SELECT 'YP' || j AS project_id, '项目 ' || j AS title,
               CASE WHEN j % 10 = 0 THEN '未登记单位' || (j % {n}) || '有限公司'
                    ELSE '上海临港测试' || (j % {n}) || '科技有限公司' END AS lead_org_name,
               '310110' AS district_code, {status} AS status
        FROM range({projects}) AS t(j) WHERE {where}"""
    land(home, catalog, "municipal_projects", "organization", municipal, "w1")
    land(home, catalog, "lingang_group", "organization", lingang, "w1")
    land(home, catalog, "district_yangpu", "project",
         con.sql(project_sql.format(n=n, projects=args.projects, status="'在建'", where="true")).to_arrow_table(), "w1")
    print(f"home {home}: {n:,} + {lingang.num_rows:,} organisation rows, {args.projects:,} district projects")

    def run(label: str) -> None:
        t0, c0 = time.perf_counter(), time.process_time()
        result = build(home, catalog)
        org = result.entities["organization"]
        # CPU seconds (all DuckDB threads) beside wall time: on a shared machine wall time is noise
        print(f"{label:<44} build {time.perf_counter() - t0:6.2f} s (cpu {time.process_time() - c0:6.2f} s), "
              f"organisation step {org.seconds:5.2f} s, {org.rows:,} organisations, {org.changes:,} changes")

    run("first build")
    land(home, catalog, "district_yangpu", "project",
         con.sql(project_sql.format(n=n, projects=args.projects, status="'结项'", where="j % 100 = 0")).to_arrow_table(),
         "w2")
    run("after 1% of the district's projects changed")
    run("nothing new landed")
    con.close()
    catalog.dispose()


if __name__ == "__main__":
    main()
