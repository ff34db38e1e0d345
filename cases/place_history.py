"""A case's place history and its 721 handling: read from the store, decided by ``handling.py``.

A place's history is the earlier cases of the same event type within ``radius_m``
of the case's position or in its unit-grid cell, first seen in the ``window_days``
before it, with how each ended. It is computed when read, never stored: the only
thing kept is what an approval chose (the handling, and the hint it was shown),
in the approve action's details (``Store.approve``), which is what later cases
read as "handled by".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from streams.frame import is_wall_clock

from .builder import EARTH_RADIUS_M, haversine_m
from .handling import HANDLING_NAMES_ZH, HANDLINGS, HandlingConfig, HandlingRules, Hint, PastCase, decide
from .platform import local_time
from .store import CaseError, CaseNotFound, DraftCase, DraftCaseView, Store, approvals

METRES_PER_DEGREE = math.pi * EARTH_RADIUS_M / 180
HISTORY_COLUMNS = (DraftCase.id, DraftCase.case_no, DraftCase.status, DraftCase.review_reason, DraftCase.first_seen,
                   DraftCase.created_at, DraftCase.lat, DraftCase.lon, DraftCase.grid)  # not the whole row: a busy place has many


@dataclass(frozen=True, slots=True)
class CaseHandling:
    hint: Hint
    history: list[PastCase]  # newest first
    chosen: str | None  # what the approval chose; None for a case not approved (or approved without one)
    rules: HandlingRules

    def as_dict(self) -> dict[str, Any]:
        """The case API's ``handling`` (and what the console shows)."""
        return {
            "hint": self.hint.hint, "hint_zh": self.hint.hint_zh, "reason": self.hint.reason,
            "history_count": self.hint.history_count,
            "chosen": self.chosen, "chosen_zh": HANDLING_NAMES_ZH.get(self.chosen) if self.chosen else None,
            "window_days": self.rules.window_days, "radius_m": self.rules.radius_m,
            "history": [{
                "case_id": p.case_id, "case_no": p.case_no, "seen_at": local_time(p.seen_at), "status": p.status,
                "handling": p.handling, "handling_zh": HANDLING_NAMES_ZH.get(p.handling) if p.handling else None,
                "review_reason": p.review_reason,
                "distance_m": round(p.distance_m, 1) if p.distance_m is not None else None,
                "same_cell": p.same_cell, "counted": p.counts(self.rules),
            } for p in self.history],
        }


def seen_at(case: DraftCase | DraftCaseView) -> datetime:
    """When a case was first seen; footage without a clock (seconds into a file) counts from when its draft was made."""
    if is_wall_clock(case.first_seen):
        return datetime.fromtimestamp(case.first_seen, timezone.utc)
    return case.created_at


def place_history(s: Session, case: DraftCase | DraftCaseView, rules: HandlingRules) -> list[PastCase]:
    """The earlier cases at the case's place (itself excluded), newest first."""
    has_position = case.lat is not None and case.lon is not None
    at = seen_at(case)
    since = at - timedelta(days=rules.window_days)
    near = []
    if has_position:  # a box around the circle (a little wider), then the exact distance below
        dlat = rules.radius_m / METRES_PER_DEGREE * 1.01
        dlon = dlat / max(math.cos(math.radians(case.lat)), 0.01)
        near.append(and_(DraftCase.lat.between(case.lat - dlat, case.lat + dlat),
                         DraftCase.lon.between(case.lon - dlon, case.lon + dlon)))
    if rules.same_cell and case.grid:
        near.append(DraftCase.grid == case.grid)
    if not near:
        return []
    # created_at >= since is implied by first_seen >= since (a case is made after it is first seen)
    rows = s.execute(select(*HISTORY_COLUMNS).where(DraftCase.event_type == case.event_type, DraftCase.id != case.id,
                                                    DraftCase.created_at >= since, or_(*near))).all()
    found: list[tuple[Any, datetime, float | None, bool]] = []
    for row in rows:
        when = seen_at(row)
        if not (since <= when < at or (when == at and row.id < case.id)):
            continue
        distance = (haversine_m(case.lat, case.lon, row.lat, row.lon)
                    if has_position and row.lat is not None and row.lon is not None else None)
        same_cell = bool(case.grid) and row.grid == case.grid
        if (distance is not None and distance <= rules.radius_m) or (rules.same_cell and same_cell):
            found.append((row, when, distance, same_cell))
    handled = approvals(s, [row.id for row, *_ in found if row.status == "approved"])
    found.sort(key=lambda f: (f[1], f[0].id), reverse=True)
    return [PastCase(case_id=row.id, case_no=row.case_no, seen_at=when, status=row.status,
                     handling=_handling(handled.get(row.id)), review_reason=row.review_reason,
                     distance_m=distance, same_cell=same_cell)
            for row, when, distance, same_cell in found]


def handling_of(store: Store, config: HandlingConfig, cases: Sequence[DraftCaseView]) -> dict[int, CaseHandling]:
    """Each case's hint, place history and chosen handling, read in one session."""
    out: dict[int, CaseHandling] = {}
    with store.reading() as s:
        chosen = approvals(s, [c.id for c in cases if c.status == "approved"])
        for case in cases:
            rules = config.rules(case.event_type)
            history = place_history(s, case, rules)
            place_known = (case.lat is not None and case.lon is not None) or bool(case.grid)
            out[case.id] = CaseHandling(decide(history, rules, place_known=place_known), history,
                                        _handling(chosen.get(case.id)), rules)
    return out


def approve(store: Store, config: HandlingConfig, case_id: int, actor: str, handling: str | None = None) -> DraftCaseView:
    """Approve a draft with a 721 handling: the analyst's, else the hint. The approval
    keeps both (and the history count the hint came from) for the audit trail and the platform."""
    if handling is not None and handling not in HANDLINGS:
        raise CaseError(f"handling must be one of {', '.join(HANDLINGS)}, got {handling!r}")
    case = store.get_case(case_id)
    if case is None:
        raise CaseNotFound(f"no case {case_id}")
    hint = handling_of(store, config, [case])[case.id].hint
    return store.approve(case_id, actor, {"handling": handling or hint.hint, "hint": hint.hint,
                                          "hint_reason": hint.reason, "history_count": hint.history_count})


def _handling(details: dict[str, Any] | None) -> str | None:
    value = (details or {}).get("handling")
    return value if value in HANDLINGS else None
