"""Deterministic data of three district systems (杨浦, 闵行, 嘉定), in their own shapes.

Day or month `d` of a district is the seed's base data with `d` rounds of changes applied, so
any snapshot can be rebuilt from (seed, scale, history of change ratios) alone. Plays foreign
systems: imports nothing of the hub.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from sandbox.lingang.data import (  # another simulated system's helpers: still nothing of the hub
    PUDONG,
    registered_uscc,
)

# The programme's real organisations, with the codes they carry in every other simulated system.
SCHOOLS = [(name, registered_uscc(name, "12", "310000")) for name in (
    "上海电机学院", "上海电力大学", "上海海洋大学", "上海海事大学", "上海建桥学院", "上海电子信息职业技术学院", "上海农林职业技术学院")]
COMPANIES = [(name, registered_uscc(name, "91", PUDONG)) for name in (
    "上海积塔半导体有限公司", "上海商汤科技开发有限公司", "上海心玮医疗科技股份有限公司", "上海遨拓深水装备技术开发有限公司",
    "上海临港电力电子研究有限公司", "上海临港经济发展（集团）有限公司")]
INDUSTRIES = ["集成电路", "人工智能", "生物医药", "民用航空", "智能新能源汽车", "高端装备制造", "绿色再制造", "氢能与新型储能"]
CATEGORIES = ["就业型实践基地", "教学型实践基地", "践习型实践基地", "现代产业学院", "卓越工程师培养"]
STATUSES = ["已立项", "在建", "已验收", "已终止"]
THEMES = ["校企合作实训基地", "现代产业学院共建", "卓越工程师联合培养", "订单班人才培养", "产教融合实践中心", "工程技术研发平台"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华"
MAJORS = ["集成电路设计与集成系统", "人工智能技术应用", "生物制药技术", "飞行器制造技术", "新能源汽车技术", "机电一体化技术"]
TRAINEE_TYPES = ["实习生", "学徒", "订单班学生"]
EDUCATION = ["大专", "本科", "硕士", "中专"]
ID_WEIGHTS = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
ID_CHECK = "10X98765432"


def resident_id(rng: random.Random, district: str) -> str:
    """A well-formed (fictional) resident ID number of the district."""
    born = date(1998, 1, 1) + timedelta(days=rng.randrange(0, 2500))
    body = f"{district}{born:%Y%m%d}{rng.randrange(0, 1000):03d}"
    return body + ID_CHECK[sum(int(c) * w for c, w in zip(body, ID_WEIGHTS)) % 11]


@dataclass
class Project:
    project_id: str
    title: str
    lead_name: str
    lead_uscc: str
    category: str
    industry: str
    status: str
    start: date
    end: date
    fiscal_wan: float
    own_wan: float
    updated: str = "2024-01-02 09:00:00"
    members: list[dict[str, Any]] = field(default_factory=list)
    dirty: str | None = None  # how this row is broken on purpose (bad date), or None

    @property
    def budget_wan(self) -> float:
        return round(self.fiscal_wan + self.own_wan, 2)


@dataclass
class Trainee:
    trainee_id: str
    name: str
    id_number: str
    phone: str
    trainee_type: str
    school: str
    company: str
    major: str
    education: str
    start: date
    project_id: str
    id_as_number: bool = False  # the cell was typed as a number in Excel: digits lost
    employed: str = ""  # 留用就业: 已留用 / 未留用, blank while still training


def _project(rng: random.Random, prefix: str, i: int, day0: date) -> Project:
    lead = rng.choice(SCHOOLS + COMPANIES)
    start = day0 - timedelta(days=rng.randrange(30, 900))
    members = []
    for j in range(rng.randrange(1, 4)):
        org = rng.choice(COMPANIES if lead in SCHOOLS else SCHOOLS)
        members.append({"memberId": f"{prefix}-{i:06d}-M{j + 1}", "orgName": org[0], "creditCode": org[1],
                        "role": rng.choice(["参与单位", "合作单位", "支持单位"]),
                        "orgType": "企业" if org in COMPANIES else rng.choice(["本科高校", "高职院校"])})
    return Project(
        project_id=f"{prefix}-{i:06d}", title=f"{lead[0][:6]}{rng.choice(THEMES)}（{i}）", lead_name=lead[0],
        lead_uscc=lead[1], category=rng.choice(CATEGORIES), industry=rng.choice(INDUSTRIES),
        status=rng.choice(STATUSES), start=start, end=start + timedelta(days=rng.choice([365, 730, 1095])),
        fiscal_wan=round(rng.uniform(5, 400), 2), own_wan=round(rng.uniform(0, 200), 2), members=members)


def base_projects(seed: int, scale: float, prefix: str, day0: date, dirty_ratio: float = 0.01) -> list[Project]:
    rng = random.Random(f"{seed}:{prefix}:base")
    n = max(20, int(2000 * scale))
    projects = [_project(rng, prefix, i + 1, day0) for i in range(n)]
    for p in projects:
        if rng.random() < dirty_ratio:
            p.dirty = "bad_date"
    return projects


def change_projects(projects: list[Project], seed: int, prefix: str, round_no: int, changed: float,
                    day: date) -> list[Project]:
    """One round of changes: ~`changed` of the rows updated, a third as many deleted and inserted."""
    rng = random.Random(f"{seed}:{prefix}:round{round_no}")
    out = list(projects)
    k = max(1, int(len(out) * changed))
    stamp = f"{day:%Y-%m-%d} 10:{round_no % 60:02d}:00"
    for idx in rng.sample(range(len(out)), min(k, len(out))):
        p = out[idx]
        out[idx] = replace(p, status=rng.choice(STATUSES), own_wan=round(p.own_wan + rng.uniform(1, 50), 2),
                           updated=stamp)
    for _ in range(max(1, k // 3)):
        if len(out) > 1:
            out.pop(rng.randrange(len(out)))
    next_id = max(int(p.project_id.rsplit("-", 1)[1]) for p in out) + 1 if out else 1
    for j in range(max(1, k // 3)):
        p = _project(rng, prefix, next_id + j, day)
        out.append(replace(p, updated=stamp))
    return out


def trainees(projects: list[Project], seed: int, district: str, month: int, float_ids: int = 3) -> list[Trainee]:
    """Trainees of the projects (stable per project, so months differ only where projects do);
    `float_ids` of them have IDs typed as numbers in Excel."""
    out = []
    for p in projects[: max(10, len(projects) // 2)]:
        rng = random.Random(f"{seed}:{p.project_id}:trainees")
        for j in range(rng.randrange(1, 3)):
            out.append(Trainee(
                trainee_id=f"MHT-{p.project_id[-6:]}-{j + 1}", name=rng.choice(SURNAMES) + rng.choice(GIVEN) + rng.choice(GIVEN),
                id_number=resident_id(rng, district),
                phone=f"1{rng.choice('3578')}{rng.randrange(0, 10**9):09d}", trainee_type=rng.choice(TRAINEE_TYPES),
                school=rng.choice(SCHOOLS)[0], company=rng.choice(COMPANIES)[0], major=rng.choice(MAJORS),
                education=rng.choice(EDUCATION), start=p.start + timedelta(days=rng.randrange(0, 200)),
                project_id=p.project_id))
    for t in out:  # a generator of its own, so every other value stays as it was
        t.employed = random.Random(f"{seed}:{t.trainee_id}:employed").choice(["已留用", "未留用", "已留用", ""])
    pick = random.Random(f"{seed}:{district}:float_ids")
    for t in pick.sample(out, min(float_ids, len(out))):
        t.id_as_number = True
    return out
