"""Programme marts (``marts.*``) and code lists (``ref.codes``), kept up to date with ``core`` by every build.

dbt-style: each mart is declared once as a :class:`Mart` (its grain, zh/en description, a doc
per column and its SQL); the build creates and COMMENTs it from that declaration and the data
dictionary renders the same declaration, so the documentation cannot drift from the table.

Marts read whatever core holds: every core table always exists (empty when no source sends
that entity yet), so an empty input gives an empty mart, never an error. A build recomputes
only the marts whose inputs it changed (:func:`build_marts`). A per-row mart (``report_status``)
is a view instead, computed when read, so no build copies a whole entity into ``marts``.

The marts over the big entities (projects, reports) are kept group by group (:class:`Groups`):
before the builder applies new files it captures the keys they carry and those keys' rows as
they were (:func:`capture_changed_keys`), and the mart's rows of every group a changed row was
in before or is in after are replaced. Why not recompute them whole, as the small ones are: at
1M projects + 1M reports that was 0.43 s of every incremental build (a join of both tables and a
time-zone conversion per report), the largest fixed cost left once core was applied from the
change only. Why not add and subtract deltas: ``count(DISTINCT …)``, ``avg`` and ``any_value``
do not subtract, and a group recomputed from its own rows equals a full rebuild by construction.
Where a change touches most groups anyway (the municipal projects' 1% touches nearly all of
projects_by_district_industry's), the mart reads a :class:`Tally` instead: sums per group and
member, which do subtract, kept by the change's deltas.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from warehouse.arrow_rows import table_from_rows
from warehouse.versions import clean_up, rows_of_projects

__all__ = ["GROUPED_TABLES", "INDICATORS", "MARTS", "TALLY_TABLES", "Groups", "Indicator", "Mart", "Tally",
           "build_marts", "build_ref", "capture_changed_keys", "drop_changed_keys", "prior_columns"]

log = logging.getLogger(__name__)


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _same(columns: tuple[str, ...], a: str, b: str) -> str:
    """NULL-safe equality of ``columns`` between aliases ``a`` and ``b`` (a NULL is a group too)."""
    return " AND ".join(f"{a}.{_ident(c)} IS NOT DISTINCT FROM {b}.{_ident(c)}" for c in columns)


@dataclass(frozen=True)
class Groups:
    """How an aggregate mart is kept group by group: which groups a change of core rows touches.

    ``key``: the mart's columns naming one group (a NULL is a group of its own). ``columns``: per
    core table the mart reads (directly or through a view), the columns besides the natural key
    that ``touched`` reads from ``_prior_<table>``. ``touched``: a SELECT of ``key`` values that
    holds every group a changed row was in before the build and is in after it (more is harmless:
    such a group is recomputed to the same rows); it reads ``_touched_<table>`` (the keys the new
    files carry), ``_prior_<table>`` (those keys' rows before the build), ``_now_<table>`` (the
    rows the build wrote for them, and ``_del`` for those it deleted) and core.
    ``only``: per core table, the rows the mart reads for the groups in ``_groups`` (a SELECT,
    as ``_only_<table>``, or a function of the connection giving one: the way to a table's rows may
    depend on what the warehouse holds); the mart's SQL runs over those instead of the whole table.
    """

    key: tuple[str, ...]
    columns: dict[str, tuple[str, ...]]
    touched: str
    only: dict[str, str | Callable[[duckdb.DuckDBPyConnection], str]]
    #: The ``only`` relations read more than once (by the mart and by a later ``only``): made temp
    #: tables, computed once, instead of views computed at each read.
    computed_once: frozenset[str] = frozenset()

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(self.columns)


@dataclass(frozen=True)
class Tally:
    """Sums per group and member of one core table, kept by adding each build's deltas (``ops.<name>``).

    A grouped mart is recomputed from its groups' input rows, and when a change touches most of its
    groups that is the whole input again: the municipal projects' 1% change touches nearly all 640
    groups of projects_by_district_industry, whose ``count(DISTINCT lead organisation)`` then reads
    all 1M projects (92-97 ms of each incremental build). ``count(DISTINCT …)`` and ``avg`` do not
    subtract, but a tally does: one row per group and member (the ``key`` columns, expressions over a
    core row) with row counts and sums (``sums``: column -> (addend per row, SQL type)). A build adds
    the rows it wrote (``_now_<table>``) and subtracts the rows they replaced or deleted
    (``_prior_<table>``, see :func:`capture_changed_keys`); a member whose ``count`` reaches zero is
    gone. The mart reads the tally (a distinct member is a tally row, an average a sum over a count),
    its touched groups those of the tally's changed rows. A full build computes the tally from core
    first, then the mart from it: both ways read the same tally.
    """

    name: str
    table: str
    key: dict[str, str]
    sums: dict[str, tuple[str, str]]
    count: str
    #: COMMENT of the table and of each column (zh / en)
    doc: str
    docs: dict[str, str]

    def rows(self, source: str, sign: str = "") -> str:
        """A SELECT of ``source``'s rows as tally addends (``sign`` "-": to subtract)."""
        keys = ", ".join(f"{expr} AS {_ident(c)}" for c, expr in self.key.items())
        sums = ", ".join(f"{sign}({expr}) AS {_ident(c)}" for c, (expr, _) in self.sums.items())
        return f"SELECT {keys}, {sums} FROM {source}"

    def summed(self, rows: str) -> str:
        """``rows`` (addends) summed per tally row; a sum of nothing is 0."""
        keys = ", ".join(_ident(c) for c in self.key)
        sums = ", ".join(f"coalesce(sum({_ident(c)}), 0)::{kind} AS {_ident(c)}" for c, (_, kind) in self.sums.items())
        return f"SELECT {keys}, {sums} FROM ({rows}) GROUP BY {keys}"


@dataclass(frozen=True)
class Mart:
    """One mart: what it is, its grain, a doc per column, and its SELECT."""

    name: str
    zh: str
    en: str
    grain: str
    columns: dict[str, str]
    sql: str
    #: A per-row mart (one row per core row) is a view: materialising it would copy a whole
    #: entity on every build (report_status at 1M reports: ~5 s of every build, even one with
    #: nothing new); the aggregates that read it compute their small answer once per build.
    view: bool = False
    #: Maintained group by group in an incremental build (:func:`build_marts`); None: recomputed whole.
    groups: Groups | None = None
    #: The sums its SQL reads (as ``ops.<name>``) instead of core's rows, kept by deltas.
    tally: Tally | None = None

    @property
    def comment(self) -> str:
        return f"{self.zh} / {self.en}. Grain: {self.grain}."

    @property
    def inputs(self) -> set[tuple[str, str]]:
        """The (schema, table) pairs its SQL reads (through its tally: the core table counted)."""
        found = set(re.findall(r"\b(core|marts|ref)\.([a-z_]+)\b", self.sql))
        return found | {("core", self.tally.table)} if self.tally else found


# Local (Asia/Shanghai) calendar date of a UTC instant: due dates are local dates.
def _local_date(expr: str) -> str:
    return f"CAST(timezone('Asia/Shanghai', {expr}) AS DATE)"


_REPORT_STATUS = f"""
SELECT r._source, r.report_id, r.project_id, p.title AS project_title,
       p.lead_org_id, p.lead_org_name, p.lead_org_uscc,
       r.period_start, r.period_end, r.due_on, {_local_date("r.submitted_at")} AS submitted_on,
       CASE WHEN r.submitted_at IS NOT NULL AND r.due_on IS NOT NULL
            THEN greatest(date_diff('day', r.due_on, {_local_date("r.submitted_at")}), 0) END AS days_late,
       CASE
         WHEN r.submitted_at IS NOT NULL AND (r.due_on IS NULL OR {_local_date("r.submitted_at")} <= r.due_on) THEN 'on_time'
         WHEN r.submitted_at IS NOT NULL THEN 'late'
         WHEN r.due_on < current_date THEN 'missing'
         ELSE 'pending'
       END AS timeliness
FROM core.project_report AS r
LEFT JOIN core.project AS p ON p._source = r._source AND p.project_id = r.project_id
"""

# Every organisation seen acting as an enterprise, keyed by USCC (else by name).
_ENTERPRISES = """
WITH seen AS (
    SELECT uscc, name, 1 AS rank, integration_status, is_integration_enterprise, district_code
    FROM core.organization WHERE org_type = 'enterprise' OR is_integration_enterprise
    UNION ALL SELECT enterprise_uscc, enterprise_name, 2, NULL, NULL, district_code FROM core.cooperation
    UNION ALL SELECT enterprise_uscc, enterprise_name, 3, NULL, NULL, district_code FROM core.trainee
    UNION ALL SELECT org_uscc, org_name, 4, NULL, NULL, NULL FROM core.project_participant WHERE org_type = 'enterprise'
    UNION ALL SELECT host_org_uscc, host_org_name, 5, NULL, NULL, district_code FROM core.training_base
    UNION ALL SELECT org_uscc, org_name, 6, NULL, NULL, district_code FROM core.talent_demand
)
SELECT coalesce(uscc, name) AS enterprise_key,
       arg_min(uscc, rank) AS enterprise_uscc,
       arg_min(name, rank) AS enterprise_name,
       arg_min(integration_status, rank) FILTER (WHERE rank = 1) AS integration_status,
       coalesce(bool_or(is_integration_enterprise), false) AS is_integration_enterprise,
       arg_min(district_code, rank) FILTER (WHERE district_code IS NOT NULL) AS district_code
FROM seen WHERE coalesce(uscc, name) IS NOT NULL
GROUP BY 1
"""

_ENTERPRISE_PARTICIPATION = f"""
WITH e AS ({_ENTERPRISES}),
coop AS (SELECT coalesce(enterprise_uscc, enterprise_name) AS k, count(*) AS n,
                count(DISTINCT coalesce(school_uscc, school_name)) AS schools
         FROM core.cooperation GROUP BY 1),
trainees AS (SELECT coalesce(enterprise_uscc, enterprise_name) AS k, count(*) AS n FROM core.trainee GROUP BY 1),
projects AS (SELECT coalesce(org_uscc, org_name) AS k, count(DISTINCT _source || '|' || project_id) AS n
             FROM core.project_participant GROUP BY 1),
bases AS (SELECT coalesce(host_org_uscc, host_org_name) AS k, count(*) AS n FROM core.training_base GROUP BY 1),
demand AS (SELECT coalesce(org_uscc, org_name) AS k, sum(headcount) AS n FROM core.talent_demand GROUP BY 1)
SELECT e.enterprise_uscc, e.enterprise_name, e.integration_status, e.is_integration_enterprise, e.district_code,
       coalesce(coop.n, 0) AS cooperation_count, coalesce(coop.schools, 0) AS schools_partnered,
       coalesce(trainees.n, 0) AS trainees_hosted, coalesce(projects.n, 0) AS projects_joined,
       coalesce(bases.n, 0) AS training_bases_hosted, coalesce(demand.n, 0) AS talent_demand_headcount
FROM e
LEFT JOIN coop ON coop.k = e.enterprise_key
LEFT JOIN trainees ON trainees.k = e.enterprise_key
LEFT JOIN projects ON projects.k = e.enterprise_key
LEFT JOIN bases ON bases.k = e.enterprise_key
LEFT JOIN demand ON demand.k = e.enterprise_key
"""

_SCHOOL_YEAR = """
WITH events AS (
    SELECT coalesce(school_uscc, school_name) AS k, school_uscc, school_name, year(start_date) AS year,
           'cooperation' AS kind, coalesce(enterprise_uscc, enterprise_name) AS partner, investment_amount AS amount,
           NULL::BIGINT AS n, NULL::BOOLEAN AS employed
    FROM core.cooperation
    UNION ALL
    SELECT coalesce(school_uscc, school_name), school_uscc, school_name, year(start_date), 'trainee',
           coalesce(enterprise_uscc, enterprise_name), NULL, 1, is_employed
    FROM core.trainee
    UNION ALL
    SELECT coalesce(school_uscc, school_name), school_uscc, school_name, graduation_year, 'supply',
           NULL, NULL, graduates_count, NULL
    FROM core.talent_supply
    UNION ALL
    SELECT coalesce(school_uscc, school_name), school_uscc, school_name, year(established_on), 'base',
           coalesce(host_org_uscc, host_org_name), NULL, 1, NULL
    FROM core.training_base
)
SELECT any_value(school_uscc) FILTER (WHERE school_uscc IS NOT NULL) AS school_uscc,
       any_value(school_name) FILTER (WHERE school_name IS NOT NULL) AS school_name,
       year,
       count(*) FILTER (WHERE kind = 'cooperation') AS cooperations_started,
       count(DISTINCT partner) FILTER (WHERE kind IN ('cooperation', 'trainee', 'base')) AS enterprises_partnered,
       count(*) FILTER (WHERE kind = 'trainee') AS trainees_started,
       count(*) FILTER (WHERE kind = 'trainee' AND employed) AS trainees_employed,
       coalesce(sum(n) FILTER (WHERE kind = 'supply'), 0) AS graduates_supplied,
       count(*) FILTER (WHERE kind = 'base') AS training_bases_established,
       coalesce(sum(amount) FILTER (WHERE kind = 'cooperation'), 0)::DECIMAL(18,2) AS cooperation_investment_amount
FROM events WHERE k IS NOT NULL AND year IS NOT NULL
GROUP BY k, year
"""

_ENTERPRISE_YEAR = """
WITH events AS (
    SELECT coalesce(enterprise_uscc, enterprise_name) AS k, enterprise_uscc AS uscc, enterprise_name AS name,
           year(start_date) AS year, 'cooperation' AS kind, coalesce(school_uscc, school_name) AS partner,
           investment_amount AS amount, NULL::BIGINT AS n
    FROM core.cooperation
    UNION ALL
    SELECT coalesce(enterprise_uscc, enterprise_name), enterprise_uscc, enterprise_name, year(start_date), 'trainee',
           coalesce(school_uscc, school_name), NULL, 1
    FROM core.trainee
    UNION ALL
    SELECT coalesce(org_uscc, org_name), org_uscc, org_name, year(published_on), 'demand', NULL, NULL, headcount
    FROM core.talent_demand
    UNION ALL
    SELECT coalesce(host_org_uscc, host_org_name), host_org_uscc, host_org_name, year(established_on), 'base',
           coalesce(school_uscc, school_name), NULL, 1
    FROM core.training_base
)
SELECT any_value(uscc) FILTER (WHERE uscc IS NOT NULL) AS enterprise_uscc,
       any_value(name) FILTER (WHERE name IS NOT NULL) AS enterprise_name,
       year,
       count(*) FILTER (WHERE kind = 'cooperation') AS cooperations_started,
       count(DISTINCT partner) FILTER (WHERE kind IN ('cooperation', 'trainee', 'base')) AS schools_partnered,
       count(*) FILTER (WHERE kind = 'trainee') AS trainees_hosted,
       coalesce(sum(n) FILTER (WHERE kind = 'demand'), 0) AS talent_demand_headcount,
       count(*) FILTER (WHERE kind = 'base') AS training_bases_established,
       coalesce(sum(amount) FILTER (WHERE kind = 'cooperation'), 0)::DECIMAL(18,2) AS cooperation_investment_amount
FROM events WHERE k IS NOT NULL AND year IS NOT NULL
GROUP BY k, year
"""


@dataclass(frozen=True)
class Indicator:
    """One 产教融合效能评价 indicator: its definition sits next to its value in the mart."""

    code: str
    zh: str
    en: str
    definition_zh: str
    definition_en: str
    unit: str
    sql: str  # a scalar SELECT over core / marts


INDICATORS: tuple[Indicator, ...] = (
    Indicator("EI01", "协同育人项目数", "collaborative-education projects",
              "core.project 中的项目数（各来源合计）", "number of projects in core.project, all sources",
              "个", "SELECT count(*) FROM core.project"),
    Indicator("EI02", "项目经费总额", "total project budget",
              "core.project.budget_amount 之和（元）", "sum of core.project.budget_amount, yuan",
              "元", "SELECT coalesce(sum(budget_amount), 0) FROM core.project"),
    Indicator("EI03", "产教融合型企业数", "integration enterprises",
              "is_integration_enterprise 为真的机构数", "organisations with is_integration_enterprise true",
              "家", "SELECT count(*) FROM core.organization WHERE is_integration_enterprise"),
    Indicator("EI04", "试点企业数", "pilot enterprises",
              "integration_status = 'pilot' 的机构数", "organisations whose integration_status is 'pilot'",
              "家", "SELECT count(*) FROM core.organization WHERE integration_status = 'pilot'"),
    Indicator("EI05", "校企合作协议数", "school-enterprise cooperation agreements",
              "core.cooperation 中的协议数", "number of agreements in core.cooperation",
              "项", "SELECT count(*) FROM core.cooperation"),
    Indicator("EI06", "参与合作企业数", "enterprises in at least one cooperation",
              "至少有一项校企合作的企业数（按统一社会信用代码，缺失时按名称）",
              "enterprises with at least one cooperation agreement (by USCC, else name)",
              "家", "SELECT count(*) FROM marts.enterprise_participation WHERE cooperation_count > 0"),
    Indicator("EI07", "实习实训人数", "trainee placements",
              "core.trainee 中的实习实训人次", "trainee placements in core.trainee",
              "人次", "SELECT count(*) FROM core.trainee"),
    Indicator("EI08", "实习学生就业率", "trainee employment rate",
              "is_employed 为真的实习人次 ÷ 已知就业状态的人次", "placements with is_employed true ÷ placements with a known status",
              "%", "SELECT 100.0 * count(*) FILTER (WHERE is_employed) / nullif(count(is_employed), 0) FROM core.trainee"),
    Indicator("EI09", "在用实训基地数", "active training bases",
              "is_active 为真的实训基地数", "training bases with is_active true",
              "个", "SELECT count(*) FROM core.training_base WHERE is_active"),
    Indicator("EI10", "定期报送按时率", "periodic report on-time rate",
              "按时报送数 ÷ (按时 + 逾期 + 缺报)，未到期的不计", "on-time reports ÷ (on time + late + missing); not yet due excluded",
              # from the per-lead-organisation counts (every report is in one group): no second pass over reports
              "%", "SELECT 100.0 * sum(reports_on_time) / "
                   "nullif(sum(reports_on_time + reports_late + reports_missing), 0) "
                   "FROM marts.report_timeliness_by_lead_org"),
    Indicator("EI11", "人才供需比", "talent supply-to-demand ratio",
              "供给毕业生人数 ÷ 需求人数（全部专业）", "graduates supplied ÷ headcount demanded, all majors",
              "倍", "SELECT sum(supply_graduates) / nullif(sum(demand_headcount), 0) FROM marts.talent_balance_by_major"),
    Indicator("EI12", "研发项目数", "R&D projects",
              "core.rd_project 中的项目数", "projects in core.rd_project",
              "个", "SELECT count(*) FROM core.rd_project"),
    Indicator("EI13", "技术服务供给数", "technical service offers",
              "core.tech_service 中的服务数", "offers in core.tech_service",
              "项", "SELECT count(*) FROM core.tech_service"),
)

# Rounded to 2 decimals (a rate of 63.64 %, not 63.6363…) and in code order, as the programme reports them.
_EVALUATION = "SELECT * FROM (\n" + "\nUNION ALL\n".join(
    f"SELECT {_literal(i.code)} AS indicator_code, {_literal(i.zh)} AS indicator_zh, {_literal(i.en)} AS indicator_en, "
    f"{_literal(i.definition_zh)} AS definition_zh, {_literal(i.definition_en)} AS definition_en, "
    f"{_literal(i.unit)} AS unit, round(CAST(({i.sql}) AS DOUBLE), 2) AS value"
    for i in INDICATORS
) + "\n) ORDER BY indicator_code"

#: The columns of core.project that projects_by_district_industry's tally reads (captured before each apply).
_DISTRICT_INDUSTRY_READS = ("district_code", "category", "industry_code", "lead_org_uscc", "lead_org_id",
                            "lead_org_name", "budget_amount")

#: projects_by_district_industry's sums per group and lead organisation (see :class:`Tally`).
_PROJECT_TALLY = Tally(
    "tally_projects_by_district_industry", "project",
    {"district_code": "district_code", "category": "category", "industry_code": "industry_code",
     "lead_org_key": "coalesce(lead_org_uscc, lead_org_id, lead_org_name)"},
    {"projects": ("1", "BIGINT"), "budget_amount": ("budget_amount", "DECIMAL(38,2)"),
     "budgeted": ("(budget_amount IS NOT NULL)::INTEGER", "BIGINT")},
    "projects",
    "项目分布计数 / the sums marts.projects_by_district_industry is computed from, kept by each build's "
    "changes. Grain: one row per district code, project category, industry code and lead organisation.",
    {"district_code": "区代码 / district code", "category": "项目类别 / project category",
     "industry_code": "产业代码 / Lingang industry code",
     "lead_org_key": "牵头单位键 / lead organisation: USCC, else its id, else its name (NULL: none given)",
     "projects": "项目数 / projects", "budget_amount": "经费合计(元) / total budget, yuan (0 when none)",
     "budgeted": "有经费的项目数 / projects with a budget"},
)

MARTS: tuple[Mart, ...] = (
    Mart(
        "projects_by_district_industry", "协同育人项目分布", "projects by district, category and Lingang industry",
        "one row per district code, project category and industry code (NULLs kept as their own group)",
        {
            "district_code": "区代码 / district code (GB/T 2260)",
            "district_name": "区名称 / district name",
            "category": "项目类别 / project category",
            "industry_code": "产业代码 / Lingang industry code",
            "industry_name": "产业名称 / Lingang industry name",
            "project_count": "项目数 / projects",
            "lead_org_count": "牵头单位数 / distinct lead organisations",
            "budget_amount": "经费合计(元) / total budget, yuan",
            "avg_budget_amount": "平均经费(元) / average budget per project with a budget, yuan",
        },
        # Summed from its tally (per group and lead organisation, kept by deltas), then named: a code
        # names one row of ref.codes (a code list is a mapping), so the groups are the same and the
        # join reads 640 rows, not 1M.
        f"""
        SELECT p.district_code, d.zh AS district_name, p.category, p.industry_code, i.zh AS industry_name,
               p.project_count, p.lead_org_count, p.budget_amount, p.avg_budget_amount
        FROM (
            SELECT district_code, category, industry_code, sum(projects)::BIGINT AS project_count,
                   count(lead_org_key) AS lead_org_count,
                   sum(budget_amount)::DECIMAL(18,2) AS budget_amount,
                   (sum(budget_amount) / nullif(sum(budgeted), 0))::DECIMAL(18,2) AS avg_budget_amount
            FROM ops.{_PROJECT_TALLY.name} GROUP BY district_code, category, industry_code
        ) AS p
        LEFT JOIN ref.codes AS d ON d.code_list = 'district' AND d.code = p.district_code
        LEFT JOIN ref.codes AS i ON i.code_list = 'lingang_industry' AND i.code = p.industry_code
        """,
        groups=Groups(
            ("district_code", "category", "industry_code"), {"project": _DISTRICT_INDUSTRY_READS},
            # the groups of the tally rows the change moved: a row rewritten for a column the tally
            # does not read (a status, a title) adds and subtracts the same and moves no group
            "SELECT DISTINCT district_code, category, industry_code FROM _tally_delta",
            {},
        ),
        tally=_PROJECT_TALLY,
    ),
    Mart(
        "talent_balance_by_major", "人才供需（按专业）", "talent demand against supply by major",
        "one row per major named by a demand or a supply",
        {
            "major": "专业 / major",
            "demand_postings": "需求条数 / demand postings",
            "demand_headcount": "需求人数 / headcount demanded",
            "supply_postings": "供给条数 / supply postings",
            "supply_graduates": "供给毕业生数 / graduates supplied",
            "gap_headcount": "缺口 / headcount demanded minus graduates supplied (positive: shortage)",
            "supply_per_demand": "供需比 / graduates supplied per head demanded",
        },
        """
        WITH d AS (SELECT major, count(*) AS postings, coalesce(sum(headcount), 0) AS headcount
                   FROM core.talent_demand WHERE major IS NOT NULL GROUP BY 1),
             s AS (SELECT major, count(*) AS postings, coalesce(sum(graduates_count), 0) AS graduates
                   FROM core.talent_supply WHERE major IS NOT NULL GROUP BY 1)
        SELECT coalesce(d.major, s.major) AS major,
               coalesce(d.postings, 0) AS demand_postings, coalesce(d.headcount, 0) AS demand_headcount,
               coalesce(s.postings, 0) AS supply_postings, coalesce(s.graduates, 0) AS supply_graduates,
               coalesce(d.headcount, 0) - coalesce(s.graduates, 0) AS gap_headcount,
               coalesce(s.graduates, 0) / nullif(d.headcount, 0) AS supply_per_demand
        FROM d FULL OUTER JOIN s ON d.major = s.major
        """,
    ),
    Mart(
        "talent_demand_by_occupation", "人才需求（按职业与专业）", "talent demand by occupation and major",
        "one row per occupation and major named by a demand",
        {
            "occupation": "职业/岗位 / occupation",
            "major": "专业 / major",
            "demand_postings": "需求条数 / demand postings",
            "demand_headcount": "需求人数 / headcount demanded",
            "avg_salary_min_amount": "平均最低月薪(元) / average minimum salary, yuan",
            "avg_salary_max_amount": "平均最高月薪(元) / average maximum salary, yuan",
            "major_supply_graduates": "该专业供给毕业生数 / graduates supplied for the major "
                                      "(repeated on each occupation of the major: do not sum across occupations)",
        },
        """
        SELECT d.occupation, d.major, count(*) AS demand_postings, coalesce(sum(d.headcount), 0) AS demand_headcount,
               avg(d.salary_min_amount)::DECIMAL(18,2) AS avg_salary_min_amount,
               avg(d.salary_max_amount)::DECIMAL(18,2) AS avg_salary_max_amount,
               coalesce(any_value(s.graduates), 0) AS major_supply_graduates
        FROM core.talent_demand AS d
        LEFT JOIN (SELECT major, sum(graduates_count) AS graduates FROM core.talent_supply GROUP BY 1) AS s
          ON s.major = d.major
        GROUP BY d.occupation, d.major
        """,
    ),
    Mart(
        "enterprise_participation", "企业参与情况", "enterprise participation",
        "one row per enterprise (by USCC, else by name) seen in organisations, cooperation, trainees, "
        "project participants, training bases or talent demand",
        {
            "enterprise_uscc": "统一社会信用代码 / USCC",
            "enterprise_name": "企业名称 / enterprise name",
            "integration_status": "产教融合型企业状态 / integration enterprise status (cultivating, pilot, certified)",
            "is_integration_enterprise": "是否产教融合型企业 / is an integration enterprise",
            "district_code": "区代码 / district code",
            "cooperation_count": "校企合作数 / cooperation agreements",
            "schools_partnered": "合作院校数 / distinct partner schools",
            "trainees_hosted": "接收实习实训人次 / trainee placements hosted",
            "projects_joined": "参与项目数 / projects participated in",
            "training_bases_hosted": "承建实训基地数 / training bases hosted",
            "talent_demand_headcount": "发布需求人数 / headcount demanded",
        },
        _ENTERPRISE_PARTICIPATION,
    ),
    Mart(
        "enterprise_participation_by_status", "企业参与（按产教融合型企业状态）",
        "enterprise participation by integration status",
        "one row per integration status ('none' for enterprises without one)",
        {
            "integration_status": "产教融合型企业状态 / integration status, 'none' when not listed",
            "integration_status_zh": "状态名称 / status label",
            "enterprises": "企业数 / enterprises",
            "cooperation_count": "校企合作数 / cooperation agreements",
            "trainees_hosted": "接收实习实训人次 / trainee placements hosted",
            "projects_joined": "参与项目数 / project participations",
        },
        """
        SELECT coalesce(e.integration_status, 'none') AS integration_status,
               coalesce(any_value(c.zh), '未入库') AS integration_status_zh,
               count(*) AS enterprises, sum(e.cooperation_count) AS cooperation_count,
               sum(e.trainees_hosted) AS trainees_hosted, sum(e.projects_joined) AS projects_joined
        FROM marts.enterprise_participation AS e
        LEFT JOIN ref.codes AS c ON c.code_list = 'integration_status' AND c.code = e.integration_status
        GROUP BY 1
        """,
    ),
    Mart(
        "report_status", "定期报送明细", "periodic report timeliness, per report (a view)",
        "one row per periodic report (定期报送) per source",
        {
            "_source": "来源系统 / source system",
            "report_id": "报送编号 / report id",
            "project_id": "项目编号 / project id",
            "project_title": "项目名称 / project title",
            "lead_org_id": "牵头单位编号 / lead organisation id",
            "lead_org_name": "牵头单位 / lead organisation",
            "lead_org_uscc": "牵头单位统一社会信用代码 / lead organisation USCC",
            "period_start": "报告期开始 / period start",
            "period_end": "报告期结束 / period end",
            "due_on": "应报日期 / due date (local)",
            "submitted_on": "报送日期 / submitted on (Asia/Shanghai date)",
            "days_late": "逾期天数 / days after the due date (0 when on time)",
            "timeliness": "及时性 / on_time, late, missing (due and not submitted), pending (not yet due)",
        },
        _REPORT_STATUS,
        view=True,
    ),
    Mart(
        "report_timeliness_by_lead_org", "定期报送及时性（按牵头单位）", "periodic report timeliness by lead organisation",
        "one row per lead organisation (by USCC, else id, else name; NULL when the project is unknown)",
        {
            "lead_org_uscc": "牵头单位统一社会信用代码 / lead organisation USCC",
            "lead_org_name": "牵头单位 / lead organisation",
            "reports_total": "报送总数 / reports",
            "reports_on_time": "按时 / on time",
            "reports_late": "逾期 / late",
            "reports_missing": "缺报 / missing",
            "reports_pending": "未到期 / not yet due",
            "on_time_rate": "按时率 / on time ÷ (on time + late + missing)",
            "lead_org_key": "牵头单位键 / the group: lead organisation USCC, else its id, else its name",
        },
        """
        SELECT any_value(lead_org_uscc) AS lead_org_uscc, any_value(lead_org_name) AS lead_org_name,
               count(*) AS reports_total,
               count(*) FILTER (WHERE timeliness = 'on_time') AS reports_on_time,
               count(*) FILTER (WHERE timeliness = 'late') AS reports_late,
               count(*) FILTER (WHERE timeliness = 'missing') AS reports_missing,
               count(*) FILTER (WHERE timeliness = 'pending') AS reports_pending,
               count(*) FILTER (WHERE timeliness = 'on_time')
                 / nullif(count(*) FILTER (WHERE timeliness <> 'pending'), 0) AS on_time_rate,
               coalesce(lead_org_uscc, lead_org_id, lead_org_name) AS lead_org_key
        FROM marts.report_status
        GROUP BY coalesce(lead_org_uscc, lead_org_id, lead_org_name)
        """,
        groups=Groups(
            ("lead_org_key",), {"project": ("lead_org_uscc", "lead_org_id", "lead_org_name"),
                                "project_report": ("project_id",)},
            # A report's group is its project's lead organisation. The projects whose reports may have
            # moved: those of changed reports (before: _prior_project_report, after: the rows the apply
            # wrote, _now_project_report, not a scan of core), and changed projects that have reports
            # and whose lead organisation changed, or that came or went (the NULL group).
            # Each is looked up after the build (the row the apply wrote, _now_project, else core) and,
            # when it changed, before it (_prior_project; no prior row: it did not exist, the NULL group).
            """
            WITH moved AS (
                -- changed projects whose lead organisation columns (or existence) changed: only their
                -- reports need finding in core (a scan skipped when there are none)
                SELECT _source, project_id FROM _now_project AS n LEFT JOIN _prior_project AS p
                       USING (_source, project_id)
                WHERE n._del OR p.project_id IS NULL OR n.lead_org_uscc IS DISTINCT FROM p.lead_org_uscc
                      OR n.lead_org_id IS DISTINCT FROM p.lead_org_id OR n.lead_org_name IS DISTINCT FROM p.lead_org_name
            ), r AS (
                SELECT _source, project_id FROM _prior_project_report
                UNION SELECT _source, project_id FROM _now_project_report WHERE NOT _del
                UNION SELECT _source, project_id FROM core.project_report SEMI JOIN moved
                      USING (_source, project_id)
            ), elsewhere AS (
                -- their projects the build did not write: looked up in core (a scan skipped when the
                -- changed reports' projects all changed too, as they usually do together)
                SELECT * FROM r ANTI JOIN _now_project USING (_source, project_id)
            )
            SELECT CASE WHEN NOT n._del THEN coalesce(n.lead_org_uscc, n.lead_org_id, n.lead_org_name) END
                   AS lead_org_key
            FROM r JOIN _now_project AS n USING (_source, project_id)
            UNION ALL
            SELECT coalesce(p.lead_org_uscc, p.lead_org_id, p.lead_org_name)
            FROM elsewhere LEFT JOIN (SELECT * FROM core.project SEMI JOIN elsewhere USING (_source, project_id)) AS p
              USING (_source, project_id)
            UNION ALL
            SELECT coalesce(p.lead_org_uscc, p.lead_org_id, p.lead_org_name)
            FROM (SELECT * FROM r SEMI JOIN _touched_project USING (_source, project_id)) AS r
            LEFT JOIN _prior_project AS p USING (_source, project_id)
            """,
            # the groups' projects found by the three organisation columns alone, then read by row id:
            # the join read every column the mart needs of all 1M projects (1% changed: 58 -> 48 ms);
            # only the columns report_status reads, as it is kept (computed_once: a copy of every
            # column of 10,000 projects took 18 ms, of these six 11 ms)
            {"project": "SELECT _source, project_id, title, lead_org_id, lead_org_name, lead_org_uscc FROM core.project "
                        "WHERE rowid IN (SELECT x.rowid FROM core.project AS x SEMI JOIN _groups AS g "
                        "ON coalesce(x.lead_org_uscc, x.lead_org_id, x.lead_org_name) IS NOT DISTINCT FROM g.lead_org_key)",
             # the reports of those projects (by the reports' key directory: their project hashes), and
             # (NULL group only) the reports whose project is unknown
             "project_report": lambda con: rows_of_projects(con, "project_report", "_only_project") + " "
                               "UNION ALL SELECT r.* FROM (SELECT * FROM core.project_report "
                               "WHERE EXISTS (SELECT 1 FROM _groups WHERE lead_org_key IS NULL)) AS r "
                               "ANTI JOIN (SELECT _source, project_id FROM core.project "
                               "WHERE EXISTS (SELECT 1 FROM _groups WHERE lead_org_key IS NULL)) AS p "
                               "ON p._source = r._source AND p.project_id = r.project_id"},
            # the groups' projects are read three times (their hashes, their reports, the mart's join)
            computed_once=frozenset({"project"}),
        ),
    ),
    Mart(
        "annual_report_school", "院校年度协同育人报告", "yearly collaborative-education report per school (年度报告)",
        "one row per school (by USCC, else name) and calendar year",
        {
            "school_uscc": "院校统一社会信用代码 / school USCC",
            "school_name": "院校名称 / school name",
            "year": "年度 / year (of the agreement, placement, graduation or base)",
            "cooperations_started": "新签合作数 / cooperation agreements started",
            "enterprises_partnered": "合作企业数 / distinct partner enterprises",
            "trainees_started": "实习实训人次 / placements started",
            "trainees_employed": "实习后就业人次 / placements that led to employment",
            "graduates_supplied": "供给毕业生数 / graduates supplied",
            "training_bases_established": "新建实训基地数 / training bases established",
            "cooperation_investment_amount": "合作投入(元) / investment in agreements started, yuan",
        },
        _SCHOOL_YEAR,
    ),
    Mart(
        "annual_report_enterprise", "企业年度协同育人报告", "yearly collaborative-education report per enterprise (年度报告)",
        "one row per enterprise (by USCC, else name) and calendar year",
        {
            "enterprise_uscc": "企业统一社会信用代码 / enterprise USCC",
            "enterprise_name": "企业名称 / enterprise name",
            "year": "年度 / year (of the agreement, placement, demand or base)",
            "cooperations_started": "新签合作数 / cooperation agreements started",
            "schools_partnered": "合作院校数 / distinct partner schools",
            "trainees_hosted": "接收实习实训人次 / placements hosted",
            "talent_demand_headcount": "发布需求人数 / headcount demanded",
            "training_bases_established": "新建实训基地数 / training bases established",
            "cooperation_investment_amount": "合作投入(元) / investment in agreements started, yuan",
        },
        _ENTERPRISE_YEAR,
    ),
    Mart(
        "evaluation_indicators", "产教融合效能评价指标", "industry-education integration evaluation indicators",
        "one row per indicator, its definition next to its value",
        {
            "indicator_code": "指标代码 / indicator code",
            "indicator_zh": "指标名称 / indicator (zh)",
            "indicator_en": "指标名称（英文）/ indicator (en)",
            "definition_zh": "口径 / definition (zh)",
            "definition_en": "口径（英文）/ definition (en)",
            "unit": "单位 / unit",
            "value": "指标值 / value, rounded to 2 decimals (NULL when its denominator is zero)",
        },
        _EVALUATION,
    ),
)


REF_CODES = ("ref", "codes")
MART_STATE = "mart_state"
#: SQL that reads the clock: a mart using it (or a mart using such a mart) changes with the date
_CLOCK = re.compile(r"\b(current_date|current_timestamp|now\(\)|get_current_timestamp\(\)|today\(\))", re.I)


def _code_rows() -> pa.Table:
    from schemas.codes import CODE_LISTS

    rows = [
        {"code_list": lst.name, "code": code, "zh": zh, "en": en}
        for lst in CODE_LISTS.values()
        for code, (zh, en) in lst.entries.items()
    ]
    return table_from_rows(rows, pa.schema([(n, pa.string()) for n in ("code_list", "code", "zh", "en")]))


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False, sort_keys=True, default=str).encode()).hexdigest()


def _ensure_state(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[str, Any]]:
    """``ops.mart_state``: per mart (and ``ref.codes``) the definition it was built from and the date."""
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(f"CREATE TABLE IF NOT EXISTS ops.{MART_STATE} (mart VARCHAR PRIMARY KEY, signature VARCHAR, "
                "built_on DATE)")
    return {m: (sig, on) for m, sig, on in con.execute(f"SELECT mart, signature, built_on FROM ops.{MART_STATE}")
            .fetchall()}


def _record(con: duckdb.DuckDBPyConnection, mart: str, signature: str, today: Any) -> None:
    con.execute(f"INSERT OR REPLACE INTO ops.{MART_STATE} VALUES (?, ?, ?)", [mart, signature, today])


def build_ref(con: duckdb.DuckDBPyConnection, state: dict[str, tuple[str, Any]] | None = None,
              today: Any = None) -> bool:
    """``ref.codes``: every code list with zh/en labels, so marts and analysts can label codes.

    Rewritten only when the code lists differ from the ones it was built from (``state``, from
    ``ops.mart_state``); returns whether it was.
    """
    table = _code_rows()
    signature = _digest("ref.codes", table.to_pylist())
    exists = bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE database_name = current_database() "
                              "AND schema_name = 'ref' AND table_name = 'codes'").fetchall()[0][0])
    if state is not None and exists and state.get("ref.codes", (None,))[0] == signature:
        return False
    con.execute("CREATE SCHEMA IF NOT EXISTS ref")
    con.register("_codes", table)
    try:
        con.execute("CREATE OR REPLACE TABLE ref.codes AS SELECT * FROM _codes")
    finally:
        con.unregister("_codes")
    statements = ["COMMENT ON TABLE ref.codes IS " + _literal(
        "代码表 / code lists (districts, Lingang industries, org types, statuses…). Grain: one row per code list and code.")]
    for column, doc in {"code_list": "代码表名 / code list name", "code": "代码 / code",
                        "zh": "中文名称 / label (zh)", "en": "英文名称 / label (en)"}.items():
        statements.append(f"COMMENT ON COLUMN ref.codes.{_ident(column)} IS {_literal(doc)}")
    con.execute(";\n".join(statements))
    if state is not None:
        _record(con, "ref.codes", signature, today)
    return True


#: The ``ops`` tables the marts keep (their tallies): the builder's own, not copies of the catalog.
TALLY_TABLES: tuple[str, ...] = tuple(m.tally.name for m in MARTS if m.tally)
#: Core tables read by a mart kept group by group: the builder captures their changed keys.
GROUPED_TABLES: frozenset[str] = frozenset(t for m in MARTS if m.groups for t in m.groups.tables)
#: Per such table, the columns the marts' ``touched`` read from its prior rows.
GROUPED_COLUMNS: dict[str, frozenset[str]] = {
    t: frozenset(c for m in MARTS if m.groups for c in m.groups.columns.get(t, ())) for t in GROUPED_TABLES}
#: A mart whose touched groups are at least this share of its rows is recomputed whole.
WHOLE_SHARE = 0.5
_TABLE_REF = re.compile(r"\b(core|marts|ops)\.([a-z_]+)\b")


def prior_columns(table: str, key: tuple[str, ...] | list[str]) -> list[str]:
    """The columns of ``_prior_<table>``: the natural key, then those the marts' groups read."""
    return [*key, *(c for c in sorted(GROUPED_COLUMNS.get(table, ())) if c not in key)]


def capture_changed_keys(table: str) -> str:
    """The name of the prior rows the builder has the apply keep for ``core.<table>``'s marts.

    :func:`warehouse.versions.apply_entity`, given it, leaves three temp tables from the work it
    does anyway: ``_touched_<table>``, every natural key of the new files (a superset of the
    changed keys: a re-sent identical row only makes its group recomputed); ``_prior_<table>``,
    those keys' core rows as they were before the build, in (at least) the columns the marts'
    groups read (:func:`prior_columns`), so a mart can find the groups rows leave (an update moving
    a row, a delete), not only the ones they join, from the scan of core that seeds the comparison
    (core is not scanned a second time, nor the files read again for their keys); and
    ``_now_<table>``, the rows it wrote and the keys it deleted (a touched key not there kept its
    prior row), so a mart finds the groups rows join without a scan of core either.
    A rename takes a key that is not in the files out of core: the builder then drops the capture
    (the marts over that table are recomputed whole), see :func:`warehouse.build.build_core`.
    """
    return "_prior_" + table


def drop_changed_keys(con: duckdb.DuckDBPyConnection) -> None:
    """Drop what :func:`capture_changed_keys` and the group updates left in the connection."""
    for table in GROUPED_TABLES:
        for prefix in ("_prior_", "_now_", "_touched_"):
            con.execute(f"DROP TABLE IF EXISTS {_ident(prefix + table)}")


def _by_groups(mart: Mart, changed: set[tuple[str, str]], unchanged: set[tuple[str, str]] | frozenset[tuple[str, str]],
               captured: set[str] | frozenset[str]) -> bool:
    """Whether this build can keep ``mart`` group by group: every core table it reads (through views
    too) either took no change or had its changed keys captured, and nothing else it reads changed."""
    if mart.groups is None:
        return False
    by_name = {m.name: m for m in MARTS}
    inputs, todo = set(), list(mart.inputs)
    while todo:
        schema, name = todo.pop()
        if schema == "marts" and name in by_name and by_name[name].view:
            todo.extend(by_name[name].inputs)  # a view reads its inputs when the mart does
        else:
            inputs.add((schema, name))
    for schema, name in inputs:
        if schema == "core":
            if name not in captured and (schema, name) not in unchanged:
                return False
            if name not in mart.groups.tables and (schema, name) not in unchanged:
                return False
        elif (schema, name) in changed:
            return False
    return True


def _update_groups(con: duckdb.DuckDBPyConnection, mart: Mart, captured: set[str] | frozenset[str]) -> int:
    """Replace the mart's rows of the groups the changed keys touch (before and after); returns how many."""
    groups = mart.groups
    assert groups is not None
    from schemas import get_entity

    for table in groups.tables:
        if table not in captured:  # took no change in this build: nothing touched
            t = _ident(table)
            key = get_entity(table).key
            keys = ", ".join(_ident(k) for k in key)
            wanted = ", ".join([keys, *(_ident(c) for c in sorted(GROUPED_COLUMNS[table]) if c not in key)])
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_ident('_touched_' + table)} AS SELECT {keys} FROM core.{t} "
                        "WHERE false")
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_ident('_prior_' + table)} AS SELECT {wanted} FROM core.{t} "
                        "WHERE false")
            con.execute(f"CREATE OR REPLACE TEMP TABLE {_ident('_now_' + table)} AS SELECT {wanted}, false AS _del "
                        f"FROM core.{t} WHERE false")
    made: list[tuple[str, str]] = []  # (TABLE or VIEW, name)
    table = f"marts.{_ident(mart.name)}"
    try:
        if mart.tally is not None:
            made.append(("TABLE", "_tally_delta"))
            if not _add_to_tally(con, mart.tally):
                con.execute(f"DELETE FROM {table}")
                con.execute(f"INSERT INTO {table} SELECT * FROM ({mart.sql})")
                return int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
        con.execute(f"CREATE OR REPLACE TEMP TABLE _groups AS SELECT DISTINCT * FROM ({groups.touched})")
        n = int(con.execute("SELECT count(*) FROM _groups").fetchall()[0][0])
        if n == 0:
            return 0
        if n >= WHOLE_SHARE * int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]):
            # most groups touched (a change spread over a coarse mart): filtering the input to them
            # costs more than it saves, so the mart is recomputed whole
            con.execute(f"DELETE FROM {table}")
            con.execute(f"INSERT INTO {table} SELECT * FROM ({mart.sql})")
            return n
        subs: dict[tuple[str, str], str] = {}
        for name, only in groups.only.items():
            sql = only(con) if callable(only) else only
            kind = "TABLE" if name in groups.computed_once else "VIEW"
            con.execute(f"CREATE OR REPLACE TEMP {kind} {_ident('_only_' + name)} AS {sql}")
            made.append((kind, "_only_" + name))
            subs[("core", name)] = _ident("_only_" + name)
        if mart.tally is not None:
            only = f"_only_{mart.tally.name}"
            con.execute(f"CREATE OR REPLACE TEMP VIEW {_ident(only)} AS SELECT * FROM ops.{_ident(mart.tally.name)} "
                        f"AS x SEMI JOIN _groups AS g ON {_same(groups.key, 'x', 'g')}")
            made.append(("VIEW", only))
            subs[("ops", mart.tally.name)] = _ident(only)
        for view in (m for m in MARTS if m.view and ("marts", m.name) in mart.inputs):
            con.execute(f"CREATE OR REPLACE TEMP VIEW {_ident('_only_' + view.name)} AS {_substitute(view.sql, subs)}")
            made.append(("VIEW", "_only_" + view.name))
            subs[("marts", view.name)] = _ident("_only_" + view.name)
        con.execute(f"DELETE FROM {table} AS m WHERE EXISTS (SELECT 1 FROM _groups AS g WHERE "
                    f"{_same(groups.key, 'm', 'g')})")
        con.execute(f"INSERT INTO {table} SELECT * FROM ({_substitute(mart.sql, subs)})")
        return n
    finally:
        clean_up(con, *(f"DROP {kind} IF EXISTS {_ident(name)}" for kind, name in reversed(made)),
                 "DROP TABLE IF EXISTS _groups")


def _build_tally(con: duckdb.DuckDBPyConnection, tally: Tally) -> None:
    """``ops.<tally>`` computed from the whole core table, with its comments."""
    t = f"ops.{_ident(tally.name)}"
    con.execute("CREATE SCHEMA IF NOT EXISTS ops")
    con.execute(f"CREATE OR REPLACE TABLE {t} AS {tally.summed(tally.rows(f'core.{_ident(tally.table)}'))}")
    con.execute(";\n".join([f"COMMENT ON TABLE {t} IS {_literal(tally.doc)}"] + [
        f"COMMENT ON COLUMN {t}.{_ident(c)} IS {_literal(doc)}" for c, doc in tally.docs.items()]))


def _add_to_tally(con: duckdb.DuckDBPyConnection, tally: Tally) -> bool:
    """Add this build's change of ``core.<tally.table>`` to the tally; its changed rows stay in
    ``_tally_delta`` (their groups are the mart's touched groups).

    The change: the rows the apply wrote, less the rows they replaced and those it deleted (the prior
    rows of the keys in ``_now_<table>``; a touched key not there kept its row). Tally rows the change
    nets to zero (a title update) are not in the delta. Merged by row id: one join of the delta with
    the tally, then the matched rows deleted and the merged ones inserted (a member at a zero count
    not). A count that would go below zero means the tally does not hold what core held: it is
    computed again from core (logged), and False returned (every group to recompute).
    """
    from schemas import get_entity

    t, key = f"ops.{_ident(tally.name)}", get_entity(tally.table).key
    keys = ", ".join(_ident(k) for k in key)
    now, prior = _ident("_now_" + tally.table), _ident("_prior_" + tally.table)
    nonzero = " OR ".join(f"{_ident(c)} <> 0" for c in tally.sums)
    con.execute(f"CREATE OR REPLACE TEMP TABLE _tally_delta AS SELECT * FROM ("
                + tally.summed(f"{tally.rows(f'{prior} SEMI JOIN {now} USING ({keys})', '-')} UNION ALL "
                               f"{tally.rows(f'{now} WHERE NOT _del')}") + f") WHERE {nonzero}")
    columns = ", ".join(_ident(c) for c in [*tally.key, *tally.sums])
    merged = ", ".join([*(f"d.{_ident(c)}" for c in tally.key),
                        *(f"coalesce(t.{_ident(c)}, 0) + d.{_ident(c)} AS {_ident(c)}" for c in tally.sums)])
    con.execute(f"CREATE OR REPLACE TEMP TABLE _tally_merged AS SELECT t.rowid AS _rid, {merged} "
                f"FROM _tally_delta AS d LEFT JOIN {t} AS t ON {_same(tuple(tally.key), 'd', 't')}")
    try:
        below = int(con.execute(f"SELECT count(*) FROM _tally_merged WHERE {_ident(tally.count)} < 0")
                    .fetchall()[0][0])
        if below:
            log.warning("ops.%s: the change takes %d of its rows below zero (it does not hold what core.%s held): "
                        "computed again from core", tally.name, below, tally.table)
            _build_tally(con, tally)
            return False
        con.execute(f"DELETE FROM {t} WHERE rowid IN (SELECT _rid FROM _tally_merged WHERE _rid IS NOT NULL)")
        con.execute(f"INSERT INTO {t} SELECT {columns} FROM _tally_merged WHERE {_ident(tally.count)} <> 0")
        return True
    finally:
        clean_up(con, "DROP TABLE IF EXISTS _tally_merged")


def _substitute(sql: str, subs: dict[tuple[str, str], str]) -> str:
    """``sql`` reading the relations in ``subs`` instead of the tables they name."""
    return _TABLE_REF.sub(lambda m: subs.get((m.group(1), m.group(2)), m.group(0)), sql)


def _signature(mart: Mart) -> str:
    # a tally only where there is one: the other marts keep the signatures their tables were built with
    return _digest(mart.name, mart.sql, mart.view, mart.comment, mart.columns,
                   *(() if mart.tally is None else (repr(mart.tally),)))


def clock_dependent(marts: tuple[Mart, ...] = ()) -> set[str]:
    """Marts whose content depends on today's date: their SQL reads the clock, or a mart that does."""
    out: set[str] = set()
    for mart in marts or MARTS:
        if _CLOCK.search(mart.sql) or any(s == "marts" and t in out for s, t in mart.inputs):
            out.add(mart.name)
    return out


def build_marts(con: duckdb.DuckDBPyConnection,
                unchanged: set[tuple[str, str]] | frozenset[tuple[str, str]] = frozenset(),
                captured: set[str] | frozenset[str] = frozenset()) -> dict[str, int]:
    """Bring every mart up to date with core; returns row counts by mart.

    Incremental: a mart is recomputed only when something it reads may have changed. ``unchanged``
    lists the (schema, table) pairs this build knows it did not change (the builder passes the
    core tables of entities that took no change); every other input counts as changed, as does a
    mart whose declaration changed, and a mart that reads the clock (``current_date``: a report
    turns from pending to missing overnight) when it was last computed on another day. An input
    mart that was recomputed makes its readers stale too. A recomputed table keeps its comments
    (its rows are replaced in place), so only a new or redeclared mart is COMMENTed again.

    Group by group: a mart declaring :class:`Groups` whose changed core inputs all had their
    changed keys captured (``captured``: :func:`capture_changed_keys`, called by the builder
    before it applies new files) has only the touched groups' rows replaced, the groups the
    changed rows were in before the build as well as after it; a full build, a new day for a
    clock-reading mart, a changed code list or a redeclared mart still recompute it whole.
    """
    state = _ensure_state(con)
    today = con.execute("SELECT current_date").fetchall()[0][0]
    changed: set[tuple[str, str]] = set()
    if build_ref(con, state, today):
        changed.add(REF_CODES)
    con.execute("CREATE SCHEMA IF NOT EXISTS marts")
    counts: dict[str, int] = {}
    existing = {(schema, table) for schema, table in con.execute(
        "SELECT schema_name, table_name FROM duckdb_tables() WHERE database_name = current_database()").fetchall()}
    views = {(schema, view) for schema, view in con.execute(
        "SELECT schema_name, view_name FROM duckdb_views() WHERE database_name = current_database() "
        "AND NOT internal").fetchall()}
    clocked = clock_dependent()
    recomputed = []
    for mart in MARTS:
        table = f"marts.{_ident(mart.name)}"
        here = ("marts", mart.name)
        missing = sorted(mart.inputs - existing - views)
        if missing:
            # Only a build with a partial entity registry (tests) lacks core tables.
            log.info("mart %s skipped: inputs %s are not in this warehouse", mart.name, missing)
            continue
        signature = _signature(mart)
        same_kind = here in (views if mart.view else existing)
        declared = same_kind and state.get(mart.name, (None,))[0] == signature
        # core tables: changed unless the builder says otherwise; marts and ref: tracked here
        stale_inputs = any(i in changed or (i[0] == "core" and i not in unchanged) for i in mart.inputs)
        stale_day = mart.name in clocked and state.get(mart.name, (None, None))[1] != today
        if declared and mart.view:
            if stale_inputs:
                changed.add(here)  # a view is always current, but its readers are stale
            continue
        if declared and not stale_inputs and not stale_day:
            counts[mart.name] = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
            continue
        changed.add(here)
        tallied = mart.tally is None or ("ops", mart.tally.name) in existing
        if declared and not stale_day and tallied and _by_groups(mart, changed, unchanged, captured):
            touched = _update_groups(con, mart, captured)
            recomputed.append(f"{mart.name} ({touched} groups)")
            _record(con, mart.name, signature, today)
            counts[mart.name] = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
            continue
        recomputed.append(mart.name)
        if mart.tally is not None:
            _build_tally(con, mart.tally)
            existing.add(("ops", mart.tally.name))
        if declared:
            con.execute(f"DELETE FROM {table}")
            con.execute(f"INSERT INTO {table} SELECT * FROM ({mart.sql})")
        else:
            # New, redeclared, or changed kind (table <-> view): created afresh with its comments.
            if here in views:
                con.execute(f"DROP VIEW {table}")
            elif here in existing:
                con.execute(f"DROP TABLE {table}")
            kind = "VIEW" if mart.view else "TABLE"
            con.execute(f"CREATE {kind} {table} AS {mart.sql}")
            actual = [c for (c,) in con.execute(
                "SELECT column_name FROM duckdb_columns() WHERE database_name = current_database() "
                "AND schema_name = 'marts' AND table_name = ? ORDER BY column_index", [mart.name]).fetchall()]
            if actual != list(mart.columns):
                raise ValueError(f"mart {mart.name}: columns {actual} differ from its documented columns "
                                 f"{list(mart.columns)}")
            statements = [f"COMMENT ON {kind} {table} IS {_literal(mart.comment)}"] + [
                f"COMMENT ON COLUMN {table}.{_ident(column)} IS {_literal(doc)}" for column, doc in mart.columns.items()]
            con.execute(";\n".join(statements))  # one call: each COMMENT alone costs a round of catalog work
            (views if mart.view else existing).add(here)
        _record(con, mart.name, signature, today)
        if not mart.view:
            counts[mart.name] = int(con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0])
    log.info("marts recomputed: %s; up to date: %s", ", ".join(recomputed) or "none",
             ", ".join(sorted(set(counts) - {r.split(" ")[0] for r in recomputed})) or "none")
    return counts
