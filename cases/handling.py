"""The city's 721 handling (服务 / 管理 / 执法): which handling a case's place history suggests.

First occurrence at a place: service (劝导, guidance). Repeated: management (责令整改,
an order to rectify). Back after an order: enforcement (立案, a penalty case). The
thresholds are the city's, in ``config/handling.yaml``, checked at load like the
category mapping (``taxonomy.py``): a mistake stops the start with a message that
names the file and the key.

This module only decides (a place's history -> a hint); ``place_history.py`` reads
the history from the store.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable

import yaml

from vision.events import EVENT_TYPES

HANDLINGS = ("service", "management", "enforcement")
HANDLING_NAMES_ZH = {"service": "服务（劝导）", "management": "管理（责令整改）", "enforcement": "执法（立案）"}


class HandlingError(ValueError):
    """The handling rules file is wrong."""


@dataclass(frozen=True, slots=True)
class HandlingRules:
    window_days: float = 90.0  # how far back a place's history reaches
    radius_m: float = 50.0  # earlier cases this close count as the same place ...
    same_cell: bool = True  # ... and so do those in the same unit-grid cell
    management_after: int = 2  # earlier confirmed cases that make a place "repeated"
    enforcement_after: tuple[str, ...] = ("management", "enforcement")  # earlier handlings that make it "persisting"
    count_drafts: bool = False  # whether earlier cases still awaiting review count as occurrences


@dataclass(frozen=True, slots=True)
class HandlingConfig:
    default: HandlingRules = HandlingRules()
    by_type: dict[str, HandlingRules] = field(default_factory=dict)

    def rules(self, event_type: str) -> HandlingRules:
        return self.by_type.get(event_type, self.default)


@dataclass(frozen=True, slots=True)
class PastCase:
    """An earlier case at the place, and how it ended."""

    case_id: int
    case_no: str
    seen_at: datetime  # when it was first seen (aware)
    status: str  # draft | approved | rejected
    handling: str | None  # the handling chosen at approval; None if not approved or not recorded
    review_reason: str | None  # why it was rejected (false_alarm, duplicate, ...)
    distance_m: float | None  # from the case; None when either has no position
    same_cell: bool

    def counts(self, rules: HandlingRules) -> bool:
        """Whether it is an occurrence: confirmed (or awaiting review, if the city says so); never a rejected one."""
        return self.status == "approved" or (rules.count_drafts and self.status == "draft")


@dataclass(frozen=True, slots=True)
class Hint:
    hint: str  # service | management | enforcement
    reason: str
    history_count: int  # earlier occurrences at the place in the window (rejected ones not counted)

    @property
    def hint_zh(self) -> str:
        return HANDLING_NAMES_ZH[self.hint]


def decide(history: Iterable[PastCase], rules: HandlingRules, *, place_known: bool = True) -> Hint:
    """The 721 hint for a case from the earlier cases at its place (newest or oldest first: either)."""
    if not place_known:
        return Hint("service", "no position or grid cell: the place's history is unknown, so service (first "
                               "occurrence) is suggested", 0)
    past = sorted(history, key=lambda p: (p.seen_at, p.case_id))
    occurrences = [p for p in past if p.counts(rules)]
    not_counted = len(past) - len(occurrences)
    window = f"{rules.window_days:g} days"
    aside = f"; {not_counted} more listed but not counted (rejected or awaiting review)" if not_counted else ""
    ordered = [p for p in occurrences if p.handling in rules.enforcement_after]
    if ordered:
        last = ordered[-1]
        return Hint("enforcement", f"{last.case_no} here was handled by {last.handling} "
                                   f"({HANDLING_NAMES_ZH[last.handling]}) and the violation is back: "
                                   f"enforcement{aside}", len(occurrences))
    n = len(occurrences)
    if n >= rules.management_after:
        nos = ", ".join(p.case_no for p in occurrences[-3:]) + (" …" if n > 3 else "")
        return Hint("management", f"repeated: {n} earlier confirmed case(s) here in {window} ({nos}); "
                                  f"management from {rules.management_after}{aside}", n)
    if n == 0:
        return Hint("service", f"first occurrence here in {window}{aside}", 0)
    return Hint("service", f"{n} earlier confirmed case(s) here in {window}; management from "
                           f"{rules.management_after}{aside}", n)


# -- loading -------------------------------------------------------------------

KEYS = {f.name for f in fields(HandlingRules)}


def load_handling(path: str | Path) -> HandlingConfig:
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HandlingError(f"{path}: handling rules not found") from None
    except yaml.YAMLError as err:
        raise HandlingError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    return parse_handling(raw, str(path))


def parse_handling(raw: Any, origin: str) -> HandlingConfig:
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise HandlingError(f"{origin}: expected a mapping of handling rules")
    overrides = raw.get("event_types") or {}
    if not isinstance(overrides, dict):
        raise HandlingError(f"{origin}: 'event_types' must map event types to rules")
    default = _rules(HandlingRules(), {k: v for k, v in raw.items() if k != "event_types"}, origin, "")
    by_type = {}
    for event_type, entry in overrides.items():
        where = f"event type {event_type!r}: "
        if event_type not in EVENT_TYPES:
            raise HandlingError(f"{origin}: {where}unknown; known types are {', '.join(EVENT_TYPES)}")
        if not isinstance(entry, dict):
            raise HandlingError(f"{origin}: {where}expected a mapping of rules, e.g. {{window_days: 30}}")
        by_type[event_type] = _rules(default, entry, origin, where)
    return HandlingConfig(default, by_type)


def _rules(base: HandlingRules, entry: dict, origin: str, where: str) -> HandlingRules:
    unknown = set(entry) - KEYS
    if unknown:
        raise HandlingError(f"{origin}: {where}unknown key(s) {', '.join(sorted(map(str, unknown)))}; "
                            f"known: {', '.join(sorted(KEYS))}")
    values: dict[str, Any] = {}
    for key, value in entry.items():
        at = f"{origin}: {where}{key}"
        if key in ("window_days", "radius_m"):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise HandlingError(f"{at}: expected a positive number, got {value!r}")
            values[key] = float(value)
        elif key == "management_after":
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise HandlingError(f"{at}: expected a whole number of earlier cases, at least 1, got {value!r}")
            values[key] = value
        elif key in ("same_cell", "count_drafts"):
            if not isinstance(value, bool):
                raise HandlingError(f"{at}: expected true or false, got {value!r}")
            values[key] = value
        else:  # enforcement_after
            if not isinstance(value, list) or any(v not in HANDLINGS for v in value):
                raise HandlingError(f"{at}: expected a list of handlings out of {', '.join(HANDLINGS)} "
                                    f"(may be empty: never suggest enforcement), got {value!r}")
            values[key] = tuple(value)
    return replace(base, **values)
