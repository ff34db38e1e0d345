"""`patrol analyze` on every sample video against its ground truth (X.mp4 → X.json).

The real command, the real model, the real clips: every ground-truth event must be
reported (a case of the same type overlapping it in time), no case may match no
ground-truth event, and one violation must be one case, not many.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vision.detector import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_videos"
MODEL = DEFAULT_WEIGHTS
CLIPS = sorted(p.stem for p in SAMPLES.glob("*.mp4"))

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/")]

KIND_ARGS = {"drone": ["--kind", "drone"], "vehicle": ["--kind", "vehicle"], "mobile": ["--kind", "mobile"]}
REQUIRED = {"event_type", "category", "start", "end", "confidence", "bbox", "snapshot", "lat", "lon", "grid"}


def analyze(clip: str, tmp_path: Path) -> tuple[dict, list[dict]]:
    truth = json.loads((SAMPLES / f"{clip}.json").read_text())
    cmd = [sys.executable, "-m", "patrol.cli", "analyze", str(SAMPLES / f"{clip}.mp4"), "--json",
           "--evidence", str(tmp_path / "evidence"), *KIND_ARGS.get(truth["source_kind"], [])]
    srt = SAMPLES / f"{clip}.SRT"
    if srt.exists():
        cmd += ["--srt", str(srt)]
    zones = SAMPLES / f"{clip}.zones.yaml"
    if zones.exists():
        cmd += ["--zones", str(zones)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT,
                         env={**os.environ, "PATROL_DATA_DIR": str(tmp_path / "data")})
    assert run.returncode == 0, run.stderr
    return truth, [json.loads(line) for line in run.stdout.splitlines() if line.strip()]


def overlaps(case: dict, event: dict) -> bool:
    return case["event_type"] == event["event_type"] and case["start"] <= event["end"] and case["end"] >= event["start"]


@pytest.mark.parametrize("clip", CLIPS)
def test_every_event_found_once_and_nothing_else(clip, tmp_path):
    truth, cases = analyze(clip, tmp_path)
    for case in cases:
        assert REQUIRED <= case.keys(), f"missing fields: {REQUIRED - case.keys()}"
        assert any(overlaps(case, ev) for ev in truth["events"]), f"false case {case['event_type']} " \
            f"{case['start']}-{case['end']} s in {clip}: {case['trace']}"
        snap = Path(case["snapshot"])
        assert snap.read_bytes()[:3] == b"\xff\xd8\xff", "snapshot is not a JPEG"
        x1, y1, x2, y2 = case["bbox"]
        assert 0 <= x1 < x2 and 0 <= y1 < y2
    for ev in truth["events"]:
        matching = [c for c in cases if overlaps(c, ev)]
        assert len(matching) == 1, f"{clip}: ground-truth {ev['event_type']} {ev['start']}-{ev['end']} s " \
            f"matched {len(matching)} cases: {[(c['start'], c['end']) for c in cases]}"
        case = matching[0]
        assert case["category"]["major"] and case["category"]["minor"] and case["category"]["name"]


def test_drone_cases_are_geotagged_from_telemetry(tmp_path):
    _, cases = analyze("drone_illegal_construction", tmp_path)
    assert cases
    for case in cases:
        # the SRT track runs from 30.6120 to 30.6135 N along 114.2950 E
        assert 30.611 <= case["lat"] <= 30.614 and abs(case["lon"] - 114.295) < 1e-3
        assert case["grid"] and len(case["grid"]) == 14 and case["grid"].startswith("420117")
