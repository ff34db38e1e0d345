"""Street vending: stalls, carts, umbrellas and goods staying in a no-vending zone.

A vendor sets up within a minute and stays for many; a delivery tricycle or a
parked car passes in seconds. Three sightings out of five samples (about ten
seconds at a fixed camera's patrol rate) separate the two.
"""
from vision.rules.base import RuleConfig

RULE = RuleConfig(
    event_type="street_vending",
    labels=frozenset({"stall", "umbrella", "goods"}),
    min_confidence=0.35,
    window=5,
    min_hits=3,
    absence_s=20.0,
    required_role="no_vending",
    # A vendor stays put; a cart or a van crossing the view is seen in several samples, each
    # time somewhere else (vision/rules/place.py).
    stationary=True,
)
