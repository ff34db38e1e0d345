"""One module per event type; ``default_rules()`` gathers their configurations."""
from dataclasses import replace

from vision.rules import dust, illegal_construction, street_vending
from vision.rules.base import EventRule, RuleConfig, SourceRules, prepare_zones

DEFAULT_RULES = {r.event_type: r for r in (street_vending.RULE, illegal_construction.RULE, dust.RULE)}


def default_rules(overrides: dict | None = None, names: dict[str, str] | None = None) -> list[RuleConfig]:
    """The rules, with per-deployment overrides such as ``{"dust": {"min_hits": 2}}``, and the
    names the evidence pictures give event types and labels (``{"dust": "扬尘", ...}``)."""
    out = []
    for name, rule in DEFAULT_RULES.items():
        changes = dict((overrides or {}).get(name, {}))
        if names:
            changes["names"] = dict(names)
        if "labels" in changes:
            changes["labels"] = frozenset(changes["labels"])
        out.append(replace(rule, **changes))
    return out


def image_events(image, dets, configs: list[RuleConfig]) -> list[str]:
    """The event types one picture alone supports: some detection that the rule would count
    as a sighting (its labels, its confidence, the plume measure for dust), zones aside."""
    from streams.frame import Frame

    frame = Frame(source_id="image", ts=0.0, image=image)
    return sorted(c.event_type for c in configs if EventRule(c, [], "image").relevant(frame, dets))


__all__ = ["DEFAULT_RULES", "image_events", "EventRule", "RuleConfig", "SourceRules", "default_rules", "prepare_zones"]
