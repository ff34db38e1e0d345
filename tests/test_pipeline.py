"""One patrol step: gate -> detect (batched) -> rules -> events.

The detector here is a tiny object that returns fixed Detections per picture and
records its calls: what is under test is the pipeline's batching and gating and
how it feeds the real rules, not the model (that has its own tests and weights).
"""
from __future__ import annotations

import hashlib

import cv2
import numpy as np

from streams.frame import Frame
from streams.sources import Zone
from test_plume import add_plume
from vision.detections import Detections
from vision.pipeline import Pipeline
from vision.rules import DEFAULT_RULES, default_rules

W, H = 320, 180
STALL_BOX = (100, 110, 150, 160)
PLUME_BOX = (200, 10, 300, 80)


def _key(image: np.ndarray) -> bytes:
    return hashlib.blake2b(image.tobytes(), digest_size=16).digest()


class FixedDetector:
    """Returns the Detections registered for a picture (by content), nothing for others."""

    version = "fixed-test-1"

    def __init__(self):
        self.answers: dict[bytes, Detections] = {}
        self.calls: list[int] = []  # batch size of every detect() call

    def sees(self, image: np.ndarray, label: str, box, conf: float = 0.8) -> np.ndarray:
        self.answers[_key(image)] = Detections(np.array([box], np.float32), np.array([conf], np.float32),
                                             np.zeros(1, np.int32), [label])
        return image

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        self.calls.append(len(images))
        return [self.answers.get(_key(img), Detections.empty()) for img in images]


def scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((H, W, 3), 100, np.uint8)
    for _ in range(12):
        x, y = int(rng.integers(0, W - 40)), int(rng.integers(0, H - 30))
        cv2.rectangle(img, (x, y), (x + 40, y + 30), tuple(int(c) for c in rng.integers(30, 220, 3)), -1)
    return img


def states(events, event_type=None) -> list[str]:
    return [e.state for e in events if event_type is None or e.event_type == event_type]


def test_gated_samples_reuse_the_last_detections_so_a_static_event_stays_open():
    detector = FixedDetector()
    pipeline = Pipeline(detector, default_rules())
    pipeline.add_source("cam-1", gate=True, recheck_s=30.0)
    # a static view with a stall in it: the same picture (a new copy each time) every 2 s for a minute
    picture = detector.sees(scene(1), "stall", STALL_BOX)
    events = []
    for i in range(31):
        events += pipeline.step([Frame("cam-1", i * 2.0, picture.copy())])

    # only the first sample and the re-checks at 30 s and 60 s reach the detector...
    assert detector.calls == [1, 1, 1]
    state = pipeline.sources["cam-1"]
    assert (state.analysed, state.gated) == (3, 28)
    # ...yet the stall opened on the third sample (the gated ones still count as sightings)
    # and did not close during 28 s without a detector look, longer than its absence_s
    assert DEFAULT_RULES["street_vending"].absence_s < 28
    assert states(events) == ["opened"]
    assert events[0].start == 0.0 and events[0].last_seen == 4.0


def test_the_copies_of_a_picture_are_not_seen_by_the_detector_but_a_change_is():
    # A gated sample is one the detector never saw; when the picture changes (the stall is
    # packed away), the detector looks again and the event ends after its absence time.
    detector = FixedDetector()
    pipeline = Pipeline(detector, default_rules())
    pipeline.add_source("cam-1", gate=True, recheck_s=30.0)
    with_stall = detector.sees(scene(1), "stall", STALL_BOX)
    empty_street = scene(1)
    cv2.rectangle(empty_street, (90, 100), (160, 170), (0, 0, 0), -1)  # where the stall stood
    events = []
    for i in range(5):
        events += pipeline.step([Frame("cam-1", i * 2.0, with_stall)])
    for i in range(5, 20):
        events += pipeline.step([Frame("cam-1", i * 2.0, empty_street)])
    assert detector.calls == [1, 1]  # the first look, and the look at the changed picture
    assert states(events) == ["opened", "closed"]
    assert events[-1].end == 8.0


def test_samples_of_several_sources_go_through_one_detect_call():
    detector = FixedDetector()
    pipeline = Pipeline(detector, default_rules())
    for sid in ("cam-a", "cam-b", "cam-c"):
        pipeline.add_source(sid, gate=False)
    stall_view = detector.sees(scene(1), "stall", STALL_BOX)
    quiet_view = scene(2)
    # the dust rule measures the pixels under the box too, so the plume is really drawn
    dusty_view = detector.sees(add_plume(scene(3), PLUME_BOX), "dust", PLUME_BOX, conf=0.7)
    events = []
    for i in range(3):
        t = 100.0 + i
        events += pipeline.step([Frame("cam-a", t, stall_view), Frame("cam-b", t, quiet_view),
                                 Frame("cam-c", t, dusty_view)])
    assert detector.calls == [3, 3, 3]
    # each source got its own picture's detections back
    assert sorted((e.source_id, e.event_type, e.state) for e in events) == [
        ("cam-a", "street_vending", "opened"), ("cam-c", "dust", "opened")]


def test_a_batch_mixes_analysed_and_gated_samples_in_order():
    # consecutive samples of one source in one batch: the second is gated and must
    # reuse the detections of the first, found in the same call
    detector = FixedDetector()
    pipeline = Pipeline(detector, default_rules())
    pipeline.add_source("cam-1", gate=True)
    pipeline.add_source("cam-2", gate=True)
    stall_view = detector.sees(scene(1), "stall", STALL_BOX)
    other = scene(2)
    batch = [Frame("cam-1", t, stall_view) for t in (0.0, 2.0, 4.0)] + [Frame("cam-2", 0.0, other)]
    events = pipeline.step(batch)
    assert detector.calls == [2]  # cam-1's first sample and cam-2's, together
    assert [(e.source_id, e.state, e.start) for e in events] == [("cam-1", "opened", 0.0)]


def test_zones_reach_the_rules_through_the_pipeline():
    detector = FixedDetector()
    pipeline = Pipeline(detector, default_rules())
    upper = Zone(name="North pavement", role="no_vending", polygon=[(0, 0), (1, 0), (1, 0.3), (0, 0.3)])
    pipeline.add_source("cam-1", zones=[upper], gate=False)
    picture = detector.sees(scene(1), "stall", STALL_BOX)  # stands at y=160/180: outside the zone
    events = []
    for i in range(6):
        events += pipeline.step([Frame("cam-1", i * 2.0, picture)])
    assert events == []


def test_removing_a_source_closes_its_open_events():
    detector = FixedDetector()
    pipeline = Pipeline(detector, default_rules())
    pipeline.add_source("cam-1", gate=False)
    picture = detector.sees(scene(1), "stall", STALL_BOX)
    for i in range(3):
        pipeline.step([Frame("cam-1", i * 2.0, picture)])
    closed = pipeline.remove_source("cam-1", now=10.0)
    assert states(closed) == ["closed"] and closed[0].source_id == "cam-1"
    assert "cam-1" not in pipeline.sources
    assert detector.version == closed[0].model_version
