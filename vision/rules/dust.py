"""Dust: plumes from sites, roads and trucks. A plume lasts seconds to minutes and
drifts, so the rule reacts faster than the others and forgives short gaps.
Permitted sites are not excluded: a licensed site must still control its dust.
"""
from vision.rules.base import RuleConfig

RULE = RuleConfig(
    event_type="dust",
    labels=frozenset({"dust"}),
    min_confidence=0.3,
    window=5,
    min_hits=3,
    absence_s=10.0,
    # A plume has no crisp edges: each box is also judged by the picture's haze, contrast
    # loss and dust colour around it (vision/plume.py), not by its box score alone.
    plume_check=True,
)
