"""One module per event type; ``default_rules()`` gathers their configurations."""
from dataclasses import replace

from vision.rules import dust, illegal_construction, street_vending
from vision.rules.base import EventRule, RuleConfig, SourceRules, prepare_zones

DEFAULT_RULES = {r.event_type: r for r in (street_vending.RULE, illegal_construction.RULE, dust.RULE)}


def default_rules(overrides: dict | None = None) -> list[RuleConfig]:
    """The rules, with per-deployment overrides such as ``{"dust": {"min_hits": 2}}``."""
    out = []
    for name, rule in DEFAULT_RULES.items():
        changes = dict((overrides or {}).get(name, {}))
        if "labels" in changes:
            changes["labels"] = frozenset(changes["labels"])
        out.append(replace(rule, **changes))
    return out


__all__ = ["DEFAULT_RULES", "EventRule", "RuleConfig", "SourceRules", "default_rules", "prepare_zones"]
