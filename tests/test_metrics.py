"""/metrics renders what workers report to Redis, in Prometheus' text format."""
from __future__ import annotations

import os
import sys
import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from auth_helpers import client_as
from core.settings import Settings
from core.wiring import Parts
from streams.sources import load_registry
from workers.bus import Bus, EmbeddedRedis


@pytest.fixture
def bus(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")  # a private, real Redis: no other test's state
    b = Bus.connect(server.url)
    yield b
    b.r.connection_pool.disconnect()
    server.close()


def samples(text: str) -> dict[tuple, float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_show_source_and_worker_state(tmp_path, bus):
    bus.set_source_state("fixed-east-gate", {"state": "live", "kind": "fixed", "samples": 42, "dropped": 3,
                                             "reconnects": 1, "samples_per_s": 0.5, "lag_s": 1.2, "lagging": False,
                                             "age_s": 0.4, "last_error": None})
    bus.set_source_state("vehicle-01", {"state": "down", "kind": "vehicle", "samples": 0, "lagging": False,
                                        "last_error": "rtsp://gw/v1: Connection refused"})
    bus.heartbeat("worker-a", {"sources": 2, "last_batch": 2, "detect_batch": 1, "infer_ms": 35.5, "step_ms": 41.0,
                               "cpu_percent": 87.5, "rss_bytes": 512_000_000, "events": 7})
    parts = Parts(Settings(data_dir=tmp_path / "data"))
    registry = load_registry("config/demo_sources.yaml")
    app = create_app(parts, bus=bus, registry=registry)
    with TestClient(app) as anonymous:
        assert anonymous.get("/metrics").status_code == 401
    with client_as(app, "monitoring", "prometheus") as scraper:  # an API token that can read only this
        r = scraper.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    m = samples(r.text)
    assert m[("patrol_source_state", (("kind", "fixed"), ("source", "fixed-east-gate"), ("state", "live")))] == 1
    assert m[("patrol_source_state", (("kind", "fixed"), ("source", "fixed-east-gate"), ("state", "down")))] == 0
    assert m[("patrol_source_state", (("kind", "vehicle"), ("source", "vehicle-01"), ("state", "down")))] == 1
    assert m[("patrol_source_dropped_total", (("source", "fixed-east-gate"),))] == 3
    assert m[("patrol_source_samples_total", (("source", "fixed-east-gate"),))] == 42
    assert m[("patrol_source_lag_seconds", (("source", "fixed-east-gate"),))] == pytest.approx(1.2)
    assert m[("patrol_worker_sources", (("worker", "worker-a"),))] == 2
    assert m[("patrol_source_lagging", (("source", "fixed-east-gate"),))] == 0
    assert m[("patrol_source_sample_age_seconds", (("source", "fixed-east-gate"),))] == pytest.approx(0.4)
    assert m[("patrol_source_error_info", (("error", "rtsp://gw/v1: Connection refused"), ("source", "vehicle-01")))] == 1
    assert not any(name == "patrol_source_error_info" and ("source", "fixed-east-gate") in labels for name, labels in m)
    assert m[("patrol_worker_batch_size", (("worker", "worker-a"),))] == 1
    assert m[("patrol_worker_inference_milliseconds", (("worker", "worker-a"),))] == pytest.approx(35.5)
    assert m[("patrol_worker_step_milliseconds", (("worker", "worker-a"),))] == pytest.approx(41.0)
    assert m[("patrol_worker_cpu_percent", (("worker", "worker-a"),))] == pytest.approx(87.5)
    assert m[("patrol_worker_memory_bytes", (("worker", "worker-a"),))] == 512_000_000
    assert m[("patrol_events_pending", ())] == 0
    assert m[("patrol_cases", (("status", "draft"),))] == 0


# ---------------------------------------------------------------- from a running worker


def test_a_running_worker_reports_itself_and_its_sources(tmp_path, bus):
    """A real patrol worker over a real clip: what it reports reaches /api/v1/workers,
    /api/v1/sources and /metrics with its real figures."""
    import media_servers
    from streams.sources import SamplingPolicy, Source
    from test_bus import wait_for
    from test_worker import NoDetections, running
    from vision.pipeline import Pipeline
    from vision.rules import default_rules
    from workers.patrol import PatrolWorker

    clip = media_servers.make_video(tmp_path / "clip.mp4", seconds=6, size="320x240")
    src = Source(id="fixed-east-gate", kind="fixed", url=str(clip), policy=SamplingPolicy(interval_s=0.5, gate=False))
    worker = PatrolWorker(bus, Pipeline(NoDetections(), default_rules()), [src], worker_id="worker-metrics",
                          state_every_s=0.2, gil_switch_s=Settings().worker.gil_switch_ms / 1000)
    parts = Parts(Settings(data_dir=tmp_path / "data"))
    app = create_app(parts, bus=bus, registry=load_registry("config/demo_sources.yaml"))
    python_default = sys.getswitchinterval()
    with running(worker), client_as(app, "monitoring", "prometheus") as scraper:
        wait_for(lambda: bus.workers().get("worker-metrics", {}).get("steps", 0) >= 4, 15, "four patrol steps")
        assert sys.getswitchinterval() == pytest.approx(0.001)  # the worker's, not Python's 5 ms
        sys.setswitchinterval(python_default)
        time.sleep(1.2)  # one CPU-usage window
        r = scraper.get("/api/v1/workers")
        assert r.status_code == 200
        body = r.json()
        assert body["total"] == 1
        w = body["items"][0]
        assert w["id"] == "worker-metrics" and w["sources"] == 1 and w["pid"] == os.getpid()
        assert w["last_batch"] == 1 and w["detect_batch"] == 1  # one source, nothing gated
        assert w["infer_ms"] >= 0 and w["step_ms"] >= w["infer_ms"]
        assert 0 <= w["cpu_percent"] <= 100 * os.cpu_count()
        assert 50_000_000 < w["rss_bytes"] < 16_000_000_000  # a Python with torch and PyAV loaded
        assert 0 <= w["age_s"] < 5
        m = samples(scraper.get("/metrics").text)
        assert m[("patrol_worker_memory_bytes", (("worker", "worker-metrics"),))] > 50_000_000
        assert m[("patrol_worker_sources", (("worker", "worker-metrics"),))] == 1
        assert m[("patrol_source_samples_per_second", (("source", "fixed-east-gate"),))] > 0
        assert m[("patrol_source_lagging", (("source", "fixed-east-gate"),))] == 0
        assert 0 <= m[("patrol_source_lag_seconds", (("source", "fixed-east-gate"),))] < 1.0
    with client_as(app, "analyst") as analyst:
        state = analyst.get("/api/v1/sources/fixed-east-gate").json()
    assert state["worker"] == "worker-metrics" and state["lagging"] is False and state["lag_s"] < 1.0
