"""Illegal construction: sheds, scaffolding, hoardings and material piles that appear
and persist where building is not permitted (anything inside a permitted site's
zone is ignored).

Structures stay for days, so the rule is strict about persistence and patient
about absence: a lorry parked in front must not end the case.
"""
from vision.rules.base import RuleConfig

RULE = RuleConfig(
    event_type="illegal_construction",
    labels=frozenset({"scaffold", "hoarding", "steel_shed", "material_pile"}),
    min_confidence=0.35,
    window=6,
    min_hits=4,
    absence_s=60.0,
    update_every_s=300.0,
    excluded_role="permitted_construction",
)
