"""The scenario registry: what each benchmark measures, against which peer, and which goal it decides.

A scenario has a name (S1…S8), a description, the scales it runs at (full and ``--quick``), the
goals it decides (a comparison, a threshold and a unit, each computed from the scenario's
measured cases), and a plan: given the scale, it prepares its sources (bench/setups.py, cached)
and returns its cases. A case is one row of the report: the hub's measurement and each peer's,
on the same data, on the same machine, in the same harness run. Every measurement runs in a
fresh process after one warm-up (bench/harness.py).

Scale is the row count of the scenario's main source (Excel: a tenth of it; S6 also runs five
times it). Goals are set at the sizes the issues name (1M rows…); a run at another scale still
prints the figure and says at which scale it was measured. A scenario that runs at two scales
(S1: 1M and 5M) decides each goal once, at the scale its ``scale_rank`` names, and a figure
across scales reads the other scale's cases by ``at_rank`` (bench/harness.py decide_goals).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Callable

from bench.outcome import CaseOutcome
from bench.runner import Measure
from bench.setups import (Context, minhang_excel, municipal_db, municipal_incremental, warehouse_lake,
                          yangpu_csv, yangpu_two_snapshots)

DLT_MISSING = "not installed (pip install -e '.[bench]')"

Outcomes = dict[str, CaseOutcome]


@dataclass(frozen=True)
class Goal:
    """A figure the issues set a target for: `figure(outcomes) <op> threshold`, in `unit`.

    `threshold` None makes a figure that is printed without a verdict (e.g. a ratio to a floor).
    """

    id: str
    text: str
    op: str
    threshold: float | None
    unit: str
    figure: Callable[[Outcomes], float | None]
    nominal_scale: int | None = None
    #: the figure is measured at this multiple of the scenario's scale (S6's big run: 5 × N; Excel: N / 10)
    scale_multiple: float = 1
    #: which of the scenario's scales decides the goal, by position in its list (S1: 0 is 1M, 1 is 5M; --quick:
    #: 50k and 250k); a run at fewer scales (--scale N) decides it at its last one and the report says where
    scale_rank: int = 0

    def __post_init__(self) -> None:
        if self.op not in (">=", "<=", "=="):
            raise ValueError(f"goal {self.id}: op must be >=, <= or ==, not {self.op!r}")
        if self.scale_rank < 0:
            raise ValueError(f"goal {self.id}: scale_rank counts from 0, not {self.scale_rank}")

    def verdict(self, value: float | None) -> str:
        if value is None:
            return "MISS (not measured)"
        if self.threshold is None:
            return "figure"
        ok = {">=": value >= self.threshold, "<=": value <= self.threshold, "==": value == self.threshold}[self.op]
        return "PASS" if ok else "MISS"


@dataclass(frozen=True)
class Peer:
    """A peer's measurement of the same case, or why there is none."""

    label: str
    measure: Measure | None = None
    missing: str | None = None

    def __post_init__(self) -> None:
        if (self.measure is None) == (self.missing is None):
            raise ValueError(f"peer {self.label}: give a measure or a reason it is missing, not both or neither")


@dataclass(frozen=True)
class Case:
    id: str
    label: str
    hub: Measure
    peers: tuple[Peer, ...] = ()
    #: measured by one run without a warm-up in a full run too: a 5M-row source is there for its peak RSS
    #: (stable from run to run), and each extra run of it costs minutes of a run that must fit a session
    once: bool = False


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    description: str
    full_scales: tuple[int, ...]
    quick_scales: tuple[int, ...]
    plan: Callable[[Context], list[Case]]
    goals: tuple[Goal, ...] = field(default_factory=tuple)
    #: cases in a separate process that reports its own cases (S8 runs bench/feed_latency.py)
    external: bool = False


# ------------------------------------------------------------------------------------- helpers
def dlt_missing() -> str | None:
    """Why dlt peers cannot run here, or None when dlt is importable."""
    return None if importlib.util.find_spec("dlt") is not None else DLT_MISSING


def dlt_peer(label: str, measure: Measure) -> Peer:
    missing = dlt_missing()
    return Peer(label, missing=missing) if missing else Peer(label, measure)


def _summary_value(outcomes: Outcomes, case: str, pick: Callable[..., float | None]) -> float | None:
    c = outcomes.get(case)
    if c is None or c.hub.summary is None:
        return None
    return pick(c.hub.summary)


def _median(spread: object) -> float | None:
    return None if spread is None else spread.median  # type: ignore[attr-defined]


def _ratio_of_cases(outcomes: Outcomes, num: str, den: str, pick: Callable[..., float | None]) -> float | None:
    a, b = _summary_value(outcomes, num, pick), _summary_value(outcomes, den, pick)
    if a is None or b is None or b == 0:
        return None
    return a / b


def _peer_ratio(case: str, peer: str) -> Callable[[Outcomes], float | None]:
    return lambda o: o[case].ratio(peer) if case in o else None


def at_rank(case: str, rank: int) -> str:
    """The key of `case` as measured at the scenario's `rank`-th scale: a goal's outcomes hold every scale's cases
    under these keys (besides its own scale's under their plain ids), for figures across scales."""
    return f"{case}@{rank}"


# ------------------------------------------------------------------------------------------ S1
PEER_CX = "dlt sql_table connectorx → duckdb"
#: sources above this many rows are measured once (Case.once)
BIG_ROWS = 1_000_000
PEER_PA = "dlt sql_table pyarrow → duckdb"


def municipal_cases(ctx: Context, dialects: tuple[str, ...] | None = None) -> list[Case]:
    """PostgreSQL and SQLite at 1M; PostgreSQL alone (the dialect the goals are set on) with ``--quick`` and
    above 1M rows, where the case is measured once (S6 reads its peak RSS)."""
    big = ctx.scale > BIG_ROWS
    cases = []
    for dialect in dialects or (("postgresql",) if ctx.quick or big else ("postgresql", "sqlite")):
        db = municipal_db(ctx, dialect, ctx.scale)
        hub = Measure("hub_municipal", {"url": db["url"], "full": True, "source_bytes": db["source_bytes"]})
        peers = tuple(dlt_peer(label, Measure("peer_dlt_sql", {"url": db["url"], "backend": backend,
                                                               "source_bytes": db["source_bytes"]}))
                      for label, backend in ((PEER_CX, "connectorx"), (PEER_PA, "pyarrow")))
        cases.append(Case(f"municipal-{dialect}", f"municipal projects, {dialect} → Parquet → DuckDB (full sync)",
                          hub, peers, once=big))
    return cases


FLOOR_CASES = tuple(f"municipal-floor-{reader}" for reader in ("adbc", "connectorx"))


def floor_cases(ctx: Context) -> list[Case]:
    """The floor of the PostgreSQL full sync (bench/floors.py), one case per reader; the goals take the faster."""
    db = municipal_db(ctx, "postgresql", ctx.scale)
    how = {"adbc": "ADBC, streamed", "connectorx": "connectorx, 2 key ranges in parallel"}
    return [Case(case_id, f"floor: PostgreSQL → Arrow ({how[reader]}) → Parquet → DuckDB table "
                          "(no mapping, gate or versioning)",
                 Measure("floor_sql", {"url": db["url"], "reader": reader, "source_bytes": db["source_bytes"]}),
                 once=ctx.scale > BIG_ROWS)
            for case_id, reader in zip(FLOOR_CASES, ("adbc", "connectorx"))]


def s1_cases(ctx: Context) -> list[Case]:
    return [*municipal_cases(ctx), *floor_cases(ctx)]


def _rate(o: Outcomes, case: str) -> float | None:
    c = o.get(case)
    if c is None or c.hub.summary is None or c.hub.summary.rows_per_s is None:
        return None
    return c.hub.summary.rows_per_s.median


def _floor(o: Outcomes) -> str | None:
    """The faster floor case measured (by rows/s), or None when neither was."""
    rates = {case: r for case in FLOOR_CASES if (r := _rate(o, case))}
    return max(rates, key=lambda case: rates[case]) if rates else None


def _floor_seconds(o: Outcomes) -> float | None:
    case = _floor(o)
    return None if case is None else o[case].hub.summary.seconds.median  # type: ignore[union-attr]


def _hub_over_floor(o: Outcomes) -> float | None:
    """Hub time / floor time on the same table (by throughput, so a different row count is not flattering)."""
    case, hub = _floor(o), _rate(o, "municipal-postgresql")
    return None if case is None or not hub else _rate(o, case) / hub  # type: ignore[operator]


def _dlt_over_floor(o: Outcomes) -> float | None:
    """dlt connectorx's time / the floor's: the most any pipeline loading this table could reach against dlt here."""
    case, c = _floor(o), o.get("municipal-postgresql")
    peer = None if c is None else c.peers.get(PEER_CX)
    if case is None or peer is None or peer.summary is None or not peer.summary.rows_per_s:
        return None
    return _rate(o, case) / peer.summary.rows_per_s.median  # type: ignore[operator]


def _build_ratio(o: Outcomes) -> float | None:
    """The PostgreSQL full sync's build stage at the second scale (5M) over the first (1M)."""
    builds = [_summary_value(o, at_rank("municipal-postgresql", rank), lambda s: _median(s.stage("build")))
              for rank in (1, 0)]
    return None if None in builds or not builds[1] else builds[0] / builds[1]  # type: ignore[operator]


def _s1_floor_goals(rank: int, scale: int, label: str) -> tuple[Goal, ...]:
    return (Goal(f"municipal_{label}_floor_seconds", f"S1 floor at {label.upper()} (read + Parquet + DuckDB, the "
                 "faster of ADBC and connectorx)", "<=", None, "s", _floor_seconds, nominal_scale=scale,
                 scale_rank=rank),
            Goal(f"municipal_{label}_hub_over_floor", f"hub / floor at {label.upper()}: the hub's full sync time over "
                 "the floor's", "<=", None, "×", _hub_over_floor, nominal_scale=scale, scale_rank=rank),
            Goal(f"municipal_{label}_dlt_over_floor", f"dlt connectorx / floor at {label.upper()}: the most any "
                 "pipeline could reach against dlt here", ">=", None, "×", _dlt_over_floor, nominal_scale=scale,
                 scale_rank=rank))


S1 = Scenario(
    "S1", "municipal database full sync",
    "The municipal project database (projects table) read in full from PostgreSQL and from SQLite (--quick: "
    "PostgreSQL only), "
    "standardised, gated, landed as Parquet and built into DuckDB; dlt's sql_table (connectorx and pyarrow "
    "backends) loads the same table into DuckDB, without validation. The floor (bench/floors.py) reads the "
    "same PostgreSQL table with ADBC and with connectorx into Arrow, writes Parquet and loads a DuckDB table.",
    full_scales=(1_000_000, 5_000_000), quick_scales=(50_000, 250_000), plan=s1_cases,
    goals=(Goal("municipal_1m_vs_dlt", "PostgreSQL → Parquet → DuckDB throughput vs dlt sql_table connectorx at 1M "
                "(hub with its quality gate, dlt without)", ">=", 1.2, "× dlt",
                _peer_ratio("municipal-postgresql", PEER_CX), nominal_scale=1_000_000),
           *_s1_floor_goals(0, 1_000_000, "1m"),
           Goal("municipal_5m_vs_dlt", "PostgreSQL → Parquet → DuckDB throughput vs dlt sql_table connectorx at 5M "
                "(hub with its quality gate, dlt without)", ">=", 1.2, "× dlt",
                _peer_ratio("municipal-postgresql", PEER_CX), nominal_scale=5_000_000, scale_rank=1),
           Goal("build_ratio_5m_1m", "PostgreSQL full sync: build stage at 5M / build stage at 1M", "<=", 5.5, "×",
                _build_ratio, nominal_scale=5_000_000, scale_rank=1),
           *_s1_floor_goals(1, 5_000_000, "5m")),
)


# ------------------------------------------------------------------------------------------ S2
PEER_REST = "dlt RESTClient → parquet → duckdb"


def lingang_case(ctx: Context, dirty_ratio: float, case_id: str, label: str, with_peer: bool) -> Case:
    assert ctx.servers is not None, "the harness gives every plan a server pool"
    server = ctx.servers.lingang(ctx.scale, ctx.seed, dirty_ratio)
    params = {k: server[k] for k in ("base_url", "client_id", "client_secret", "source_bytes")}
    peers = ()
    if with_peer:
        peers = (dlt_peer(PEER_REST, Measure("peer_dlt_rest", {**params, "modules": server["modules"]})),)
    return Case(case_id, label, Measure("hub_lingang", params), peers)


S2 = Scenario(
    "S2", "Lingang API full sync over loopback",
    "Every module of the simulated Lingang platform (token auth, page/pageSize paging, JSON envelopes; "
    "the server in its own process) synced in full and built into DuckDB; dlt's RESTClient with the same "
    "auth and paging writes the same records as Parquet load files into DuckDB.",
    full_scales=(1_000_000,), quick_scales=(50_000,),
    plan=lambda ctx: [lingang_case(ctx, 0.01, "lingang", "Lingang platform, 6 modules, HTTP → DuckDB", True)],
    goals=(Goal("lingang_vs_dlt", "Lingang API 1M full sync vs dlt RESTClient → Parquet (hub with its quality gate, "
                "dlt without)", ">=", 2.0, "× dlt", _peer_ratio("lingang", PEER_REST), nominal_scale=1_000_000),),
)


# ------------------------------------------------------------------------------------------ S3
PEER_CSV = "dlt filesystem read_csv(gbk) → parquet → duckdb"


def csv_case(ctx: Context, dirty_ratio: float, case_id: str, label: str, with_peer: bool) -> Case:
    drop = yangpu_csv(ctx, ctx.scale, dirty_ratio)
    hub = Measure("hub_district", {"source": "district_yangpu", "stream": "projects", "drop_env": "IEHUB_YANGPU_DROP",
                                   "drop": drop["drop"], "source_bytes": drop["source_bytes"]})
    peers = ()
    if with_peer:
        peers = (dlt_peer(PEER_CSV, Measure("peer_dlt_csv", {"drop": drop["drop"], "glob": "*.csv", "encoding": "gbk",
                                                             "source_bytes": drop["source_bytes"]})),)
    return Case(case_id, label, hub, peers)


def district_cases(ctx: Context) -> list[Case]:
    excel = minhang_excel(ctx, max(1_000, ctx.scale // 10))
    return [
        csv_case(ctx, 0.001, "yangpu-csv", "杨浦 GBK CSV snapshot → DuckDB", True),
        Case("minhang-excel", f"闵行 Excel workbook ({excel['rows']:,} rows) → DuckDB",
             Measure("hub_district", {"source": "district_minhang", "stream": "projects",
                                      "drop_env": "IEHUB_MINHANG_DROP", "drop": excel["drop"],
                                      "source_bytes": excel["source_bytes"]}),
             (Peer("dlt", missing="no peer: dlt ships no Excel reader"),)),
    ]


def _sync_rate(case: str) -> Callable[[Outcomes], float | None]:
    def figure(o: Outcomes) -> float | None:
        c = o.get(case)
        if c is None or c.hub.summary is None or not c.hub.summary.rows:
            return None
        sync = c.hub.summary.sync_seconds()
        return None if sync is None or sync.median <= 0 else c.hub.summary.rows / sync.median
    return figure


S3 = Scenario(
    "S3", "district files: GBK CSV and Excel",
    "杨浦's daily GBK CSV snapshot and 闵行's monthly Excel workbook (title row, merged headers, 合计 row) synced "
    "end to end (gate included) and built; dlt's filesystem source reads the same CSV with its read_csv reader "
    "(the one that takes an encoding) into DuckDB.",
    full_scales=(1_000_000,), quick_scales=(50_000,), plan=district_cases,
    goals=(Goal("csv_1m_rows_per_s", "杨浦 GBK CSV end to end with the quality gate (extract → land)", ">=",
                500_000, "rows/s", _sync_rate("yangpu-csv"), nominal_scale=1_000_000),
           Goal("excel_100k_rows_per_s", "闵行 Excel end to end with the quality gate (extract → land)", ">=",
                50_000, "rows/s", _sync_rate("minhang-excel"), nominal_scale=100_000, scale_multiple=0.1)),
)


# ------------------------------------------------------------------------------------------ S4
def validation_cases(ctx: Context) -> list[Case]:
    return [
        lingang_case(ctx, 0.0, "lingang-clean", "Lingang platform, clean records", False),
        lingang_case(ctx, 0.01, "lingang-dirty", "Lingang platform, 1% bad records", False),
        csv_case(ctx, 0.0, "yangpu-clean", "杨浦 GBK CSV, clean rows", False),
        csv_case(ctx, 0.01, "yangpu-dirty", "杨浦 GBK CSV, 1% bad rows", False),
        *[Case(c.id, c.label.replace("(full sync)", "(as generated: ≈1–3% dirty; no clean variant)"), c.hub)
          for c in municipal_cases(ctx, ("postgresql",))],
    ]


def _share(case: str) -> Callable[[Outcomes], float | None]:
    return lambda o: _summary_value(o, case, lambda s: _median(s.validate_share()))


S4 = Scenario(
    "S4", "validation share of the sync",
    "The quality gate's share of each sync's time (validate / extract+standardise+validate+land) on clean "
    "data and on data with 1% bad rows: the Lingang API, the 杨浦 CSV, and the municipal database (PostgreSQL, "
    "S1's measurement) as its sandbox generates it. dlt does not validate, so there is no peer.",
    full_scales=(1_000_000,), quick_scales=(50_000,), plan=validation_cases,
    goals=(Goal("lingang_validation_share", "Lingang validation share of sync time (1% bad records)", "<=", 0.25,
                "share", _share("lingang-dirty"), nominal_scale=1_000_000),
           Goal("lingang_validation_share_clean", "Lingang validation share of sync time (clean)", "<=", 0.25,
                "share", _share("lingang-clean"), nominal_scale=1_000_000),
           Goal("csv_validation_share_clean", "杨浦 CSV validation share (clean)", "<=", None, "share",
                _share("yangpu-clean")),
           Goal("csv_validation_share_dirty", "杨浦 CSV validation share (1% bad rows)", "<=", None, "share",
                _share("yangpu-dirty"))),
)


# ------------------------------------------------------------------------------------------ S5
PEER_INCREMENTAL = "dlt sql_table incremental merge (connectorx) → duckdb"


def incremental_cases(ctx: Context) -> list[Case]:
    inc = municipal_incremental(ctx, ctx.scale)
    diff = yangpu_two_snapshots(ctx, ctx.scale)
    url, size = inc["url"], inc["source_bytes"]
    none = (Peer("dlt", missing="not measured: dlt peers cover full loads (S1–S3)"),)
    # dlt's incremental merge of the same change, from the state its own full load left before it
    merge = (dlt_peer(PEER_INCREMENTAL, Measure("peer_dlt_sql_incremental", {"url": url, "dlt_dir": inc["dlt_dir"]}))
             if inc.get("dlt_dir") else Peer(PEER_INCREMENTAL, missing=dlt_missing() or "dlt was not prepared"),)
    return [
        Case("municipal-full", "municipal PostgreSQL, full sync of the changed database (reference)",
             Measure("hub_municipal", {"url": url, "full": True, "source_bytes": size})),
        # no source_bytes: an incremental pass reads the changed rows, not the table, so MB/s would mislead
        Case("municipal-incremental", "municipal PostgreSQL, incremental sync after 1% changed",
             Measure("hub_municipal", {"url": url, "full": False, "template_home": inc["home_before_change"]}), merge),
        Case("municipal-nochange", "municipal PostgreSQL, sync with nothing changed",
             Measure("hub_municipal", {"url": url, "full": False, "template_home": inc["home_after_change"]}), none),
        Case("municipal-incremental-floor", "floor: the changed rows (ADBC) → Parquet → merged into a DuckDB copy "
             "of the table, in place (no versions, history, marts or published snapshot)",
             Measure("floor_sql_incremental", {"url": url, "floor_db": inc["floor_db"], "cursor": inc["floor_cursor"]})),
        Case("yangpu-diff", f"杨浦 snapshot diff, 2 × {diff['rows']:,} rows, 1% changed (file kind alone)",
             Measure("hub_snapshot_diff", {"source": "district_yangpu", "stream": "projects",
                                           "drop_env": "IEHUB_YANGPU_DROP", "drop": diff["drop"],
                                           "template_home": diff["home_day_one"], "snapshot_rows": diff["rows"],
                                           "source_bytes": diff["source_bytes"]}), none),
    ]


S5 = Scenario(
    "S5", "incremental sync",
    "A municipal PostgreSQL database synced once, changed by 1% at the source (updates, inserts, soft and "
    "hard deletes), synced again (sync + build), then synced with nothing changed; each against a full sync "
    "of the same database. And the file kind's diff of two daily 杨浦 snapshots with 1% changed.",
    full_scales=(1_000_000,), quick_scales=(50_000,), plan=incremental_cases,
    goals=(Goal("incremental_share", "incremental sync after 1% changed, share of the full sync's time", "<=", 0.05,
                "share", lambda o: _ratio_of_cases(o, "municipal-incremental", "municipal-full",
                                                   lambda s: s.seconds.median), nominal_scale=1_000_000),
           Goal("nochange_share", "sync with nothing changed, share of the full sync's time", "<=", None, "share",
                lambda o: _ratio_of_cases(o, "municipal-nochange", "municipal-full", lambda s: s.seconds.median)),
           Goal("incremental_over_nochange", "incremental sync after 1% changed / sync with nothing changed (1.0: "
                "all of it fixed cost)", "<=", None, "×",
                lambda o: _ratio_of_cases(o, "municipal-incremental", "municipal-nochange",
                                          lambda s: s.seconds.median)),
           Goal("incremental_floor_share", "floor of the incremental sync (changed rows → Parquet → DuckDB merge), "
                "share of the hub's full sync", "<=", None, "share",
                lambda o: _ratio_of_cases(o, "municipal-incremental-floor", "municipal-full",
                                          lambda s: s.seconds.median)),
           Goal("incremental_vs_dlt", "incremental sync after 1% changed vs dlt's incremental merge (hub with its "
                "quality gate, versions and published snapshot; dlt without)", ">=", None, "× dlt",
                _peer_ratio("municipal-incremental", PEER_INCREMENTAL)),
           Goal("incremental_over_floor", "hub incremental sync / its floor", "<=", None, "×",
                lambda o: _ratio_of_cases(o, "municipal-incremental", "municipal-incremental-floor",
                                          lambda s: s.seconds.median)),
           Goal("snapshot_diff_seconds", "snapshot diff 2 × 1M rows, 1% changed", "<=", 3.0, "s",
                lambda o: _summary_value(o, "yangpu-diff", lambda s: s.seconds.median), nominal_scale=1_000_000)),
)


# ------------------------------------------------------------------------------------------ S6
def memory_cases(ctx: Context) -> list[Case]:
    small, big = ctx.scale, ctx.scale * 5
    cases = []
    for case_id, rows in (("rss-small", small), ("rss-big", big)):
        db = municipal_db(Context(rows, ctx.seed, ctx.quick, ctx.work, ctx.servers), "postgresql", rows)
        cases.append(Case(case_id, f"municipal PostgreSQL full sync, {rows:,} rows (peak RSS)",
                          Measure("hub_municipal", {"url": db["url"], "full": True, "source_bytes": db["source_bytes"]}),
                          once=rows > BIG_ROWS))
    return cases


S6 = Scenario(
    "S6", "peak memory at N and 5N rows",
    "Peak RSS (whole process, native memory included) of the municipal full sync from PostgreSQL at N and at "
    "5N rows: memory must be bounded by batch size, not by source size.",
    full_scales=(1_000_000,), quick_scales=(50_000,), plan=memory_cases,
    goals=(Goal("rss_5m_mb", "peak RSS of the full sync at 5M rows", "<=", 1024, "MB",
                lambda o: _summary_value(o, "rss-big", lambda s: s.peak_rss_mb.median), nominal_scale=5_000_000,
                scale_multiple=5),
           Goal("rss_ratio_5m_1m", "peak RSS at 5M rows / peak RSS at 1M rows", "<=", 1.1, "×",
                lambda o: _ratio_of_cases(o, "rss-big", "rss-small", lambda s: s.peak_rss_mb.median),
                nominal_scale=1_000_000)),
)


# ------------------------------------------------------------------------------------------ S7
def warehouse_cases(ctx: Context) -> list[Case]:
    lake = warehouse_lake(ctx, ctx.scale)
    none = (Peer("dlt", missing="no peer: dlt has no incremental warehouse build"),)
    return [Case("build-full", f"warehouse full build ({lake['rows']:,} projects + reports)",
                 Measure("hub_warehouse_build", {"template_home": lake["home"], "full": True}), none),
            Case("build-incremental", "warehouse incremental build after a 1% change",
                 Measure("hub_warehouse_build", {"template_home": lake["home"], "full": False}), none)]


S7 = Scenario(
    "S7", "warehouse incremental build vs full build",
    "N projects and N reports landed and built once, then a 1% change landed: the incremental build (only "
    "the new batches: change versions, tombstones, history, marts, publish) against `build --full`.",
    full_scales=(1_000_000,), quick_scales=(50_000,), plan=warehouse_cases,
    goals=(Goal("warehouse_incremental_share", "incremental build / full build time", "<=", 0.10, "share",
                lambda o: _ratio_of_cases(o, "build-incremental", "build-full", lambda s: s.seconds.median),
                nominal_scale=1_000_000),),
)


# ------------------------------------------------------------------------------------------ S8
def feed_cases(ctx: Context) -> list[Case]:
    from bench.feed_scenario import feed_latency_cases

    return feed_latency_cases(ctx)


def _feed_figure(case: str, key: str) -> Callable[[Outcomes], float | None]:
    def figure(o: Outcomes) -> float | None:
        c = o.get(case)
        if c is None or c.hub.summary is None:
            return None
        values = [r.extra.get(key) for r in c.hub.summary.runs if r.extra.get(key) is not None]
        if not values:
            return None
        values.sort()
        return float(values[len(values) // 2])
    return figure


S8 = Scenario(
    "S8", "feed API latency during a build",
    "The feed API serving 1000-row pages over N rows to 1 and to 8 concurrent clients while a warehouse build "
    "runs, against the in-process floor (the same page read from DuckDB without HTTP). Runs bench/feed_latency.py.",
    full_scales=(1_000_000,), quick_scales=(50_000,), plan=feed_cases,
    goals=(Goal("feed_p95_1_client_ms", "feed p95, 1 client, 1000-row pages, during a build", "<=", 50, "ms",
                _feed_figure("feed-1", "p95_ms"), nominal_scale=1_000_000),
           Goal("feed_p95_8_clients_ms", "feed p95, 8 clients, 1000-row pages, during a build", "<=", 250, "ms",
                _feed_figure("feed-8", "p95_ms"), nominal_scale=1_000_000),
           Goal("feed_errors", "feed errors during the build (1 and 8 clients)", "==", 0, "errors",
                lambda o: None if _feed_figure("feed-1", "errors")(o) is None or _feed_figure("feed-8", "errors")(o)
                is None else _feed_figure("feed-1", "errors")(o) + _feed_figure("feed-8", "errors")(o)),
           Goal("feed_ratio_to_floor", "feed p95 (1 client) / in-process floor p95", "<=", None, "×",
                _feed_figure("feed-1", "ratio_to_floor"))),
)

# ------------------------------------------------------------------------------------------ S9
def lake_soak_cases(ctx: Context) -> list[Case]:
    """One soak; the scale is the number of incremental cycles (bench/lake_soak.py)."""
    return [Case("lake-soak", f"lake soak: {ctx.scale} incremental cycles with mutations and faults",
                 Measure("hub_lake_soak", {"cycles": ctx.scale, "seed": ctx.seed}), once=True)]


def _extra_figure(case: str, key: str) -> Callable[[Outcomes], float | None]:
    """The worst (largest) value a case's runs report under ``extra[key]``."""
    def figure(o: Outcomes) -> float | None:
        c = o.get(case)
        if c is None or c.hub.summary is None:
            return None
        values = [r.extra.get(key) for r in c.hub.summary.runs if r.extra.get(key) is not None]
        return float(max(values)) if values else None
    return figure


S9 = Scenario(
    "S9", "lake soak (append-only lake, invariants)",
    "N incremental cycles over the embedded municipal SQLite database and the 杨浦 drop folder with updates, "
    "inserts, soft and hard deletes, bad and late files, full resyncs, replays and rebuilds; then the ledger, "
    "duplicate live keys, tombstones, the warehouse against a fresh full load, and build --full from the lake "
    "against the incremental warehouse. The figure is the rows that drift (issue #19).",
    full_scales=(100,), quick_scales=(10,), plan=lake_soak_cases,
    goals=(Goal("lake_drift_rows", "rows drifting after N soak cycles (all invariants)", "==", 0, "rows",
                _extra_figure("lake-soak", "drift_rows"), nominal_scale=100),),
)


# ----------------------------------------------------------------------------------------- S10
def delivery_cases(ctx: Context) -> list[Case]:
    from bench.delivery_scenario import delivery_cases as cases

    return cases(ctx)


S10 = Scenario(
    "S10", "push delivery (Standard Webhooks) of a 1 % change",
    "A 1 % change of N built projects landed and built; every subscription (1, then 20, on loopback receivers "
    "that verify each signature with the reference library) receives it, masked, in change-version order. "
    "Figures: changes acknowledged per second and the time from publish to the last receiver's acknowledgement. "
    "Runs bench/delivery.py.",
    full_scales=(1_000_000,), quick_scales=(50_000,), plan=delivery_cases,
    goals=(Goal("delivery_publish_to_last_ack_s", "publish → last of 20 receivers' acknowledgement, 1 % change",
                "<=", 60, "s", _feed_figure("delivery-20", "publish_to_last_ack_seconds"), nominal_scale=1_000_000),
           Goal("delivery_changes_per_s_1", "changes acknowledged per second, 1 receiver", ">=", None, "changes/s",
                _feed_figure("delivery-1", "changes_per_second")),
           Goal("delivery_changes_per_s_20", "changes acknowledged per second, 20 receivers", ">=", None,
                "changes/s", _feed_figure("delivery-20", "changes_per_second"))),
)

SCENARIOS: dict[str, Scenario] = {s.id: s for s in (S1, S2, S3, S4, S5, S6, S7, S8, S9, S10)}

#: every figure the issues name, by goal id: the registry test checks each is decided by some scenario
REQUIRED_GOALS = (
    "municipal_1m_vs_dlt", "municipal_5m_vs_dlt", "build_ratio_5m_1m", "lingang_vs_dlt",
    "municipal_1m_floor_seconds", "municipal_1m_hub_over_floor", "municipal_5m_floor_seconds",
    "municipal_5m_hub_over_floor", "incremental_share", "rss_5m_mb", "rss_ratio_5m_1m", "lingang_validation_share",
    "csv_1m_rows_per_s", "excel_100k_rows_per_s", "snapshot_diff_seconds", "warehouse_incremental_share",
    "feed_p95_1_client_ms", "feed_p95_8_clients_ms", "feed_errors", "feed_ratio_to_floor", "lake_drift_rows",
    "delivery_publish_to_last_ack_s",
)
