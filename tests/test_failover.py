"""Scale-out: worker processes share the sources by lease and take over a dead one's.

Two real ``patrol worker`` processes (the installed command, a settings file,
a registry of looped file sources) share one Redis: each patrols its fair share
and no source is patrolled by both. One is killed with SIGKILL; within 15 s the
survivor holds every source and reports each ``live`` from itself. The model is
the default one when it has been trained, else a tiny untrained one: the test is
about leases, not detections.

A worker cut off from Redis stops its readers before its leases can expire, so
the worker that takes them over never overlaps with it for long.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry

import media_servers
from patrol.settings import Settings
from test_bus import private_redis_db, redis_unreachable, wait_for
from test_worker import NoDetections, running
from streams.sources import SamplingPolicy, Source
from vision.pipeline import Pipeline
from vision.rules import default_rules
from workers.bus import Bus, EmbeddedRedis
from workers.leases import LeaseManager
from workers.patrol import PatrolWorker

REPO = Path(__file__).resolve().parents[1]
_PATROL = Path(sys.executable).with_name("patrol")
PATROL = [str(_PATROL)] if _PATROL.exists() else [sys.executable, "-m", "patrol.cli"]
N_SOURCES = 10
SOURCE_IDS = [f"cam-{i:02d}" for i in range(N_SOURCES)]
TAKEOVER_LIMIT_S = 15  # the promise, with the default lease TTL of 10 s


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """4 s of testsrc2, 320x240 at 5 fps, a key frame every second; looped by the workers."""
    return media_servers.make_video(tmp_path_factory.mktemp("video") / "clip.mp4", seconds=4, fps=5, gop=5)


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    """The default model if it exists, else a tiny untrained YOLO11n (built offline)."""
    default = Settings().model.weights
    if default.exists():
        return default
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("model") / "untrained-yolo11n.pt"
    YOLO("yolo11n.yaml").save(str(path))
    return path


@pytest.fixture
def shared_redis_url(tmp_path):
    """A Redis both worker processes reach: a private database on the server, else an
    embedded one on a unix socket."""
    if redis_unreachable():
        embedded = EmbeddedRedis(tmp_path / "redis")
        yield embedded.url
        embedded.close()
    else:
        with private_redis_db() as url:
            yield url


class WorkerProcess:
    """``patrol worker`` as an operator starts it, its log kept for failure messages."""

    def __init__(self, tmp_path: Path, config: Path, worker_id: str):
        self.worker_id = worker_id
        self.log = tmp_path / f"{worker_id}.log"
        env = {k: v for k, v in os.environ.items()
               if not (k.startswith("PATROL_") or k in ("REDIS_URL", "DATABASE_URL"))}
        env["YOLO_OFFLINE"] = "1"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([*PATROL, "--config", str(config), "-v", "worker", "--worker-id", worker_id],
                                         cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)

    def tail(self, n: int = 15) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return f"--- {self.worker_id} (exit {self.proc.poll()}):\n" + "\n".join(lines[-n:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def write_config(tmp_path: Path, redis_url: str, clip: Path, weights: Path) -> Path:
    registry = tmp_path / "sources.yaml"
    registry.write_text(yaml.safe_dump({"sources": [
        {"id": sid, "kind": "fixed", "url": str(clip), "policy": {"interval_s": 1.0}} for sid in SOURCE_IDS]}))
    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({
        "redis_url": redis_url, "data_dir": str(tmp_path / "data"), "sources": str(registry),
        "model": {"weights": str(weights), "imgsz": 64},
        "worker": {"loop_files": True, "open_timeout_s": 2, "read_timeout_s": 2},
    }))
    return config


def test_a_killed_workers_sources_are_taken_over_within_15_s(tmp_path, shared_redis_url, clip, weights):
    bus = Bus.connect(shared_redis_url)
    observer = LeaseManager(bus.r, "observer")  # reads lease owners; holds nothing
    config = write_config(tmp_path, shared_redis_url, clip, weights)
    workers = [WorkerProcess(tmp_path, config, "worker-a"), WorkerProcess(tmp_path, config, "worker-b")]
    a, b = workers
    try:
        def shared():
            """Both patrol sources, every source by one of them, none by both, as each
            worker says (its heartbeat) and as the leases in Redis say."""
            for w in workers:
                assert w.proc.poll() is None, w.tail()
            beats = bus.workers()
            if set(beats) != {"worker-a", "worker-b"}:
                return None
            held = {w: set(beats[w]["leased"]) for w in beats}
            owners = observer.owners(SOURCE_IDS)
            if not (held["worker-a"] and held["worker-b"]) or held["worker-a"] | held["worker-b"] != set(SOURCE_IDS):
                return None
            if held["worker-a"] & held["worker-b"]:
                return None  # a hand-over in progress: one heartbeat is older than the other
            if owners != {s: w for w, ids in held.items() for s in ids}:
                return None
            states = bus.source_states()
            if not all(states.get(s, {}).get("state") == "live" and states[s]["worker"] == owners[s]
                       for s in SOURCE_IDS):
                return None  # a reader just started, or not reported yet
            return held, owners

        try:
            held, owners = wait_for(shared, 60, "both workers patrolling a fair share of the sources", every_s=0.2)
        except BaseException:
            print("\n".join(w.tail() for w in workers))
            raise
        assert sorted(len(ids) for ids in held.values()) == [5, 5], held  # ceil(10 / 2) each
        wait_for(lambda: all(bus.workers()[w]["sources"] == len(held[w]) for w in held), 5,
                 "one reader per lease in each worker's heartbeat")

        victim, survivor = a, b
        orphans = held[victim.worker_id]
        killed_at_wall = time.time()
        victim.proc.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        victim.proc.wait(5)

        def taken_over():
            assert survivor.proc.poll() is None, survivor.tail()
            owners = observer.owners(SOURCE_IDS)
            # a source is never shown leased to anyone but these two
            assert set(owners.values()) <= {"worker-a", "worker-b", None}, owners
            if any(owners[s] != survivor.worker_id for s in SOURCE_IDS):
                return None
            states = bus.source_states()
            return all(states[s]["state"] == "live" and states[s]["worker"] == survivor.worker_id
                       and states[s]["reported_at"] > killed_at_wall for s in SOURCE_IDS)

        try:
            wait_for(taken_over, 25, "the survivor patrolling every source", every_s=0.1)
        except BaseException:
            print("\n".join(w.tail() for w in workers))
            raise
        takeover_s = time.monotonic() - killed_at
        print(f"\ntakeover of {len(orphans)} sources after SIGKILL: {takeover_s:.1f} s (lease ttl 10 s)")
        assert takeover_s < TAKEOVER_LIMIT_S

        # No source lost: the survivor holds and reads every one, and the dead worker's
        # heartbeat has gone with its leases.
        beat = wait_for(lambda: (w := bus.workers()).get(survivor.worker_id, {}).get("sources") == N_SOURCES and w,
                        5, "the survivor's heartbeat counting every source")
        assert set(beat) == {survivor.worker_id}
        assert set(beat[survivor.worker_id]["leased"]) == set(SOURCE_IDS)
    finally:
        for w in workers:
            w.stop()
        bus.r.close()
    # A worker stopped in order gives its leases back at once.
    assert survivor.proc.returncode == 0, survivor.tail()
    check = Bus.connect(shared_redis_url)
    try:
        assert all(v is None for v in LeaseManager(check.r, "observer").owners(SOURCE_IDS).values())
    finally:
        check.r.close()


def test_a_worker_cut_off_from_redis_stops_its_readers_before_its_leases_expire(tmp_path, clip):
    embedded = EmbeddedRedis(tmp_path / "redis")
    # a client that fails at once, so the patrol loop is not held up by retries once Redis is gone
    bus = Bus(redis.Redis.from_url(embedded.url, socket_timeout=1, retry=Retry(NoBackoff(), 0)))
    ttl_s = 2.0
    leases = LeaseManager.connect(embedded.url, "worker-cut-off", ttl_s=ttl_s)
    sources = [Source(id=sid, kind="fixed", url=str(clip), policy=SamplingPolicy(interval_s=0.5))
               for sid in SOURCE_IDS[:3]]
    worker = PatrolWorker(bus, Pipeline(NoDetections(), default_rules()), sources, leases=leases, loop_files=True,
                          state_every_s=0.3, reader_options={"open_timeout_s": 2, "read_timeout_s": 2})
    try:
        with running(worker):
            wait_for(lambda: len(worker.readers) == 3 and all(r.state == "live" for r in worker.readers.values()),
                     10, "the worker reading its three leased sources")
            readers = list(worker.readers.values())
            assert leases.owners(SOURCE_IDS[:3]) == dict.fromkeys(SOURCE_IDS[:3], "worker-cut-off")
            # Each lease lasts in Redis at least a TTL from when its last renewal was sent.
            expiry = min(leases.deadlines().values())
            redis.Redis(unix_socket_path=embedded.server.socket_file, retry=Retry(NoBackoff(), 0)).shutdown(nosave=True)
            shut_at = time.monotonic()

            wait_for(lambda: not any(r.running for r in readers), ttl_s + 1, "the readers to stop")
            stopped_at = time.monotonic()
            # Stopped before the leases could have expired in Redis: nobody else could
            # have taken them yet.
            assert stopped_at < expiry, f"stopped {stopped_at - expiry:.2f} s after the leases could expire"
            print(f"\nreaders stopped {stopped_at - shut_at:.2f} s after Redis went away, "
                  f"{expiry - stopped_at:.2f} s before their leases could expire (ttl {ttl_s:g} s)")
            assert leases.held() == set()
            wait_for(lambda: not worker.readers, 2, "the patrol loop to drop the sources")
    finally:
        bus.r.close()
        embedded.close()


class RecordingPipeline(Pipeline):
    """The real pipeline, noting which sources were taken out of it (their events flushed)."""

    def __init__(self, *args):
        super().__init__(*args)
        self.removed: list[str] = []

    def remove_source(self, source_id, now=None):
        self.removed.append(source_id)
        return super().remove_source(source_id, now)


def test_a_worker_hands_its_surplus_to_a_joining_worker(shared_redis_url, clip):
    bus = Bus.connect(shared_redis_url)
    ids = SOURCE_IDS[:4]
    sources = [Source(id=sid, kind="fixed", url=str(clip), policy=SamplingPolicy(interval_s=0.5)) for sid in ids]
    pipeline = RecordingPipeline(NoDetections(), default_rules())
    worker = PatrolWorker(bus, pipeline, sources, leases=LeaseManager.connect(shared_redis_url, "worker-old", ttl_s=2),
                          loop_files=True, state_every_s=0.3,
                          reader_options={"open_timeout_s": 2, "read_timeout_s": 2})
    newcomer = LeaseManager(bus.r, "worker-new", ttl_s=2)
    try:
        with running(worker):
            wait_for(lambda: set(worker.readers) == set(ids)
                     and all(r.state == "live" for r in worker.readers.values()), 10, "worker-old reading all 4")
            readers = dict(worker.readers)
            bus.heartbeat("worker-new", {"leases": True}, ttl_s=30)  # worker-new joins

            def handed():
                newcomer.rebalance(ids, ["worker-old", "worker-new"])
                return len(newcomer.held()) == 2 and newcomer.held()

            given = wait_for(handed, 5, "worker-old to give back half and worker-new to take it", every_s=0.2)
            wait_for(lambda: set(worker.readers) == set(ids) - given, 2, "worker-old to drop the two")
            wait_for(lambda: not any(readers[s].running for s in given), 2, "their readers to stop")
            assert all(readers[s].running for s in set(ids) - given)  # the others untouched
            assert sorted(pipeline.removed) == sorted(given)  # and their events flushed
            states = bus.source_states()
            assert all(states[s]["detail"] == "handed over to another worker" for s in given)
            assert worker.leases.held() == set(ids) - given
            assert set(bus.workers()["worker-old"]["leased"]) == set(ids) - given
            # held steadily: nothing moves while both keep their share
            time.sleep(1)
            assert worker.leases.held() == set(ids) - given and set(worker.readers) == set(ids) - given
    finally:
        bus.r.close()

