"""Deterministic data of the simulated Lingang platform, and its mutation.

Why it looks like this: the hub has to be tested against data shaped like the real
platform's (string amounts in 万元, local timestamps, mixed date forms, soft deletes, a
few dirty rows), identical for a given (seed, scale) in any process, and fast enough to
generate a million records in seconds. So every module draws from its own
``random.Random`` seeded by a string (stable across processes, unlike ``hash()``), the
clock is a fixed base rather than ``time.time()``, and record generation avoids
``datetime`` and ``random.choice`` on the hot path (index arithmetic on ``random()``
instead).

Records of a module are kept as ``Row`` objects in one list sorted by
(updateTime, id); the JSON bytes of each record are cached on the row the first time it
is served and dropped when the record changes, so a page is a ``b",".join`` of cached
bytes.
"""

from __future__ import annotations

import calendar
import gc
import re
import threading
from bisect import bisect_left
from datetime import datetime, timedelta
from operator import attrgetter
from random import Random
from typing import Any, Callable

import orjson

MODULES: tuple[str, ...] = (
    "notices",
    "talent_demands",
    "talent_supplies",
    "cooperations",
    "rd_projects",
    "tech_services",
)

#: records per module at scale 1.0
BASE_SIZES: dict[str, int] = {
    "notices": 2000,
    "talent_demands": 5000,
    "talent_supplies": 3000,
    "cooperations": 1500,
    "rd_projects": 1000,
    "tech_services": 1500,
}

ID_PREFIX: dict[str, str] = {
    "notices": "NT",
    "talent_demands": "TD",
    "talent_supplies": "TS",
    "cooperations": "CO",
    "rd_projects": "RD",
    "tech_services": "SV",
}

# --------------------------------------------------------------------------- clock
# Times are integers: seconds since 1970-01-01 00:00:00 *local wall time* (Asia/Shanghai
# has no DST since 1991, so wall time arithmetic is exact). This keeps formatting a table
# look-up instead of a datetime call per field.

BASE_TIME: int = calendar.timegm((2026, 1, 1, 0, 0, 0))
"""The data clock's base: 2026-01-01 00:00:00 Asia/Shanghai. Generated updateTimes are before it."""

HISTORY_SECONDS: int = 3 * 365 * 86400

_TABLE_START = datetime(2015, 1, 1)
_TABLE_DAYS = 365 * 31
_DAY0: int = calendar.timegm(_TABLE_START.timetuple()) // 86400
_DAY_YMD: list[tuple[int, int, int]] = []
_DAY_ISO: list[str] = []
for _i in range(_TABLE_DAYS):
    _d = _TABLE_START + timedelta(days=_i)
    _DAY_YMD.append((_d.year, _d.month, _d.day))
    _DAY_ISO.append(f"{_d.year:04d}-{_d.month:02d}-{_d.day:02d}")
_DAY_ISO_SP: list[str] = [s + " " for s in _DAY_ISO]
_HMS: list[str] = [f"{h:02d}:{m:02d}:{s:02d}" for h in range(24) for m in range(60) for s in range(60)]


def fmt_ts(t: int) -> str:
    """Format a local-seconds value as ``yyyy-MM-dd HH:mm:ss`` (the platform's time form)."""
    d = t // 86400 - _DAY0
    if 0 <= d < _TABLE_DAYS:
        return _DAY_ISO_SP[d] + _HMS[t % 86400]
    return (datetime(1970, 1, 1) + timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S")


def fmt_date(t: int) -> str:
    """Format a local-seconds value as ``yyyy-MM-dd``."""
    d = t // 86400 - _DAY0
    if 0 <= d < _TABLE_DAYS:
        return _DAY_ISO[d]
    return (datetime(1970, 1, 1) + timedelta(seconds=t)).strftime("%Y-%m-%d")


def _ymd(t: int) -> tuple[int, int, int]:
    d = t // 86400 - _DAY0
    if 0 <= d < _TABLE_DAYS:
        return _DAY_YMD[d]
    x = datetime(1970, 1, 1) + timedelta(seconds=t)
    return (x.year, x.month, x.day)


_TS_RE = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) (\d{2}):(\d{2}):(\d{2})$")


def parse_ts(text: str) -> int | None:
    """Parse ``yyyy-MM-dd HH:mm:ss`` strictly into local seconds; None when malformed or impossible."""
    m = _TS_RE.match(text)
    if not m:
        return None
    try:
        dt = datetime(*(int(g) for g in m.groups()))
    except ValueError:
        return None
    return calendar.timegm(dt.timetuple())


# ------------------------------------------------------------------ credit codes
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
_USCC_WEIGHTS = [pow(3, i, 31) for i in range(17)]
_ORG_WEIGHTS = [3, 7, 9, 10, 5, 8, 4, 2]


def _org_code_value(c: str) -> int:
    return int(c) if c.isdigit() else ord(c) - 55


def uscc_check_char(first17: str) -> str:
    """GB 32100-2015 check character for the first 17 characters."""
    total = sum(_USCC_VALUE[c] * w for c, w in zip(first17, _USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def uscc_valid(code: str) -> bool:
    """True when ``code`` is an 18-character USCC with a correct GB 32100 check character.

    Lives here so the sandbox's own tests can tell generated-valid from dirty codes
    without importing the hub's validator (the sandbox imports nothing of the hub).
    """
    if len(code) != 18 or any(c not in _USCC_VALUE for c in code):
        return False
    return uscc_check_char(code[:17]) == code[17]


def make_uscc(rng: Random, reg: str, area: str) -> str:
    """A valid USCC: registration dept+type (2), area (6), GB 11714 org code (9), check (1)."""
    chars = "0123456789ABCDEFGHJKLMNPQRTUWXY"
    if reg == "91":  # newer enterprise codes start their org code with "MA"
        body = "MA" + "".join(chars[int(rng.random() * 31)] for _ in range(6))
    else:
        body = "".join(chars[int(rng.random() * 10)] for _ in range(8))
    s = sum(_org_code_value(c) * w for c, w in zip(body, _ORG_WEIGHTS))
    c9 = 11 - s % 11
    org = body + ("X" if c9 == 10 else "0" if c9 == 11 else str(c9))
    first17 = reg + area + org
    return first17 + uscc_check_char(first17)


def registered_uscc(name: str, reg: str, area: str) -> str:
    """The one USCC a real organisation carries in every simulated system and for every seed.

    A real organisation has a single registration, so its code derives from its name alone:
    上海电机学院 is the same code on the platform, in the municipal database and in a district's
    files, which is what lets the hub recognise it as one organisation.
    """
    return make_uscc(Random(f"uscc:{name}"), reg, area)


def corrupt_uscc(code: str, rng: Random) -> str:
    """Change one character so the GB 32100 check fails (weights are non-zero mod 31, so it always does)."""
    pos = int(rng.random() * 18)
    old = code[pos]
    choices = [c for c in USCC_ALPHABET if c != old]
    return code[:pos] + choices[int(rng.random() * len(choices))] + code[pos + 1 :]


# ------------------------------------------------------------------ vocabularies
INDUSTRIES = ["集成电路", "人工智能", "生物医药", "民用航空", "智能新能源汽车", "高端装备制造", "绿色再制造", "氢能与新型储能"]

_POSTS: dict[str, list[str]] = {
    "集成电路": ["芯片测试工程师", "版图设计工程师", "工艺整合工程师", "设备维护工程师", "封装工艺工程师"],
    "人工智能": ["算法工程师", "机器学习工程师", "计算机视觉工程师", "数据标注工程师", "大模型应用工程师"],
    "生物医药": ["生物制药工艺员", "QC检测员", "临床研究协调员", "医疗器械注册专员", "细胞培养技术员"],
    "民用航空": ["飞机装配工", "航空维修工程师", "复合材料工艺员", "适航工程师", "航电测试工程师"],
    "智能新能源汽车": ["电池工艺工程师", "整车装调工", "电驱测试工程师", "智能驾驶软件工程师", "汽车电子工程师"],
    "高端装备制造": ["数控加工技师", "机电一体化工程师", "焊接工艺工程师", "工业机器人运维员", "海工装备设计师"],
    "绿色再制造": ["再制造工艺工程师", "表面工程技术员", "环境检测员", "无损检测工程师"],
    "氢能与新型储能": ["燃料电池测试工程师", "储能系统工程师", "电化学工程师", "氢能装备运维员"],
}
_MAJORS: dict[str, list[str]] = {
    "集成电路": ["微电子科学与工程", "集成电路设计与集成系统", "电子信息工程", "微电子技术"],
    "人工智能": ["人工智能", "计算机科学与技术", "数据科学与大数据技术", "软件工程"],
    "生物医药": ["生物制药", "药学", "生物医学工程", "药物制剂技术"],
    "民用航空": ["飞行器制造工程", "飞机机电设备维修", "航空材料精密成型技术", "交通运输"],
    "智能新能源汽车": ["新能源汽车技术", "车辆工程", "电气工程及其自动化", "汽车电子技术"],
    "高端装备制造": ["机械设计制造及其自动化", "机电一体化技术", "工业机器人技术", "智能制造工程"],
    "绿色再制造": ["材料成型及控制工程", "环境工程", "机械制造及自动化"],
    "氢能与新型储能": ["新能源科学与工程", "储能科学与工程", "应用化学"],
}
_TOPICS: dict[str, list[str]] = {
    "集成电路": ["12英寸晶圆制造", "功率半导体器件", "先进封装", "EDA工具链"],
    "人工智能": ["工业视觉检测", "大模型推理加速", "智能语音交互", "多模态数据治理"],
    "生物医药": ["神经介入器械", "细胞治疗", "高端医学影像", "创新药制剂"],
    "民用航空": ["大飞机复合材料", "航电系统集成", "航空发动机零部件", "机体结构装配"],
    "智能新能源汽车": ["动力电池热管理", "智能驾驶感知", "电驱系统", "车规级芯片"],
    "高端装备制造": ["深水装备", "工业机器人", "高端数控机床", "海洋工程装备"],
    "绿色再制造": ["发动机再制造", "激光熔覆修复", "废旧电池回收", "绿色表面工程"],
    "氢能与新型储能": ["燃料电池电堆", "储能变流器", "电力电子变换", "液氢储运"],
}

DISTRICTS = ["310101", "310104", "310105", "310106", "310107", "310109", "310110", "310112",
             "310113", "310114", "310116", "310117", "310118", "310120", "310151"]
PUDONG = "310115"

EDUCATION = ["中专", "大专", "本科", "硕士", "博士"]
NOTICE_CATEGORIES = ["政策", "通知", "公示", "活动"]
COOP_TYPES = ["订单班", "现代学徒制", "共建实训基地", "产业学院", "联合研发", "实习就业基地"]
COOP_STATUS = ["进行中", "已完成", "已终止"]
RD_STATUS = ["立项", "在研", "结题"]
SERVICE_TYPES = ["检验检测", "技术咨询", "技术开发", "技术转让", "设备共享"]

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉萍红兰飞鹏辉建国晨阳宇浩然欣怡子涵梓萱思远嘉俊雨婷佳琪一诺文博天佑志强海燕晓东春梅立新"

_REAL_SCHOOLS: list[tuple[str, str]] = [  # (name, kind) kind: u = university, v = vocational
    ("上海电机学院", "u"), ("上海电力大学", "u"), ("上海海洋大学", "u"), ("上海海事大学", "u"),
    ("上海建桥学院", "u"), ("上海电子信息职业技术学院", "v"), ("上海农林职业技术学院", "v"),
    ("上海科技大学", "u"), ("上海交通大学", "u"), ("同济大学", "u"), ("华东理工大学", "u"),
    ("上海工程技术大学", "u"), ("上海应用技术大学", "u"), ("上海第二工业大学", "u"),
    ("上海城建职业学院", "v"), ("上海工商职业技术学院", "v"),
]
_REAL_ENTERPRISES: list[tuple[str, str]] = [
    ("上海积塔半导体有限公司", "集成电路"), ("上海商汤科技开发有限公司", "人工智能"),
    ("上海心玮医疗科技股份有限公司", "生物医药"), ("上海遨拓深水装备技术开发有限公司", "高端装备制造"),
    ("上海临港电力电子研究有限公司", "氢能与新型储能"), ("上海临港经济发展（集团）有限公司", "高端装备制造"),
    ("特斯拉（上海）有限公司", "智能新能源汽车"), ("上海华力微电子有限公司", "集成电路"),
    ("中国商用飞机有限责任公司", "民用航空"), ("上海微电子装备（集团）股份有限公司", "集成电路"),
    ("上海电气集团股份有限公司", "高端装备制造"), ("上海联影医疗科技股份有限公司", "生物医药"),
]
_SCHOOL_PLACES = ["浦江", "东海", "滨江", "南汇", "申江", "海湾", "泥城", "书院", "芦潮", "万祥", "港城", "滴水湖", "海港", "临江", "浦东", "星火"]
_SCHOOL_KINDS = [("职业技术学院", "v"), ("技师学院", "v"), ("工程职业学院", "v"), ("科技职业学院", "v"), ("中等职业学校", "v"), ("应用技术学院", "u")]
_BRANDS = ["浦芯", "临芯", "海澜", "东岸", "港城", "滴湖", "新翼", "星舟", "蓝湾", "芯跃", "智岸", "启航", "海擎", "申研",
           "洋山", "鲲程", "澜舟", "极智", "恒睿", "晟达", "沪芯", "驰界", "翎翔", "曜能", "氢舟", "岸峰", "朗擎", "汇川"]
_CORES: dict[str, list[str]] = {
    "集成电路": ["半导体", "微电子", "芯片技术"], "人工智能": ["智能科技", "数据科技", "机器人"],
    "生物医药": ["生物医药", "医疗器械", "生命科技"], "民用航空": ["航空科技", "航空装备"],
    "智能新能源汽车": ["新能源汽车", "汽车电子", "动力科技"], "高端装备制造": ["精密机械", "智能装备", "海工装备"],
    "绿色再制造": ["再制造技术", "环保科技"], "氢能与新型储能": ["氢能科技", "储能技术"],
}
_NOTICE_THINGS = ["项目申报", "实训基地认定", "订单班招生", "校企合作典型案例征集", "人才需求调研", "产教融合型企业认定", "技能竞赛报名"]

_FW = str.maketrans("0123456789", "０１２３４５６７８９")


class Org:
    """An organisation of the fixed pool: name, USCC, main industry, school kind."""

    __slots__ = ("name", "code", "industry", "kind")

    def __init__(self, name: str, code: str, industry: str, kind: str) -> None:
        self.name, self.code, self.industry, self.kind = name, code, industry, kind


def build_orgs(seed: int) -> tuple[list[Org], list[Org]]:
    """Schools and enterprises: real programme names plus generated ones, with valid USCCs.

    Depends on the seed only (not on scale), so the same organisation carries the same
    code in every module and every instance with that seed.
    """
    rng = Random(f"lingang:{seed}:orgs")
    schools: list[Org] = []
    for name, kind in _REAL_SCHOOLS:
        make_uscc(rng, "12", "310000")  # still drawn, so every later value of the seed's stream stays as it was
        schools.append(Org(name, registered_uscc(name, "12", "310000"), INDUSTRIES[int(rng.random() * 8)], kind))
    seen = {o.name for o in schools}
    while len(schools) < 40:
        k, kind = _SCHOOL_KINDS[int(rng.random() * len(_SCHOOL_KINDS))]
        name = "上海" + _SCHOOL_PLACES[int(rng.random() * len(_SCHOOL_PLACES))] + k
        if name in seen:
            continue
        seen.add(name)
        reg = "52" if rng.random() < 0.3 else "12"  # 民办 schools register with 民政
        schools.append(Org(name, make_uscc(rng, reg, PUDONG if rng.random() < 0.6 else DISTRICTS[int(rng.random() * 15)]),
                           INDUSTRIES[int(rng.random() * 8)], kind))
    ents: list[Org] = []
    for name, ind in _REAL_ENTERPRISES:
        make_uscc(rng, "91", PUDONG if rng.random() < 0.8 else "310000")  # drawn as before (see above)
        ents.append(Org(name, registered_uscc(name, "91", PUDONG), ind, "e"))
    seen = {o.name for o in ents}
    while len(ents) < 200:
        ind = INDUSTRIES[int(rng.random() * 8)]
        cores = _CORES[ind]
        name = "上海" + _BRANDS[int(rng.random() * len(_BRANDS))] + cores[int(rng.random() * len(cores))] + (
            "股份有限公司" if rng.random() < 0.2 else "有限公司")
        if name in seen:
            continue
        seen.add(name)
        ents.append(Org(name, make_uscc(rng, "91", PUDONG if rng.random() < 0.7 else DISTRICTS[int(rng.random() * 15)]), ind, "e"))
    return schools, ents


class Row:
    """One record plus its sort key and cached JSON bytes (None until first served / after a change)."""

    __slots__ = ("ut", "id", "rec", "blob")

    def __init__(self, ut: int, rid: str, rec: dict[str, Any]) -> None:
        self.ut = ut
        self.id = rid
        self.rec = rec
        self.blob: bytes | None = None


_UT = attrgetter("ut")
_SORT_KEY = attrgetter("ut", "id")

Gen = Callable[[Callable[[], float], str, int, int], dict[str, Any]]


def _make_generators(schools: list[Org], ents: list[Org]) -> dict[str, Gen]:
    """Per-module record generators ``gen(r, rid, createTime, updateTime) -> dict``.

    Closures over local pools so the hot path is list indexing on ``r()`` draws.
    """
    ns, ne = len(schools), len(ents)
    all_majors = [(m, ind) for ind in INDUSTRIES for m in _MAJORS[ind]]
    nmaj = len(all_majors)

    def area(r: Callable[[], float]) -> str:
        x = r()
        return PUDONG if x < 0.6 else DISTRICTS[int((x - 0.6) * 37.5)]

    def person(r: Callable[[], float]) -> str:
        n = SURNAMES[int(r() * len(SURNAMES))] + GIVEN[int(r() * len(GIVEN))]
        if r() < 0.6:
            n += GIVEN[int(r() * len(GIVEN))]
        return n

    def mixed_date(r: Callable[[], float], t: int) -> str:
        y, m, d = _ymd(t)
        x = r()
        if x < 0.55:
            return f"{y:04d}-{m:02d}-{d:02d}"
        if x < 0.7:
            return f"{y}/{m}/{d}"
        if x < 0.82:
            return f"{y}年{m}月{d}日"
        if x < 0.92:
            return f"{y:04d}{m:02d}{d:02d}"
        return f"{y:04d}.{m:02d}.{d:02d}"

    def notices(r: Callable[[], float], rid: str, ct: int, ut: int) -> dict[str, Any]:
        pub = ents[int(r() * ne)] if r() < 0.35 else schools[int(r() * ns)]
        ind = INDUSTRIES[int(r() * 8)]
        cat = NOTICE_CATEGORIES[int(r() * 4)]
        thing = _NOTICE_THINGS[int(r() * len(_NOTICE_THINGS))]
        y = _ymd(ct)[0]
        if cat == "政策":
            title = f"临港新片区关于支持{ind}产业{thing}的若干措施"
        elif cat == "公示":
            title = f"{y}年度临港新片区{ind}领域{thing}拟入选名单公示"
        elif cat == "活动":
            title = f"{ind}产教融合对接会（第{1 + int(r() * 30)}期）"
        else:
            title = f"关于开展{y}年度{ind}领域{thing}工作的通知"
        return {
            "id": rid, "title": title, "category": cat, "publisher": pub.name, "publisherCreditCode": pub.code,
            "publishTime": fmt_ts(ct - int(r() * 86400)),
            "content": f"{pub.name}发布{cat}：围绕{ind}产业人才需求，推进{thing}，请相关院校和企业按要求办理。",
            "url": f"https://cjrh.lingang.sandbox/notice/{rid}.html",
            "areaCode": area(r), "createTime": fmt_ts(ct), "updateTime": fmt_ts(ut), "isDeleted": 0,
        }

    def talent_demands(r: Callable[[], float], rid: str, ct: int, ut: int) -> dict[str, Any]:
        org = ents[int(r() * ne)]
        ind = org.industry
        posts, majors = _POSTS[ind], _MAJORS[ind]
        hc: int | str = 1 + int(r() * 30)
        if r() < 0.15:
            hc = str(hc)
        smin = 4000 + 500 * int(r() * 33)
        pub = ct - int(r() * 5 * 86400)
        return {
            "id": rid, "orgName": org.name, "creditCode": org.code, "industry": ind,
            "postName": posts[int(r() * len(posts))], "major": majors[int(r() * len(majors))],
            "education": EDUCATION[1 + int(r() * 4)] if r() < 0.85 else "中专", "headcount": hc,
            "salaryMin": str(smin), "salaryMax": str(smin + 1000 * (1 + int(r() * 15))),
            "publishDate": mixed_date(r, pub), "validUntil": mixed_date(r, pub + (30 + int(r() * 335)) * 86400),
            "contactName": person(r), "contactPhone": f"1{3 + int(r() * 7)}{int(r() * 1e9):09d}",
            "areaCode": area(r), "createTime": fmt_ts(ct), "updateTime": fmt_ts(ut), "isDeleted": 0,
        }

    def talent_supplies(r: Callable[[], float], rid: str, ct: int, ut: int) -> dict[str, Any]:
        sch = schools[int(r() * ns)]
        major, ind = all_majors[int(r() * nmaj)]
        edu = EDUCATION[int(r() * 2)] if sch.kind == "v" else EDUCATION[2 + int(r() * r() * 3)]
        return {
            "id": rid, "schoolName": sch.name, "schoolCreditCode": sch.code, "major": major, "education": edu,
            "graduateCount": 10 + int(r() * 290), "graduateYear": _ymd(ct)[0] + int(r() * 3), "industry": ind,
            "publishDate": fmt_date(ct - int(r() * 3 * 86400)),
            "areaCode": area(r), "createTime": fmt_ts(ct), "updateTime": fmt_ts(ut), "isDeleted": 0,
        }

    def cooperations(r: Callable[[], float], rid: str, ct: int, ut: int) -> dict[str, Any]:
        sch = schools[int(r() * ns)]
        ent = ents[int(r() * ne)]
        start = ct + int(r() * 60) * 86400
        end = start + (365 + int(r() * 3 * 365)) * 86400
        x = r()
        status = "已完成" if end < BASE_TIME and x < 0.8 else ("已终止" if x > 0.95 else "进行中")
        return {
            "id": rid, "schoolName": sch.name, "schoolCreditCode": sch.code, "enterpriseName": ent.name,
            "enterpriseCreditCode": ent.code, "coopType": COOP_TYPES[int(r() * 6)], "industry": ent.industry,
            "startDate": fmt_date(start), "endDate": fmt_date(end), "amount": "%.1f" % (5 + r() * 495),
            "status": status, "areaCode": area(r), "createTime": fmt_ts(ct), "updateTime": fmt_ts(ut), "isDeleted": 0,
        }

    def rd_projects(r: Callable[[], float], rid: str, ct: int, ut: int) -> dict[str, Any]:
        lead = ents[int(r() * ne)] if r() < 0.6 else schools[int(r() * ns)]
        partner = schools[int(r() * ns)] if lead.kind == "e" else ents[int(r() * ne)]
        ind = lead.industry
        topics = _TOPICS[ind]
        start = ct + int(r() * 90) * 86400
        end = start + (365 + int(r() * 2 * 365)) * 86400
        status = "结题" if end < BASE_TIME else ("在研" if r() < 0.8 else "立项")
        return {
            "id": rid, "projectName": f"{topics[int(r() * len(topics))]}关键技术研究与产业化",
            "leadOrgName": lead.name, "leadCreditCode": lead.code, "partnerOrgName": partner.name, "industry": ind,
            "budget": "%.2f" % (20 + r() * 1980), "startDate": fmt_date(start), "endDate": fmt_date(end),
            "status": status, "areaCode": area(r), "createTime": fmt_ts(ct), "updateTime": fmt_ts(ut), "isDeleted": 0,
        }

    def tech_services(r: Callable[[], float], rid: str, ct: int, ut: int) -> dict[str, Any]:
        prov = ents[int(r() * ne)] if r() < 0.7 else schools[int(r() * ns)]
        ind = prov.industry
        topics = _TOPICS[ind]
        st = SERVICE_TYPES[int(r() * 5)]
        return {
            "id": rid, "serviceName": f"{topics[int(r() * len(topics))]}{st}服务", "providerName": prov.name,
            "providerCreditCode": prov.code, "serviceType": st, "industry": ind, "price": "%.1f" % (0.5 + r() * 99.5),
            "publishDate": fmt_date(ct), "areaCode": area(r), "createTime": fmt_ts(ct), "updateTime": fmt_ts(ut),
            "isDeleted": 0,
        }

    return {
        "notices": notices, "talent_demands": talent_demands, "talent_supplies": talent_supplies,
        "cooperations": cooperations, "rd_projects": rd_projects, "tech_services": tech_services,
    }


# Fields that dirty rows may spoil, per module.
_DATE_FIELDS = {
    "notices": ["publishTime"], "talent_demands": ["publishDate", "validUntil"], "talent_supplies": ["publishDate"],
    "cooperations": ["startDate", "endDate"], "rd_projects": ["startDate", "endDate"], "tech_services": ["publishDate"],
}
_AMOUNT_FIELDS = {
    "notices": [], "talent_demands": ["salaryMin", "salaryMax"], "talent_supplies": [],
    "cooperations": ["amount"], "rd_projects": ["budget"], "tech_services": ["price"],
}
_CODE_FIELDS = {
    "notices": ["publisherCreditCode"], "talent_demands": ["creditCode"], "talent_supplies": ["schoolCreditCode"],
    "cooperations": ["schoolCreditCode", "enterpriseCreditCode"], "rd_projects": ["leadCreditCode"],
    "tech_services": ["providerCreditCode"],
}
_NAME_FIELDS = {
    "notices": ["publisher"], "talent_demands": ["orgName"], "talent_supplies": ["schoolName"],
    "cooperations": ["enterpriseName", "schoolName"], "rd_projects": ["leadOrgName"], "tech_services": ["providerName"],
}

#: dirty kinds and whether a careful hub can normalise them (True) or must reject them (False)
DIRTY_KINDS: dict[str, bool] = {
    "bad_date": False, "amount_text": False, "bad_uscc": False, "fullwidth": True, "spaces": True,
}


def _spoil(module: str, rec: dict[str, Any], r: Random) -> dict[str, Any]:
    """Make one record dirty in one way; returns {kind, field, normalisable}."""
    kinds = ["bad_date", "bad_uscc", "fullwidth", "spaces"]
    if _AMOUNT_FIELDS[module]:
        kinds.append("amount_text")
    kind = kinds[int(r.random() * len(kinds))]
    if kind == "bad_date":
        f = _DATE_FIELDS[module][int(r.random() * len(_DATE_FIELDS[module]))]
        bad = ["2023-02-30", "待定", "2023-13-01", "0000-00-00"][int(r.random() * 4)]
        rec[f] = bad + " 10:00:00" if f == "publishTime" and bad[0].isdigit() else bad
    elif kind == "amount_text":
        f = _AMOUNT_FIELDS[module][int(r.random() * len(_AMOUNT_FIELDS[module]))]
        rec[f] = ["面议", "待定", "--"][int(r.random() * 3)]
    elif kind == "bad_uscc":
        f = _CODE_FIELDS[module][int(r.random() * len(_CODE_FIELDS[module]))]
        rec[f] = corrupt_uscc(rec[f], r)
    elif kind == "fullwidth":
        fields = _AMOUNT_FIELDS[module] or _DATE_FIELDS[module]
        f = fields[int(r.random() * len(fields))]
        rec[f] = str(rec[f]).translate(_FW)
    else:
        f = _NAME_FIELDS[module][int(r.random() * len(_NAME_FIELDS[module]))]
        rec[f] = [" ", "\u3000", "  "][int(r.random() * 3)] + rec[f] + [" ", "\u3000", " \u3000"][int(r.random() * 3)]
    return {"kind": kind, "field": f, "normalisable": DIRTY_KINDS[kind]}


def _update_fields(module: str, rec: dict[str, Any], r: Random) -> None:
    """A plausible user edit of a record (the fields the platform's users edit most)."""
    if module == "notices":
        rec["content"] = rec["content"].removesuffix("（已更新）") + "（已更新）"
    elif module == "talent_demands":
        hc = 1 + int(r.random() * 30)
        rec["headcount"] = str(hc) if isinstance(rec["headcount"], str) else hc
    elif module == "talent_supplies":
        rec["graduateCount"] = 10 + int(r.random() * 290)
    elif module == "cooperations":
        rec["status"] = COOP_STATUS[int(r.random() * 3)]
    elif module == "rd_projects":
        rec["status"] = RD_STATUS[int(r.random() * 3)]
    else:
        rec["price"] = "%.1f" % (0.5 + r.random() * 99.5)


class LingangData:
    """All modules' records, the data clock, and the operations the server and tests need.

    One lock guards everything: pages are assembled under it (cheap: slicing and joining
    cached bytes) so a concurrent ``mutate`` or ``shift`` never yields a torn page.
    """

    def __init__(self, seed: int = 7, scale: float = 1.0, dirty_ratio: float = 0.01) -> None:
        self.seed = seed
        self.scale = scale
        self.dirty_ratio = dirty_ratio
        self.lock = threading.RLock()
        self.schools, self.enterprises = build_orgs(seed)
        self._gens = _make_generators(self.schools, self.enterprises)
        self.rows: dict[str, list[Row]] = {}
        self.next_seq: dict[str, int] = {}
        self.id_width: dict[str, int] = {}
        self.dirty: dict[str, dict[str, dict[str, Any]]] = {}
        self.clock: int = BASE_TIME
        self.mutations = 0
        # The cyclic GC would rescan every record dict built so far many times over (the
        # records hold no cycles); pausing it takes about a third off generating a million rows.
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            for m in MODULES:
                self._generate(m)
        finally:
            if was_enabled:
                gc.enable()

    def _generate(self, module: str) -> None:
        n = max(1, round(BASE_SIZES[module] * self.scale))
        rng = Random(f"lingang:{self.seed}:{module}")
        r = rng.random
        dirt_rng = Random(f"lingang:{self.seed}:{module}:dirty")
        dr = dirt_rng.random
        ratio = self.dirty_ratio
        gen = self._gens[module]
        prefix = ID_PREFIX[module]
        width = max(6, len(str(n)))
        newest = BASE_TIME - 1
        dirty: dict[str, dict[str, Any]] = {}
        rows: list[Row] = []
        append = rows.append
        for i in range(n):
            ct = newest - int(r() * HISTORY_SECONDS)
            ut = ct + int(r() * r() * (newest - ct))
            rid = f"{prefix}{_ymd(ct)[0]}{i + 1:0{width}d}"
            rec = gen(r, rid, ct, ut)
            if dr() < ratio:
                dirty[rid] = _spoil(module, rec, dirt_rng)
            append(Row(ut, rid, rec))
        rows.sort(key=_SORT_KEY)
        self.rows[module] = rows
        self.next_seq[module] = n + 1
        self.id_width[module] = width
        self.dirty[module] = dirty

    # ------------------------------------------------------------------ reading
    def size(self, module: str) -> int:
        return len(self.rows[module])

    def page(self, module: str, since: int | None, offset: int, size: int,
             drift: bool = False) -> tuple[int, list[bytes]]:
        """(total matching since, JSON bytes of the records at [offset, offset+size) of that match)."""
        with self.lock:
            rows = self.rows[module]
            start = 0 if since is None else bisect_left(rows, since, key=_UT)
            total = len(rows) - start
            chunk = rows[start + offset: start + offset + size] if offset < total else []
            if drift:
                out = []
                for row in chunk:
                    rec = dict(row.rec)
                    if "areaCode" in rec:
                        rec = {("regionCode" if k == "areaCode" else k): v for k, v in rec.items()}
                    out.append(orjson.dumps(rec))
                return total, out
            blobs = []
            for row in chunk:
                b = row.blob
                if b is None:
                    # Copy out of orjson's oversized buffer: keeping orjson's own result
                    # alive costs ~4 µs/record in heap growth (brk churn), the copy 0.1 µs.
                    b = row.blob = memoryview(orjson.dumps(row.rec)).tobytes()
                blobs.append(b)
            return total, blobs

    def records(self, module: str, *, include_deleted: bool = True) -> list[dict[str, Any]]:
        """Copies of the current records in serving order (updateTime, id)."""
        with self.lock:
            return [dict(row.rec) for row in self.rows[module] if include_deleted or not row.rec["isDeleted"]]

    # ------------------------------------------------------------------ writing
    def _tick(self) -> int:
        t = self.clock
        self.clock += 1
        return t

    def mutate(self, *, changed: float = 0.01, seed: int | None = None) -> dict[str, dict[str, int]]:
        """Update, insert and soft-delete about ``changed`` of each module's records.

        Touched rows get updateTimes after every existing one (the clock first jumps an
        hour, as if time passed between syncs), a few edits share a second so the id
        tie-break matters. Deterministic for (platform seed, seed or mutation count).
        """
        with self.lock:
            self.mutations += 1
            tag = f"s{seed}" if seed is not None else f"n{self.mutations}"
            self.clock += 3600
            counts: dict[str, dict[str, int]] = {}
            for m in MODULES:
                rng = Random(f"lingang:{self.seed}:mutate:{tag}:{m}")
                rows = self.rows[m]
                n = len(rows)
                k = max(1, round(n * changed)) if changed > 0 else 0
                n_ins = round(k * 0.2)
                n_del = round(k * 0.1)
                n_upd = max(0, k - n_ins - n_del)
                picks = rng.sample(range(n), min(n, n_upd + n_del))
                touched: list[Row] = []
                upd = dele = 0
                for j, idx in enumerate(picks):
                    row = rows[idx]
                    if row.rec["isDeleted"]:
                        continue
                    if j < n_del:
                        row.rec["isDeleted"] = 1
                        dele += 1
                    else:
                        _update_fields(m, row.rec, rng)
                        upd += 1
                    touched.append(row)
                keep_ids = {id(row) for row in touched}
                remaining = [row for row in rows if id(row) not in keep_ids] if touched else rows
                rng.shuffle(touched)
                base = self.clock
                for j, row in enumerate(touched):
                    row.ut = base + j // 4
                    row.rec["updateTime"] = fmt_ts(row.ut)
                    row.blob = None
                if touched:
                    self.clock = touched[-1].ut + 1
                gen = self._gens[m]
                prefix = ID_PREFIX[m]
                r = rng.random
                new_rows = []
                for _ in range(n_ins):
                    t = self._tick()
                    seq = self.next_seq[m]
                    self.next_seq[m] = seq + 1
                    rid = f"{prefix}{_ymd(t)[0]}{seq:0{self.id_width[m]}d}"
                    new_rows.append(Row(t, rid, gen(r, rid, t, t)))
                touched.sort(key=_SORT_KEY)
                remaining.extend(touched)
                remaining.extend(new_rows)
                self.rows[m] = remaining
                counts[m] = {"updated": upd, "inserted": n_ins, "soft_deleted": dele}
            return counts

    def shift(self, module: str, u: float) -> str | None:
        """Edit one record (picked by ``u`` in [0,1)) as a user would mid-pagination; returns its id."""
        with self.lock:
            rows = self.rows[module]
            if not rows:
                return None
            idx = min(len(rows) - 1, int(u * len(rows)))
            row = rows.pop(idx)
            _update_fields(module, row.rec, Random(f"shift:{row.id}:{self.clock}"))
            row.ut = self._tick()
            row.rec["updateTime"] = fmt_ts(row.ut)
            row.blob = None
            rows.append(row)
            return row.id
