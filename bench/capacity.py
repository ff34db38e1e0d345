"""The capacity benchmark: how many sources one machine patrols in real time, and how many
ultralytics' own streaming prediction manages on the same sources, model and rate.

For a mix of source kinds (the city's 50:3:1:200, or fixed cameras only, or phones
only) it searches the largest N that is *sustained*: over a measuring window of
S seconds (after a warm-up), every source is analysed at no less than 95 % of its
policy rate (one sample of slack for the window's edges) and no source's lag
grows by more than max(1 s, 2 % of the window). The search doubles N until it
fails, then bisects. Each trial runs in a fresh process (bench.capacity_trial).

Sources are the simulated city's (bench/simulate.py): camera-cost media served
as files paced at real time (``file``) or by the RTSP server (``rtsp``).
The baseline reads exactly the URLs the worker reads (the sub-stream of a fixed
camera), through ``YOLO(weights).predict(source=<.streams file>, stream=True,
vid_stride=<frames per sample>)``. It only takes stream URLs, so with ``file`` each
file reaches it through a FIFO, as MPEG-TS at real-time pace from one feeder
process (packets remuxed, never decoded); the feeder's CPU is reported apart.
"""
from __future__ import annotations

import json
import linecache
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil

from bench.camera_media import FPS
from bench.capacity_trial import lag_growth
from bench.simulate import CITY_MIX, CitySimulation, plan, progress_printer, scaled_mix

ROOT = Path(__file__).resolve().parents[1]
MIXES: dict[str, dict[str, int]] = {"city": CITY_MIX, "fixed": {"fixed": 1}, "mobile": {"mobile": 1}}
CITY_SOURCES = sum(CITY_MIX.values())
RATE_FLOOR = 0.95  # share of its policy rate every source must be analysed at
LAG_SLACK_S = 1.0


@dataclass
class Options:
    mix: str = "city"
    transport: str = "file"
    seconds: float = 60.0
    warmup_s: float = 15.0
    start: int = 8
    max_sources: int = 512
    resolution: float = 0.05  # bisect until the bounds are this close (relative)
    gate: bool = False
    baseline: bool = True
    baseline_urls: str = "worker"  # worker: the URLs the worker reads (sub-streams); main: the registry's main URLs
    pipeline: bool = True
    sources: int | None = None  # measure this N only, no search
    config: str | None = None
    cache_dir: str = str(ROOT / ".cache" / "sim")
    samples_dir: str = str(ROOT / "sample_videos")
    gop_s: dict[str, float] = field(default_factory=dict)
    profile: str | None = None  # folder for the pipeline's py-spy profile
    log: object = sys.stderr


def judge(result: dict) -> dict:
    """Did the trial keep up? The verdict with the figures it rests on."""
    if result.get("error"):
        return {"sustained": False, "why": result["error"]}
    window = result["window_s"]
    ratios, below, growth = [], [], 0.0
    for p in result["per_source"]:
        expected = window / p["interval_s"]
        ratios.append(p["analysed"] / expected)
        if p["analysed"] < RATE_FLOOR * expected - 1:
            below.append(p["id"])
        if p.get("lags"):
            growth = max(growth, lag_growth(p["lags"]))
    lags = sorted(lag for p in result["per_source"] for lag in p.get("lags", []))
    limit = max(LAG_SLACK_S, 0.02 * window)
    verdict = {
        "sustained": not below and growth <= limit,
        "min_rate_ratio": round(min(ratios), 3) if ratios else 0.0,
        "mean_rate_ratio": round(sum(ratios) / len(ratios), 3) if ratios else 0.0,
        "sources_below_rate": len(below),
        "lag_growth_max_s": round(growth, 2),
    }
    if lags:
        verdict.update(lag_p50_s=round(statistics.median(lags), 2), lag_p95_s=round(lags[int(0.95 * (len(lags) - 1))], 2))
    if below:
        verdict["why"] = f"{len(below)} source(s) under {RATE_FLOOR:.0%} of their rate (e.g. {below[0]})"
    elif growth > limit:
        verdict["why"] = f"lag grew by {growth:.1f} s"
    return verdict


def machine() -> dict:
    import av
    import torch

    from vision.detector import import_ultralytics

    ultralytics = import_ultralytics()

    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or platform.machine())
    # Inference cost differs several-fold between CPUs with and without AVX-512 (VNNI for INT8),
    # so figures from two machines compare only with their vector extensions beside them.
    flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("flags")), [])
    vector = sorted(f for f in flags if f.startswith(("avx", "amx")) or f in ("fma", "f16c"))
    busy = []
    me = os.getpid()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["pid"] != me and any(job in cmd for job in ("patrol train", "patrol eval", "pytest")):
            busy.append(cmd[:120])
    return {"cores": os.cpu_count(), "cpu": model, "vector_extensions": vector, "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__, "ultralytics": ultralytics.__version__,
            "pyav": av.__version__, "load_1min_at_start": round(os.getloadavg()[0], 2), "other_jobs_at_start": busy}


class CapacityBench:
    def __init__(self, opts: Options):
        if opts.mix not in MIXES:
            raise ValueError(f"unknown mix {opts.mix!r}; use {', '.join(MIXES)}")
        if opts.transport not in ("file", "rtsp"):
            raise ValueError(f"transport must be file or rtsp, not {opts.transport!r}")
        self.o = opts
        self.media: dict[str, dict] = {}
        self.workdir = Path(tempfile.mkdtemp(prefix="patrol-capacity-"))

    def say(self, msg: str) -> None:
        print(msg, file=self.o.log, flush=True)

    # -- sources ---------------------------------------------------------------------
    def simulation(self, n: int) -> CitySimulation:
        sim = CitySimulation(plan(scaled_mix(n, MIXES[self.o.mix]), self.o.samples_dir), self.o.cache_dir,
                             gop_s=self.o.gop_s)
        sim.prepare(progress_printer(self.o.log))
        for m in sim.media_table():
            self.media[m["path"]] = m
        return sim

    def _entries(self, served) -> list[dict]:
        out = []
        for e in served.registry()["sources"]:
            from streams.sources import DEFAULT_INTERVAL_S

            e["policy"] = {"interval_s": DEFAULT_INTERVAL_S[e["kind"]], "gate": self.o.gate}
            e.pop("srt", None)  # positions are not what is measured
            out.append(e)
        return out

    # -- one trial -------------------------------------------------------------------
    def trial(self, side: str, n: int, profile_dir: Path | None = None) -> dict:
        load = os.getloadavg()[0]  # what else the machine was doing as the trial began
        sim = self.simulation(n)
        spec = {"side": side, "seconds": self.o.seconds, "warmup_s": self.o.warmup_s, "config": self.o.config,
                "fps": FPS, "stagger_s": 2.0}
        feeder = None
        with sim.serve(self.o.transport, workdir=self.workdir / f"serve-{side}-{n}") as served:
            entries = self._entries(served)
            if side == "pipeline":
                spec["sources"] = entries
            else:
                main = self.o.baseline_urls == "main"
                spec["sources"] = [{"id": e["id"], "kind": e["kind"], "interval_s": e["policy"]["interval_s"],
                                    "read_url": e["url"] if main else e.get("sub_url") or e["url"]} for e in entries]
                if self.o.transport == "file":
                    feeder = self._start_feeder(spec["sources"], n)
            delivery = [psutil.Process(p.pid) for p in served.children] + ([psutil.Process(feeder.pid)] if feeder else [])
            result = self._run(spec, n, side, delivery, profile_dir)
            if feeder is not None:
                feeder.terminate()
                feeder.wait(timeout=10)
        result["verdict"] = judge(result)
        result["load_1min_before"] = round(load, 2)
        return result

    def _start_feeder(self, sources: list[dict], n: int) -> subprocess.Popen:
        fifo_dir = self.workdir / f"fifo-{n}"
        fifo_dir.mkdir(exist_ok=True)
        feeds = []
        for s in sources:
            fifo = fifo_dir / f"{s['id']}.ts"
            feeds.append({"file": s["read_url"], "fifo": str(fifo)})
            s["read_url"] = str(fifo)
        spec = fifo_dir / "feed.json"
        spec.write_text(json.dumps({"feeds": feeds}))
        proc = subprocess.Popen([sys.executable, "-m", "bench.capacity_trial", "--feed", str(spec)],
                                stdout=subprocess.PIPE, text=True, cwd=ROOT)
        if proc.stdout.readline().strip() != "READY":
            proc.kill()
            raise RuntimeError("the FIFO feeder did not start")
        return proc

    def _run(self, spec: dict, n: int, side: str, delivery: list[psutil.Process], profile_dir: Path | None) -> dict:
        path = self.workdir / f"trial-{side}-{n}.json"
        if profile_dir is not None:
            spec["marker"] = str(self.workdir / f"started-{side}-{n}")
        path.write_text(json.dumps(spec))
        cpu0 = {p.pid: _cpu(p) for p in delivery}
        t0 = time.time()
        proc = subprocess.Popen([sys.executable, "-m", "bench.capacity_trial", str(path)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=ROOT)
        spy = None
        if profile_dir is not None:
            spy = self._attach_profiler(proc, Path(spec["marker"]), profile_dir)
            done = Path(spec["marker"] + ".done")  # the trial keeps patrolling until the profiler is done

            def profiled():
                if spy is not None:
                    spy.wait()
                done.write_text("")

            threading.Thread(target=profiled, name="profile-done", daemon=True).start()
        timeout = self.o.seconds + self.o.warmup_s + 600
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            return {"side": side, "sources": n, "error": f"trial did not finish in {timeout:.0f} s"}
        if spy is not None:
            spy.wait(timeout=60)
        elapsed = time.time() - t0
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if proc.returncode != 0 or not lines:
            tail = " | ".join(err.strip().splitlines()[-3:])
            return {"side": side, "sources": n, "error": f"trial process failed ({proc.returncode}): {tail}"}
        result = json.loads(lines[-1])
        result["delivery_cpu_cores"] = round(sum(_cpu(p) - cpu0[p.pid] for p in delivery if _alive(p)) / elapsed, 3)
        return result

    def _attach_profiler(self, proc: subprocess.Popen, marker: Path, out_dir: Path) -> subprocess.Popen | None:
        deadline = time.monotonic() + self.o.warmup_s + 300
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        if not marker.exists():
            return None
        out_dir.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            self.say("  (py-spy not installed: pip install py-spy; no profile)")
            return None
        # (the trial waits for it to finish before it stops its worker: closing every open
        # event at the end is not part of patrolling)
        return subprocess.Popen([str(spy), "record", "--pid", str(proc.pid), "--duration", str(int(self.o.seconds)),
                                 "--rate", "50", "--threads", "--nonblocking", "--format", "raw",
                                 "-o", str(out_dir / "pipeline.pyspy.txt")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    # -- the search ------------------------------------------------------------------
    def search(self, side: str) -> dict:
        trials: dict[int, dict] = {}

        def run(n: int) -> bool:
            self.say(f"{side:>11}: {n:4d} sources, {self.o.warmup_s:g} s warm-up + {self.o.seconds:g} s ...")
            r = self.trial(side, n)
            v = r["verdict"]
            trials[n] = r
            if "error" in r:
                self.say(f"{'':>11}  failed: {r['error']}")
                return False
            self.say(f"{'':>11}  {'sustained' if v['sustained'] else 'NOT sustained':<13} "
                     f"rate min {v['min_rate_ratio']:.0%} mean {v['mean_rate_ratio']:.0%}, "
                     f"{r['samples_per_s']:.1f} samples/s, CPU {r['cpu_cores']:.2f} cores"
                     + (f", lag p95 {v['lag_p95_s']} s (growth {v['lag_growth_max_s']} s)" if "lag_p95_s" in v else "")
                     + (f" - {v['why']}" if not v["sustained"] else ""))
            return v["sustained"]

        if self.o.sources:
            run(self.o.sources)
            good = self.o.sources if trials[self.o.sources]["verdict"]["sustained"] else 0
        else:
            good, bad, n = 0, None, max(1, self.o.start)
            if not run(n):  # not even the start: look below it
                bad = n
                while n > 1:
                    n //= 2
                    if run(n):
                        good = n
                        break
                    bad = n
            else:
                good = n
                while n * 2 <= self.o.max_sources:
                    n *= 2
                    if run(n):
                        good = n
                    else:
                        bad = n
                        break
            while bad is not None and good and bad - good > max(1, math.ceil(self.o.resolution * good)):
                mid = (good + bad) // 2
                if run(mid):
                    good = mid
                else:
                    bad = mid
        summary = {"sustained_sources": good, "at_sustained": _figures(trials.get(good)),
                   "trials": [{"sources": n, **{k: v for k, v in trials[n]["verdict"].items()},
                               "samples_per_s": trials[n].get("samples_per_s"), "cpu_cores": trials[n].get("cpu_cores"),
                               "load_1min_before": trials[n].get("load_1min_before")}
                              for n in sorted(trials)]}
        first_bad = min((n for n in trials if n > good), default=None)
        if first_bad is not None:
            summary["first_not_sustained"] = {"sources": first_bad, **_figures(trials[first_bad])}
        return summary

    def run(self) -> dict:
        o = self.o
        report: dict = {"mix": o.mix, "mix_proportions": MIXES[o.mix], "transport": o.transport, "seconds": o.seconds,
                        "warmup_s": o.warmup_s, "gate": o.gate, "baseline_urls": o.baseline_urls, "machine": machine(),
                        "criteria": f"every source analysed at >= {RATE_FLOOR:.0%} of its policy rate over the window "
                                    f"(less one sample) and no source's lag growing by more than "
                                    f"max({LAG_SLACK_S:g} s, 2% of the window)"}
        if o.pipeline:
            report["pipeline"] = self.search("pipeline")
        if o.baseline:
            report["ultralytics"] = self.search("ultralytics")
            urls = "the worker's URLs" if o.baseline_urls == "worker" else "the registry's main URLs"
            report["ultralytics"]["how"] = (
                f"YOLO(weights).predict(source=<.streams file of {urls}>, stream=True, vid_stride=<fps x "
                "interval>, imgsz, conf): one predictor per sampling interval, each on its own thread"
                + ("; files delivered as real-time MPEG-TS through FIFOs by one feeder process (remux only)"
                   if o.transport == "file" else "; the same RTSP server and URLs as the worker"))
        p, b = report.get("pipeline"), report.get("ultralytics")
        if p and b:
            report["ratio"] = round(p["sustained_sources"] / b["sustained_sources"], 2) if b["sustained_sources"] else None
        if p and o.mix == "city" and p["sustained_sources"]:
            report["city"] = {"sources": CITY_SOURCES,
                              "machines_needed": math.ceil(CITY_SOURCES / p["sustained_sources"]),
                              "share_on_one_machine": round(p["sustained_sources"] / CITY_SOURCES, 3)}
        if o.profile and p and (p["sustained_sources"] or o.sources):
            report["profile"] = self.profile(p["sustained_sources"] or o.sources)
        report["media"] = sorted(self.media.values(), key=lambda m: m["path"])
        report["model"] = (p or {}).get("at_sustained", {}).get("model")
        return report

    def soak(self, minutes: float) -> dict:
        """One long run at `sources`: is memory flat? RSS sampled every minute."""
        n = self.o.sources
        self.o.seconds = minutes * 60
        self.say(f"soak: {n} sources ({self.o.mix} mix over {self.o.transport}) for {minutes:g} min ...")
        r = self.trial("pipeline", n)
        if "error" in r:
            return {"soak_minutes": minutes, "sources": n, "error": r["error"]}
        series = r["rss_series"]
        return {"soak_minutes": minutes, "sources": n, "mix": self.o.mix, "transport": self.o.transport,
                "machine": machine(), "rss_start_mb": series[0][1], "rss_peak_mb": r["rss_peak_mb"],
                "rss_end_mb": series[-1][1], "slope_mb_per_hour": rss_slope(series),
                "slope_after_5_min_mb_per_hour": rss_slope([p for p in series if p[0] >= 300]),
                "rss_series": series, "verdict": r["verdict"], "trial": _figures(r),
                "media": sorted(self.media.values(), key=lambda m: m["path"])}

    def profile(self, n: int) -> dict:
        out = Path(self.o.profile)
        self.say(f"    profile: {n} sources under py-spy ...")
        r = self.trial("pipeline", n, profile_dir=out)
        raw = out / "pipeline.pyspy.txt"
        if not raw.exists():
            return {"error": "no profile recorded"}
        summary = summarize_profile(raw)
        summary.update(sources=n, raw=str(raw), trial=_figures(r), verdict=r["verdict"])
        (out / "pipeline.summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def decode_costs(paths: list[Path], repeats: int = 2) -> list[dict]:
    """Per media file, on one thread: CPU to decode one key frame (what the worker spends per
    sample) and the mean over every frame (what a reader that decodes everything spends)."""
    import av

    out = []
    for path in paths:
        row: dict = {"path": Path(path).name}
        for mode in ("key", "all"):
            with av.open(str(path)) as c:
                s = c.streams.video[0]
                s.codec_context.thread_count = 1
                packets = [p for p in c.demux(s) if p.size]
                keys = [p for p in packets if p.is_keyframe]
                frames, t0 = 0, time.thread_time()
                for _ in range(repeats):
                    for p in keys if mode == "key" else packets:
                        frames += len(s.codec_context.decode(p))
                        if mode == "key":  # a lone key frame, drained at once as the sampler does
                            frames += len(s.codec_context.decode(None))
                            s.codec_context.flush_buffers()
                row[f"decode_{mode}_ms"] = round((time.thread_time() - t0) * 1000 / max(1, frames), 2)
                if mode == "key":
                    row["key_frame_kb"] = round(sum(p.size for p in keys) / len(keys) / 1024, 1)
                    rate = s.average_rate or s.guessed_rate
                    row["fps"] = float(rate) if rate else None
        out.append(row)
    return out


def rss_slope(series: list) -> float | None:
    """Least-squares slope of RSS over time, MB per hour."""
    if len(series) < 3:
        return None
    ts = [t / 3600 for t, _ in series]
    ms = [m for _, m in series]
    mt, mm = sum(ts) / len(ts), sum(ms) / len(ms)
    den = sum((t - mt) ** 2 for t in ts)
    return round(sum((t - mt) * (m - mm) for t, m in zip(ts, ms)) / den, 1) if den else None


def _cpu(p: psutil.Process) -> float:
    try:
        t = p.cpu_times()
        return t.user + t.system + t.children_user + t.children_system
    except psutil.Error:
        return 0.0


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running()
    except psutil.Error:
        return False


def _figures(r: dict | None) -> dict:
    """A trial's figures without the per-sample detail."""
    if not r:
        return {}
    return {k: v for k, v in r.items() if k not in ("per_source",)}


# -- the profile ---------------------------------------------------------------------

# First match from the innermost frame outwards decides a sample's category.
_CATEGORIES = [
    ("decode (PyAV / FFmpeg H.264)", ("_decode (streams/reader.py", "Sampler.release (streams/reader.py")),
    ("scale + colour conversion", ("_convert (streams/reader.py",)),
    ("inference: model forward (OpenVINO / ONNX Runtime / torch)",
     ("openvino/", "onnxruntime/", "torch/nn/modules", "ultralytics/nn/")),
    ("inference: pre/post-processing (letterbox, NMS)", ("vision/runtime.py", "vision/detector.py")),
    ("change gate", ("vision/gate.py",)),
    ("rules and events", ("vision/rules/", "vision/events.py", "vision/evidence.py")),
    ("reader Python (demux loop, pacing, bookkeeping)", ("streams/live.py", "streams/reader.py")),
    ("worker loop and Redis reports", ("workers/", "redis/")),
]


_WAITING = re.compile(r"(\.wait\(|sleep\(|\.join\(|select\(|\.poll\(|\.acquire\()")


def _source_line(frame: str) -> str:
    """The line of code a py-spy frame ``func (path:line)`` points at ('' if not found)."""
    m = re.search(r"\(([^()]+):(\d+)\)$", frame)
    if not m:
        return ""
    path, line = m.group(1), int(m.group(2))
    for base in [ROOT, *map(Path, sys.path)]:
        candidate = base / path
        if candidate.is_file():
            return linecache.getline(str(candidate), line)
    return ""


def summarize_profile(raw: Path) -> dict:
    """Where the pipeline's CPU time goes, from py-spy's collapsed stacks: busy samples only.
    A thread whose innermost Python line waits (an event, a sleep, a join, a lock) spends
    no CPU there; py-spy cannot always tell, so those samples are set apart here."""
    totals: dict[str, int] = {}
    leaves: dict[str, int] = {}
    all_samples = idle = 0
    waiting: dict[str, bool] = {}
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        frames = stack.split(";")
        leaf = frames[-1] if frames else "?"
        if leaf not in waiting:
            waiting[leaf] = bool(_WAITING.search(_source_line(leaf)))
        if waiting[leaf]:
            idle += n
            continue
        all_samples += n
        category = "other Python"
        for f in reversed(frames):  # the innermost frame that belongs to a category decides
            hit = next((name for name, needles in _CATEGORIES if any(needle in f for needle in needles)), None)
            if hit:
                category = hit
                break
        totals[category] = totals.get(category, 0) + n
        leaves[leaf] = leaves.get(leaf, 0) + n
    total = max(1, all_samples)
    share = {k: round(100 * v / total, 1) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    top = [{"frame": k, "pct": round(100 * v / total, 1)}
           for k, v in sorted(leaves.items(), key=lambda kv: -kv[1])[:15]]
    return {"busy_samples": all_samples, "idle_samples": idle, "share_pct": share, "top_frames": top}


def options_from_args(args) -> Options:
    gop = {}
    for item in args.gop or []:
        name, _, value = item.partition("=")
        gop[name] = float(value)
    return Options(mix=args.mix, transport=args.transport, seconds=args.seconds, warmup_s=args.warmup,
                   start=args.start, max_sources=args.max_sources, gate=args.gate, baseline=not args.no_baseline,
                   pipeline=not args.no_pipeline, sources=args.sources, config=getattr(args, "config", None),
                   baseline_urls=args.baseline_urls,
                   cache_dir=args.cache, gop_s=gop, profile=args.profile)


def as_text(report: dict) -> str:
    lines = [f"capacity, mix {report['mix']} over {report['transport']} ({report['seconds']:g} s windows, "
             f"gate {'on' if report['gate'] else 'off'}), {report['machine']['cores']} cores "
             f"({report['machine']['cpu']})"]
    for side in ("pipeline", "ultralytics"):
        s = report.get(side)
        if not s:
            continue
        f = s["at_sustained"]
        lines.append(f"  {side:<11} sustains {s['sustained_sources']} sources"
                     + (f": {f['samples_per_s']} samples/s, CPU {f['cpu_per_source_pct']}% of a core and "
                        f"{f['rss_per_source_mb']} MB per source" if f else ""))
        if side == "pipeline" and f:
            lines.append(f"              decode {f['decode_ms_per_sample']} ms + convert {f['convert_ms_per_sample']} ms "
                         f"per sample, inference {f['inference_ms_per_sample']} ms per sample "
                         f"(batch {f['detector_batch_mean']}), dropped {f['dropped']}"
                         + (f", detector looked at {f['detector_share']:.0%} of the samples (gate on)"
                            if report["gate"] and "detector_share" in f else ""))
    if report.get("ratio") is not None:
        lines.append(f"  ratio {report['ratio']}x")
    if report.get("city"):
        lines.append(f"  the city's {report['city']['sources']} sources need {report['city']['machines_needed']} "
                     "machine(s) like this one")
    for m in report.get("media", []):
        lines.append(f"  media {m['path']}: {m['width']}x{m['height']} {m['fps']:g} fps {m['kbps']:.0f} kbit/s "
                     f"GOP {m['gop_s']:g} s")
    if report.get("profile", {}).get("share_pct"):
        lines.append("  profile: " + ", ".join(f"{k} {v}%" for k, v in report["profile"]["share_pct"].items()))
    return "\n".join(lines)


def report_json(report: dict) -> str:
    return json.dumps(report, ensure_ascii=False, default=lambda o: asdict(o) if hasattr(o, "__dataclass_fields__") else str(o))
