"""Code lists: Shanghai districts, Lingang industries, education levels and enumerations."""

from __future__ import annotations

import pytest

from schemas.codes import (
    CODE_LISTS,
    RETIRED_DISTRICT_SUCCESSORS,
    district_for_prefix,
    education_code_for,
    get_code_list,
    industry_code_for,
)

DISTRICTS = {
    "310101": "黄浦", "310104": "徐汇", "310105": "长宁", "310106": "静安", "310107": "普陀", "310109": "虹口",
    "310110": "杨浦", "310112": "闵行", "310113": "宝山", "310114": "嘉定", "310115": "浦东新区", "310116": "金山",
    "310117": "松江", "310118": "青浦", "310120": "奉贤", "310151": "崇明",
}  # fmt: skip


def test_sixteen_current_districts() -> None:
    district = CODE_LISTS["district"]
    assert len(district.codes) == 16
    for code, zh in DISTRICTS.items():
        assert code in district
        assert district.label(code).startswith(zh)
    assert "310102" not in district  # 南市 is gone


def test_retired_codes_point_to_the_district_that_absorbed_them() -> None:
    retired = CODE_LISTS["retired_district"]
    expected = {"310102": "310101", "310103": "310101", "310108": "310106", "310111": "310113",
                "310119": "310115", "310221": "310112", "310222": "310114", "310223": "310113",
                "310224": "310115", "310225": "310115", "310226": "310120", "310227": "310117",
                "310228": "310116", "310229": "310118", "310230": "310151"}  # fmt: skip
    for code, successor in expected.items():
        assert code in retired
        assert RETIRED_DISTRICT_SUCCESSORS[code] == successor
        assert successor in CODE_LISTS["district"]
    assert retired.label("310108") == "闸北区"
    assert set(retired.codes).isdisjoint(CODE_LISTS["district"].codes)


def test_district_for_prefix() -> None:
    assert district_for_prefix("310115") == ("浦东新区", "310115", False)
    assert district_for_prefix("310103") == ("卢湾区", "310101", True)
    assert district_for_prefix("310230") == ("崇明县", "310151", True)
    assert district_for_prefix("310100") == ("市辖区", None, True)
    assert district_for_prefix("310199") is None
    assert district_for_prefix("320100") is None


@pytest.mark.parametrize("text,code", [
    ("集成电路", "IC"), ("人工智能", "AI"), ("生物医药", "BIOMED"), ("民用航空", "AVIATION"),
    ("智能新能源汽车", "NEV"), ("高端装备制造", "EQUIPMENT"), ("绿色再制造", "REMANUFACTURING"),
    ("氢能与新型储能", "HYDROGEN"), (" 新能源汽车 ", "NEV"), ("ic", "IC"), ("ＡＩ", "AI"), ("BIOMED", "BIOMED"),
])  # fmt: skip
def test_industry_code_for(text: str, code: str) -> None:
    assert industry_code_for(text) == code


def test_industry_list_is_four_two_two() -> None:
    industries = CODE_LISTS["lingang_industry"]
    assert industries.codes == ("IC", "AI", "BIOMED", "AVIATION", "NEV", "EQUIPMENT", "REMANUFACTURING", "HYDROGEN")
    assert all(code.isascii() for code in industries.codes)
    assert industry_code_for("房地产") is None
    assert industry_code_for(None) is None


@pytest.mark.parametrize("text,code", [
    ("中专", "secondary"), ("大专", "associate"), ("本科", "bachelor"), ("硕士", "master"), ("博士", "doctorate"),
    ("专科", "associate"), ("硕士研究生", "master"), ("博士研究生", "doctorate"), ("bachelor", "bachelor"),
])  # fmt: skip
def test_education_code_for(text: str, code: str) -> None:
    assert education_code_for(text) == code


def test_education_unknown() -> None:
    assert education_code_for("小学") is None


def test_enumerations_named_by_entities() -> None:
    assert CODE_LISTS["notice_category"].codes == ("政策", "通知", "公示", "活动")
    assert CODE_LISTS["cooperation_type"].codes == ("订单班", "现代学徒制", "共建实训基地", "产业学院", "联合研发", "实习就业基地")
    assert CODE_LISTS["cooperation_status"].codes == ("进行中", "已完成", "已终止")
    assert CODE_LISTS["rd_status"].codes == ("立项", "在研", "结题")
    assert CODE_LISTS["tech_service_type"].codes == ("检验检测", "技术咨询", "技术开发", "技术转让", "设备共享")
    org_type = CODE_LISTS["org_type"]
    assert len(org_type.codes) == 8 and all(c.isascii() for c in org_type.codes)
    assert org_type.code_for("高职院校") == "higher_vocational"
    assert CODE_LISTS["integration_status"].codes == ("cultivating", "pilot", "certified")
    assert CODE_LISTS["funding_type"].code_for("财政") == "fiscal"


def test_labels_and_lookup() -> None:
    district = CODE_LISTS["district"]
    assert district.label("310110", "en") == "Yangpu District"
    assert district.code_for("杨浦区") == district.code_for("杨浦") == district.code_for("310110") == "310110"
    assert district.code_for("临港") == "310115"
    with pytest.raises(KeyError, match="not a code of district"):
        district.label("310199")
    with pytest.raises(KeyError, match="unknown code list 'districts'"):
        get_code_list("districts")
    assert 310110 not in district  # codes are text


def test_every_list_is_bilingual_and_aliases_resolve() -> None:
    for lst in CODE_LISTS.values():
        assert lst.zh and lst.en and lst.codes
        for code in lst.codes:
            zh, en = lst.entries[code]
            assert zh and en
            assert lst.code_for(zh) == code
        for alias, code in lst.aliases.items():
            assert lst.code_for(alias) == code
