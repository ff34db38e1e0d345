"""The 721 handling decision (a place's history -> a hint) and the city's rules file, on their own."""
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from cases.handling import (HandlingConfig, HandlingError, HandlingRules, PastCase, decide, load_handling,
                            parse_handling)

CONFIG = Path(__file__).resolve().parents[1] / "config"
T = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)
RULES = HandlingRules()


def past(n: int, status="approved", handling="service", reason=None) -> PastCase:
    return PastCase(case_id=n, case_no=f"CP-20261129-{n:04d}", seen_at=T - timedelta(days=30 - n), status=status,
                    handling=handling if status == "approved" else None, review_reason=reason, distance_m=12.0,
                    same_cell=True)


def test_first_occurrence_is_service():
    hint = decide([], RULES)
    assert (hint.hint, hint.hint_zh, hint.history_count) == ("service", "服务（劝导）", 0)
    assert "first occurrence" in hint.reason


def test_the_second_case_is_still_service_and_the_third_is_management():
    assert decide([past(1)], RULES).hint == "service"
    third = decide([past(1), past(2)], RULES)
    assert (third.hint, third.hint_zh, third.history_count) == ("management", "管理（责令整改）", 2)
    assert "CP-20261129-0001" in third.reason and "CP-20261129-0002" in third.reason


def test_back_after_an_order_is_enforcement():
    hint = decide([past(1), past(2, handling="management")], RULES)
    assert (hint.hint, hint.hint_zh) == ("enforcement", "执法（立案）")
    assert "CP-20261129-0002" in hint.reason and "management" in hint.reason
    # an earlier penalty case and the violation again: enforcement again
    assert decide([past(1, handling="enforcement")], RULES).hint == "enforcement"


def test_rejected_and_waiting_cases_are_listed_but_do_not_count():
    history = [past(1, "rejected", reason="false_alarm"), past(2, "rejected", reason="duplicate"), past(3, "draft")]
    hint = decide(history, RULES)
    assert (hint.hint, hint.history_count) == ("service", 0)
    assert "3 more listed but not counted" in hint.reason
    # a rejected case that had been ordered is no order
    assert decide([past(1, "rejected", reason="false_alarm")], RULES).hint == "service"


def test_a_city_may_count_drafts_and_change_the_thresholds():
    drafts = [past(1, "draft"), past(2, "draft")]
    assert decide(drafts, HandlingRules(count_drafts=True)).hint == "management"
    assert decide([past(1)], HandlingRules(management_after=1)).hint == "management"
    assert decide([past(1, handling="management")], HandlingRules(enforcement_after=())).hint == "service"


def test_approved_without_a_recorded_handling_counts_but_is_no_order():
    hint = decide([past(1, handling=None)], RULES)
    assert (hint.hint, hint.history_count) == ("service", 1)


def test_unknown_place_says_so():
    hint = decide([], RULES, place_known=False)
    assert hint.hint == "service" and "unknown" in hint.reason


def test_the_shipped_rules_and_per_type_overrides(tmp_path):
    config = load_handling(CONFIG / "handling.yaml")
    assert config.default == HandlingRules(window_days=90, radius_m=50, same_cell=True, management_after=2,
                                           enforcement_after=("management", "enforcement"), count_drafts=False)
    f = tmp_path / "handling.yaml"
    f.write_text("window_days: 60\nevent_types:\n  dust: {window_days: 30, radius_m: 120}\n")
    config = load_handling(f)
    assert config.rules("street_vending") == HandlingRules(window_days=60)
    assert config.rules("dust") == HandlingRules(window_days=30, radius_m=120)  # the rest from the file's defaults
    assert parse_handling(None, "x") == HandlingConfig()


@pytest.mark.parametrize("text, message", [
    ("window_days: 0\n", "window_days: expected a positive number, got 0"),
    ("radius_m: fifty\n", "radius_m: expected a positive number"),
    ("management_after: 1.5\n", "management_after: expected a whole number"),
    ("same_cell: yes please\n", "same_cell: expected true or false"),
    ("enforcement_after: [penalty]\n", "enforcement_after: expected a list of handlings"),
    ("window: 90\n", "unknown key(s) window; known:"),
    ("event_types: {littering: {radius_m: 10}}\n", "event type 'littering': unknown"),
    ("event_types: {dust: {radius: 10}}\n", "event type 'dust': unknown key(s) radius"),
    ("event_types: {dust: 30}\n", "event type 'dust': expected a mapping"),
    ("- 90\n", "expected a mapping of handling rules"),
    ("window_days: [\n", "not valid YAML"),
])
def test_mistakes_name_the_file_and_the_key(tmp_path, text, message):
    f = tmp_path / "handling.yaml"
    f.write_text(text)
    with pytest.raises(HandlingError) as err:
        load_handling(f)
    assert str(err.value).startswith(str(f)) and message in str(err.value)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(HandlingError, match="handling rules not found"):
        load_handling(tmp_path / "nope.yaml")
