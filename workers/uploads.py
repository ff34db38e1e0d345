"""Upload jobs: a finished flight upload analysed by whichever worker is free.

Jobs travel on the Redis Stream ``patrol:uploads`` with the consumer group
``upload-workers``. A job message carries only the upload's id, the paths of its
parts relative to the upload area, and the operator's site: never video bytes.
Workers therefore need the same upload area (a shared folder) and the case
store's database, where the job's draft cases and its result are written.

A job is acknowledged only after its result is stored. While it runs, its worker
keeps the entry fresh (``XCLAIM … JUSTID`` resets its idle time), so a long
flight is never taken from a live worker; a worker that dies stops doing so, and
after ``claim_idle_ms`` another worker claims the entry (``XAUTOCLAIM``) and runs
the job again from the start. That cannot duplicate cases: events of an upload
get ids derived from the upload and their order (not random ones), so the second
run's events are the first run's, and the case builder ignores what it has
already stored (idempotent by event id and revision).

Progress (percent, frames, video seconds) is kept in the Redis hash
``patrol:upload:<id>`` for the API to show, and every tenth of the way in the
database.
"""
from __future__ import annotations

import copy
import json
import logging
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Callable

import redis
from sqlalchemy.exc import DBAPIError

from cases.flights import FlightError, FlightView
from cases.store import CHINA_TZ
from core.analyze import analyze_video
from streams.frame import GeoPoint
from streams.reader import SourceError
from streams.telemetry import TelemetryError, parse_srt
from streams.uploads import UploadArea, UploadError
from vision.detector import DetectorError
from workers.consumer import consume

log = logging.getLogger(__name__)

JOBS = "patrol:uploads"
GROUP = "upload-workers"
DEAD_JOBS = "patrol:uploads:dead"
PROGRESS = "patrol:upload:"  # + upload id -> hash: state, percent, frames, video_s, duration_s, worker, at
PROGRESS_TTL_S = 7 * 24 * 3600
ENQUEUED = "patrol:uploads:enqueued"  # set of upload ids whose job is on the stream: kept with the jobs
# Add the job only if this upload's is not on the stream yet, in one step: the marker and the
# job live and die together (a Redis that lost its data lost both, and the job is added again).
_ENQUEUE_ONCE = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return false end
return redis.call('XADD', KEYS[2], '*', unpack(ARGV, 2))
"""
MAX_ATTEMPTS = 3  # runs of one job that end in an unexpected error before it is parked
SOURCE_PREFIX = "upload-"


def consumer_name() -> str:
    return f"uploads-{socket.gethostname()}-{os.getpid()}"


def source_id_of(upload_id: str) -> str:
    """The source id an upload's draft cases carry."""
    return SOURCE_PREFIX + upload_id


def flight_seen_by(flight: FlightView, srt=None) -> tuple[str, str]:
    """What saw an uploaded flight's cases, for their description (Chinese, English): the
    video's file name, the pilot (the uploading operator) and when it was flown, by the
    SRT's clock (the drone's local time), else when it was uploaded (China time)."""
    flown = None
    if srt is not None:
        try:
            flown = next((s.wallclock for s in parse_srt(srt) if s.wallclock is not None), None)
        except (TelemetryError, OSError):
            flown = None  # the analysis reports a broken SRT; the description does without
    if flown is not None:
        when_zh, when_en = f"{flown:%Y-%m-%d %H:%M} 飞行", f"flown {flown:%Y-%m-%d %H:%M}"
    else:
        up = flight.created_at.astimezone(CHINA_TZ)
        when_zh, when_en = f"{up:%Y-%m-%d %H:%M} 上传", f"uploaded {up:%Y-%m-%d %H:%M} China time"
    return (f"无人机航拍 {flight.video_name}（飞手 {flight.owner}，{when_zh}）",
            f"drone flight {flight.video_name} (pilot {flight.owner}, {when_en})")


@dataclass(frozen=True)
class UploadJob:
    upload_id: str
    video: str  # relative to the upload area
    srt: str | None = None
    lat: float | None = None  # the operator's site, for flights without telemetry
    lon: float | None = None
    kind: str = "drone"

    def to_message(self) -> dict[str, str]:
        return {"job": json.dumps(asdict(self))}

    @classmethod
    def from_message(cls, fields: dict) -> "UploadJob":
        raw = fields.get(b"job", fields.get("job"))
        return cls(**json.loads(raw))

    @classmethod
    def of(cls, flight: FlightView, area: UploadArea) -> "UploadJob":
        return cls(flight.id, area.relative(flight.id, "video"),
                   area.relative(flight.id, "srt") if flight.has_srt else None, flight.lat, flight.lon, flight.kind)


class UploadQueue:
    """The jobs stream, its consumer group and the progress hashes."""

    def __init__(self, client: redis.Redis):
        self.r = client

    def enqueue(self, job: UploadJob) -> str | None:
        """Add the upload's analysis job unless it is already there; the entry id, or None."""
        fields = [x for kv in job.to_message().items() for x in kv]
        entry = self.r.eval(_ENQUEUE_ONCE, 2, ENQUEUED, JOBS, job.upload_id, *fields)
        if entry is None:
            return None
        self.set_progress(job.upload_id, state="queued", percent=0, frames=0)
        return entry.decode() if isinstance(entry, bytes) else entry

    def ensure_group(self) -> None:
        try:
            self.r.xgroup_create(JOBS, GROUP, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    def read(self, consumer: str, block_ms: int = 1000) -> list[tuple[str, dict]]:
        reply = self.r.xreadgroup(GROUP, consumer, {JOBS: ">"}, count=1, block=block_ms)
        return [(eid.decode(), fields) for _, entries in reply or [] for eid, fields in entries]

    def claim_stale(self, consumer: str, min_idle_ms: int, count: int = 1) -> list[tuple[str, dict]]:
        """Jobs another worker took and fell silent on (one at a time: each is long)."""
        _next, entries, *_ = self.r.xautoclaim(JOBS, GROUP, consumer, min_idle_ms, start_id="0-0", count=count)
        return [(eid.decode(), fields) for eid, fields in entries if fields]

    def touch(self, entry_id: str, consumer: str) -> bool:
        """Reset the entry's idle time: "still working on it". False if it is no longer pending."""
        return bool(self.r.xclaim(JOBS, GROUP, consumer, 0, [entry_id], justid=True))

    def deliveries(self, entry_id: str) -> int:
        info = self.r.xpending_range(JOBS, GROUP, min=entry_id, max=entry_id, count=1)
        return int(info[0]["times_delivered"]) if info else 0

    def ack(self, entry_id: str) -> None:
        self.r.xack(JOBS, GROUP, entry_id)

    def dead_letter(self, entry_id: str, fields: dict, reason: str) -> None:
        body = dict(fields)
        body[b"reason"] = reason.encode()
        body[b"entry"] = entry_id.encode()
        pipe = self.r.pipeline()
        pipe.xadd(DEAD_JOBS, body)
        pipe.xack(JOBS, GROUP, entry_id)
        pipe.execute()

    def pending(self) -> int:
        try:
            return int(self.r.xpending(JOBS, GROUP)["pending"])
        except redis.ResponseError:
            return 0

    def set_progress(self, upload_id: str, **fields) -> None:
        key = PROGRESS + upload_id
        pipe = self.r.pipeline()
        pipe.hset(key, mapping={**{k: json.dumps(v) for k, v in fields.items()}, "at": json.dumps(time.time())})
        pipe.expire(key, PROGRESS_TTL_S)
        pipe.execute()

    def progress(self, upload_id: str) -> dict:
        raw = self.r.hgetall(PROGRESS + upload_id)
        return {k.decode(): json.loads(v) for k, v in raw.items()}


class StableEventIds:
    """The case builder, with an upload's events renamed to ids that a re-run repeats.

    The rules give each event a random id. A job run again after its worker died
    sees the same events in the same order, so ``<upload>:<type>:<n>`` (the n-th
    event of that type) names the same event in both runs, and the builder's
    idempotency by event id and revision turns the second run into updates of the
    first run's cases instead of new ones.
    """

    def __init__(self, builder, upload_id: str, seen_by: tuple[str, str] | None = None):
        self.builder = builder
        self.upload_id = upload_id
        self.seen_by = seen_by  # names the flight in new cases' descriptions
        self._ids: dict[str, str] = {}
        self._counts: Counter[str] = Counter()

    def apply(self, event, source_kind, source_grid=None):
        stable = self._ids.get(event.event_id)
        if stable is None:
            self._counts[event.event_type] += 1
            stable = self._ids[event.event_id] = f"{self.upload_id}:{event.event_type}:{self._counts[event.event_type]}"
        event.event_id = stable
        return self.builder.apply(event, source_kind, source_grid, self.seen_by)


class _KeepAlive:
    """Touches the job's entry while it runs, from its own thread, so a slow
    detector batch cannot make a live worker look dead."""

    def __init__(self, queue: UploadQueue, entry_id: str, consumer: str, every_s: float):
        self.queue, self.entry_id, self.consumer, self.every_s = queue, entry_id, consumer, every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"keepalive-{entry_id}", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                self.queue.touch(self.entry_id, self.consumer)
            except redis.RedisError as err:  # the job goes on; a takeover is the worst case
                log.warning("could not refresh upload job %s: %s", self.entry_id, err)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=5)


class UploadWorker:
    """Consumes upload jobs until stopped: one job at a time, each a whole flight.

    ``parts`` (core.wiring.Parts) should be this worker's own, with its own
    detector: ultralytics models are not to be shared between threads, and a
    patrol worker may run beside it. ``analyze`` is the offline analysis
    (``core.analyze.analyze_video``) unless a caller hands another.
    """

    def __init__(self, queue: UploadQueue, parts, analyze: Callable = analyze_video, consumer: str | None = None,
                 claim_idle_ms: int = 60_000, reclaim_every_s: float | None = None):
        self.queue = queue
        self.parts = parts
        self.analyze = analyze
        self.consumer = consumer or consumer_name()
        self.claim_idle_ms = claim_idle_ms
        self.reclaim_every_s = reclaim_every_s if reclaim_every_s is not None else min(10.0, claim_idle_ms / 2000)
        self.keepalive_s = max(0.05, claim_idle_ms / 4000)
        self.done = 0
        self.failed = 0

    # The database and the upload area are first touched by the first job, so a worker
    # that never gets one (or starts beside others on one SQLite file) needs neither.
    @property
    def area(self) -> UploadArea:
        return self.parts.upload_area

    @property
    def flights(self):
        return self.parts.flights

    # -- the loop ------------------------------------------------------------------------

    def run(self, stop: threading.Event, block_ms: int = 1000) -> None:
        def taking_over(claimed) -> None:
            log.warning("taking over upload job %s (its worker fell silent)", claimed[0][0])

        consume(stop, what="upload worker", ensure_group=self.queue.ensure_group,
                claim_stale=lambda: self.queue.claim_stale(self.consumer, self.claim_idle_ms),
                read=lambda ms: self.queue.read(self.consumer, block_ms=ms), process=self.process,
                reclaim_every_s=self.reclaim_every_s, on_claimed=taking_over, block_ms=block_ms)

    def process(self, entries) -> None:
        for entry_id, fields in entries:
            try:
                job = UploadJob.from_message(fields)
            except (KeyError, TypeError, ValueError) as err:
                self.queue.dead_letter(entry_id, fields, f"unreadable job message: {err}")
                continue
            try:
                self.run_job(entry_id, job)
            except DBAPIError as err:
                # The store is down: not the job's fault. It stays pending and is claimed again.
                log.warning("store unavailable, upload job %s stays pending: %s", entry_id, str(err).splitlines()[0])
                return
            except Exception as err:  # unexpected: retried by a claim, parked after MAX_ATTEMPTS
                log.exception("upload job %s (upload %s) broke", entry_id, job.upload_id)
                if self.queue.deliveries(entry_id) >= MAX_ATTEMPTS:
                    reason = f"{type(err).__name__}: {err}"
                    self.queue.dead_letter(entry_id, fields, reason)
                    self._fail(job.upload_id, f"processing broke {MAX_ATTEMPTS} times: {reason}")
                return

    # -- one job -------------------------------------------------------------------------

    def run_job(self, entry_id: str, job: UploadJob) -> None:
        flight = self.flights.get(job.upload_id)
        if flight is None or flight.state in ("done", "failed", "rejected"):
            # Deleted, or a re-delivery of a job some worker already finished: nothing to do.
            self.queue.ack(entry_id)
            return
        try:
            video = self.area.resolve(job.video)
            srt = self.area.resolve(job.srt) if job.srt else None
        except UploadError as err:
            self._fail(job.upload_id, f"bad job: {err}")
            self.queue.ack(entry_id)
            return
        if not video.is_file() or (srt is not None and not srt.is_file()):
            # Not this worker's fault to judge: the area may not be mounted here. Left pending,
            # the job is claimed again (by a worker that sees the files) and parked after
            # MAX_ATTEMPTS tries, the upload failed with this reason.
            raise FileNotFoundError(f"the files of upload {job.upload_id} are not in this worker's upload area "
                                    f"{self.area.root} (is uploads.dir the API's, shared with the workers?)")
        self.flights.start(job.upload_id, self.consumer)
        self.queue.set_progress(job.upload_id, state="processing", percent=0, frames=0, worker=self.consumer,
                                attempt=self.queue.deliveries(entry_id))
        location = GeoPoint(job.lat, job.lon) if job.lat is not None and job.lon is not None else None
        progress = self._progress_reporter(job.upload_id, flight.fps)
        try:
            with _KeepAlive(self.queue, entry_id, self.consumer, self.keepalive_s):
                analysis = self.analyze(self._job_parts(job.upload_id, flight_seen_by(flight, srt)), video,
                                         kind=job.kind, srt=srt,
                                         location=location, source_id=source_id_of(job.upload_id),
                                         progress=progress)
        except (SourceError, TelemetryError, DetectorError) as err:  # the same every time: do not retry
            self._fail(job.upload_id, str(err).splitlines()[0])
            self.queue.ack(entry_id)
            return
        result = {"samples": analysis.samples, "analysed": analysis.analysed, "duration_s": analysis.duration_s,
                  "cases": len(analysis.cases), "error": analysis.error}
        self.flights.finish(job.upload_id, [c.id for c in analysis.cases], result, analysis.warnings)
        self.queue.set_progress(job.upload_id, state="done", percent=100, cases=len(analysis.cases))
        self.queue.ack(entry_id)
        self.done += 1
        log.info("upload %s analysed: %d draft case(s)", job.upload_id, len(analysis.cases))

    def _job_parts(self, upload_id: str, seen_by: tuple[str, str] | None = None):
        """This worker's parts, with the builder giving the upload's events stable ids
        (and naming the flight in its cases' descriptions)."""
        for name in ("store", "taxonomy", "grid", "evidence", "detector", "rules", "builder"):
            getattr(self.parts, name)  # built once, here, and shared by every job's copy
        job_parts = copy.copy(self.parts)
        job_parts.__dict__["builder"] = StableEventIds(self.parts.builder, upload_id, seen_by)
        return job_parts

    def _progress_reporter(self, upload_id: str, fps: float | None):
        recorded = [0.0]

        def report(t: float, duration: float | None) -> None:
            fraction = min(1.0, t / duration) if duration else 0.0
            frames = int(round(t * fps)) if fps else None
            self.queue.set_progress(upload_id, state="processing", percent=round(100 * fraction, 1), frames=frames,
                                    video_s=round(t, 2), duration_s=duration, worker=self.consumer)
            if fraction - recorded[0] >= 0.1:  # the database hears of every tenth, Redis of every batch
                recorded[0] = fraction
                self.flights.record_progress(upload_id, fraction)
            self.on_progress(upload_id, fraction)

        return report

    def on_progress(self, upload_id: str, fraction: float) -> None:
        """Hook for subclasses (tests hold a job here to kill its worker mid-way)."""

    def _fail(self, upload_id: str, error: str) -> None:
        self.failed += 1
        try:
            self.flights.fail(upload_id, error)
        except FlightError as err:
            log.warning("upload %s: %s", upload_id, err)
        try:
            self.queue.set_progress(upload_id, state="failed", error=error)
        except redis.RedisError:
            pass


__all__ = ["DEAD_JOBS", "GROUP", "JOBS", "PROGRESS", "StableEventIds", "UploadJob", "UploadQueue", "UploadWorker",
           "source_id_of", "flight_seen_by"]
