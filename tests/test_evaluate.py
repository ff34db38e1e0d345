"""Event-level scoring of `patrol eval`: found, false and duplicate cases, time to first detection."""
from types import SimpleNamespace

from patrol.evaluate import score_video


def case(cid, event_type, first, last):
    return SimpleNamespace(id=cid, event_type=event_type, first_seen=first, last_seen=last)


TRUTH = {"events": [{"event_type": "dust", "start": 10.0, "end": 30.0},
                    {"event_type": "street_vending", "start": 5.0, "end": 20.0}]}


def test_a_case_overlapping_a_truth_of_its_type_finds_it():
    s = score_video(TRUTH, [case(1, "dust", 12, 28), case(2, "street_vending", 6, 21)], {1: 16.0, 2: 9.0})
    assert (s["dust"].found, s["dust"].false_cases, s["dust"].ttfd) == (1, 0, [6.0])
    assert (s["street_vending"].found, s["street_vending"].ttfd) == (1, [4.0])


def test_a_second_case_for_one_violation_is_false_and_a_wrong_type_finds_nothing():
    s = score_video(TRUTH, [case(1, "dust", 12, 18), case(2, "dust", 20, 29), case(3, "illegal_construction", 5, 30)],
                    {1: 14.0, 2: 22.0, 3: 9.0})
    assert (s["dust"].found, s["dust"].cases, s["dust"].false_cases) == (1, 2, 1)
    assert s["dust"].ttfd == [4.0]  # the earliest case is the one that found it
    assert s["street_vending"].found == 0
    assert (s["illegal_construction"].truths, s["illegal_construction"].false_cases) == (0, 1)
    d = s["dust"].as_dict()
    assert d["recall"] == 1.0 and d["precision"] == 0.5


def test_a_case_outside_the_truths_time_is_false():
    s = score_video(TRUTH, [case(1, "dust", 31, 40)], {1: 33.0})
    assert (s["dust"].found, s["dust"].false_cases) == (0, 1)
