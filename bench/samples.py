"""`patrol bench samples`: each sample clip through `analyze_video` against its ground truth
(X.mp4 beside X.json), with the model loaded once: what it found, how many samples were taken
and analysed, and how much faster than real time. The figures of docs/benchmarks.md's sample
table; whether every event is found once and nothing else is a test (test_analyze_samples).
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable

from core.analyze import analyze_video, side_files
from core.wiring import Parts
from training.evaluate import read_truth


def bench_samples(parts: Parts, folder: Path, progress: Callable[[str], None] | None = None) -> dict:
    """Every clip of ``folder`` with a ground truth, analysed as its kind (with its telemetry,
    track and zones where the folder has them)."""
    clips = sorted(p for p in folder.glob("*.mp4") if p.with_suffix(".json").exists())
    if not clips:
        raise FileNotFoundError(f"no sample clips with a ground truth (X.mp4 beside X.json) in {folder}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="patrol-bench-samples-") as tmp:
        for i, clip in enumerate(clips):
            rows.append(_one(parts.fork(f"sqlite:///{Path(tmp) / f'{i}.db'}", Path(tmp) / f"evidence-{i}"), clip,
                             progress))
    return {"model": parts.detector.version, "clips": rows}


def _one(parts: Parts, clip: Path, progress: Callable[[str], None] | None) -> dict:
    """One clip, in a store of its own (a benchmark never writes into the city's cases)."""
    truth = read_truth(clip)  # ValueError: the caller says which file and why
    kind = truth["source_kind"]
    if progress:
        progress(clip.name)
    started = time.perf_counter()
    analysis = analyze_video(parts, clip, kind=kind, **side_files(clip))
    took = time.perf_counter() - started
    return {
        "clip": clip.name, "kind": kind,
        "truth": [{k: e[k] for k in ("event_type", "start", "end")} for e in truth["events"]],
        "cases": [{"event_type": c.event_type, "start": round(c.first_seen, 1), "end": round(c.last_seen, 1),
                   "confidence": round(c.confidence, 2)} for c in analysis.cases],
        "samples": analysis.samples, "analysed": analysis.analysed, "seconds": round(took, 2),
        "real_time_factor": round(analysis.duration_s / took, 1) if analysis.duration_s and took else None,
    }


def as_table(report: dict) -> str:
    def events(evs) -> str:
        return "; ".join(f"{e['event_type']} {e['start']:.1f}-{e['end']:.1f} s" for e in evs) or "none"

    def cases(cs) -> str:
        return "; ".join(f"{c['event_type']} {c['start']:.0f}-{c['end']:.0f} s ({c['confidence']:.2f})"
                         for c in cs) or "none"

    lines = [f"model {report['model']}", "",
             "| video | kind | ground truth | draft cases | samples / analysed | time | × real time |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in report["clips"]:
        factor = f"{r['real_time_factor']:.0f}×" if r["real_time_factor"] else "—"
        lines.append(f"| `{r['clip']}` | {r['kind']} | {events(r['truth'])} | {cases(r['cases'])} | "
                     f"{r['samples']} / {r['analysed']} | {r['seconds']:.1f} s | {factor} |")
    return "\n".join(lines)
