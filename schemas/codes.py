"""Code lists shared by the canonical entities.

Codes are what we store and publish; labels are what people read. Sources send either
(often the Chinese label, sometimes with a suffix such as 区), so every list can resolve
free text back to its code with :meth:`CodeList.code_for`. Lists whose codes are Chinese
words (the Lingang platform's own enumerations) keep them as the platform sends them,
because consumers in the programme read and filter on those words.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

__all__ = [
    "CodeList",
    "CODE_LISTS",
    "PROVINCE_CODES",
    "RETIRED_DISTRICT_SUCCESSORS",
    "district_for_prefix",
    "industry_code_for",
    "education_code_for",
    "get_code_list",
]

_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}


def _key(text: str) -> str:
    """Lookup key: half-width, trimmed, no inner spaces, case-folded.

    Kept local (instead of importing normalise) so codes.py stays a leaf module.
    """
    return "".join(text.translate(_FULLWIDTH).split()).casefold()


@dataclass(frozen=True)
class CodeList:
    """A closed list of codes with Chinese and English labels.

    ``aliases`` maps extra spellings seen in sources (e.g. 浦东, 新能源汽车) to codes;
    they are accepted by :meth:`code_for` but never published.
    """

    name: str
    zh: str
    en: str
    entries: dict[str, tuple[str, str]]
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for alias, code in self.aliases.items():
            if code not in self.entries:
                raise ValueError(f"code list {self.name}: alias {alias!r} points to unknown code {code!r}")
        # Frozen dataclass: build the lookup once via object.__setattr__.
        lookup: dict[str, str] = {}
        for code, (zh, en) in self.entries.items():
            for spelling in (code, zh, en):
                lookup.setdefault(_key(spelling), code)
        for alias, code in self.aliases.items():
            lookup.setdefault(_key(alias), code)
        object.__setattr__(self, "_lookup", MappingProxyType(lookup))

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code in self.entries

    def __hash__(self) -> int:  # entries is a dict; identity by name is enough
        return hash(self.name)

    @property
    def codes(self) -> tuple[str, ...]:
        """The codes in their declared order."""
        return tuple(self.entries)

    def label(self, code: str, lang: str = "zh") -> str:
        """Label of ``code`` in ``lang`` ("zh" or "en"); KeyError for an unknown code."""
        try:
            zh, en = self.entries[code]
        except KeyError:
            raise KeyError(f"{code!r} is not a code of {self.name} (codes: {', '.join(self.codes)})") from None
        if lang == "zh":
            return zh
        if lang == "en":
            return en
        raise ValueError(f"lang must be 'zh' or 'en', not {lang!r}")

    def code_for(self, text: str | None) -> str | None:
        """Code for a code, a zh/en label or an alias (full-width and case tolerant); else None."""
        if text is None:
            return None
        lookup: Mapping[str, str] = self._lookup  # type: ignore[attr-defined]
        return lookup.get(_key(text))


# --- Shanghai districts (GB/T 2260) -------------------------------------------------------

_DISTRICTS: dict[str, tuple[str, str]] = {
    "310101": ("黄浦区", "Huangpu District"),
    "310104": ("徐汇区", "Xuhui District"),
    "310105": ("长宁区", "Changning District"),
    "310106": ("静安区", "Jing'an District"),
    "310107": ("普陀区", "Putuo District"),
    "310109": ("虹口区", "Hongkou District"),
    "310110": ("杨浦区", "Yangpu District"),
    "310112": ("闵行区", "Minhang District"),
    "310113": ("宝山区", "Baoshan District"),
    "310114": ("嘉定区", "Jiading District"),
    "310115": ("浦东新区", "Pudong New Area"),
    "310116": ("金山区", "Jinshan District"),
    "310117": ("松江区", "Songjiang District"),
    "310118": ("青浦区", "Qingpu District"),
    "310120": ("奉贤区", "Fengxian District"),
    "310151": ("崇明区", "Chongming District"),
}

# Short names (黄浦, 浦东) as sources often write them; 临港 is in 浦东新区.
_DISTRICT_ALIASES: dict[str, str] = {
    zh[:-1]: code for code, (zh, _) in _DISTRICTS.items() if zh.endswith("区") and not zh.endswith("新区")
}
_DISTRICT_ALIASES |= {"浦东": "310115", "临港": "310115", "临港新片区": "310115", "上海自贸区临港新片区": "310115"}

# Retired codes still printed on older resident ID numbers, with the district that absorbed them.
_RETIRED: dict[str, tuple[str, str, str | None]] = {
    "310100": ("市辖区", "City districts (prefix)", None),
    "310200": ("县", "Counties (prefix)", None),
    "310102": ("南市区", "Nanshi District (merged into Huangpu 2000)", "310101"),
    "310103": ("卢湾区", "Luwan District (merged into Huangpu 2011)", "310101"),
    "310108": ("闸北区", "Zhabei District (merged into Jing'an 2015)", "310106"),
    "310111": ("吴淞区", "Wusong District (merged into Baoshan 1988)", "310113"),
    "310119": ("南汇区", "Nanhui District (merged into Pudong 2009)", "310115"),
    "310221": ("上海县", "Shanghai County (merged into Minhang 1992)", "310112"),
    "310222": ("嘉定县", "Jiading County (became Jiading District 1992)", "310114"),
    "310223": ("宝山县", "Baoshan County (became Baoshan District 1988)", "310113"),
    "310224": ("川沙县", "Chuansha County (merged into Pudong 1993)", "310115"),
    "310225": ("南汇县", "Nanhui County (Nanhui District 2001, Pudong 2009)", "310115"),
    "310226": ("奉贤县", "Fengxian County (became Fengxian District 2001)", "310120"),
    "310227": ("松江县", "Songjiang County (became Songjiang District 1998)", "310117"),
    "310228": ("金山县", "Jinshan County (became Jinshan District 1997)", "310116"),
    "310229": ("青浦县", "Qingpu County (became Qingpu District 1999)", "310118"),
    "310230": ("崇明县", "Chongming County (became Chongming District 2016)", "310151"),
}

RETIRED_DISTRICT_SUCCESSORS: Mapping[str, str | None] = MappingProxyType(
    {code: successor for code, (_, _, successor) in _RETIRED.items()}
)
"""Retired Shanghai code -> current district code it merged into (None for the bare prefixes)."""

# Province-level codes of the PRC (GB/T 2260 first two digits) incl. 71 台湾, 81 香港, 82 澳门.
PROVINCE_CODES: frozenset[str] = frozenset(
    {
        "11", "12", "13", "14", "15",
        "21", "22", "23",
        "31", "32", "33", "34", "35", "36", "37",
        "41", "42", "43", "44", "45", "46",
        "50", "51", "52", "53", "54",
        "61", "62", "63", "64", "65",
        "71", "81", "82",
    }
)  # fmt: skip


def district_for_prefix(code6: str) -> tuple[str, str | None, bool] | None:
    """Resolve a 6-digit Shanghai division code: (zh name, current code or None, is retired).

    Used by the ID validator, which must accept IDs issued under codes retired since.
    """
    if code6 in _DISTRICTS:
        return _DISTRICTS[code6][0], code6, False
    if code6 in _RETIRED:
        zh, _, successor = _RETIRED[code6]
        return zh, successor, True
    return None


# --- Lingang 4+2+2 industries -------------------------------------------------------------

_INDUSTRIES: dict[str, tuple[str, str]] = {
    # 4 frontier industries
    "IC": ("集成电路", "Integrated circuits"),
    "AI": ("人工智能", "Artificial intelligence"),
    "BIOMED": ("生物医药", "Biomedicine"),
    "AVIATION": ("民用航空", "Civil aviation"),
    # 2 advantage industries
    "NEV": ("智能新能源汽车", "Intelligent new-energy vehicles"),
    "EQUIPMENT": ("高端装备制造", "High-end equipment manufacturing"),
    # 2 emerging industries
    "REMANUFACTURING": ("绿色再制造", "Green remanufacturing"),
    "HYDROGEN": ("氢能与新型储能", "Hydrogen and new energy storage"),
}
_INDUSTRY_ALIASES: dict[str, str] = {
    "集成电路产业": "IC",
    "芯片": "IC",
    "半导体": "IC",
    "人工智能产业": "AI",
    "生物医药产业": "BIOMED",
    "民航": "AVIATION",
    "航空": "AVIATION",
    "大飞机": "AVIATION",
    "新能源汽车": "NEV",
    "智能网联汽车": "NEV",
    "智能新能源汽车产业": "NEV",
    "高端装备": "EQUIPMENT",
    "高端装备制造业": "EQUIPMENT",
    "再制造": "REMANUFACTURING",
    "氢能": "HYDROGEN",
    "新型储能": "HYDROGEN",
    "氢能和新型储能": "HYDROGEN",
}

# --- Education levels ---------------------------------------------------------------------

_EDUCATION: dict[str, tuple[str, str]] = {
    "secondary": ("中专", "Secondary vocational"),
    "associate": ("大专", "Associate (higher vocational)"),
    "bachelor": ("本科", "Bachelor"),
    "master": ("硕士", "Master"),
    "doctorate": ("博士", "Doctorate"),
}
_EDUCATION_ALIASES: dict[str, str] = {
    "中职": "secondary",
    "中等职业": "secondary",
    "中专/技校": "secondary",
    "技校": "secondary",
    "专科": "associate",
    "高职": "associate",
    "高职高专": "associate",
    "大专及以上": "associate",
    "学士": "bachelor",
    "本科及以上": "bachelor",
    "大学本科": "bachelor",
    "硕士研究生": "master",
    "研究生": "master",
    "硕士及以上": "master",
    "博士研究生": "doctorate",
}


def _lst(name: str, zh: str, en: str, entries: dict[str, tuple[str, str]], aliases: dict[str, str] | None = None) -> CodeList:
    return CodeList(name=name, zh=zh, en=en, entries=entries, aliases=aliases or {})


_ALL: tuple[CodeList, ...] = (
    _lst("district", "上海市行政区划（现行）", "Shanghai districts (current, GB/T 2260)", _DISTRICTS, _DISTRICT_ALIASES),
    _lst(
        "retired_district",
        "上海市已撤销行政区划代码",
        "Retired Shanghai division codes still on older ID numbers",
        {code: (zh, en) for code, (zh, en, _) in _RETIRED.items()},
    ),
    _lst(
        "org_type",
        "单位类型",
        "Organisation type",
        {
            "university": ("本科高校", "University"),
            "higher_vocational": ("高职院校", "Higher vocational college"),
            "secondary_vocational": ("中职学校", "Secondary vocational school"),
            "enterprise": ("企业", "Enterprise"),
            "research_institute": ("科研院所", "Research institute"),
            "industry_association": ("行业协会", "Industry association"),
            "government": ("政府机构", "Government body"),
            "other": ("其他", "Other"),
        },
        {"高校": "university", "普通本科高校": "university", "高职": "higher_vocational", "高职高专": "higher_vocational",
         "中职": "secondary_vocational", "中专": "secondary_vocational", "公司": "enterprise", "科研机构": "research_institute",
         "协会": "industry_association", "政府": "government", "政府部门": "government"},
    ),
    _lst("lingang_industry", "临港新片区“4+2+2”产业", "Lingang 4+2+2 industries", _INDUSTRIES, _INDUSTRY_ALIASES),
    _lst("education_level", "学历层次", "Education level", _EDUCATION, _EDUCATION_ALIASES),
    _lst(
        "integration_status",
        "产教融合型企业状态",
        "Industry-education integration enterprise status",
        {
            "cultivating": ("建设培育", "In cultivation"),
            "pilot": ("试点", "Pilot"),
            "certified": ("已认定", "Certified"),
        },
        {"培育": "cultivating", "培育库": "cultivating", "入库培育": "cultivating", "试点企业": "pilot",
         "认定": "certified", "已认证": "certified"},
    ),
    # Lingang platform enumerations: codes are the words the platform sends.
    _lst(
        "notice_category",
        "信息发布类别",
        "Notice category",
        {"政策": ("政策", "Policy"), "通知": ("通知", "Notice"), "公示": ("公示", "Public announcement"), "活动": ("活动", "Event")},
    ),
    _lst(
        "cooperation_type",
        "校企合作类型",
        "School-enterprise cooperation type",
        {
            "订单班": ("订单班", "Order class"),
            "现代学徒制": ("现代学徒制", "Modern apprenticeship"),
            "共建实训基地": ("共建实训基地", "Jointly built training base"),
            "产业学院": ("产业学院", "Industry college"),
            "联合研发": ("联合研发", "Joint R&D"),
            "实习就业基地": ("实习就业基地", "Internship and employment base"),
        },
    ),
    _lst(
        "cooperation_status",
        "合作状态",
        "Cooperation status",
        {"进行中": ("进行中", "Ongoing"), "已完成": ("已完成", "Completed"), "已终止": ("已终止", "Terminated")},
    ),
    _lst(
        "rd_status",
        "研发项目状态",
        "R&D project status",
        {"立项": ("立项", "Approved"), "在研": ("在研", "In progress"), "结题": ("结题", "Concluded")},
    ),
    _lst(
        "tech_service_type",
        "技术服务类型",
        "Technical service type",
        {
            "检验检测": ("检验检测", "Testing and inspection"),
            "技术咨询": ("技术咨询", "Technical consulting"),
            "技术开发": ("技术开发", "Technology development"),
            "技术转让": ("技术转让", "Technology transfer"),
            "设备共享": ("设备共享", "Equipment sharing"),
        },
    ),
    # Municipal project database enumerations.
    _lst(
        "project_category",
        "市级产教融合协同育人项目类别",
        "Municipal collaborative-education project category",
        {
            "employment_base": ("就业型实践基地", "Employment-oriented practice base"),
            "teaching_base": ("教学型实践基地", "Teaching-oriented practice base"),
            "practice_base": ("践习型实践基地", "Work-experience practice base"),
            "industry_college": ("现代产业学院", "Modern industry college"),
            "excellent_engineer": ("卓越工程师培养", "Excellent engineer programme"),
            "other": ("其他", "Other"),
        },
        {"就业型基地": "employment_base", "就业型": "employment_base", "教学型基地": "teaching_base", "教学型": "teaching_base",
         "践习型基地": "practice_base", "践习型": "practice_base", "产业学院": "industry_college",
         "卓越工程师": "excellent_engineer"},
    ),
    _lst(
        "funding_type",
        "经费类型",
        "Funding type",
        {"fiscal": ("财政", "Fiscal"), "non_fiscal": ("非财政", "Non-fiscal")},
        {"财政资金": "fiscal", "财政经费": "fiscal", "非财政资金": "non_fiscal", "自筹": "non_fiscal", "non-fiscal": "non_fiscal"},
    ),
    _lst(
        "project_status",
        "项目状态",
        "Project status",
        {
            "applied": ("已申报", "Applied"),
            "approved": ("已立项", "Approved"),
            "in_progress": ("建设中", "In progress"),
            "accepted": ("已验收", "Accepted on completion"),
            "terminated": ("已终止", "Terminated"),
        },
        {"申报": "applied", "立项": "approved", "在建": "in_progress", "进行中": "in_progress", "验收": "accepted",
         "通过验收": "accepted", "终止": "terminated", "撤销": "terminated"},
    ),
    _lst(
        "participant_role",
        "项目参与角色",
        "Project participant role",
        {
            "lead": ("牵头单位", "Lead organisation"),
            "member": ("成员单位", "Member organisation"),
            "supporting": ("支持单位", "Supporting organisation"),
        },
        {"牵头": "lead", "主持单位": "lead", "参与单位": "member", "合作单位": "member", "参与": "member", "支持": "supporting"},
    ),
    _lst(
        "base_type",
        "实践基地类型",
        "Training base type",
        {
            "employment": ("就业型", "Employment-oriented"),
            "teaching": ("教学型", "Teaching-oriented"),
            "practice": ("践习型", "Work-experience"),
            "shared_training": ("公共实训基地", "Shared public training base"),
        },
        {"就业型实践基地": "employment", "教学型实践基地": "teaching", "践习型实践基地": "practice", "公共实训": "shared_training",
         "共享实训基地": "shared_training"},
    ),
    _lst(
        "teacher_type",
        "产业师资类型",
        "Industry teacher type",
        {
            "industry_professor": ("产业教授", "Industry professor"),
            "industry_mentor": ("产业导师", "Industry mentor"),
            "industry_lecturer": ("产业讲师", "Industry lecturer"),
        },
    ),
    _lst(
        "trainee_type",
        "学员类型",
        "Trainee type",
        {
            "intern": ("实习生", "Intern"),
            "apprentice": ("学徒", "Apprentice"),
            "order_class": ("订单班学生", "Order-class student"),
            "other": ("其他", "Other"),
        },
        {"实习": "intern", "现代学徒制": "apprentice", "订单班": "order_class"},
    ),
)

CODE_LISTS: dict[str, CodeList] = {lst.name: lst for lst in _ALL}


def get_code_list(name: str) -> CodeList:
    """The code list called ``name``; KeyError listing the known lists otherwise."""
    try:
        return CODE_LISTS[name]
    except KeyError:
        raise KeyError(f"unknown code list {name!r} (known: {', '.join(CODE_LISTS)})") from None


def industry_code_for(zh_name: str | None) -> str | None:
    """Lingang industry code for a zh name (or code, or common alias); None when unknown.

    Sources send 集成电路 / 新能源汽车 rather than codes.
    """
    return CODE_LISTS["lingang_industry"].code_for(zh_name)


def education_code_for(zh: str | None) -> str | None:
    """Education level code for a zh label such as 本科 or 硕士研究生; None when unknown."""
    return CODE_LISTS["education_level"].code_for(zh)
