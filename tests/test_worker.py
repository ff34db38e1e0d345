"""The patrol worker end to end: real readers on real H.264, a real Redis, the real pipeline.

Files are played at real-time pace, as the simulated cameras of the demo are, so
the clips are kept to a few seconds.
"""
from __future__ import annotations

import json
import subprocess
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest

import media_servers
from core.settings import Settings
from core.wiring import Parts
from streams.sources import SamplingPolicy, Source
from test_bus import private_redis_db, redis_unreachable, wait_for
from vision.detections import Detections
from vision.events import Event
from vision.pipeline import Pipeline
from vision.rules import default_rules
from workers.bus import EVENTS, Bus, EmbeddedRedis
from workers.patrol import PatrolWorker

REPO = Path(__file__).resolve().parents[1]
MODEL = Settings().model.weights  # models/patrol-v13_openvino_model unless PATROL_MODEL__WEIGHTS says otherwise
CLIP_S = 6
REFUSED = "rtsp://127.0.0.1:1/x"  # nothing listens on port 1: the connection is refused at once


@pytest.fixture
def bus(tmp_path):
    """The Redis server when it is reachable, else an embedded one: the worker only
    needs a Redis (the two backends are compared in test_bus.py)."""
    if redis_unreachable():
        embedded = EmbeddedRedis(tmp_path / "redis")
        b = Bus.connect(embedded.url)
        yield b
        b.r.close()
        embedded.close()
    else:
        with private_redis_db() as url:
            b = Bus.connect(url)
            yield b
            b.r.close()


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """A 6 s H.264 testsrc2 clip, 10 fps, a key frame every second."""
    return media_servers.make_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=CLIP_S, size="320x240")


class NoDetections:
    """Stands in for the model only because detection is not what these tests are
    about: the readers, Redis, the gate and the rules are all real. Counts what
    the pipeline asked it to look at."""

    version = "no-detections"

    def __init__(self):
        self.images = 0

    def detect(self, images):
        self.images += len(images)
        return [Detections.empty() for _ in images]


@contextmanager
def running(worker: PatrolWorker):
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), name="patrol-worker-under-test", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(15)
        assert not thread.is_alive(), "the worker did not stop"


def source(source_id: str, url: str, interval_s: float = 0.5, **kw) -> Source:
    return Source(id=source_id, kind="fixed", url=url, policy=SamplingPolicy(interval_s=interval_s), **kw)


def worker_for(bus, sources, detector) -> PatrolWorker:
    return PatrolWorker(bus, Pipeline(detector, default_rules()), sources, worker_id="worker-under-test",
                        state_every_s=0.2, reader_options={"open_timeout_s": 2, "read_timeout_s": 2})


def state_of(bus, source_id: str) -> dict:
    return bus.source_states().get(source_id, {})


def test_the_worker_reports_a_file_source_live_then_down_at_its_end(bus, clip):
    detector = NoDetections()
    worker = worker_for(bus, [source("cam-file", str(clip))], detector)
    started = time.monotonic()
    with running(worker):
        live = wait_for(lambda: (s := state_of(bus, "cam-file")).get("state") == "live" and s, 15, "cam-file live")
        assert live["worker"] == "worker-under-test" and live["kind"] == "fixed"
        assert live["detail"] == "320x240" and live["last_error"] is None
        assert bus.workers()["worker-under-test"]["sources"] == 1

        down = wait_for(lambda: (s := state_of(bus, "cam-file")).get("state") == "down" and s,
                        CLIP_S + 15, "cam-file down at the end of its file")
        played_s = time.monotonic() - started
        assert down["detail"] == "end of file" and down["last_error"] is None  # an ending, not a failure
        # Played at the pace of a camera, not decoded as fast as possible.
        assert played_s >= CLIP_S - 1
        # One sample per 0.5 s of a 6 s clip, every one handed to the pipeline.
        assert 8 <= down["samples"] <= 2 * CLIP_S + 1
        # Every sample the reader kept reached the pipeline (the heartbeat may lag one report).
        taken = down["samples"] - down["dropped"]
        wait_for(lambda: bus.workers()["worker-under-test"]["samples"] == taken, 5, f"worker stats at {taken} samples")
    assert detector.images >= 1  # the change gate may skip samples, but not all of them
    assert bus.r.xlen(EVENTS) == 0  # no detections, so no events


def test_a_dead_camera_is_reported_down_while_the_other_keeps_going(bus, clip):
    detector = NoDetections()
    worker = worker_for(bus, [source("cam-dead", REFUSED), source("cam-file", str(clip))], detector)
    with running(worker):
        def both():
            states = bus.source_states()
            dead, good = states.get("cam-dead", {}), states.get("cam-file", {})
            return dead.get("state") == "down" and good.get("state") == "live" and good["samples"] >= 3 and states

        states = wait_for(both, 15, "cam-dead down while cam-file is live with samples")
        dead = states["cam-dead"]
        assert "Connection refused" in dead["last_error"] and "127.0.0.1:1" in dead["last_error"]
        assert dead["detail"] == dead["last_error"] and dead["samples"] == 0
        # It keeps retrying on its own, with backoff, while the other source plays on.
        wait_for(lambda: state_of(bus, "cam-dead").get("reconnects", 0) >= 1, 10, "cam-dead retrying")
        assert state_of(bus, "cam-file")["state"] == "live"
        assert bus.workers()["worker-under-test"]["sources"] == 2
    assert detector.images >= 1


# ---------------------------------------------------------------- with the trained model


@pytest.fixture(scope="module")
def construction_clip(tmp_path_factory) -> Path:
    """8 s of the illegal-construction sample from inside its ground-truth event
    (8-40 s), re-encoded so that it starts on a key frame."""
    media_servers.require_ffmpeg()
    out = tmp_path_factory.mktemp("video") / "construction.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-ss", "12", "-t", "8",
                    "-i", str(REPO / "sample_videos" / "fixed_illegal_construction.mp4"),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", "10", "-an", str(out)], check=True, timeout=120)
    return out


@pytest.mark.skipif(not MODEL.exists(), reason="default model not trained yet")
def test_the_worker_publishes_events_found_by_the_default_model(bus, tmp_path, construction_clip):
    truth = json.loads((REPO / "sample_videos" / "fixed_illegal_construction.json").read_text())["events"][0]
    parts = Parts(Settings(data_dir=tmp_path))
    detector = parts.detector
    worker = PatrolWorker(bus, Pipeline(detector, parts.rules), [source("cam-site", str(construction_clip), 1.0)],
                          state_every_s=0.5)
    with running(worker):
        wait_for(lambda: state_of(bus, "cam-site").get("detail") == "end of file", 60, "the clip played to its end")
        # The end of the file ends its events: the closing revision is published.
        wait_for(lambda: any(Event.from_message(f).state == "closed" for _, f in bus.r.xrange(EVENTS)), 10,
                 "a closed event on the stream")

    events = [Event.from_message(f) for _, f in bus.r.xrange(EVENTS)]
    found = [e for e in events if e.event_type == truth["event_type"]]
    assert found, f"no {truth['event_type']} event; got {[(e.event_type, e.label) for e in events]}"
    last = max(found, key=lambda e: e.revision)
    assert last.source_id == "cam-site" and last.model_version == detector.version
    assert last.trace and last.hits >= 1
    x1, y1, x2, y2 = truth["bbox"]
    cx, cy = (last.bbox[0] + last.bbox[2]) / 2, (last.bbox[1] + last.bbox[3]) / 2
    assert x1 <= cx <= x2 and y1 <= cy <= y2, f"box {last.bbox} is not on the structure at {truth['bbox']}"
    snapshot = cv2.imdecode(np.frombuffer(last.snapshot, np.uint8), cv2.IMREAD_COLOR)
    assert snapshot is not None and snapshot.ndim == 3  # a JPEG an analyst can open


# ---------------------------------------------------------------- a detector that cannot keep up


class SlowDetector(NoDetections):
    """A detector that takes ``seconds`` per call, as an overloaded CPU or GPU does:
    what is being tested is the worker around it."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def detect(self, images):
        time.sleep(self.seconds)
        return super().detect(images)


@pytest.mark.parametrize("detector_s, lagging", [(1.2, True), (0.0, False)])
def test_a_slow_detector_shows_as_lag_and_drops_never_as_a_blocked_reader(bus, clip, detector_s, lagging):
    interval_s = 0.25
    src = Source(id="cam-busy", kind="fixed", url=str(clip), policy=SamplingPolicy(interval_s=interval_s, gate=False))
    detector = SlowDetector(detector_s)
    worker = worker_for(bus, [src], detector)
    with running(worker):
        st = wait_for(lambda: (s := state_of(bus, "cam-busy")).get("samples", 0) >= 12 and s.get("lag_s") is not None
                      and s, 15, "three seconds of samples")
        reader = worker.readers["cam-busy"].stats()
    # The reader kept its pace whatever the detector did: four samples a second.
    assert reader["samples_per_s"] == pytest.approx(1 / interval_s, abs=1.0)
    assert st["state"] == "live" and st["lagging"] is lagging
    if lagging:
        # each sample waited for the detector call in progress, then for its own
        assert st["lag_s"] > 2 * interval_s and st["dropped"] >= 4
        assert worker.stats["infer_ms"] >= 1000
    else:
        assert st["lag_s"] < 2 * interval_s and st["dropped"] <= 2
