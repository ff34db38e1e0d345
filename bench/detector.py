"""Benchmarks (not tests): what the pipeline's parts cost on this machine.

Figures go to docs/benchmarks.md with the command that made them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from streams.reader import iter_file_samples

ROOT = Path(__file__).resolve().parents[1]


def sample_frames(count: int = 16, max_side: int = 640) -> list:
    """Real samples from the sample videos, at the size the workers decode to."""
    frames = []
    clips = sorted((ROOT / "sample_videos").glob("*.mp4"))
    per_clip = max(1, count // len(clips) + 1)
    for clip in clips:
        for i, f in enumerate(iter_file_samples(clip, 4.0, max_side)):
            if i >= per_clip:
                break
            frames.append(f.image)
    return frames[:count]


def bench_detector(weights: list[Path], imgsz: int, batches: tuple[int, ...] = (1, 8), seconds: float = 10.0,
                   threads: int = 0) -> dict:
    """Milliseconds per image, wall and CPU, for each weights file and batch size (after a warm-up).

    CPU time counts every thread of the process: on a worker whose readers need the cores,
    CPU per image is what limits capacity, wall time is what one request waits."""
    import psutil

    from bench.capacity import machine
    from vision.detector import Detector

    images = sample_frames(max(batches) * 2)
    me = psutil.Process()
    info = machine()
    out = {"imgsz": imgsz, "cpu": info["cpu"], "vector_extensions": info["vector_extensions"],
           "cores": os.cpu_count(), "threads": threads, "results": []}
    for w in weights:
        det = Detector(w, imgsz=imgsz, max_batch=max(batches), threads=threads)
        runtime = det.runtime.runtime if det.runtime is not None else "ultralytics (torch)"
        for b in batches:
            chunk = images[:b]
            det.detect(chunk)  # warm-up: first call builds the graph / session
            n, t0, cpu0 = 0, time.perf_counter(), sum(me.cpu_times()[:2])
            while time.perf_counter() - t0 < seconds:
                det.detect(chunk)
                n += 1
            ms = (time.perf_counter() - t0) * 1000 / (n * b)
            cpu_ms = (sum(me.cpu_times()[:2]) - cpu0) * 1000 / (n * b)
            out["results"].append({"weights": w.name, "runtime": runtime, "batch": b, "ms_per_image": round(ms, 2),
                                   "cpu_ms_per_image": round(cpu_ms, 2), "images_per_s": round(1000 / ms, 1)})
    return out
