"""Upload jobs over a real Redis consumer group (workers/uploads.py), on both backends.

The drone sample goes through the real worker, the real model and the real case
builder: its drafts carry positions from its SRT at their frame times and the grid
cells of those positions; a flight without telemetry takes the operator's site.
A worker SIGKILLed mid-job loses nothing: its job is claimed by another worker,
run again, and its draft cases are neither lost nor duplicated.
"""
from __future__ import annotations

import hashlib
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from cases.store import CHINA_TZ, CaseEvent, Store
from core.analyze import analyze_video
from core.settings import Settings
from core.wiring import Parts
from streams.telemetry import parse_srt
from streams.uploads import validate_video
from test_bus import redis_url, wait_for  # noqa: F401  (fixture)
from workers.bus import Bus
from workers.uploads import DEAD_JOBS, GROUP, JOBS, UploadJob, UploadQueue, UploadWorker, source_id_of
from vision.detector import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_videos"
DRONE = SAMPLES / "drone_illegal_construction.mp4"
DRONE_SRT = SAMPLES / "drone_illegal_construction.SRT"
MODEL = DEFAULT_WEIGHTS
WORKER_PROC = Path(__file__).with_name("upload_worker_proc.py")

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/")]


@pytest.fixture
def parts(tmp_path):
    p = Parts(Settings(data_dir=tmp_path / "data"), db_url=f"sqlite:///{tmp_path / 'cases.db'}")
    yield p
    p.store.close()


@pytest.fixture
def jobs(redis_url):
    bus = Bus.connect(redis_url)
    yield UploadQueue(bus.r)
    bus.r.close()


def stage_flight(parts, video: Path, srt: Path | None = None, site: tuple[float, float] | None = None,
                 owner: str = "op-wang") -> str:
    """A finished upload, as the API leaves it: the bytes in the area, the row queued."""
    area, flights = parts.upload_area, parts.flights
    upload_id = area.new_id()
    area.create(upload_id, ["video"] + (["srt"] if srt else []))
    for part, path in [("video", video)] + ([("srt", srt)] if srt else []):
        data = path.read_bytes()
        area.write_chunk(upload_id, part, 0, len(data), data)
    digest = {p: hashlib.sha256(f.read_bytes()).hexdigest() for p, f in [("video", video), ("srt", srt)] if f}
    flights.create(id=upload_id, owner=owner, video_name=video.name, video_size=video.stat().st_size,
                   video_sha256=digest["video"], srt_name=srt.name if srt else None,
                   srt_size=srt.stat().st_size if srt else None, srt_sha256=digest.get("srt"),
                   lat=site[0] if site else None, lon=site[1] if site else None)
    info = validate_video(video)
    flight = flights.uploaded(upload_id, codec=info.codec, width=info.width, height=info.height, fps=info.fps,
                              duration_s=info.duration_s, warnings=[])
    assert flight.state == "queued"
    return upload_id


def run_worker(jobs, parts, consumer: str, **kwargs):
    """An UploadWorker on a thread; returns (worker, stop)."""
    worker = UploadWorker(jobs, Parts(parts.settings, db_url=parts.store.engine.url.render_as_string()),
                          analyze_video, consumer=consumer, **kwargs)
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), kwargs={"block_ms": 200}, daemon=True)
    thread.start()
    return worker, stop, thread


def finished(parts, upload_id: str):
    flight = parts.flights.get(upload_id)
    return flight if flight.state in ("done", "failed") else None


def assert_geotagged_from_telemetry(parts, flight) -> list:
    """Every draft of the flight sits where the SRT puts the drone at one of its frame times."""
    track = parse_srt(DRONE_SRT)
    cases = [parts.store.get_case(cid) for cid in flight.case_ids]
    assert cases and all(c is not None for c in cases)
    frame_times = np.round(np.arange(0.0, 40.0, 0.1), 1)
    for c in cases:
        assert c.source_id == source_id_of(flight.id) and c.source_kind == "drone"
        assert c.lat is not None and c.lon is not None, f"case {c.case_no} has no position"
        # on the flight line (30.6120 → 30.6135 N along 114.2950 E) ...
        assert 30.6119 <= c.lat <= 30.6136 and abs(c.lon - 114.295) < 1e-4
        # ... at the interpolated position of a frame inside the case's time span
        at = [t for t in frame_times if abs(track.position_at(t).lat - c.lat) < 1e-9]
        assert at and any(c.first_seen - 0.05 <= t <= c.last_seen + 0.05 for t in at), (c.lat, c.first_seen)
        assert c.grid == parts.grid.cell_at(c.lat, c.lon) and len(c.grid) == 14 and c.grid.startswith("420117")
    return cases


def test_jobs_go_through_the_group_and_make_geotagged_drafts(parts, jobs, tmp_path):
    with_srt = stage_flight(parts, DRONE, DRONE_SRT)
    # a flight without telemetry, its site marked by the operator in another grid cell
    cell = next(c for c in parts.grid.codes if c != parts.grid.cell_at(30.6125, 114.295))
    site = parts.grid.cell_center(cell)
    without = stage_flight(parts, DRONE, site=site)
    # a flight whose video went bad on disk after it was checked: fails with the reason, no retry
    broken = stage_flight(parts, DRONE, DRONE_SRT)
    parts.upload_area.path(broken, "video").write_bytes(b"overwritten")
    for upload_id in (with_srt, without, broken):
        jobs.enqueue(UploadJob.of(parts.flights.get(upload_id), parts.upload_area))
    entry = jobs.r.xrange(JOBS, count=1)[0][1]
    assert set(entry) == {b"job"} and len(entry[b"job"]) < 400  # metadata only, never video bytes

    worker, stop, thread = run_worker(jobs, parts, "uploads-a", claim_idle_ms=60_000)
    try:
        for upload_id in (with_srt, without, broken):
            wait_for(lambda: finished(parts, upload_id), 240, f"upload {upload_id} finished")
    finally:
        stop.set()
        thread.join(10)

    flight = parts.flights.get(with_srt)
    assert flight.state == "done" and flight.error is None and flight.attempts == 1
    assert flight.progress == 1.0 and flight.result["samples"] >= 39 and flight.result["cases"] == len(flight.case_ids)
    cases = assert_geotagged_from_telemetry(parts, flight)
    assert [c.event_type for c in cases] == ["illegal_construction"]  # the clip's one violation, once
    # the description names the file, the pilot and the time (this SRT has no clock: the upload's), not the upload id
    uploaded = flight.created_at.astimezone(CHINA_TZ)
    assert cases[0].description.startswith(f"无人机航拍 {DRONE.name}（飞手 op-wang，{uploaded:%Y-%m-%d %H:%M} 上传）发现疑似")
    assert with_srt not in cases[0].description
    live = jobs.progress(with_srt)
    assert live["state"] == "done" and live["percent"] == 100

    flight = parts.flights.get(without)
    assert flight.state == "done" and flight.case_ids
    for cid in flight.case_ids:
        c = parts.store.get_case(cid)
        assert (c.lat, c.lon) == pytest.approx(site) and c.grid == cell
        uploaded = flight.created_at.astimezone(CHINA_TZ)
        assert f"{DRONE.name}（飞手 op-wang，{uploaded:%Y-%m-%d %H:%M} 上传）" in c.description  # no SRT: its upload time

    flight = parts.flights.get(broken)
    assert flight.state == "failed" and "not a readable video" in flight.error and flight.case_ids == []
    assert jobs.progress(broken)["state"] == "failed"

    assert jobs.pending() == 0 and jobs.r.xlen(DEAD_JOBS) == 0
    assert worker.done == 2 and worker.failed == 1


def test_a_job_whose_files_a_worker_cannot_see_is_retried_then_parked(parts, jobs):
    upload_id = stage_flight(parts, DRONE, DRONE_SRT)
    job = UploadJob.of(parts.flights.get(upload_id), parts.upload_area)
    shutil.rmtree(parts.upload_area.folder(upload_id))  # as on a worker without the shared upload area
    jobs.enqueue(job)
    worker, stop, thread = run_worker(jobs, parts, "uploads-blind", claim_idle_ms=200, reclaim_every_s=0.1)
    try:
        flight = wait_for(lambda: finished(parts, upload_id), 60, "the job parked")
    finally:
        stop.set()
        thread.join(10)
    assert flight.state == "failed" and flight.attempts == 0  # never started: nothing half-done
    assert "processing broke 3 times" in flight.error and "not in this worker's upload area" in flight.error
    [(_, dead)] = jobs.r.xrange(DEAD_JOBS)
    assert UploadJob.from_message(dead) == job and b"uploads.dir" in dead[b"reason"]
    assert jobs.pending() == 0


class WorkerProcess:
    """tests/upload_worker_proc.py as its own process, its stdout read line by line."""

    def __init__(self, tmp_path: Path, redis_url: str, parts, consumer: str, *args: str):
        self.stderr_path = tmp_path / f"{consumer}.stderr"
        self.lines: queue.Queue[str] = queue.Queue()
        db = parts.store.engine.url.database
        argv = [sys.executable, str(WORKER_PROC), "--redis-url", redis_url, "--db", db,
                "--data-dir", str(parts.settings.data_dir), "--consumer", consumer, *args]
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=err, text=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")

    def wait_line(self, prefix: str, timeout_s: float = 240) -> str:
        def next_match():
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                return None
            if line == "":
                pytest.fail(f"worker exited ({self.proc.wait()}) before {prefix!r}:\n"
                            f"{self.stderr_path.read_text()[-3000:]}")
            return line if line.startswith(prefix) else None

        return wait_for(next_match, timeout_s, f"worker printing {prefix!r}", every_s=0)

    def kill(self) -> int:
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=15)


def test_a_killed_workers_job_is_taken_over_and_duplicates_nothing(parts, jobs, redis_url, tmp_path):
    upload_id = stage_flight(parts, DRONE, DRONE_SRT)
    jobs.enqueue(UploadJob.of(parts.flights.get(upload_id), parts.upload_area))

    first = WorkerProcess(tmp_path, redis_url, parts, "uploads-first", "--hold-at", "0.6", "--claim-idle-ms", "1500")
    try:
        first.wait_line("ready")
        held = first.wait_line(f"holding {upload_id}")
        # Alive but frozen mid-job, its keep-alive still running: nobody may take the job.
        assert jobs.claim_stale("uploads-thief", min_idle_ms=1500) == [] or pytest.fail("job stolen from a live worker")
        threading.Event().wait(2.5)
        assert jobs.claim_stale("uploads-thief", min_idle_ms=1500) == []
    finally:
        assert first.kill() == -signal.SIGKILL
    assert float(held.split()[2]) >= 0.6
    flight = parts.flights.get(upload_id)
    assert flight.state == "processing" and flight.worker == "uploads-first" and flight.attempts == 1
    stored_before = set(cases_of(parts.store, upload_id))
    assert stored_before, "the first worker had stored its draft before it died"
    [pending] = jobs.r.xpending_range(JOBS, GROUP, min="-", max="+", count=10)
    assert pending["consumer"] == b"uploads-first"

    second, stop, thread = run_worker(jobs, parts, "uploads-second", claim_idle_ms=1500, reclaim_every_s=0.3)
    try:
        wait_for(lambda: finished(parts, upload_id), 240, "the job finished by the second worker")
    finally:
        stop.set()
        thread.join(10)

    flight = parts.flights.get(upload_id)
    assert flight.state == "done" and flight.worker == "uploads-second" and flight.attempts == 2
    assert jobs.pending() == 0 and jobs.r.xlen(DEAD_JOBS) == 0
    after = cases_of(parts.store, upload_id)
    # The same cases, not new ones beside them; each event stored once under its stable id.
    assert set(after) == stored_before == set(flight.case_ids)
    for case_id, event_ids in after.items():
        assert len(event_ids) == len(set(event_ids)) and all(e.startswith(upload_id + ":") for e in event_ids)
    assert sum(len(v) for v in after.values()) == len(after)  # one event per violation, none joined twice
    assert_geotagged_from_telemetry(parts, flight)


def cases_of(store: Store, upload_id: str) -> dict[int, list[str]]:
    """case id -> the event ids stored for it, for one upload's source."""
    from sqlalchemy import select

    with store.transaction() as s:
        rows = s.execute(select(CaseEvent.case_id, CaseEvent.event_id)
                         .where(CaseEvent.source_id == source_id_of(upload_id))).all()
    out: dict[int, list[str]] = {}
    for case_id, event_id in rows:
        out.setdefault(case_id, []).append(event_id)
    return out
