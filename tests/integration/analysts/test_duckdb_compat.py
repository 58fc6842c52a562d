"""A published snapshot opens in DuckDB 1.4 LTS, the line analysts' tools still ship (#17 item 4)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.side_envs import side_env
from warehouse.build import build, readable_by_analysts
from warehouse.catalog import Catalog
from warehouse.publish import current_path
from tests.unit.warehouse.warehouse_fixtures import land, notice_rows

READ_EVERY_TABLE = """
import json, sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
tables = con.execute("select schema_name, table_name from duckdb_tables() union all "
                     "select schema_name, view_name from duckdb_views() where not internal order by all").fetchall()
counts = {f"{s}.{t}": con.execute(f'select count(*) from (select * from "{s}"."{t}")').fetchone()[0] for s, t in tables}
notice = con.execute("select notice_id, title from core.notice order by 1").fetchall()
print(json.dumps({"version": duckdb.__version__, "counts": counts, "notice": notice}, ensure_ascii=False))
"""


def built_home(tmp_path: Path) -> Path:
    """A hub with one notice, built with every entity, mart and ref table (as analysts get it)."""
    home = tmp_path / "home"
    catalog = Catalog.for_home(home)
    land(home, catalog, "lingang", "w1", notice_rows("lingang", [{"notice_id": "N1", "title": "产教融合通知"}]))
    build(home, catalog)
    catalog.dispose()
    return home


def _read_with_duckdb_14(database: Path) -> dict:
    python = side_env("duckdb14", "duckdb==1.4.*")
    done = subprocess.run([str(python), "-c", READ_EVERY_TABLE, str(database)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_a_published_snapshot_opens_and_reads_in_duckdb_1_4(tmp_path: Path) -> None:
    home = built_home(tmp_path)
    seen = _read_with_duckdb_14(current_path(home))
    assert seen["version"].startswith("1.4.")
    assert seen["notice"] == [["N1", "产教融合通知"]]
    assert {"core.notice", "ops.batches"} <= set(seen["counts"])
    assert any(name.startswith("marts.") for name in seen["counts"])


def test_a_later_incremental_build_stays_readable_in_duckdb_1_4(tmp_path: Path) -> None:
    home = built_home(tmp_path)
    catalog = Catalog.for_home(home)
    land(home, catalog, "lingang", "w2", notice_rows("lingang", [{"notice_id": "N2", "title": "实习基地申报"}]))
    build(home, catalog)
    catalog.dispose()
    assert readable_by_analysts(home / "warehouse.duckdb")
    assert _read_with_duckdb_14(current_path(home))["notice"] == [["N1", "产教融合通知"], ["N2", "实习基地申报"]]


def test_a_builder_file_in_duckdb_2_format_is_rebuilt_readable(tmp_path: Path) -> None:
    import duckdb

    home = built_home(tmp_path)
    # An older hub wrote its file in DuckDB 2.0's default format: the next build rebuilds it from the lake.
    (home / "warehouse.duckdb").unlink()
    duckdb.connect(str(home / "warehouse.duckdb")).close()
    assert not readable_by_analysts(home / "warehouse.duckdb")
    catalog = Catalog.for_home(home)
    build(home, catalog)
    catalog.dispose()
    assert _read_with_duckdb_14(current_path(home))["notice"] == [["N1", "产教融合通知"]]
