"""Evidence beyond the snapshot: the view before, the latest view, and a short clip.

Real pictures, real JPEG and H.264 (decoded back with PyAV), the real rules engine
and the real case builder over a real SQLite/PostgreSQL store.
"""
from __future__ import annotations

import io
from dataclasses import replace

import av
import cv2
import numpy as np
import pytest

from cases.builder import CaseBuilder
from cases.evidence_store import EvidenceStore
from db_fixtures import db_url, grid, store, taxonomy  # noqa: F401  (fixtures)
from streams.frame import Frame
from vision.detections import Detections
from vision.events import Event
from vision.evidence import RecentSamples, make_clip, thumbnail
from vision.rules import DEFAULT_RULES, SourceRules
from vision.rules.base import CLIP_SAMPLES

W, H = 640, 360
SHED = (300, 120, 460, 300)  # where the "structure" stands, in sample pixels
GREY, BLUE = (128, 128, 128), (200, 60, 20)  # BGR


def picture(with_shed: bool) -> np.ndarray:
    img = np.full((H, W, 3), GREY, np.uint8)
    if with_shed:
        x1, y1, x2, y2 = SHED
        img[y1:y2, x1:x2] = BLUE
    return img


def decode(jpeg: bytes) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img is not None, "not a JPEG"
    return img


def shed_visible(jpeg_or_image) -> bool:
    """Is the blue shed in the picture? (looks at its centre, in relative coordinates)"""
    img = decode(jpeg_or_image) if isinstance(jpeg_or_image, bytes) else jpeg_or_image
    h, w = img.shape[:2]
    x, y = (SHED[0] + SHED[2]) / 2 / W, (SHED[1] + SHED[3]) / 2 / H
    b, g, r = img[int(y * h), int(x * w)].astype(int)
    return b > 150 and r < 80


def video_frames(mp4: bytes) -> tuple[list[np.ndarray], float, str]:
    with av.open(io.BytesIO(mp4)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
        duration = float(container.duration / av.time_base)
        return frames, duration, stream.codec_context.name


# ---------------------------------------------------------------- making the pieces


def test_thumbnail_is_a_small_even_sided_jpeg_with_its_caption():
    img = picture(True)
    plain, captioned = decode(thumbnail(img)), decode(thumbnail(img, "12.0 s"))
    assert plain.shape == (180, 320, 3)  # longest side 320, aspect kept, both sides even
    assert shed_visible(plain)
    corner = (slice(160, 180), slice(0, 60))
    assert np.abs(plain[corner].astype(int) - captioned[corner].astype(int)).max() > 100, "caption not drawn"
    odd = decode(thumbnail(np.zeros((333, 501, 3), np.uint8)))
    assert odd.shape[0] % 2 == 0 and odd.shape[1] % 2 == 0 and max(odd.shape[:2]) <= 320


def test_clip_is_h264_mp4_with_every_frame_in_order():
    jpegs = [thumbnail(picture(i >= 2)) for i in range(5)]
    mp4 = make_clip(jpegs, fps=2.0)
    assert mp4[4:8] == b"ftyp"
    # the index comes before the media, so a browser can start playing at once
    assert mp4.find(b"moov") < mp4.find(b"mdat")
    frames, duration, codec = video_frames(mp4)
    assert codec == "h264" and len(frames) == 5 and duration == pytest.approx(2.5, abs=0.05)
    assert [shed_visible(f) for f in frames] == [False, False, True, True, True]


def test_clip_refuses_what_it_cannot_encode():
    with pytest.raises(ValueError, match="at least one"):
        make_clip([])
    with pytest.raises(ValueError, match="one even-sided size"):
        make_clip([thumbnail(picture(False)), thumbnail(np.zeros((100, 100, 3), np.uint8))])
    with pytest.raises(ValueError, match="decodable JPEG"):
        make_clip([b"not a jpeg"])


def test_recent_samples_keep_the_newest_few():
    ring = RecentSamples(size=3)
    for ts in (0.0, 2.0, 4.0, 6.0):
        ring.add(ts, picture(False))
    assert ring.newest().ts == 6.0
    assert ring.before(6.0).ts == 4.0 and ring.before(3.0).ts == 2.0
    assert ring.before(2.0) is None  # 0.0 has left the ring


# ---------------------------------------------------------------- the rules attach them to events


def shed_dets(present: bool) -> Detections:
    if not present:
        return Detections.empty()
    return Detections(np.array([SHED], np.float32), np.array([0.8], np.float32), np.zeros(1, np.int32), ["steel_shed"])


def patrol(rules: SourceRules, sightings: list[bool], step: float = 2.0, start: float = 0.0) -> list[Event]:
    events = []
    for i, present in enumerate(sightings):
        f = Frame("cam-1", start + i * step, picture(present), index=i, source_size=(1280, 720))
        events += rules.update(f, shed_dets(present))
    return events


def construction_rules(**changes) -> SourceRules:
    return SourceRules.build("cam-1", [], [replace(DEFAULT_RULES["illegal_construction"], **changes)], "test-model")


def test_event_carries_the_view_before_the_structure_appeared():
    # empty for three samples, then the shed stands there
    events = patrol(construction_rules(), [False, False, False] + [True] * 6)
    opened = events[0]
    assert opened.state == "opened" and opened.start == 6.0
    assert opened.before_ts == 4.0 and not shed_visible(opened.before), "the view before shows the shed"
    assert opened.after_ts == opened.last_seen and shed_visible(opened.after)
    frames, _, _ = video_frames(opened.clip)
    # the view before, then every sample from the first sighting to the opening
    assert [shed_visible(f) for f in frames] == [False, True, True, True, True]


def test_closed_event_shows_the_place_after_it_went_and_the_clip_stops_growing():
    sightings = [False] + [True] * (CLIP_SAMPLES + 4) + [False] * 35  # absent long enough to close
    events = patrol(construction_rules(update_every_s=1.0), sightings)
    closed = events[-1]
    assert closed.state == "closed"
    assert closed.after_ts > closed.last_seen and not shed_visible(closed.after)
    frames, _, _ = video_frames(closed.clip)
    assert len(frames) == CLIP_SAMPLES and not shed_visible(frames[0]) and all(shed_visible(f) for f in frames[1:])
    # every revision carries the whole evidence, so the newest alone is enough
    assert all(e.before and e.after and e.clip for e in events)


def test_the_clip_is_encoded_at_the_first_revision_when_full_and_at_the_close_only():
    # encoding costs the detection loop tens of ms: not once per revision while the clip grows
    sightings = [False] + [True] * (CLIP_SAMPLES + 4) + [False] * 35
    events = patrol(construction_rules(update_every_s=1.0), sightings)
    assert len(events) > 4
    clips = list(dict.fromkeys(e.clip for e in events))  # distinct encodings, in order
    assert len(clips) <= 3
    assert [len(video_frames(c)[0]) for c in clips][-1] == CLIP_SAMPLES


def test_a_structure_there_from_the_first_sample_has_no_view_before():
    events = patrol(construction_rules(), [True] * 6)
    assert events[0].before is None and events[0].before_ts is None
    frames, _, _ = video_frames(events[0].clip)
    assert frames and all(shed_visible(f) for f in frames)


def test_evidence_survives_the_trip_over_redis_fields():
    ev = patrol(construction_rules(), [False] + [True] * 5)[0]
    back = Event.from_message(ev.to_message())
    assert (back.before, back.after, back.clip, back.snapshot) == (ev.before, ev.after, ev.clip, ev.snapshot)
    assert (back.before_ts, back.after_ts) == (ev.before_ts, ev.after_ts)
    # a message written before these fields existed still reads
    old = ev.to_message()
    for name in ("before", "after", "clip"):
        old.pop(name)
    assert Event.from_message(old).clip is None


# ---------------------------------------------------------------- the builder files them with the case

T0 = 1_780_000_000.0  # a live source's Unix seconds
LAT, LON = 30.6, 114.3


def live_events(source="cam-1", start=T0, sightings=(False, False) + (True,) * 8 + (False,) * 35) -> list[Event]:
    events = patrol(construction_rules(update_every_s=1.0), list(sightings), start=start)
    for e in events:
        e.source_id, e.lat, e.lon = source, LAT, LON
    return events


@pytest.fixture
def builder(store, taxonomy, grid, tmp_path):
    return CaseBuilder(store, taxonomy, grid, EvidenceStore(tmp_path / "evidence"))


def test_builder_keeps_the_newest_revisions_views_and_ignores_stale_ones(builder, store):
    events = live_events()
    for e in events:
        case = builder.apply(e, "fixed")
    stale = replace(events[0], revision=0)  # an old revision arriving late changes nothing
    assert builder.apply(stale, "fixed") is None
    items = store.evidence(case.id)
    assert sorted(e.kind for e in items) == ["after", "before", "clip"]  # one of each for the one event
    got = {e.kind: e for e in items}
    files = builder.evidence
    closed = events[-1]
    assert files.get(got["before"].key) == closed.before and got["before"].ts == closed.before_ts
    assert files.get(got["after"].key) == closed.after and got["after"].ts == closed.after_ts
    assert files.get(got["clip"].key) == closed.clip and got["clip"].key.endswith(".mp4")
    assert got["clip"].media_type == "video/mp4" and got["before"].media_type == "image/jpeg"
    assert not shed_visible(files.get(got["before"].key)) and not shed_visible(files.get(got["after"].key))


def test_views_of_a_reviewed_case_stay_as_reviewed(builder, store):
    first, *later = live_events()
    case = builder.apply(first, "fixed")
    store.approve(case.id, "analyst.wang")
    before = store.evidence(case.id)
    for e in later:
        builder.apply(e, "fixed")
    assert store.evidence(case.id) == before


def test_the_snapshot_names_the_violation_in_chinese_and_falls_back_to_english_without_a_font(monkeypatch):
    from vision import evidence

    if evidence._cjk_font(16) is None:
        pytest.skip("no CJK font installed (Debian: fonts-noto-cjk, which .ci/run installs)")
    grey = np.full((540, 960, 3), 120, np.uint8)
    box = (300, 200, 600, 400)
    named = evidence.draw_snapshot(grey, box, "私搭乱建: 彩钢棚 0.96", fallback="illegal_construction: steel_shed 0.96")
    english = evidence.draw_snapshot(grey, box, "illegal_construction: steel_shed 0.96")
    caption = (slice(170, 200), slice(300, 600))  # above the box
    a = cv2.imdecode(np.frombuffer(named, np.uint8), cv2.IMREAD_COLOR)[caption]
    b = cv2.imdecode(np.frombuffer(english, np.uint8), cv2.IMREAD_COLOR)[caption]
    white = lambda img: int((img.min(axis=2) > 200).sum())  # noqa: E731  (the caption's letters)
    assert white(a) > 50 and np.abs(a.astype(int) - b.astype(int)).mean() > 5  # Chinese glyphs, not the English
    # a machine without a CJK font writes the English caption rather than question marks
    monkeypatch.setattr(evidence, "CJK_FONTS", ())
    evidence._cjk_font.cache_clear()
    try:
        assert evidence.draw_snapshot(grey, box, "私搭乱建: 彩钢棚 0.96",
                                      fallback="illegal_construction: steel_shed 0.96") == english
    finally:
        evidence._cjk_font.cache_clear()
