"""Main and sub-stream: a fixed camera is analysed on its sub-stream and its evidence
picture comes from the main stream at the moment of the event.

End to end: the street-vending sample at two sizes (main 1280x720, sub 640x360) on a
real RTSP server with a mount for each (the looping server of `patrol simulate`),
the patrol worker with the default model, a real Redis and the case builder over
SQLite. Below it, the evidence queue on its own, with real grabs of real files.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import media_servers
from bench.simulate import RtspServed, SimSource
from core.settings import Settings
from core.wiring import Parts
from streams.grab import grab_frame
from streams.reader import SourceError
from streams.sources import SamplingPolicy, Source, Zone
from test_bus import wait_for
from test_worker import MODEL, bus, running  # noqa: F401  (bus: fixture)
from vision.events import Event
from vision.pipeline import Pipeline
from workers.bus import EVENTS
from workers.case_builder import CaseBuilderService
from workers.main_grab import MainStreamEvidence
from workers.patrol import PatrolWorker

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_videos" / "fixed_street_vending"
MAIN, SUB = (1280, 720), (640, 360)


def transcode(src: Path, out: Path, size: tuple[int, int], start_s: float = 0, seconds: float = 20) -> Path:
    """H.264 at `size`, 10 fps, a key frame every second, no B-frames: a camera's stream."""
    media_servers.require_ffmpeg()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", str(start_s), "-t", str(seconds),
                    "-i", str(src), "-vf", f"scale={size[0]}:{size[1]}", "-c:v", "libx264", "-preset", "ultrafast",
                    "-g", "10", "-keyint_min", "10", "-sc_threshold", "0", "-bf", "0", "-pix_fmt", "yuv420p",
                    "-an", str(out)], check=True, timeout=120)
    return out


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a JPEG"
    return image


# ---------------------------------------------------------------- the evidence queue


def event(state: str, revision: int, evidence_ts: float, bbox=(100, 50, 200, 150), event_id="ev-1") -> Event:
    return Event(event_id=event_id, source_id="cam-1", event_type="street_vending", state=state, start=0.0,
                 last_seen=float(revision), confidence=0.8, bbox=bbox, label="stall", revision=revision,
                 evidence_ts=evidence_ts, snapshot=b"sub-stream jpeg", trace=["stall seen"])


@pytest.fixture(scope="module")
def main_file(tmp_path_factory) -> Path:
    return transcode(SAMPLE.with_suffix(".mp4"), tmp_path_factory.mktemp("main") / "main.mp4", MAIN, 8, 3)


def test_the_main_picture_replaces_the_sub_stream_one_with_the_box_scaled(main_file):
    src = Source(id="cam-1", kind="fixed", url=str(main_file), sub_url="rtsp://127.0.0.1:1/sub")
    evidence = MainStreamEvidence(timeout_s=5)
    try:
        evidence.add(event("opened", 1, 10.0), src, SUB)
        evidence.add(event("updated", 2, 10.0), src, SUB)  # the same sighting: no second grab
        evidence.add(event("closed", 3, 10.0), src, SUB)
        assert evidence.grabs == 1
        out = wait_for(lambda: evidence.ready() or None, 10, "the grab")
        out += evidence.ready()
    finally:
        evidence.close()
    assert [e.revision for e in out] == [1, 2, 3]  # in order, all behind the one grab
    for e in out:
        assert decode_jpeg(e.snapshot).shape == (MAIN[1], MAIN[0], 3)
        assert e.bbox == pytest.approx((200, 100, 400, 300))  # sub pixels x2
        assert "main stream (1280x720)" in e.trace[-1] and e.trace[0] == "stall seen"
    assert out[0].snapshot == out[2].snapshot


def test_new_evidence_is_grabbed_again_and_a_failed_grab_keeps_the_sub_stream_picture(main_file, tmp_path):
    good = Source(id="cam-1", kind="fixed", url=str(main_file), sub_url="rtsp://127.0.0.1:1/sub")
    gone = Source(id="cam-2", kind="fixed", url="rtsp://127.0.0.1:1/main", sub_url="rtsp://127.0.0.1:1/sub")
    evidence = MainStreamEvidence(timeout_s=2)
    try:
        evidence.add(event("opened", 1, 10.0), good, SUB)
        evidence.add(event("updated", 2, 14.0, bbox=(0, 0, 64, 36)), good, SUB)  # a better sighting
        evidence.add(event("opened", 1, 5.0, event_id="ev-2"), gone, SUB)
        assert evidence.grabs == 3
        out = evidence.drain()
    finally:
        evidence.close()
    by_id = {(e.event_id, e.revision): e for e in out}
    assert by_id["ev-1", 2].bbox == pytest.approx((0, 0, 128, 72))
    assert by_id["ev-1", 1].snapshot != by_id["ev-1", 2].snapshot  # (the box is drawn on each)
    failed = by_id["ev-2", 1]
    assert failed.snapshot == b"sub-stream jpeg" and failed.bbox == (100, 50, 200, 150)
    assert "the main stream could not be read" in failed.trace[-1] and "Connection refused" in failed.trace[-1]
    assert evidence.failures == 1


def test_an_event_closing_after_an_ungrabbed_better_sighting_keeps_the_grabbed_evidence(main_file):
    src = Source(id="cam-1", kind="fixed", url=str(main_file), sub_url="rtsp://127.0.0.1:1/sub")
    evidence = MainStreamEvidence(timeout_s=5)
    try:
        evidence.add(event("opened", 1, 10.0), src, SUB)
        better = event("closed", 2, 12.0, bbox=(300, 100, 400, 200))  # too small a gain to publish before
        better.confidence, better.label = 0.85, "umbrella"
        evidence.add(better, src, SUB)
        assert evidence.grabs == 1  # a closed event is not grabbed: the violation may be gone
        opened, closed = evidence.drain()
    finally:
        evidence.close()
    # picture, box, label and confidence of one sighting: the grabbed one
    assert closed.snapshot == opened.snapshot and closed.bbox == opened.bbox
    assert (closed.confidence, closed.label, closed.evidence_ts) == (0.8, "stall", 10.0)
    assert closed.state == "closed" and closed.revision == 2


def test_grab_frame_says_why_it_has_no_picture(tmp_path):
    with pytest.raises(SourceError, match="Connection refused"):
        grab_frame("rtsp://127.0.0.1:1/main", 2)
    with pytest.raises(SourceError, match="not a readable video|No such file"):
        grab_frame(str(tmp_path / "missing.mp4"), 2)


# ---------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def streams(tmp_path_factory) -> dict[str, Path]:
    """20 s from inside the sample's violation (6-30 s) at both sizes."""
    out = tmp_path_factory.mktemp("camera")
    return {"main": transcode(SAMPLE.with_suffix(".mp4"), out / "main.mp4", MAIN, 8, 20),
            "sub": transcode(SAMPLE.with_suffix(".mp4"), out / "sub.mp4", SUB, 8, 20)}


@pytest.mark.slow
@pytest.mark.media
@pytest.mark.skipif(not MODEL.exists(), reason="default model not trained yet")
def test_a_case_from_the_sub_stream_carries_the_main_streams_picture(tmp_path, bus, streams):  # noqa: F811
    media_servers.require_rtsp()
    zones = [Zone(**z) for z in yaml.safe_load(SAMPLE.with_suffix(".zones.yaml").read_text())["zones"]]
    truth = json.loads(SAMPLE.with_suffix(".json").read_text())["events"][0]
    camera = SimSource("east-gate", "fixed", SAMPLE.with_suffix(".mp4"), main=streams["main"], sub=streams["sub"])
    parts = Parts(Settings(data_dir=tmp_path))
    with RtspServed([camera], None, tmp_path / "rtsp").start() as served:
        main_url, sub_url = served.urls(camera)
        policy = SamplingPolicy(interval_s=1.0)
        sources = [
            Source(id="cam-main-ok", kind="fixed", url=main_url, sub_url=sub_url, zones=zones, policy=policy),
            # the same sub-stream, but a main stream nobody serves: the event keeps its sub-stream picture
            Source(id="cam-main-gone", kind="fixed", url="rtsp://127.0.0.1:1/main", sub_url=sub_url, zones=zones,
                   policy=policy),
        ]
        worker = PatrolWorker(bus, Pipeline(parts.detector, parts.rules), sources, worker_id="worker-sub",
                              state_every_s=0.5, reader_options={"open_timeout_s": 3, "read_timeout_s": 3})

        def published() -> set[str]:
            return {Event.from_message(f).source_id for _, f in bus.r.xrange(EVENTS)}

        with running(worker):
            wait_for(lambda: published() >= {"cam-main-ok", "cam-main-gone"}, 90,
                     "an event from each source on the stream")
            # analysed on the sub-stream: the reader's pictures are 640x360
            assert {r.stats()["size"] for r in worker.readers.values()} == {"640x360"}
    assert worker.main_evidence.grabs >= 2 and worker.main_evidence.failures >= 1

    service = CaseBuilderService(bus, parts.builder)
    for _, fields in bus.r.xrange(EVENTS):
        service.handle(Event.from_message(fields))
    cases = {c.source_id: c for c in parts.store.list_cases(limit=50).items}
    assert set(cases) == {"cam-main-ok", "cam-main-gone"}, cases

    ok = cases["cam-main-ok"]
    assert ok.event_type == "street_vending"
    snapshot = decode_jpeg(parts.evidence.get(ok.snapshot_key))
    assert snapshot.shape == (MAIN[1], MAIN[0], 3)  # the main stream's resolution
    # the box in main-stream pixels, on the stall (the ground truth is in the 960x540 sample's pixels)
    k = MAIN[0] / 960
    x1, y1, x2, y2 = (v * k for v in truth["bbox"])
    cx, cy = (ok.bbox[0] + ok.bbox[2]) / 2, (ok.bbox[1] + ok.bbox[3]) / 2
    assert x1 <= cx <= x2 and y1 <= cy <= y2, f"box {ok.bbox} is not on the stall at {(x1, y1, x2, y2)}"
    assert any("evidence picture from the main stream (1280x720)" in line for line in ok.trace)

    gone = cases["cam-main-gone"]
    assert decode_jpeg(parts.evidence.get(gone.snapshot_key)).shape[:2] == (SUB[1], SUB[0])
    assert all(v <= SUB[0] for v in gone.bbox)  # still sub-stream pixels, like its picture
    assert any("the main stream could not be read" in line for line in gone.trace)
