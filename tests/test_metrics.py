"""/metrics renders what workers report to Redis, in Prometheus' text format."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from auth_helpers import client_as
from patrol.settings import Settings
from patrol.wiring import Parts
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
                                             "reconnects": 1, "samples_per_s": 0.5, "lag_s": 1.2})
    bus.set_source_state("vehicle-01", {"state": "down", "kind": "vehicle", "samples": 0})
    bus.heartbeat("worker-a", {"sources": 2, "last_batch": 2, "infer_ms": 35.5, "events": 7})
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
    assert m[("patrol_worker_step_milliseconds", (("worker", "worker-a"),))] == pytest.approx(35.5)
    assert m[("patrol_events_pending", ())] == 0
    assert m[("patrol_cases", (("status", "draft"),))] == 0
