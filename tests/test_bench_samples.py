"""`patrol bench samples`: the sample clips against their ground truth with the real model,
in stores of their own: the figures of docs/benchmarks.md's sample table."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from vision.detector import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_videos"

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="default model not in models/")


def bench(folder: Path, data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patrol.cli", "bench", "samples", "--samples", str(folder), "--json"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env={**os.environ, "PATROL_DATA_DIR": str(data_dir)})


def test_each_clip_is_reported_with_its_cases_and_nothing_reaches_the_citys_store(tmp_path):
    folder = tmp_path / "clips"
    folder.mkdir()
    for name in ("fixed_dust.mp4", "fixed_dust.json", "fixed_dust.zones.yaml",
                 "fixed_no_violation.mp4", "fixed_no_violation.json"):
        shutil.copy(SAMPLES / name, folder / name)
    (folder / "no_truth.mp4").write_bytes((SAMPLES / "fixed_no_violation.mp4").read_bytes())  # skipped: no X.json
    data_dir = tmp_path / "city"
    run = bench(folder, data_dir)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["model"].startswith("patrol-")
    rows = {r["clip"]: r for r in report["clips"]}
    assert sorted(rows) == ["fixed_dust.mp4", "fixed_no_violation.mp4"]
    dust = rows["fixed_dust.mp4"]
    assert dust["truth"] == [{"event_type": "dust", "start": 11.8, "end": 26.4}]
    assert [c["event_type"] for c in dust["cases"]] == ["dust"]
    assert dust["cases"][0]["start"] <= 26.4 and dust["cases"][0]["end"] >= 11.8
    assert rows["fixed_no_violation.mp4"]["cases"] == []
    for r in rows.values():
        assert r["kind"] == "fixed" and 0 < r["analysed"] <= r["samples"] and r["seconds"] > 0
    assert not list(data_dir.rglob("*.db")) and not list(data_dir.rglob("*.jpg"))  # the benchmark's cases were its own


def test_a_folder_without_ground_truth_is_a_clear_error(tmp_path):
    (tmp_path / "clip.mp4").write_bytes((SAMPLES / "fixed_no_violation.mp4").read_bytes())
    run = bench(tmp_path, tmp_path / "city")
    assert run.returncode != 0
    assert run.stderr.strip().startswith("patrol: no sample clips with a ground truth") and "Traceback" not in run.stderr


def test_a_ground_truth_without_a_camera_kind_is_a_clear_error_not_a_fixed_camera(tmp_path):
    shutil.copy(SAMPLES / "mobile_street_vending.mp4", tmp_path / "clip.mp4")
    truth = json.loads((SAMPLES / "mobile_street_vending.json").read_text())
    del truth["source_kind"]  # analysed as a fixed camera, the mobile clip's rules would differ
    (tmp_path / "clip.json").write_text(json.dumps(truth))
    run = bench(tmp_path, tmp_path / "city")
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert "clip.json: a ground truth needs source_kind (one of fixed, vehicle, drone, mobile, upload)" in run.stderr
