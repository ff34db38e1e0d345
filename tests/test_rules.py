"""The rules engine turns hand-made detections into events.

The unit under test is the real engine (``vision.rules``) with the real
per-type configurations; detections are built by hand, so every test knows
exactly what the detector "saw" on every sample.
"""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from streams.frame import Frame
from streams.sources import Zone
from vision.detections import Detections
from vision.rules import DEFAULT_RULES, SourceRules, default_rules
from test_plume import add_plume

W, H = 320, 180  # sample size the detector works at
STEP = 2.0  # seconds between samples: a fixed camera's patrol rate

# Bottom strip of the picture (the pavement) is a no-vending zone; the left part a permitted site.
PAVEMENT = Zone(name="Main St pavement", role="no_vending", polygon=[(0, 0.5), (1, 0.5), (1, 1), (0, 1)])
SITE = Zone(name="Permitted site 7", role="permitted_construction", polygon=[(0, 0.2), (0.4, 0.2), (0.4, 1), (0, 1)])

# Boxes in sample pixels (x1, y1, x2, y2). Rules place an object where its box touches the ground.
STALL_ON_PAVEMENT = (100, 110, 150, 160)  # bottom at y=160/180: inside PAVEMENT
STALL_ON_ROAD_ABOVE = (100, 20, 150, 60)  # bottom at y=60/180: outside PAVEMENT
SHED_IN_SITE = (20, 60, 100, 150)  # bottom-centre x=60/320, y=150/180: inside SITE
SHED_OUTSIDE_SITE = (200, 60, 300, 150)  # bottom-centre x=250/320: outside SITE
PLUME_IN_SITE = (10, 40, 110, 140)


def dets(*objects: tuple) -> Detections:
    """``dets((box, label, conf), ...)``: what the detector saw on one sample."""
    if not objects:
        return Detections.empty()
    return Detections(
        np.array([o[0] for o in objects], np.float32),
        np.array([o[2] for o in objects], np.float32),
        np.arange(len(objects), dtype=np.int32),
        [o[1] for o in objects],
    )


def frame(ts: float, source_size: tuple[int, int] | None = None, source_id: str = "cam-1", plumes=()) -> Frame:
    # A textured picture, so a snapshot drawn on it is a real image, not a blank; the dust
    # rule also measures the pixels under its boxes, so plumes are really drawn where given.
    img = np.random.default_rng(int(ts * 10)).integers(0, 255, (H, W, 3), dtype=np.uint8)
    for box in plumes:
        add_plume(img, box)
    return Frame(source_id, ts, img, index=int(ts / STEP), source_size=source_size)


def rules_for(*event_types: str, zones=(), **changes) -> SourceRules:
    """The real rules of the given types for one source, with optional config changes."""
    configs = [replace(DEFAULT_RULES[t], **changes) for t in event_types]
    return SourceRules.build("cam-1", list(zones), configs, model_version="test-model")


def run(rules: SourceRules, sightings, start: float = 0.0, source_size=None, plumes=()) -> list:
    """Feed one sample per entry of ``sightings`` (a Detections, or None for nothing seen)."""
    events = []
    for i, seen in enumerate(sightings):
        events += rules.update(frame(start + i * STEP, source_size, plumes=plumes),
                               seen if seen is not None else Detections.empty())
    return events


def stall(box=STALL_ON_PAVEMENT, conf=0.8) -> Detections:
    return dets((box, "stall", conf))


def states(events) -> list[str]:
    return [e.state for e in events]


# ---------------------------------------------------------------- persistence: k of n


def test_fewer_than_k_of_n_sightings_open_nothing():
    # street vending needs 3 of the last 5 samples; every third sample gives at most 2 in any 5
    assert (DEFAULT_RULES["street_vending"].min_hits, DEFAULT_RULES["street_vending"].window) == (3, 5)
    rules = rules_for("street_vending")
    sightings = [stall() if i % 3 == 0 else None for i in range(40)]
    assert run(rules, sightings) == []


def test_k_of_n_sightings_open_exactly_one_event_starting_at_the_first_hit():
    rules = rules_for("street_vending")
    # t=0 nothing, t=2 hit, t=4 miss, t=6 hit, t=8 hit -> 3 of 5: opens at t=8, started at t=2
    events = run(rules, [None, stall(), None, stall(), stall()])
    assert states(events) == ["opened"]
    ev = events[0]
    assert (ev.event_type, ev.start, ev.last_seen, ev.hits, ev.revision) == ("street_vending", 2.0, 8.0, 3, 1)
    assert ev.source_id == "cam-1" and ev.model_version == "test-model" and ev.label == "stall"
    # it stays for another minute: still one event, nothing opens again
    more = run(rules, [stall()] * 30, start=10.0)
    assert "opened" not in states(more)
    assert {e.event_id for e in more} <= {ev.event_id}


def test_low_confidence_sightings_are_not_evidence():
    rules = rules_for("street_vending")
    weak = DEFAULT_RULES["street_vending"].min_confidence - 0.05
    assert run(rules, [stall(conf=weak)] * 10) == []


# ---------------------------------------------------------------- zones


def test_vending_outside_the_no_vending_zone_is_ignored_when_the_source_has_such_zones():
    sightings = [stall(STALL_ON_ROAD_ABOVE)] * 10
    assert run(rules_for("street_vending", zones=[PAVEMENT]), sightings) == []
    # the same sightings on a source without no-vending zones count anywhere (the control)
    assert states(run(rules_for("street_vending"), sightings)) == ["opened"]


def test_vending_inside_the_zone_opens_an_event_that_carries_the_zone_name():
    events = run(rules_for("street_vending", zones=[PAVEMENT]), [stall()] * 3)
    assert states(events) == ["opened"]
    assert events[0].zone == "Main St pavement"


def test_construction_inside_a_permitted_site_is_ignored():
    shed = dets((SHED_IN_SITE, "steel_shed", 0.9))
    assert run(rules_for("illegal_construction", zones=[SITE]), [shed] * 12) == []
    # outside the permitted site the same shed is a violation (the control)
    outside = dets((SHED_OUTSIDE_SITE, "steel_shed", 0.9))
    events = run(rules_for("illegal_construction", zones=[SITE]), [outside] * 12)
    assert states(events) == ["opened"] and events[0].label == "steel_shed"
    assert any("Permitted site 7" in line for line in events[0].trace)  # why the site's sheds were ignored


def test_dust_inside_a_permitted_site_still_counts():
    plume = dets((PLUME_IN_SITE, "dust", 0.7))
    events = run(rules_for("dust", zones=[SITE]), [plume] * 5, plumes=[PLUME_IN_SITE])
    assert states(events) == ["opened"]
    assert events[0].event_type == "dust"
    assert any(line.startswith("at the best sighting: plume measure") for line in events[0].trace)


def test_a_dust_box_over_a_region_with_no_plume_is_doubted():
    # the same confident box over plain sensor noise: no haze, no dust colour, no lost edges
    assert run(rules_for("dust"), [dets((PLUME_IN_SITE, "dust", 0.7))] * 8) == []


def test_a_hesitant_dust_box_over_a_clear_plume_is_believed():
    rule = DEFAULT_RULES["dust"]
    hesitant = dets((PLUME_IN_SITE, "dust", rule.min_confidence - 0.05))
    events = run(rules_for("dust"), [hesitant] * 5, plumes=[PLUME_IN_SITE])
    assert states(events) == ["opened"]
    # and without the plume measure, the box score alone would not have been enough
    assert run(rules_for("dust", plume_check=False), [hesitant] * 5, plumes=[PLUME_IN_SITE]) == []


def test_labels_of_other_event_types_are_ignored():
    # a dust rule must not fire on a stall, nor the vending rule on dust
    assert run(rules_for("dust"), [stall()] * 10) == []
    assert run(rules_for("street_vending"), [dets((PLUME_IN_SITE, "dust", 0.9))] * 10) == []


# ---------------------------------------------------------------- dwell


def test_dwell_time_delays_the_event_until_the_object_has_stayed_long_enough():
    # 30 s of dwell at one sample per 2 s: longer than the k-of-n window (5 samples = 8 s),
    # so the dwell must count from the first sighting, not from the oldest sample in the window
    rules = rules_for("street_vending", min_dwell_s=30.0)
    events = run(rules, [stall()] * 30)
    assert states(events)[:1] == ["opened"] and states(events).count("opened") == 1
    ev = events[0]
    assert ev.last_seen == 30.0  # the first sample 30 s after the first sighting
    assert ev.start == 0.0


def test_a_short_stay_does_not_satisfy_the_dwell_time():
    rules = rules_for("street_vending", min_dwell_s=30.0)
    # seen for 20 s, then gone for longer than the window: the clock starts again
    events = run(rules, [stall()] * 11 + [None] * 6 + [stall()] * 11)
    assert events == []


# ---------------------------------------------------------------- one case per violation: no re-reporting


def test_a_static_stall_for_30_minutes_is_one_event_updated_at_a_bounded_rate_then_closed():
    cfg = DEFAULT_RULES["street_vending"]
    rules = rules_for("street_vending")
    minutes = 30
    n = int(minutes * 60 / STEP)
    # a slight, steady flicker of confidence (no clear gain) as a real detector would give
    sightings = [stall(conf=0.8 + 0.02 * ((i % 3) - 1)) for i in range(n)]
    events = run(rules, sightings)
    last_sighting = (n - 1) * STEP
    # then it is gone: feed empty samples one by one to see when it closes
    closed_at = None
    for i in range(1, int(cfg.absence_s / STEP) + 5):
        now = last_sighting + i * STEP
        out = rules.update(frame(now), Detections.empty())
        if out:
            closed_at = now
            events += out
            break

    assert states(events).count("opened") == 1 and states(events)[0] == "opened"
    assert states(events).count("closed") == 1 and states(events)[-1] == "closed"
    updates = [e for e in events if e.state == "updated"]
    assert 1 <= len(updates) <= minutes * 60 / cfg.update_every_s + 1
    emitted_at = [e.last_seen for e in events if e.state != "closed"]
    assert all(b - a >= cfg.update_every_s for a, b in zip(emitted_at, emitted_at[1:]))
    assert {e.event_id for e in events} == {events[0].event_id}
    assert [e.revision for e in events] == list(range(1, len(events) + 1))

    closed = events[-1]
    assert closed.end == closed.last_seen == last_sighting
    assert closed.hits == n
    # closed on the first sample at least absence_s after the last sighting, not before, not later
    assert closed_at == last_sighting + cfg.absence_s
    assert any(f"not seen for {cfg.absence_s:.0f} s" in line for line in closed.trace)


def test_a_clear_confidence_gain_is_reported_at_once_and_a_small_one_is_not():
    rules = rules_for("street_vending")
    opened = run(rules, [stall(conf=0.5)] * 3)
    assert states(opened) == ["opened"]
    small = run(rules, [stall(conf=0.55)] * 3, start=6.0)  # +0.05: not worth a message
    assert small == []
    gain = run(rules, [stall(conf=0.75)], start=12.0)  # +0.25 within seconds: worth one
    assert states(gain) == ["updated"]
    assert gain[0].confidence == pytest.approx(0.75) and gain[0].revision == 2


def test_a_short_gap_does_not_end_the_event():
    rules = rules_for("street_vending")
    gap = int(DEFAULT_RULES["street_vending"].absence_s / STEP) - 2  # shorter than absence_s
    events = run(rules, [stall()] * 5 + [None] * gap + [stall()] * 5)
    assert states(events) == ["opened"]


def test_a_new_event_opens_after_the_old_one_ended():
    cfg = DEFAULT_RULES["street_vending"]
    rules = rules_for("street_vending")
    gone = int(cfg.absence_s / STEP) + 1
    events = run(rules, [stall()] * 5 + [None] * gone + [stall()] * 5)
    assert states(events) == ["opened", "closed", "opened"]
    first, _, second = events
    assert second.event_id != first.event_id
    assert second.revision == 1
    assert second.start == (5 + gone) * STEP


def test_flush_closes_open_events():
    rules = rules_for("street_vending")
    run(rules, [stall()] * 3)
    closed = rules.flush()
    assert states(closed) == ["closed"] and closed[0].end == 4.0


# ---------------------------------------------------------------- evidence


def test_bbox_is_reported_in_source_video_pixels():
    # the sample is 320x180 of a 1920x1080 video: a factor of 6 both ways
    rules = rules_for("street_vending")
    events = run(rules, [stall((100, 110, 150, 160))] * 3, source_size=(1920, 1080))
    assert events[0].bbox == pytest.approx((600, 660, 900, 960))


def test_the_bbox_is_the_best_sighting_and_moves_with_it():
    rules = rules_for("street_vending")
    opened = run(rules, [stall((100, 110, 150, 160), 0.6)] * 3, source_size=(640, 360))
    assert opened[0].bbox == pytest.approx((200, 220, 300, 320))
    better = run(rules, [stall((120, 110, 170, 160), 0.9)], start=6.0, source_size=(640, 360))
    assert states(better) == ["updated"]
    assert better[0].bbox == pytest.approx((240, 220, 340, 320)) and better[0].evidence_ts == 6.0


def test_each_event_keeps_its_own_evidence_when_two_types_share_a_frame():
    # A stall and a dust plume on the same samples: the vending event must report the
    # stall's label, confidence and box, never the plume's (the rules share the frames).
    rules = SourceRules.build("cam-1", [], default_rules(), "test-model")
    plume_box = (200, 10, 300, 80)
    sightings = [dets((STALL_ON_PAVEMENT, "stall", 0.9), (plume_box, "dust", 0.95))] + \
        [dets((STALL_ON_PAVEMENT, "stall", 0.6), (plume_box, "dust", 0.5))] * 2
    events = run(rules, sightings, plumes=[plume_box])
    by_type = {e.event_type: e for e in events}
    assert set(by_type) == {"street_vending", "dust"}
    vending, dust = by_type["street_vending"], by_type["dust"]
    assert (vending.label, vending.confidence, vending.bbox) == ("stall", pytest.approx(0.9), STALL_ON_PAVEMENT)
    assert (dust.label, dust.confidence, dust.bbox) == ("dust", pytest.approx(0.95), plume_box)


def test_two_zones_of_one_rule_are_two_events_with_their_own_evidence():
    left = Zone(name="West pavement", role="no_vending", polygon=[(0, 0.5), (0.5, 0.5), (0.5, 1), (0, 1)])
    right = Zone(name="East pavement", role="no_vending", polygon=[(0.5, 0.5), (1, 0.5), (1, 1), (0.5, 1)])
    rules = rules_for("street_vending", zones=[left, right])
    west_box, east_box = (20, 110, 80, 160), (220, 110, 280, 160)
    sightings = [dets((west_box, "stall", 0.9), (east_box, "umbrella", 0.7))] + \
        [dets((west_box, "stall", 0.5), (east_box, "umbrella", 0.5))] * 2
    events = {e.zone: e for e in run(rules, sightings)}
    assert set(events) == {"West pavement", "East pavement"}
    assert (events["West pavement"].label, events["West pavement"].bbox) == ("stall", west_box)
    assert (events["East pavement"].label, events["East pavement"].bbox) == ("umbrella", east_box)
    assert events["West pavement"].event_id != events["East pavement"].event_id


def test_the_trace_says_where_and_how_often_it_was_seen():
    rules = rules_for("street_vending", zones=[PAVEMENT])
    events = run(rules, [stall(), None, stall(), stall()])
    trace = " ".join(events[0].trace)
    assert "Main St pavement" in trace
    assert "seen in 3 of the last 4 samples" in trace
    assert "at least 3 of 5" in trace


def test_the_trace_of_a_lasting_event_reads_like_a_sentence():
    # a stall for 6 minutes at a fixed camera's patrol rate, missed on every 12th sample
    rules = rules_for("street_vending", zones=[PAVEMENT], update_every_s=1e9)
    sightings = [None if i % 12 == 11 else stall() for i in range(181)] + [None] * 11
    events = run(rules, sightings, start=1_790_000_000.0)  # live: Unix seconds
    closed = events[-1]
    assert closed.state == "closed"
    assert closed.trace[0] == f"stall in no-vending zone 'Main St pavement' for 6 min, seen in {closed.hits} of {closed.samples} samples"
    assert closed.hits == 166 and closed.samples == 191  # 181 - 15 misses; samples up to the closing one
    assert closed.trace[2].startswith("first seen 2026-09-21 22:13:20")  # China time (UTC 14:13:20), not raw seconds
    file_events = run(rules_for("street_vending"), [stall()] * 3)  # a file: seconds into the video
    assert "first seen at 0.0 s of the video" in file_events[0].trace[2]


def test_the_snapshot_is_a_jpeg_of_the_sample_with_the_box_drawn():
    rules = rules_for("street_vending")
    f0 = frame(0.0)
    events = []
    for i in range(3):
        f = f0 if i == 0 else frame(i * STEP)
        events += rules.update(f, stall(conf=0.9 if i == 0 else 0.6))
    snap = events[0].snapshot
    assert snap[:2] == b"\xff\xd8" and snap[-2:] == b"\xff\xd9"  # JPEG start and end markers
    img = cv2.imdecode(np.frombuffer(snap, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None and img.shape == (H, W, 3)
    # drawn on the best sample (t=0), with the red box along the stall's left edge
    x1, y1, x2, y2 = STALL_ON_PAVEMENT
    edge = img[y1 + 5:y2 - 5, x1].astype(int)
    assert (edge[:, 2] > 150).mean() > 0.8 and (edge[:, 1] < 100).mean() > 0.8
    assert cv2.absdiff(img, f0.image).mean() < cv2.absdiff(img, frame(2 * STEP).image).mean()


def test_a_video_that_ends_says_so_not_a_cool_down_that_never_elapsed():
    stall = dets((STALL_ON_PAVEMENT, "stall", 0.9))
    rules = rules_for("street_vending", zones=[PAVEMENT])
    opened = run(rules, [stall] * 20)  # 0..38 s, in view to the end of a 40 s file
    assert opened
    [closed] = rules.flush(cause="video_ended")
    assert closed.state == "closed"
    assert closed.trace[-1] == "ended: the video ended at 38.0 s (its last sample)"
    assert not any("not seen for" in line for line in closed.trace)

    # a live source whose patrol stops: said as such, with the China time of its last sample
    live = rules_for("street_vending", zones=[PAVEMENT])
    run(live, [stall] * 20, start=1_780_000_000.0)
    [closed] = live.flush()
    assert closed.trace[-1].startswith("ended: the source's patrol stopped (its last sample 2026-")

    # and an event that ends while the video still runs keeps its cool-down line
    gone = rules_for("street_vending", zones=[PAVEMENT])
    events = run(gone, [stall] * 20 + [None] * 40)
    closed = [e for e in events if e.state == "closed"]
    assert closed and closed[-1].trace[-1].startswith("ended: not seen for ")
