"""The patrol worker: sources → readers → gate → batched detector → rules → event stream.

Each source has its own reader thread that keeps only its newest sample; the
worker's loop takes whatever is new from all of them and runs one batched
patrol step. A slow detector therefore delays no reader, and a dead camera
delays nothing at all.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time

import redis

from streams.live import LiveReader
from streams.sources import Source
from streams.telemetry import Track, parse_srt
from vision.pipeline import Pipeline
from workers.bus import Bus

log = logging.getLogger(__name__)


class PatrolWorker:
    def __init__(self, bus: Bus, pipeline: Pipeline, sources: list[Source], worker_id: str | None = None,
                 max_side: int = 640, loop_files: bool = False, reader_options: dict | None = None,
                 state_every_s: float = 2.0):
        self.bus = bus
        self.pipeline = pipeline
        self.sources = {s.id: s for s in sources if s.enabled}
        self.worker_id = worker_id or f"worker-{socket.gethostname()}-{os.getpid()}"
        self.max_side = max_side
        self.loop_files = loop_files
        self.reader_options = reader_options or {}
        self.state_every_s = state_every_s
        self.readers: dict[str, LiveReader] = {}
        self.tracks: dict[str, Track] = {}
        self.details: dict[str, str] = {}  # source id -> what its reader said on entering its state
        self.unsent: list = []  # events waiting for Redis to come back
        self.stats = {"steps": 0, "samples": 0, "events": 0, "last_batch": 0, "infer_ms": 0.0}

    def _start_source(self, src: Source) -> None:
        pol = src.policy
        reader = LiveReader(src.id, src.sub_url or src.url, interval_s=pol.interval_s, max_side=self.max_side,
                            keyframes_only=pol.keyframes_only, loop=self.loop_files, on_state=self._on_state,
                            **self.reader_options)
        self.pipeline.add_source(src.id, src.zones, gate=pol.gate and src.kind == "fixed", recheck_s=pol.recheck_s)
        if src.srt:  # recorded flight replayed: positions from its telemetry, by file time
            self.tracks[src.id] = parse_srt(src.srt)
        self.readers[src.id] = reader.start()

    def _on_state(self, source_id: str, state: str, detail: str) -> None:
        # Called from the reader's thread. The reader's stats keep only the last
        # error, so without this a source down because its file ended (or because
        # it was stopped) would be reported with no reason at all.
        self.details[source_id] = detail

    def _publish(self, events) -> None:
        self.unsent.extend(events)
        while self.unsent:
            try:
                self.bus.publish_event(self.unsent[0])
            except (redis.ConnectionError, redis.TimeoutError) as err:
                log.warning("Redis unavailable, %d event(s) held: %s", len(self.unsent), err)
                return
            self.unsent.pop(0)
            self.stats["events"] += 1

    def _report(self) -> None:
        try:
            for sid, reader in self.readers.items():
                st = reader.stats()
                ps = self.pipeline.sources.get(sid)
                if ps is not None:
                    st.update(analysed=ps.analysed, gated=ps.gated)
                st.update(worker=self.worker_id, kind=self.sources[sid].kind, name=self.sources[sid].name,
                          detail=self.details.get(sid, ""))
                if st.get("last_sample_ts"):
                    st["lag_s"] = round(time.time() - st["last_sample_ts"], 1)
                self.bus.set_source_state(sid, st)
            self.bus.heartbeat(self.worker_id, {"sources": len(self.readers), **self.stats})
        except (redis.ConnectionError, redis.TimeoutError) as err:
            log.warning("cannot report state: %s", err)

    def step(self) -> int:
        frames = [f for f in (r.latest() for r in self.readers.values()) if f is not None]
        for f in frames:
            track = self.tracks.get(f.source_id)
            if track is not None and "pts" in f.extra:
                f.geo = track.position_at(f.extra["pts"])
        events = []
        if frames:
            t0 = time.perf_counter()
            events = self.pipeline.step(frames)
            self.stats["infer_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            self.stats["steps"] += 1
            self.stats["samples"] += len(frames)
            self.stats["last_batch"] = len(frames)
        for sid, reader in list(self.readers.items()):
            if not reader.running and sid in self.pipeline.sources:  # a file ended: its events end too
                events.extend(self.pipeline.remove_source(sid))
        self._publish(events)
        return len(frames)

    def run(self, stop: threading.Event, tick_s: float = 0.05) -> None:
        for src in self.sources.values():
            try:
                self._start_source(src)
            except Exception as err:  # one misconfigured source must not stop the others
                log.error("source %s not started: %s", src.id, err)
                try:
                    self.bus.set_source_state(src.id, {"state": "down", "detail": f"not started: {err}",
                                                       "last_error": str(err), "worker": self.worker_id})
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
        log.info("%s patrols %d source(s)", self.worker_id, len(self.readers))
        next_report = 0.0
        try:
            while not stop.is_set():
                if not self.step():
                    stop.wait(tick_s)
                if time.monotonic() >= next_report:
                    self._report()
                    next_report = time.monotonic() + self.state_every_s
        finally:
            for reader in self.readers.values():
                reader.stop(timeout=2)
            self._publish(self.pipeline.flush())
            self._report()
