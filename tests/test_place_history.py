"""A case's place history and 721 hint, read from the store (SQLite and PostgreSQL): cases made
by the real CaseBuilder from hand-made events, reviewed through the store."""
from __future__ import annotations

import pytest

from cases.handling import HandlingConfig, HandlingRules
from cases.place_history import approve, handling_of
from cases.store import CaseError
from db_fixtures import db_url  # noqa: F401  (fixture)
from feed_helpers import T0, make_event, make_parts

CELL, OTHER_CELL = "42011700200818", "42011700200819"
LAT, LON = 30.5931, 114.3054
DAY = 86_400.0
CONFIG = HandlingConfig()  # the shipped defaults: 90 days, 50 m or the same cell, management from 2


@pytest.fixture
def parts(db_url, tmp_path):
    p = make_parts(db_url, tmp_path)
    yield p
    p.store.close()


def case_at(parts, day: float, *, event_type="street_vending", lat=LAT, lon=LON, cell=CELL, source="fixed-east-gate"):
    """A draft first seen ``day`` days after T0 (days apart, so never one case)."""
    event = make_event(source, event_type, start=T0 + day * DAY, lat=lat, lon=lon)
    return parts.builder.apply(event, "fixed", cell)


def hint(parts, case, config=CONFIG):
    return handling_of(parts.store, config, [parts.store.get_case(case.id)])[case.id]


def test_first_case_is_service_third_is_management_and_after_an_order_enforcement(parts):
    first = case_at(parts, 0)
    h = hint(parts, first)
    assert (h.hint.hint, h.hint.history_count, h.history) == ("service", 0, [])
    approve(parts.store, CONFIG, first.id, "analyst.wang")  # takes the hint: service

    second = case_at(parts, 1, lat=LAT + 0.0002)  # 22 m north
    h = hint(parts, second)
    assert (h.hint.hint, h.hint.history_count) == ("service", 1)
    [earlier] = h.history
    assert (earlier.case_no, earlier.status, earlier.handling) == (first.case_no, "approved", "service")
    assert 20 < earlier.distance_m < 25 and earlier.same_cell
    approve(parts.store, CONFIG, second.id, "analyst.wang")

    third = case_at(parts, 2)
    h = hint(parts, third)
    assert (h.hint.hint, h.hint.history_count) == ("management", 2)
    assert [p.case_no for p in h.history] == [second.case_no, first.case_no]  # newest first
    approve(parts.store, CONFIG, third.id, "analyst.wang")
    assert parts.store.approval(third.id)["handling"] == "management"

    fourth = case_at(parts, 3)
    h = hint(parts, fourth)
    assert (h.hint.hint, h.hint.history_count) == ("enforcement", 3)
    assert third.case_no in h.hint.reason


def test_the_analyst_s_choice_is_what_the_place_remembers(parts):
    first = case_at(parts, 0)
    approved = approve(parts.store, CONFIG, first.id, "analyst.wang", "management")
    details = parts.store.approval(approved.id)
    assert details == {"handling": "management", "hint": "service", "hint_reason": details["hint_reason"],
                       "history_count": 0}
    assert hint(parts, approved).chosen == "management"
    later = case_at(parts, 5)
    assert hint(parts, later).hint.hint == "enforcement"  # back after an order
    with pytest.raises(CaseError, match="handling must be one of"):
        approve(parts.store, CONFIG, later.id, "analyst.wang", "warning")


def test_other_types_far_places_old_cases_and_rejections_do_not_count(parts):
    # a city that lets a rejected place raise drafts again at once (cases.suppress_rejected_h 0),
    # so that later cases there show the rejections in their history
    parts.builder.suppress_rejected_s = 0
    for day in (0, 1):
        approve(parts.store, CONFIG, case_at(parts, day, event_type="dust").id, "analyst.wang")
        # 100 m east, in another cell
        approve(parts.store, CONFIG, case_at(parts, day + 0.5, lon=LON + 0.00105, cell=OTHER_CELL).id, "analyst.wang")
    for day in (-120, -100):  # older than the 90-day window
        approve(parts.store, CONFIG, case_at(parts, day).id, "analyst.wang")
    for day in (3, 4):
        parts.store.reject(case_at(parts, day).id, "analyst.wang", "false_alarm")
    waiting = case_at(parts, 5)  # a draft awaiting review
    case = case_at(parts, 6)
    h = hint(parts, case)
    assert (h.hint.hint, h.hint.history_count) == ("service", 0)
    assert {(p.status, p.review_reason) for p in h.history} == {("rejected", "false_alarm"), ("draft", None)}
    assert len(h.history) == 3 and waiting.id in {p.case_id for p in h.history}
    assert all(not p.counts(h.rules) for p in h.history)
    # later cases are not in an earlier case's history
    assert case.id not in {p.case_id for p in hint(parts, waiting).history}
    # a city that counts drafts: the one awaiting review is an occurrence
    assert hint(parts, case, HandlingConfig(HandlingRules(count_drafts=True))).hint.history_count == 1


def test_the_same_cell_counts_beyond_the_radius_unless_the_city_says_not(parts):
    for day in (0, 1):  # 200 m away, but in the case's cell
        approve(parts.store, CONFIG, case_at(parts, day, lat=LAT + 0.0018).id, "analyst.wang")
    case = case_at(parts, 2)
    h = hint(parts, case)
    assert (h.hint.hint, h.hint.history_count) == ("management", 2)
    assert all(p.same_cell and p.distance_m > 150 for p in h.history)
    by_radius = HandlingConfig(HandlingRules(same_cell=False))
    assert hint(parts, case, by_radius).hint.history_count == 0
    # per event type: a wider radius for street vending alone
    wide = HandlingConfig(HandlingRules(same_cell=False), {"street_vending": HandlingRules(same_cell=False,
                                                                                           radius_m=250)})
    assert hint(parts, case, wide).hint.history_count == 2


def test_a_case_without_position_uses_its_cell_and_without_either_has_no_history(parts):
    approve(parts.store, CONFIG, case_at(parts, 0).id, "analyst.wang")
    no_position = case_at(parts, 1, lat=None, lon=None)
    h = hint(parts, no_position)
    assert h.hint.history_count == 1 and h.history[0].distance_m is None
    nowhere = case_at(parts, 2, lat=None, lon=None, cell=None, source="vehicle-01")
    h = hint(parts, nowhere)
    assert (h.hint.hint, h.history) == ("service", []) and "unknown" in h.hint.reason
