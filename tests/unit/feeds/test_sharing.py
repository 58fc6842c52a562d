"""Share classes: declared in the schema, one gate (servable) for every way out, approvals narrow a key."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from feeds.keys import Grant
from feeds.sharing import AccessRequest, conditional_in, effective_grant, servable, served_datasets, share_class
from schemas import ENTITIES, SHARE_CLASSES, Entity, Field
from schemas.entities import STR

NOW = datetime.now(timezone.utc)


def test_every_entity_declares_a_known_share_class_and_the_classes_are_the_documented_ones() -> None:
    assert set(SHARE_CLASSES) == {"unconditional", "conditional", "not_shared"}
    assert {e.share_class for e in ENTITIES.values()} <= set(SHARE_CLASSES)
    assert share_class("trainee") == share_class("teacher") == "conditional"
    assert share_class("notice") == share_class("project") == "unconditional"
    assert share_class("project_report") == "not_shared"


def test_not_shared_datasets_are_not_servable_and_not_served() -> None:
    assert not servable("project_report") and not servable("no_such_dataset")
    assert servable("trainee") and servable("notice")
    assert "project_report" not in served_datasets() and "trainee" in served_datasets()
    assert conditional_in(None) == ["teacher", "trainee"] and conditional_in(["notice", "trainee"]) == ["trainee"]


def test_a_field_may_only_be_withheld() -> None:
    for other in ("unconditional", "conditional"):
        odd = Field("open_note", STR, "备注", "Note", share_class=other)
        with pytest.raises(ValueError, match="a field may only be withheld"):
            Entity("x", "x", "x", "one row", ("a",), (Field("a", STR, "a", "a"), odd),
                   share_class="conditional" if other == "unconditional" else "unconditional")
    withheld = Field("note", STR, "备注", "Note", share_class="not_shared")
    assert Entity("x", "x", "x", "one row", ("a",), (Field("a", STR, "a", "a"), withheld)).fields[1] == withheld
    with pytest.raises(ValueError, match="share class 'secret' is not one of"):
        Field("b", STR, "b", "b", share_class="secret")


def _grant(datasets: set[str] | None, districts: set[str] | None) -> Grant:
    return Grant("0123456789abcdef", "杨浦区产教融合平台", None if datasets is None else frozenset(datasets),
                 None if districts is None else frozenset(districts), False, None)


def _approval(datasets: set[str], districts: set[str] | None, expires: datetime, status: str = "approved"
              ) -> AccessRequest:
    return AccessRequest(1, "杨浦区产教融合平台", "0123456789abcdef", frozenset(datasets),
                         None if districts is None else frozenset(districts), "就业跟踪", "api", NOW, status,
                         "审批人", NOW, "符合用途", expires)


def test_effective_grant_follows_the_share_class() -> None:
    key = _grant({"notice"}, {"310110", "310112"})
    assert effective_grant(key, "notice") == key
    assert effective_grant(_grant(None, None), "project_report") is None  # not even an 'all' key
    assert effective_grant(key, "trainee") is None  # conditional, not in the key, no approval
    approval = _approval({"trainee"}, {"310110", "310115"}, NOW + timedelta(days=30))
    narrowed = effective_grant(key, "trainee", [approval])
    assert narrowed is not None and narrowed.districts == frozenset({"310110"})  # key ∩ approval
    assert effective_grant(key, "trainee", [_approval({"trainee"}, None, NOW - timedelta(seconds=1))]) is None
    assert effective_grant(key, "trainee", [_approval({"trainee"}, None, NOW + timedelta(days=1), "rejected")]) is None
    assert effective_grant(key, "trainee", [_approval({"trainee"}, {"310115"}, NOW + timedelta(days=1))]) is None
    # teacher has no district: only an approval for every district over a key of every district opens it
    assert effective_grant(key, "teacher", [_approval({"teacher"}, None, NOW + timedelta(days=1))]) is None
    every = _grant({"notice"}, None)
    assert effective_grant(every, "teacher", [_approval({"teacher"}, None, NOW + timedelta(days=1))]) is not None
