"""The quality policy, in one place: what happens when a rule fails, per entity.

Row-level rules decide a row's fate (`quarantine` it, only `warn`, or `fail` the batch);
batch-level rules decide the batch's (fail the task and leave the warehouse as it was, or warn).
A source's spec may tighten or relax a rule for that source under `quality:`; the override is
visible in the spec and in every quality result row.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

Action = Literal["quarantine", "warn", "fail", "off"]
ACTIONS: tuple[str, ...] = ("quarantine", "warn", "fail", "off")


@dataclass(frozen=True)
class EntityPolicy:
    row_action: Action = "quarantine"                 # default for row-level rules
    max_quarantine_share: float = 0.05                # batch fails above this share of rows_in
    max_row_drop: float = 0.5                         # a full read falling by more than this fails
    stale_after_days: int | None = None               # newest updated_at older than this: warn
    drift_action: Action = "fail"                     # a mapped source field missing from the batch
    rules: dict[str, Action] = field(default_factory=dict)  # rule id → action, overriding row_action

    def action_for(self, rule: str, default: Action | None = None) -> Action:
        return self.rules.get(rule, default or self.row_action)


_PERSONAL = EntityPolicy(max_quarantine_share=0.02)
POLICIES: dict[str, EntityPolicy] = {
    "organization": EntityPolicy(max_quarantine_share=0.02),
    "project": EntityPolicy(),
    "project_participant": EntityPolicy(),
    "project_report": EntityPolicy(stale_after_days=400),
    "training_base": EntityPolicy(),
    "teacher": _PERSONAL,
    "trainee": _PERSONAL,
    "talent_demand": EntityPolicy(stale_after_days=365),
    "talent_supply": EntityPolicy(stale_after_days=365),
    "cooperation": EntityPolicy(),
    "rd_project": EntityPolicy(),
    "tech_service": EntityPolicy(),
    "notice": EntityPolicy(stale_after_days=365),
}
# The per-chunk uniqueness rule only warns: conflicting repeats of a key are quarantined (every copy)
# batch-wide before it runs (quality/duplicates.py), so what it still sees are the repeats a paged read
# legitimately delivers (a row edited mid-read, back with a newer updated_at; the build keeps the later).
DEFAULT_RULE_ACTIONS: dict[str, Action] = {"_key.unique": "warn"}


class PolicyError(ValueError):
    """A spec's `quality:` section names an unknown rule or action."""


def policy_for(entity: str, spec_quality: dict[str, Any] | None = None, *, known_rules: set[str] | None = None,
               where: str = "") -> EntityPolicy:
    """The entity's policy with the source spec's visible overrides applied."""
    base = POLICIES.get(entity, EntityPolicy())
    rules: dict[str, Action] = {**DEFAULT_RULE_ACTIONS, **base.rules}
    spec_quality = spec_quality or {}
    unknown = set(spec_quality) - {"rules", "max_quarantine_share", "max_row_drop", "stale_after_days", "drift"}
    if unknown:
        raise PolicyError(f"{where}quality: unknown setting(s) {sorted(unknown)}")
    for rule, action in (spec_quality.get("rules") or {}).items():
        if action not in ACTIONS:
            raise PolicyError(f"{where}quality.rules.{rule}: action must be one of {ACTIONS}, got {action!r}")
        if known_rules is not None and rule not in known_rules:
            raise PolicyError(f"{where}quality.rules.{rule}: no such rule for entity {entity} "
                              f"(rules: {', '.join(sorted(known_rules))})")
        rules[rule] = action
    changes: dict[str, Any] = {"rules": rules}
    for key in ("max_quarantine_share", "max_row_drop", "stale_after_days"):
        if key in spec_quality:
            changes[key] = spec_quality[key]
    if "drift" in spec_quality:
        changes["drift_action"] = spec_quality["drift"]
    return replace(base, **changes)
