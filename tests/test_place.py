"""Rules that know where a thing is: vending stays put, and nothing fixed in a moving
camera's picture is in the world (vision/rules/place.py through the real rules engine).

Pictures are real pixels: a moving camera's samples are windows sliding over one large
textured scene, so the view's shift is measured by the same phase correlation as live.
Detections are built by hand, so each test knows what the detector "saw".
"""
from __future__ import annotations

import numpy as np

from streams.frame import Frame
from test_plume import add_plume
from test_rules import PAVEMENT, H, W, dets, frame, rules_for
from vision.rules import SourceRules, default_rules

STEP = 2.0


def _scene(seed: int = 3) -> np.ndarray:
    """A wide street-like texture: blocks of colour with edges, so shifts can be measured."""
    import cv2

    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(0, 255, (H, W * 4, 3), dtype=np.uint8), (0, 0), 2)
    for _ in range(300):
        x, y = int(rng.integers(0, W * 4 - 40)), int(rng.integers(0, H - 30))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(10, 40)), y + int(rng.integers(10, 30))),
                      tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


def _pan(scene: np.ndarray, i: int, step_px: int) -> Frame:
    """Sample ``i`` of a camera sliding ``step_px`` to the right per sample."""
    x = i * step_px
    return Frame("car-1", i * STEP, np.ascontiguousarray(scene[:, x:x + W]), index=i)


def _moving(*types: str) -> SourceRules:
    return SourceRules.build("car-1", [], [c for c in default_rules() if c.event_type in types], "test-model",
                             moving=True)


def _run(rules: SourceRules, frames, boxes_per_sample, label: str, conf: float = 0.8) -> list:
    events = []
    for f, box in zip(frames, boxes_per_sample):
        events += rules.update(f, dets((box, label, conf)) if box is not None else dets())
    return events


def test_a_stall_that_stays_put_is_vending():
    rules = rules_for("street_vending", zones=[PAVEMENT])
    events = _run(rules, [frame(i * STEP) for i in range(5)], [(100, 110, 150, 160)] * 5, "stall")
    assert [e.state for e in events] == ["opened"]
    assert rules.refused() == {}


def test_a_cart_crossing_a_fixed_view_is_not_vending_and_says_why():
    rules = rules_for("street_vending", zones=[PAVEMENT])
    # a tricycle with goods, 40 px further along at every sample: seen every time, never in one place
    boxes = [(10 + 40 * i, 110, 60 + 40 * i, 160) for i in range(7)]
    events = _run(rules, [frame(i * STEP) for i in range(7)], boxes, "stall")
    assert events == []
    assert rules.refused() == {"street_vending": {"passing through": 6}}


def test_refused_sightings_show_in_the_trace_of_an_event_that_did_fire():
    rules = rules_for("street_vending", zones=[PAVEMENT])
    events = []
    for i in range(5):
        seen = [((100, 110, 150, 160), "stall", 0.8)]
        if i == 2:  # a cart passes through the zone, far from the stall, after the stall was first seen
            seen = [((250, 120, 300, 170), "stall", 0.9), ((100, 110, 150, 160), "stall", 0.7)]
        events += rules.update(frame(i * STEP), dets(*seen))
    opened = [e for e in events if e.state == "opened"]
    assert len(opened) == 1
    assert any("not counted: 1 sighting passing through" in line for line in opened[0].trace)


def test_a_blob_fixed_in_a_panning_camera_is_on_the_lens():
    scene = _scene()
    rules = _moving("dust", "illegal_construction")
    frames = [_pan(scene, i, 30) for i in range(8)]
    # the same box in every picture while the view slides 30 px (9 %) per sample
    events = _run(rules, frames, [(140, 40, 220, 120)] * 8, "scaffold")
    assert events == []
    refused = rules.refused()["illegal_construction"]
    assert refused == {"on the lens": 7}


def test_a_thing_that_moves_with_the_view_is_in_the_world():
    scene = _scene()
    rules = _moving("illegal_construction")
    frames = [_pan(scene, i, 30) for i in range(6)]
    # a shed standing in the world slides left in the picture as the camera moves right
    boxes = [(200 - 30 * i, 40, 280 - 30 * i, 120) for i in range(6)]
    events = _run(rules, frames, boxes, "steel_shed")
    assert [e.state for e in events][:1] == ["opened"]
    assert rules.refused() == {}


def test_a_blob_fixed_while_the_view_changes_beyond_alignment_is_refused():
    # a camera driving forward: every sample is a different picture, no shift can be measured
    rules = _moving("dust")
    frames = []
    for i in range(6):  # a smear that looks like a plume, on a different street every sample
        image = np.ascontiguousarray(_scene(seed=10 + i)[:, :W])
        add_plume(image, (20, 20, 120, 100))
        frames.append(Frame("car-1", i * STEP, image, index=i))
    events = _run(rules, frames, [(20, 20, 120, 100)] * 6, "dust")
    assert events == []
    assert rules.refused()["dust"]["on the lens"] == 5


def test_a_still_camera_on_a_vehicle_keeps_its_structures():
    # a patrol vehicle parked: its view does not move, so what stays in its picture is in the world
    scene = _scene()
    rules = _moving("illegal_construction")
    frames = [_pan(scene, 0, 0) for _ in range(6)]
    for i, f in enumerate(frames):
        f.ts = i * STEP
    events = _run(rules, frames, [(140, 40, 220, 120)] * 6, "scaffold")
    assert [e.state for e in events][:1] == ["opened"]
    assert rules.refused() == {}


def test_telemetry_tells_a_lens_blob_when_the_picture_alone_cannot():
    # a drone over even ground: its picture barely changes, but its track says it flew 60 m a sample
    from streams.frame import GeoPoint

    scene = _scene()
    rules = _moving("illegal_construction")
    events = []
    for i in range(6):
        f = _pan(scene, 0, 0)
        f.ts, f.geo = i * STEP, GeoPoint(30.0 + i * 60 / 111_320.0, 120.0)
        events += rules.update(f, dets(((140, 40, 220, 120), "steel_shed", 0.8)))
    assert events == []
    assert rules.refused()["illegal_construction"]["on the lens"] == 5
