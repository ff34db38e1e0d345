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


# The pictures a worker's samples arrive as (``worker.sample_max_side`` 640): 16:9 street and
# vehicle cameras and drones, 4:3 cameras and phones, phones held upright.
CAMERA_PICTURES = ((360, 640), (480, 640), (640, 360))


def bench_shapes(weights: Path, sizes: tuple[int, ...], max_batch: int,
                 pictures: tuple[tuple[int, int], ...] = CAMERA_PICTURES, threads: int = 0) -> dict:
    """The detector's memory for every input shape a worker can meet, and that it is bounded.

    The runtime keeps a compiled plan for each input shape it has run (batch size by
    letterboxed rectangle; OpenVINO's CPU plugin caches them). A worker meets the shapes as its
    batches vary, so its memory rises in steps until it has met them all: each batch size from
    1 to ``max_batch`` for each rectangle at each size (the second look's too). Two passes over
    all of them: the first shows what the plans cost, the second that nothing more is kept."""
    import cv2
    import numpy as np
    import psutil

    from vision.detector import Detector
    from vision.runtime import letterbox

    det = Detector(weights, imgsz=sizes[0], max_batch=max_batch, threads=threads)
    if det.runtime is None:
        raise ValueError(f"{weights}: bench shapes measures an export (OpenVINO folder or .onnx), not PyTorch weights")
    frame = sample_frames(1)[0]
    images = {(h, w): cv2.resize(frame, (w, h), interpolation=cv2.INTER_AREA) for h, w in pictures}
    me = psutil.Process()
    mb = lambda: round(me.memory_info().rss / 2**20, 1)  # noqa: E731
    start = mb()
    shapes: set[tuple[int, int, int]] = set()
    passes = []
    for _ in range(2):
        t0 = time.perf_counter()
        for size in sizes:
            for image in images.values():
                canvas = letterbox(image, size)[0].shape[:2]
                for b in range(1, max_batch + 1):
                    det.runtime.predict([image] * b, det.conf, det.iou, size)
                    shapes.add((b, *canvas))
        passes.append({"rss_mb": mb(), "seconds": round(time.perf_counter() - t0, 1)})
    return {"weights": Path(weights).name, "runtime": det.runtime.runtime, "sizes": list(sizes), "max_batch": max_batch,
            "pictures": [f"{w}x{h}" for h, w in pictures], "shapes": len(shapes), "rss_start_mb": start,
            "passes": passes}
