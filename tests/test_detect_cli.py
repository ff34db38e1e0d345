"""`patrol detect IMAGE... --json`: the detector on single pictures, one JSON line per image."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import cv2
import pytest

from vision.detector import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
MODEL = DEFAULT_WEIGHTS


def still(clip: str, t: float, out: Path) -> Path:
    with av.open(str(ROOT / "sample_videos" / f"{clip}.mp4")) as c:
        for f in c.decode(video=0):
            if f.time >= t:
                cv2.imwrite(str(out), f.to_ndarray(format="bgr24"))
                return out
    raise AssertionError(f"no frame at {t} s in {clip}")


def detect(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "patrol.cli", "detect", *map(str, args)], capture_output=True,
                          text=True, timeout=300, cwd=ROOT)


@pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/")
def test_each_image_gets_its_detections_and_supported_events(tmp_path):
    shed = still("fixed_illegal_construction", 20, tmp_path / "shed.jpg")
    quiet = still("fixed_no_violation", 2, tmp_path / "quiet.png")
    run = detect(shed, quiet, "--json")
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["image"] for r in rows] == [str(shed), str(quiet)]
    assert rows[0]["events"] == ["illegal_construction"]
    assert {d["label"] for d in rows[0]["detections"]} & {"steel_shed", "scaffold"}
    for d in rows[0]["detections"]:
        x1, y1, x2, y2 = d["bbox"]
        assert 0 <= x1 < x2 <= 960 and 0 <= y1 < y2 <= 540 and 0 < d["confidence"] <= 1
    assert rows[1]["events"] == []


@pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/")
def test_an_unreadable_image_is_named_and_the_others_still_run(tmp_path):
    text = tmp_path / "notes.jpg"
    text.write_text("not a picture")
    shed = still("fixed_illegal_construction", 20, tmp_path / "shed.jpg")
    run = detect(text, shed, "--json")
    assert run.returncode == 2
    assert run.stderr.strip() == f"patrol: {text}: not a readable image"
    assert json.loads(run.stdout)["image"] == str(shed)


@pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/")
def test_bench_detector_reports_a_cost_per_image():
    run = subprocess.run([sys.executable, "-m", "patrol.cli", "bench", "detector", "--seconds", "0.3", "--batch", "1",
                          "2", "--json"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert [r["batch"] for r in result["results"]] == [1, 2]
    assert all(r["ms_per_image"] > 0 and r["cpu_ms_per_image"] > 0 for r in result["results"])
    assert all(r["weights"] == MODEL.name and r["runtime"] == "openvino" for r in result["results"])
    assert isinstance(result["vector_extensions"], list) and result["cores"] >= 1


@pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/")
def test_bench_shapes_runs_every_shape_a_worker_meets_twice():
    """Batch sizes 1-2, the three camera pictures, both looks: 320 px letterboxes them to three
    rectangles (192x320, 256x320, 320x192), 416 px to three more: 12 shapes, each run twice."""
    env = {**os.environ, "PATROL_MODEL__BATCH": "2"}
    run = subprocess.run([sys.executable, "-m", "patrol.cli", "bench", "shapes", "--json"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr
    r = json.loads(run.stdout)
    assert (r["sizes"], r["max_batch"], r["shapes"]) == ([320, 416], 2, 12)
    assert r["pictures"] == ["640x360", "640x480", "360x640"] and r["runtime"] == "openvino"
    assert len(r["passes"]) == 2 and all(p["rss_mb"] > 0 for p in r["passes"]) and r["rss_start_mb"] > 0
    pt = subprocess.run([sys.executable, "-m", "patrol.cli", "bench", "shapes", "--weights", str(PT_WEIGHTS)],
                        capture_output=True, text=True, timeout=300, cwd=ROOT, env=env)
    assert pt.returncode != 0 and "measures an export" in pt.stderr and "Traceback" not in pt.stderr


PT_WEIGHTS = MODEL.parent / MODEL.name.replace("_openvino_model", ".pt")


@pytest.mark.skipif(not PT_WEIGHTS.exists(), reason="default .pt weights not in models/")
def test_stdout_holds_only_json_on_a_machine_where_ultralytics_never_ran(tmp_path):
    """On a fresh machine ultralytics announces the settings file it creates, through a log
    handler bound to whatever stdout is when it is first imported; `--json` output is read by
    programs, so that note must go to stderr. An empty YOLO_CONFIG_DIR is such a machine."""
    import os

    shed = still("fixed_illegal_construction", 20, tmp_path / "shed.jpg")
    env = {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "fresh-ultralytics"),
           "PATROL_MODEL__WEIGHTS": str(PT_WEIGHTS)}
    run = subprocess.run([sys.executable, "-m", "patrol.cli", "detect", str(shed), "--json"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT, env=env)
    assert run.returncode == 0, run.stderr
    assert "Ultralytics Settings" in run.stderr  # the note was made, and went to stderr
    assert json.loads(run.stdout)["image"] == str(shed)
