"""Tables of the municipal collaborative-education project database (市级产教融合协同育人项目信息库).

Plain SQLAlchemy models with Chinese column comments, as the real system documents itself.
Every table has `updated_at` (set on every change, indexed with the key for keyset reads),
`deleted_at` for soft deletes, and rows can also be hard-deleted. Project applications carry
the lead organisation's name and USCC as typed on the form (申报书), so they can disagree with
`organizations`; members carry only ids and are read through a join.
"""
from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal

from sqlalchemy import (BigInteger, Boolean, Date, DateTime, ForeignKey, Index, Integer, MetaData, Numeric, String,
                        Text)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BigInteger keys that are still INTEGER PRIMARY KEY (rowid) on SQLite.
BIGINT_ID = BigInteger().with_variant(Integer(), "sqlite")
TS = DateTime(timezone=True)
MONEY = Numeric(18, 2)


class Base(DeclarativeBase):
    metadata = MetaData()


def _changes() -> tuple:
    return (mapped_column(TS, nullable=False, comment="创建时间"),
            mapped_column(TS, nullable=False, comment="最后修改时间（每次修改都更新）"),
            mapped_column(TS, nullable=True, comment="删除时间（逻辑删除；为空表示有效）"))


class Organization(Base):
    __tablename__ = "organizations"
    __table_args__ = (Index("ix_organizations_updated", "updated_at", "organization_id"),
                      {"comment": "单位信息（院校、企业、科研院所、行业协会）"})
    organization_id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, comment="单位ID")
    uscc: Mapped[str | None] = mapped_column(String(18), comment="统一社会信用代码")
    name: Mapped[str] = mapped_column(String(200), comment="单位名称")
    org_type: Mapped[str] = mapped_column(String(20), comment="单位类型（本科高校/高职院校/中职学校/企业/科研院所/行业协会）")
    district_code: Mapped[str | None] = mapped_column(String(6), comment="所属区行政区划代码")
    industry: Mapped[str | None] = mapped_column(String(20), comment="所属产业")
    integration_status: Mapped[str | None] = mapped_column(String(10), comment="产教融合型企业状态（建设培育/试点/已认定）")
    certified_on: Mapped[date | None] = mapped_column(Date, comment="产教融合型企业认定日期")
    address: Mapped[str | None] = mapped_column(String(200), comment="单位地址")
    created_at, updated_at, deleted_at = _changes()


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = (Index("ix_projects_updated", "updated_at", "project_id"),
                      {"comment": "市级产教融合协同育人项目"})
    project_id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, comment="项目ID")
    project_code: Mapped[str] = mapped_column(String(20), comment="项目编号")
    title: Mapped[str] = mapped_column(String(200), comment="项目名称")
    category: Mapped[str] = mapped_column(String(20), comment="项目类别（就业型/教学型/践习型实践基地、现代产业学院、卓越工程师）")
    lead_org_id: Mapped[int | None] = mapped_column(BIGINT_ID, ForeignKey("organizations.organization_id"),
                                                    comment="牵头单位ID")
    lead_org_name: Mapped[str | None] = mapped_column(String(200), comment="牵头单位名称（申报书填写）")
    lead_org_uscc: Mapped[str | None] = mapped_column(String(18), comment="牵头单位统一社会信用代码（申报书填写）")
    district_code: Mapped[str | None] = mapped_column(String(6), comment="所属区行政区划代码")
    industry: Mapped[str | None] = mapped_column(String(20), comment="所属产业")
    approved_on: Mapped[date | None] = mapped_column(Date, comment="立项日期")
    start_date: Mapped[date | None] = mapped_column(Date, comment="开始日期")
    end_date: Mapped[date | None] = mapped_column(Date, comment="结束日期")
    budget: Mapped[Decimal | None] = mapped_column(MONEY, comment="项目预算（元）")
    funding_type: Mapped[str | None] = mapped_column(String(10), comment="经费类型（财政/非财政）")
    status: Mapped[str] = mapped_column(String(10), comment="项目状态（已申报/已立项/建设中/已验收/已终止）")
    created_at, updated_at, deleted_at = _changes()


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (Index("ix_project_members_updated", "updated_at", "member_id"),
                      {"comment": "项目成员单位"})
    member_id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, comment="成员记录ID")
    project_id: Mapped[int] = mapped_column(BIGINT_ID, ForeignKey("projects.project_id"), comment="项目ID")
    organization_id: Mapped[int] = mapped_column(BIGINT_ID, ForeignKey("organizations.organization_id"),
                                                 comment="单位ID")
    role: Mapped[str] = mapped_column(String(10), comment="参与角色（牵头单位/成员单位/支持单位）")
    joined_on: Mapped[date | None] = mapped_column(Date, comment="加入日期")
    created_at, updated_at, deleted_at = _changes()


class PerformanceReport(Base):
    __tablename__ = "performance_reports"
    __table_args__ = (Index("ix_performance_reports_updated", "updated_at", "report_id"),
                      {"comment": "项目定期报送（绩效报告）"})
    report_id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, comment="报送ID")
    project_id: Mapped[int] = mapped_column(BIGINT_ID, ForeignKey("projects.project_id"), comment="项目ID")
    period: Mapped[str] = mapped_column(String(10), comment="报送期（如 2024H1）")
    period_start: Mapped[date] = mapped_column(Date, comment="报送期开始")
    period_end: Mapped[date] = mapped_column(Date, comment="报送期结束")
    students_trained: Mapped[int | None] = mapped_column(Integer, comment="培养学生人数")
    teachers_involved: Mapped[int | None] = mapped_column(Integer, comment="参与教师人数")
    enterprises_involved: Mapped[int | None] = mapped_column(Integer, comment="参与企业数")
    funds_spent: Mapped[Decimal | None] = mapped_column(MONEY, comment="期内经费支出（元）")
    due_on: Mapped[date] = mapped_column(Date, comment="应报送日期")
    submitted_at: Mapped[datetime | None] = mapped_column(TS, comment="报送时间（为空表示未报送）")
    summary: Mapped[str | None] = mapped_column(Text, comment="工作概述")
    created_at, updated_at, deleted_at = _changes()


class TrainingBase(Base):
    __tablename__ = "training_bases"
    __table_args__ = (Index("ix_training_bases_updated", "updated_at", "base_id"),
                      {"comment": "实践基地"})
    base_id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, comment="基地ID")
    project_id: Mapped[int | None] = mapped_column(BIGINT_ID, ForeignKey("projects.project_id"), comment="所属项目ID")
    base_name: Mapped[str] = mapped_column(String(200), comment="基地名称")
    base_type: Mapped[str | None] = mapped_column(String(20), comment="基地类型（就业型/教学型/践习型/公共实训基地）")
    host_org_name: Mapped[str | None] = mapped_column(String(200), comment="依托单位名称")
    host_org_uscc: Mapped[str | None] = mapped_column(String(18), comment="依托单位统一社会信用代码")
    school_name: Mapped[str | None] = mapped_column(String(200), comment="合作院校名称")
    school_uscc: Mapped[str | None] = mapped_column(String(18), comment="合作院校统一社会信用代码")
    district_code: Mapped[str | None] = mapped_column(String(6), comment="所在区行政区划代码")
    industry: Mapped[str | None] = mapped_column(String(20), comment="所属产业")
    address: Mapped[str | None] = mapped_column(String(200), comment="基地地址")
    capacity: Mapped[int | None] = mapped_column(Integer, comment="可容纳学生人数")
    established_on: Mapped[date | None] = mapped_column(Date, comment="建立日期")
    is_active: Mapped[bool] = mapped_column(Boolean, comment="是否运行")
    created_at, updated_at, deleted_at = _changes()


class Teacher(Base):
    __tablename__ = "teachers"
    __table_args__ = (Index("ix_teachers_updated", "updated_at", "teacher_id"),
                      {"comment": "产业师资库（产业教授/产业导师/产业讲师）；含个人信息"})
    teacher_id: Mapped[int] = mapped_column(BIGINT_ID, primary_key=True, comment="师资ID")
    name: Mapped[str] = mapped_column(String(50), comment="姓名（个人信息）")
    id_number: Mapped[str | None] = mapped_column(String(18), comment="居民身份证号码（敏感个人信息）")
    phone: Mapped[str | None] = mapped_column(String(20), comment="手机号码（个人信息）")
    teacher_type: Mapped[str] = mapped_column(String(10), comment="师资类型（产业教授/产业导师/产业讲师）")
    employer_name: Mapped[str | None] = mapped_column(String(200), comment="工作单位")
    employer_uscc: Mapped[str | None] = mapped_column(String(18), comment="工作单位统一社会信用代码")
    school_name: Mapped[str | None] = mapped_column(String(200), comment="聘任院校")
    school_uscc: Mapped[str | None] = mapped_column(String(18), comment="聘任院校统一社会信用代码")
    professional_title: Mapped[str | None] = mapped_column(String(50), comment="职称/职务")
    industry: Mapped[str | None] = mapped_column(String(20), comment="所属产业")
    appointed_on: Mapped[date | None] = mapped_column(Date, comment="聘任日期")
    term_end_on: Mapped[date | None] = mapped_column(Date, comment="聘期结束日期")
    is_active: Mapped[bool] = mapped_column(Boolean, comment="是否在聘")
    created_at, updated_at, deleted_at = _changes()


class SandboxMeta(Base):
    """How this database was seeded, so starting the sandbox again does not seed it again."""

    __tablename__ = "sandbox_meta"
    key: Mapped[str] = mapped_column(String(40), primary_key=True)
    value: Mapped[str] = mapped_column(String(200))


TABLES = ("organizations", "projects", "project_members", "performance_reports", "training_bases", "teachers")
PRIMARY_KEYS = {"organizations": "organization_id", "projects": "project_id", "project_members": "member_id",
                "performance_reports": "report_id", "training_bases": "base_id", "teachers": "teacher_id"}
