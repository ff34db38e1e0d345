"""The patrol worker: sources → readers → gate → batched detector → rules → event stream.

Each source has its own reader thread that keeps only its newest sample; the
worker's loop takes whatever is new from all of them and runs one batched
patrol step. A slow detector therefore delays no reader, and a dead camera
delays nothing at all. What a slow detector does cost is visible per source:
samples overwritten before the detector took them (``dropped``), how long the
newest sample waited to be analysed (``lag_s``) and ``lagging`` when that is
more than twice the source's sampling interval.

A fixed camera with a sub-stream is patrolled on the sub-stream; the evidence
picture of its events comes from the main stream (workers/main_grab.py).

Many workers share one registry by leasing its sources (workers/leases.py):
each patrols only the sources it holds, and the sources of a worker that dies
pass to the others when its leases expire.
"""
from __future__ import annotations

import logging
import math
import os
import resource
import socket
import sys
import threading
import time

import redis

from streams.live import LiveReader
from streams.sources import Source
from streams.placement import DEFAULT_MAX_FIX_AGE_S, Positions, SrtPositions, View, place_sample, recorded_track
from streams.reader import probe
from streams.telemetry import parse_srt
from streams.tracks import align, read_track
from vision.pipeline import Pipeline
from workers.bus import WORKERS, Bus
from workers.leases import LeaseManager
from workers.main_grab import MainStreamEvidence, parse_size, uses_sub_stream
from workers.positions import PositionFeed
from workers.spool import EventSpool
from workers.throttle import Throttled

log = logging.getLogger(__name__)

HEARTBEAT_TTL_S = 15  # a worker without leases: how long its heartbeat outlives it
LAGGING_FACTOR = 2.0  # a sample analysed later than this many intervals after it was read is late


class ProcessUsage:
    """This process's CPU use (percent of one core, over the last second or more)
    and resident memory, from the kernel: what an operator sizes workers by."""

    def __init__(self, min_window_s: float = 1.0):
        self.min_window_s = min_window_s
        self._lock = threading.Lock()
        self._last = (time.monotonic(), time.process_time())
        self._percent = 0.0

    def cpu_percent(self) -> float:
        with self._lock:
            now, cpu = time.monotonic(), time.process_time()
            wall = now - self._last[0]
            if wall >= self.min_window_s:
                self._percent = round(100.0 * (cpu - self._last[1]) / wall, 1)
                self._last = (now, cpu)
            return self._percent

    @staticmethod
    def rss_bytes() -> int:
        try:  # resident pages now (Linux)
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):  # elsewhere: the peak, which is what the kernel offers
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def default_worker_id() -> str:
    return f"worker-{socket.gethostname()}-{os.getpid()}"


class PatrolWorker:
    """Patrols ``sources``: all of them, or with ``leases`` only those whose lease it holds.

    With leases a second thread renews them and rebalances every ``lease_every_s``
    (default a fifth of the TTL, at most 1 s) and keeps the worker's heartbeat alive for as long
    as its leases; the patrol loop starts a reader for each newly held source and
    stops (and flushes the events of) each source it no longer holds. A lease that
    could not be renewed in time stops its reader before the lease can expire in
    Redis, so two workers never patrol one source for long.
    """

    def __init__(self, bus: Bus, pipeline: Pipeline, sources: list[Source], worker_id: str | None = None,
                 max_side: int = 640, loop_files: bool = False, reader_options: dict | None = None,
                 state_every_s: float = 2.0, leases: LeaseManager | None = None, lease_every_s: float | None = None,
                 gil_switch_s: float | None = None, max_fix_age_s: float = DEFAULT_MAX_FIX_AGE_S,
                 spool_dir: str | os.PathLike | None = None):
        self.bus = bus
        self.gil_switch_s = gil_switch_s
        self.pipeline = pipeline
        self.sources = {s.id: s for s in sources if s.enabled}
        if leases is not None and worker_id is not None and worker_id != leases.worker_id:
            raise ValueError(f"worker id {worker_id!r} differs from its leases' {leases.worker_id!r}")
        self.worker_id = worker_id or (leases.worker_id if leases is not None else default_worker_id())
        self.leases = leases
        # Renewing and looking for free sources every second costs Redis next to nothing
        # and keeps a takeover close to the TTL.
        self.lease_every_s = lease_every_s or (min(1.0, leases.ttl_s / 5) if leases is not None else 0.0)
        # With leases the heartbeat lives as long as a lease does: when a worker dies, the
        # others see it gone (and their fair share grow) as its leases expire.
        self.heartbeat_ttl_s = max(1, math.ceil(leases.ttl_s)) if leases is not None else HEARTBEAT_TTL_S
        self.max_side = max_side
        self.loop_files = loop_files
        self.reader_options = reader_options or {}
        self.state_every_s = state_every_s
        self.readers: dict[str, LiveReader] = {}
        # recorded footage replayed with its telemetry (SRT) or track: placed by file time
        self.tracks: dict[str, Positions] = {}
        # live moving sources: placed by the positions their senders post, by capture time
        self.positions = PositionFeed(bus, {s.id: s.kind for s in self.sources.values() if s.moves},
                                      max_age_s=max_fix_age_s)
        self.details: dict[str, str] = {}  # source id -> what its reader said on entering its state
        self.unsent = EventSpool(spool_dir)  # events waiting for Redis to come back, in order
        self.quiet = Throttled(log)
        # last_batch: samples in the latest patrol step; detect_batch: how many of them the
        # detector looked at (the gate skips the rest); infer_ms: that detector call alone;
        # step_ms: the whole step (gate, detector, rules).
        self.stats = {"steps": 0, "samples": 0, "events": 0, "last_batch": 0, "detect_batch": 0,
                      "infer_ms": 0.0, "step_ms": 0.0}
        self.usage = ProcessUsage()
        self.started_at = time.time()
        self.lag: dict[str, float] = {}  # source id -> seconds its newest analysed sample waited
        names = next((c.names for c in pipeline.rule_configs if c.names), {})
        self.main_evidence = MainStreamEvidence(timeout_s=self.reader_options.get("open_timeout_s", 5.0),
                                                transport=self.reader_options.get("transport", "tcp"), names=names)
        self._failed: set[str] = set()  # held sources whose reader could not be started
        self._retired: list[LiveReader] = []  # stopped readers whose threads may still be finishing
        self._changed = threading.Event()  # a reader changed state: report soon
        self._lease_stop = threading.Event()
        self._lease_thread: threading.Thread | None = None

    def _start_source(self, src: Source) -> None:
        pol = src.policy
        reader = LiveReader(src.id, src.sub_url or src.url, interval_s=pol.interval_s, max_side=self.max_side,
                            keyframes_only=pol.keyframes_only, loop=self.loop_files, on_state=self._on_state,
                            **self.reader_options)
        # a camera that moves gets the gate that lines samples up before comparing them
        self.pipeline.add_source(src.id, src.zones, gate=pol.gate, recheck_s=pol.recheck_s,
                                 moving=src.kind != "fixed")
        if src.srt:  # recorded flight replayed: positions from its telemetry, by file time
            self.tracks[src.id] = SrtPositions(parse_srt(src.srt))
        elif src.track:  # recorded drive replayed with its GPX/NMEA/CSV track
            fixes = align(read_track(src.track, src.track_crs), probe(src.url).created, src.track)
            self.tracks[src.id] = recorded_track(fixes, self.positions.max_age_s, src.kind)
        self.readers[src.id] = reader.start()

    def _on_state(self, source_id: str, state: str, detail: str) -> None:
        # Called from the reader's thread. The reader's stats keep only the last
        # error, so without this a source down because its file ended (or because
        # it was stopped) would be reported with no reason at all.
        self.details[source_id] = detail
        self._changed.set()

    def _emit(self, events) -> None:
        """Publish events, those of sub-stream sources once their main-stream evidence is in."""
        direct = []
        for ev in events:
            src = self.sources.get(ev.source_id)
            if src is not None and uses_sub_stream(src):
                reader = self.readers.get(ev.source_id)
                self.main_evidence.add(ev, src, parse_size(reader.stats()["size"]) if reader else None)
            else:
                direct.append(ev)
        self._publish(direct + self.main_evidence.ready())

    def _publish(self, events) -> None:
        """Publish in order: what Redis missed first (the spool), then these."""
        held, sent = len(self.unsent), 0
        try:
            while (ev := self.unsent.oldest()) is not None:
                self.bus.publish_event(ev)
                self.unsent.done()
                self.stats["events"] += 1
            for ev in events:
                self.bus.publish_event(ev)
                sent += 1
                self.stats["events"] += 1
        except (redis.ConnectionError, redis.TimeoutError) as err:
            for later in events[sent:]:
                self.unsent.add(later)
            self.stats["events_held"], self.stats["events_dropped"] = len(self.unsent), self.unsent.dropped
            self.quiet.warning("publish", "Redis unavailable, %d event(s) held: %s", len(self.unsent), err)
            return
        if held:
            log.info("Redis is back: %d held event(s) published", held)
            self.quiet.clear("publish")
        self.stats["events_held"], self.stats["events_dropped"] = 0, self.unsent.dropped

    def _heartbeat_info(self) -> dict:
        info = {"sources": len(self.readers), **self.stats, "leases": self.leases is not None,
                "cpu_percent": self.usage.cpu_percent(), "rss_bytes": self.usage.rss_bytes(),
                "pid": os.getpid(), "host": socket.gethostname(), "started_at": self.started_at}
        if self.leases is not None:
            info["leased"] = sorted(self.leases.held())
        return info

    def _report(self) -> None:
        try:
            states = {}
            for sid, reader in list(self.readers.items()):
                if self.leases is not None and not self.leases.holds(sid):  # its next worker reports it
                    continue
                st = reader.stats()
                ps = self.pipeline.sources.get(sid)
                if ps is not None:
                    st.update(analysed=ps.analysed, gated=ps.gated)
                st.update(worker=self.worker_id, kind=self.sources[sid].kind, name=self.sources[sid].name,
                          detail=self.details.get(sid, ""))
                fix = self.positions.last_fix(sid)
                if fix is not None:
                    st["fix"] = fix
                if st.get("last_sample_ts"):
                    st["age_s"] = round(time.time() - st["last_sample_ts"], 1)  # of the reader's newest sample
                lag = self.lag.get(sid)
                st["lag_s"] = round(lag, 2) if lag is not None else None
                st["lagging"] = lag is not None and st["state"] == "live" and lag > LAGGING_FACTOR * st["interval_s"]
                states[sid] = st
            self.bus.report(self.worker_id, self._heartbeat_info(), states, ttl_s=self.heartbeat_ttl_s)
        except (redis.ConnectionError, redis.TimeoutError) as err:
            self.quiet.warning("report", "cannot report state: %s", err)

    def step(self) -> int:
        # Which readers have ended is read before their samples are: a file's reader publishes its
        # last sample just before it ends, so that sample is taken in this step, before the source
        # is removed below (the other way round it could be left in the slot, never analysed).
        ended = [sid for sid, r in self.readers.items() if not r.running and sid in self.pipeline.sources]
        # (a sample a reader published just as it stopped may outlive its source's pipeline state)
        frames = [f for f in (r.latest() for r in self.readers.values())
                  if f is not None and f.source_id in self.pipeline.sources]
        self.positions.poll()
        for f in frames:
            self._place(f)
        events = []
        if frames:
            t0 = time.perf_counter()
            events = self.pipeline.step(frames)
            done = time.time()
            for f in frames:  # from the reader decoding it to the rules having seen it
                self.lag[f.source_id] = max(0.0, done - f.ts)
            self.stats["step_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            self.stats["infer_ms"] = round(self.pipeline.last_detect_ms, 1)
            self.stats["detect_batch"] = self.pipeline.last_batch
            self.stats["steps"] += 1
            self.stats["samples"] += len(frames)
            self.stats["last_batch"] = len(frames)
        for sid in ended:  # a file ended: its events end too
            events.extend(self.pipeline.remove_source(sid, cause="video_ended"))
        self._emit(events)
        return len(frames)

    def _place(self, frame) -> None:
        """Put a moving source's sample where its camera was when it was taken."""
        src = self.sources.get(frame.source_id)
        if src is None or not src.moves:
            return
        track = self.tracks.get(frame.source_id)
        if track is not None:
            if "pts" in frame.extra:
                place_sample(frame, track.at(frame.extra["pts"]), View.of(src))
            return
        place_sample(frame, self.positions.at(frame.source_id, frame.ts), View.of(src))

    # -- which sources this worker patrols ---------------------------------------------
    def _try_start(self, src: Source) -> None:
        try:
            self._start_source(src)
        except Exception as err:  # one misconfigured source must not stop the others
            log.error("source %s not started: %s", src.id, err)
            self._failed.add(src.id)
            self.pipeline.remove_source(src.id)
            try:
                self.bus.set_source_state(src.id, {"state": "down", "detail": f"not started: {err}",
                                                   "last_error": str(err), "worker": self.worker_id})
            except (redis.ConnectionError, redis.TimeoutError):
                pass

    def _drop_source(self, sid: str) -> None:
        """Stop patrolling a source: its reader stops (without waiting for it) and its
        open events are closed and published."""
        reader = self.readers.pop(sid)
        reader.stop(timeout=0)
        self._retired.append(reader)
        self.tracks.pop(sid, None)
        self.lag.pop(sid, None)
        self.details.pop(sid, None)  # (after stop(): it reports "stopped" through _on_state)
        self._emit(self.pipeline.remove_source(sid))

    def _sync_sources(self) -> None:
        """Readers for exactly the sources whose lease is held (patrol loop's thread)."""
        held = self.leases.held()
        for sid in [s for s in self.readers if s not in held]:
            log.info("%s stops patrolling %s (lease released or lost)", self.worker_id, sid)
            self._drop_source(sid)
        self._failed &= held
        for sid in sorted(held - self.readers.keys() - self._failed):
            src = self.sources.get(sid)
            if src is not None:
                self._try_start(src)
        self._retired = [r for r in self._retired if r.running]

    def _halt(self, source_ids) -> None:
        """Stop these sources' readers now, from the lease thread: a lease about to be
        given back or past its deadline must not wait for the patrol loop."""
        for sid in source_ids:
            reader = self.readers.get(sid)
            if reader is not None:
                reader.stop(timeout=0)

    def _hand_over(self, lease_bus: Bus, source_ids: list[str]) -> None:
        """Before leases are given back: stop their readers and say so, while this
        worker still owns them (the next owner's reports come after)."""
        self._halt(source_ids)
        for sid in source_ids:
            reader = self.readers.get(sid)
            st = reader.stats() if reader is not None else {}
            src = self.sources.get(sid)
            st.update(state="down", detail="handed over to another worker", worker=self.worker_id,
                      kind=src.kind if src else "", name=src.name if src else "")
            try:
                lease_bus.set_source_state(sid, st)
            except redis.RedisError:
                pass

    def _lease_cycle(self, lease_bus: Bus) -> None:
        live = [w for w, info in lease_bus.workers().items() if info.get("leases")]
        acquired, released = self.leases.rebalance(list(self.sources), live,
                                                   before_release=lambda ids: self._hand_over(lease_bus, ids))
        lost = self.leases.lost
        self._halt(lost)
        lease_bus.heartbeat(self.worker_id, self._heartbeat_info(), ttl_s=self.heartbeat_ttl_s)
        if acquired or released or lost:
            log.info("%s: acquired %s, released %s, lost %s", self.worker_id, acquired, released, lost)
            self._changed.set()

    def _lease_loop(self) -> None:
        lease_bus = Bus(self.leases.r)
        next_cycle = 0.0
        while not self._lease_stop.is_set():
            if time.monotonic() >= next_cycle:
                next_cycle = time.monotonic() + self.lease_every_s
                try:
                    self._lease_cycle(lease_bus)
                except redis.RedisError as err:
                    self.quiet.warning("leases", "%s cannot renew its leases: %s", self.worker_id, err)
                except Exception:  # the lease thread must outlive any surprise
                    log.exception("%s lease cycle failed", self.worker_id)
            lapsed = self.leases.lapsed()
            if lapsed:
                log.warning("%s: leases on %s not renewed in time; their readers stop", self.worker_id,
                            ", ".join(lapsed))
                self._halt(lapsed)
                self._changed.set()
            self._lease_stop.wait(min(0.2, self.leases.margin_s / 4, self.lease_every_s))

    def run(self, stop: threading.Event, tick_s: float = 0.05) -> None:
        if self.gil_switch_s:
            sys.setswitchinterval(self.gil_switch_s)  # for the whole process: see WorkerSettings.gil_switch_ms
        if self.leases is None:
            for src in self.sources.values():
                self._try_start(src)
            log.info("%s patrols %d source(s)", self.worker_id, len(self.readers))
        else:
            self._lease_stop.clear()
            self._lease_thread = threading.Thread(target=self._lease_loop, name="patrol-leases", daemon=True)
            self._lease_thread.start()
            log.info("%s shares %d source(s) by lease (ttl %g s)", self.worker_id, len(self.sources),
                     self.leases.ttl_s)
        next_report = last_report = 0.0
        try:
            while not stop.is_set():
                if self.leases is not None:
                    self._sync_sources()
                if not self.step():
                    stop.wait(tick_s)
                now = time.monotonic()
                if now >= next_report or (self._changed.is_set() and now - last_report >= 0.25):
                    self._changed.clear()
                    self._report()
                    last_report, next_report = now, now + self.state_every_s
        finally:
            self._lease_stop.set()
            if self._lease_thread is not None:
                self._lease_thread.join(timeout=5)
            for reader in self.readers.values():
                reader.stop(timeout=0)
            for reader in [*self.readers.values(), *self._retired]:
                reader.stop(timeout=2)
            self._emit(self.pipeline.flush())
            self._publish(self.main_evidence.drain())
            self.main_evidence.close()
            self._report()
            if self.leases is not None:  # gone for good: the others need not wait for the TTL
                try:
                    self.leases.release_all()
                    self.bus.r.delete(WORKERS + self.worker_id)
                except redis.RedisError as err:
                    log.warning("%s could not give its leases back (they expire by themselves): %s",
                                self.worker_id, err)
                finally:  # (an embedded Redis stops only once nobody is connected)
                    self.leases.r.connection_pool.disconnect()
