"""Canonical entities, version 1.

The six Lingang entities mirror the modules of 产教融合信息服务平台 1.0 field for field, because
the district and municipal platforms already consume that shape. The other seven follow the
municipal project database (市级产教融合协同育人项目信息库) and the district systems.

Conventions: ``<entity>_id`` for source-local ids (keyed with ``_source``), ``_at`` for UTC
instants, ``_on``/``_date`` for dates, ``_amount`` for yuan, ``is_``/``has_`` for booleans,
and the plain names ``name``, ``id_number``, ``phone`` for a person's personal data so masking
and audit rules can find them in every entity.
"""

from __future__ import annotations

import pyarrow as pa

from schemas.model import MONEY, TIMESTAMP, Entity, Field

__all__ = ["ENTITIES", "get_entity", "SCHEMA_VERSION"]

SCHEMA_VERSION = "1"

STR = pa.string()
DATE = pa.date32()
I16 = pa.int16()
I32 = pa.int32()
BOOL = pa.bool_()


# Text limits, in characters, enforced by the quality gate (quality.suites: `<field>.max_length`).
# Generous for real data, small enough that a runaway cell (a whole file in one field, 5 MB) is
# quarantined instead of landing in core and every feed page.
ID_CHARS = 64        # source ids, codes, USCCs, ID and phone numbers
NAME_CHARS = 200     # names of people, organisations, bases; short descriptive text
TITLE_CHARS = 500    # titles, addresses
URL_CHARS = 2_000
TEXT_CHARS = 10_000  # free text (summaries): the only fields where line breaks and tabs belong


def _text_limit(name: str, code_list: str | None) -> int:
    """The limit a text field gets unless it declares its own: by what the name says it holds."""
    if code_list or name.endswith(("_id", "_uscc", "_code", "_type")) or name in (
            "uscc", "id_number", "phone", "status", "role", "category"):
        return ID_CHARS
    if name == "title" or name == "address":
        return TITLE_CHARS
    return NAME_CHARS


def _f(
    name: str,
    type_: pa.DataType,
    zh: str,
    en: str,
    *,
    pii: str = "none",
    required: bool = False,
    code_list: str | None = None,
    max_length: int | None = None,
    multiline: bool = False,
) -> Field:
    if pa.types.is_string(type_) and max_length is None:
        max_length = _text_limit(name, code_list)
    return Field(name=name, type=type_, zh=zh, en=en, pii=pii, required=required, code_list=code_list,
                 max_length=max_length, multiline=multiline)


# Fields shared by many entities, declared once so their docs never diverge.
def _id(name: str, zh: str) -> Field:
    return _f(name, STR, zh, f"Identifier in the source system ({name})", required=True)


def _uscc(prefix: str, zh: str, en: str) -> Field:
    return _f(f"{prefix}_uscc", STR, f"{zh}统一社会信用代码", f"{en} unified social credit code (GB 32100)")


def _org_name(prefix: str, zh: str, en: str, required: bool = False) -> Field:
    return _f(f"{prefix}_name", STR, f"{zh}名称", f"{en} name", required=required)


DISTRICT = _f("district_code", STR, "所属区行政区划代码", "Shanghai district code (GB/T 2260)", code_list="district")
INDUSTRY = _f(
    "industry_code", STR, "所属产业（临港4+2+2）", "Lingang 4+2+2 industry code", code_list="lingang_industry"
)
EDUCATION = _f("education_level", STR, "学历层次", "Education level", code_list="education_level")
MAJOR = _f("major", STR, "专业", "Major / field of study")
UPDATED = _f("updated_at", TIMESTAMP, "来源系统最后修改时间（UTC）", "Last modified in the source system, UTC")
PUBLISHED_ON = _f("published_on", DATE, "发布日期", "Publication date")
START = _f("start_date", DATE, "开始日期", "Start date")
END = _f("end_date", DATE, "结束日期", "End date")
PERSON_NAME = _f("name", STR, "姓名", "Person's full name", pii="personal", required=True)
ID_NUMBER = _f("id_number", STR, "居民身份证号码", "Resident ID number (GB 11643)", pii="sensitive")
PHONE = _f("phone", STR, "手机号码", "Mobile phone number", pii="personal")


#: Share class per entity (DESIGN.md, "Delivery and sharing"). Registers of people (teachers,
#: trainees: names, ID numbers, phones) are 有条件共享: a platform gets them for a stated purpose and
#: a limited time. A talent demand's contact person stays masked without the personal grant, so the
#: demand itself is unconditional. 定期报送 performance reports are supervision returns to the 市教委, not for other
#: platforms: 不予共享. Everything else is programme information the platforms publish anyway.
SHARE_CLASS_OF: dict[str, str] = {
    "notice": "unconditional", "talent_demand": "unconditional", "talent_supply": "unconditional",
    "cooperation": "unconditional", "rd_project": "unconditional", "tech_service": "unconditional",
    "organization": "unconditional", "project": "unconditional", "project_participant": "unconditional",
    "project_report": "not_shared", "training_base": "unconditional", "teacher": "conditional",
    "trainee": "conditional",
}


def _entity(name: str, zh: str, en: str, grain: str, key: tuple[str, ...], *fields: Field) -> Entity:
    return Entity(name=name, zh=zh, en=en, grain=grain, key=key, fields=tuple(fields), share_class=SHARE_CLASS_OF[name])


# --- Lingang platform (临港产教融合信息服务平台) ---------------------------------------------

NOTICE = _entity(
    "notice", "信息发布", "Notices published on the Lingang platform",
    "one row per notice per source", ("_source", "notice_id"),
    _id("notice_id", "信息编号"),
    _f("title", STR, "标题", "Title", required=True),
    _f("category", STR, "信息类别", "Category", code_list="notice_category"),
    _org_name("publisher", "发布单位", "Publisher"),
    _uscc("publisher", "发布单位", "Publisher"),
    DISTRICT,
    _f("published_at", TIMESTAMP, "发布时间（UTC）", "Publication time, UTC"),
    _f("summary", STR, "摘要", "Summary", max_length=TEXT_CHARS, multiline=True),
    _f("url", STR, "原文链接", "Link to the full text", max_length=URL_CHARS),
    UPDATED,
)  # fmt: skip

TALENT_DEMAND = _entity(
    "talent_demand", "人才需求", "Enterprise talent demand",
    "one row per published demand per source", ("_source", "demand_id"),
    _id("demand_id", "需求编号"),
    _org_name("org", "需求单位", "Demanding organisation", required=True),
    _uscc("org", "需求单位", "Demanding organisation"),
    DISTRICT,
    INDUSTRY,
    _f("occupation", STR, "岗位/职业", "Occupation or job title"),
    MAJOR,
    EDUCATION,
    _f("headcount", I32, "需求人数", "Number of people wanted"),
    _f("salary_min_amount", MONEY, "月薪下限（元）", "Monthly salary, lower bound, yuan"),
    _f("salary_max_amount", MONEY, "月薪上限（元）", "Monthly salary, upper bound, yuan"),
    PUBLISHED_ON,
    _f("valid_until", DATE, "有效期至", "Valid until"),
    _f("contact_name", STR, "联系人", "Contact person", pii="personal"),
    PHONE,
    UPDATED,
)  # fmt: skip

TALENT_SUPPLY = _entity(
    "talent_supply", "人才供给", "School talent supply (graduates)",
    "one row per published supply per source", ("_source", "supply_id"),
    _id("supply_id", "供给编号"),
    _org_name("school", "院校", "School", required=True),
    _uscc("school", "院校", "School"),
    DISTRICT,
    MAJOR,
    EDUCATION,
    _f("graduates_count", I32, "毕业生人数", "Number of graduates"),
    _f("graduation_year", I16, "毕业年份", "Graduation year"),
    INDUSTRY,
    PUBLISHED_ON,
    UPDATED,
)  # fmt: skip

COOPERATION = _entity(
    "cooperation", "校企合作", "School-enterprise cooperation",
    "one row per cooperation agreement per source", ("_source", "cooperation_id"),
    _id("cooperation_id", "合作编号"),
    _org_name("school", "合作院校", "School"),
    _uscc("school", "合作院校", "School"),
    _org_name("enterprise", "合作企业", "Enterprise"),
    _uscc("enterprise", "合作企业", "Enterprise"),
    _f("cooperation_type", STR, "合作类型", "Type of cooperation", code_list="cooperation_type"),
    INDUSTRY,
    DISTRICT,
    START,
    END,
    _f("investment_amount", MONEY, "投入金额（元）", "Investment, yuan"),
    _f("status", STR, "合作状态", "Status", code_list="cooperation_status"),
    UPDATED,
)  # fmt: skip

RD_PROJECT = _entity(
    "rd_project", "项目研发", "Joint R&D projects",
    "one row per R&D project per source", ("_source", "rd_project_id"),
    _id("rd_project_id", "研发项目编号"),
    _f("title", STR, "项目名称", "Project title", required=True),
    _org_name("lead_org", "牵头单位", "Lead organisation"),
    _uscc("lead_org", "牵头单位", "Lead organisation"),
    _org_name("partner_org", "合作单位", "Partner organisation"),
    INDUSTRY,
    _f("budget_amount", MONEY, "项目预算（元）", "Budget, yuan"),
    START,
    END,
    _f("status", STR, "项目状态", "Status", code_list="rd_status"),
    DISTRICT,
    UPDATED,
)  # fmt: skip

TECH_SERVICE = _entity(
    "tech_service", "技术服务", "Technical services offered",
    "one row per service offer per source", ("_source", "service_id"),
    _id("service_id", "服务编号"),
    _f("title", STR, "服务名称", "Service title", required=True),
    _org_name("provider", "服务提供方", "Provider"),
    _uscc("provider", "服务提供方", "Provider"),
    _f("service_type", STR, "服务类型", "Type of service", code_list="tech_service_type"),
    INDUSTRY,
    _f("price_amount", MONEY, "服务价格（元）", "Price, yuan"),
    DISTRICT,
    PUBLISHED_ON,
    UPDATED,
)  # fmt: skip

# --- Municipal project database and district systems ---------------------------------------

ORGANIZATION = _entity(
    "organization", "单位", "Organisations (schools, enterprises, institutes…)",
    "one row per organisation, merged across sources", ("org_id",),
    _f(
        "org_id", STR, "单位标识（有统一社会信用代码的即为该代码）",
        "Organisation id: the USCC when one exists, else '<source>:<local id>'", required=True,
    ),
    _f("uscc", STR, "统一社会信用代码", "Unified social credit code (GB 32100)"),
    _f("name", STR, "单位名称", "Organisation name (not personal data)", required=True),
    _f("org_type", STR, "单位类型", "Organisation type", code_list="org_type"),
    DISTRICT,
    INDUSTRY,
    _f("is_integration_enterprise", BOOL, "是否产教融合型企业", "Whether an industry-education integration enterprise"),
    _f(
        "integration_status", STR, "产教融合型企业状态", "Integration enterprise status",
        code_list="integration_status",
    ),
    _f("certified_on", DATE, "产教融合型企业认定日期", "Date certified as integration enterprise"),
    _f("address", STR, "单位地址", "Registered address"),
    UPDATED,
)  # fmt: skip

PROJECT = _entity(
    "project", "市级产教融合协同育人项目", "Municipal collaborative-education projects",
    "one row per project per source", ("_source", "project_id"),
    _id("project_id", "项目编号"),
    _f("title", STR, "项目名称", "Project title", required=True),
    _f("category", STR, "项目类别", "Project category", code_list="project_category"),
    _f("lead_org_id", STR, "牵头单位标识", "Lead organisation id (organization.org_id)"),
    _org_name("lead_org", "牵头单位", "Lead organisation"),
    _uscc("lead_org", "牵头单位", "Lead organisation"),
    DISTRICT,
    INDUSTRY,
    _f("approved_on", DATE, "立项日期", "Date approved"),
    START,
    END,
    _f("budget_amount", MONEY, "项目预算（元）", "Budget, yuan"),
    _f("funding_type", STR, "经费类型", "Funding type", code_list="funding_type"),
    _f("status", STR, "项目状态", "Status", code_list="project_status"),
    UPDATED,
)  # fmt: skip

PROJECT_PARTICIPANT = _entity(
    "project_participant", "项目参与单位", "Organisations taking part in a project",
    "one row per organisation per project per source", ("_source", "participant_id"),
    _id("participant_id", "参与记录编号"),
    _f("project_id", STR, "项目编号", "Project id (project.project_id)", required=True),
    _f("org_id", STR, "单位标识", "Organisation id (organization.org_id)"),
    _org_name("org", "参与单位", "Participating organisation", required=True),
    _uscc("org", "参与单位", "Participating organisation"),
    _f("org_type", STR, "单位类型", "Organisation type", code_list="org_type"),
    _f("role", STR, "参与角色", "Role in the project", code_list="participant_role"),
    _f("joined_on", DATE, "加入日期", "Date joined"),
    UPDATED,
)  # fmt: skip

PROJECT_REPORT = _entity(
    "project_report", "项目定期报送", "Periodic project performance reports",
    "one row per project per reporting period per source", ("_source", "report_id"),
    _id("report_id", "报送编号"),
    _f("project_id", STR, "项目编号", "Project id (project.project_id)", required=True),
    _f("period_start", DATE, "报送期开始", "Reporting period start", required=True),
    _f("period_end", DATE, "报送期结束", "Reporting period end", required=True),
    _f("students_trained", I32, "培养学生人数", "Students trained in the period"),
    _f("teachers_involved", I32, "参与教师人数", "Teachers involved in the period"),
    _f("enterprises_involved", I32, "参与企业数", "Enterprises involved in the period"),
    _f("spent_amount", MONEY, "期内支出（元）", "Spent in the period, yuan"),
    _f("due_on", DATE, "应报送日期", "Report due date"),
    _f("submitted_at", TIMESTAMP, "报送时间（UTC）", "When submitted, UTC"),
    _f("summary", STR, "工作概述", "Summary of work", max_length=TEXT_CHARS, multiline=True),
    UPDATED,
)  # fmt: skip

TRAINING_BASE = _entity(
    "training_base", "实践基地", "Practice and training bases",
    "one row per base per source", ("_source", "training_base_id"),
    _id("training_base_id", "基地编号"),
    _f("base_name", STR, "基地名称", "Base name", required=True),
    _f("base_type", STR, "基地类型", "Base type", code_list="base_type"),
    _f("project_id", STR, "所属项目编号", "Project the base belongs to (project.project_id)"),
    _org_name("host_org", "依托单位", "Host organisation"),
    _uscc("host_org", "依托单位", "Host organisation"),
    _org_name("school", "合作院校", "Partner school"),
    _uscc("school", "合作院校", "Partner school"),
    DISTRICT,
    INDUSTRY,
    _f("address", STR, "基地地址", "Address"),
    _f("capacity", I32, "可容纳学生人数", "Students the base can host at once"),
    _f("established_on", DATE, "建立日期", "Date established"),
    _f("is_active", BOOL, "是否在运行", "Whether the base is operating"),
    UPDATED,
)  # fmt: skip

TEACHER = _entity(
    "teacher", "产业师资", "Industry teachers (产业教授/导师/讲师)",
    "one row per teacher appointment per source", ("_source", "teacher_id"),
    _id("teacher_id", "师资编号"),
    PERSON_NAME,
    ID_NUMBER,
    PHONE,
    _f("teacher_type", STR, "师资类型", "Teacher type", code_list="teacher_type"),
    _org_name("org", "工作单位", "Employer"),
    _uscc("org", "工作单位", "Employer"),
    _org_name("school", "聘任院校", "Appointing school"),
    _uscc("school", "聘任院校", "Appointing school"),
    _f("professional_title", STR, "职称/职务", "Professional title or position"),
    INDUSTRY,
    _f("appointed_on", DATE, "聘任日期", "Appointment date"),
    _f("term_end_on", DATE, "聘期结束日期", "End of appointment term"),
    _f("is_active", BOOL, "是否在聘", "Whether currently appointed"),
    UPDATED,
)  # fmt: skip

TRAINEE = _entity(
    "trainee", "学员", "Trainees (students in internships, apprenticeships, order classes)",
    "one row per trainee placement per source", ("_source", "trainee_id"),
    _id("trainee_id", "学员编号"),
    PERSON_NAME,
    ID_NUMBER,
    PHONE,
    _f("trainee_type", STR, "学员类型", "Trainee type", code_list="trainee_type"),
    _org_name("school", "所在院校", "School"),
    _uscc("school", "所在院校", "School"),
    _org_name("enterprise", "实践企业", "Host enterprise"),
    _uscc("enterprise", "实践企业", "Host enterprise"),
    MAJOR,
    EDUCATION,
    DISTRICT,
    _f("project_id", STR, "所属项目编号", "Project (project.project_id)"),
    _f("training_base_id", STR, "实践基地编号", "Training base (training_base.training_base_id)"),
    START,
    END,
    _f("is_employed", BOOL, "是否留用就业", "Whether hired by the host after training"),
    UPDATED,
)  # fmt: skip

ENTITIES: dict[str, Entity] = {
    e.name: e
    for e in (
        ORGANIZATION,
        PROJECT,
        PROJECT_PARTICIPANT,
        PROJECT_REPORT,
        TRAINING_BASE,
        TEACHER,
        TALENT_DEMAND,
        TALENT_SUPPLY,
        TRAINEE,
        COOPERATION,
        RD_PROJECT,
        TECH_SERVICE,
        NOTICE,
    )
}


def get_entity(name: str) -> Entity:
    """The canonical entity called ``name``; KeyError naming it and listing the known ones."""
    try:
        return ENTITIES[name]
    except KeyError:
        raise KeyError(f"unknown entity {name!r} (known: {', '.join(ENTITIES)})") from None
