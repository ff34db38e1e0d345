"""``patrol analyze`` refuses bad input with one line on stderr and a non-zero exit.

Run as a real subprocess (the installed ``patrol`` command), as an operator runs it.
All but the last two error paths happen before the detector is needed, so they
run without model weights.
"""
from __future__ import annotations

import os
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from vision.detector import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT / "sample_videos" / "fixed_street_vending.mp4"
WEIGHTS = DEFAULT_WEIGHTS
_PATROL = Path(sys.executable).with_name("patrol")
PATROL = [str(_PATROL)] if _PATROL.exists() else [sys.executable, "-m", "patrol.cli"]


def patrol(*args, cwd: Path | None = None) -> subprocess.CompletedProcess:
    # a clean environment: no settings file or database of the caller's may change the outcome
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith("PATROL_") or k in ("REDIS_URL", "DATABASE_URL"))}
    return subprocess.run([*PATROL, *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str, output_allowed: bool = False) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got:\n{result.stderr}"
    line = lines[0]
    assert line.startswith("patrol: ") and "Traceback" not in line
    for w in words:
        assert w in line, line
    if not output_allowed:
        assert result.stdout == ""
    return line


def test_a_missing_file(tmp_path):
    assert_one_line_error(patrol("analyze", tmp_path / "nope.mp4"), "nope.mp4", "no such file")


def test_a_directory(tmp_path):
    assert_one_line_error(patrol("analyze", tmp_path), str(tmp_path), "not a file")


def test_a_text_file_named_mp4(tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("minutes of the street-order meeting\n" * 50)
    assert_one_line_error(patrol("analyze", fake), "notes.mp4", "not a readable video")


def test_a_truncated_mp4(tmp_path):
    # the first half of a real sample video: its index (moov, at the end) is lost
    data = VIDEO.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    assert_one_line_error(patrol("analyze", cut), "cut.mp4", "cut off")


def test_a_missing_srt_file(tmp_path):
    assert_one_line_error(patrol("analyze", VIDEO, "--srt", tmp_path / "flight.SRT"), "flight.SRT", "SRT")


@pytest.mark.parametrize("zones, words", [
    ({"zones": [{"name": "pavement", "role": "no_vending", "polygon": [[0, 0.5], [1.2, 0.5], [1, 1]]}]},
     ["zone #1", "polygon", "0-1"]),
    ({"zones": [{"name": "pavement", "role": "no_parking", "polygon": [[0, 0.5], [1, 0.5], [1, 1]]}]},
     ["zone #1", "role"]),
    ("zones: [name: pavement\n", ["not valid YAML"]),
])
def test_an_invalid_zones_file(tmp_path, zones, words):
    path = tmp_path / "zones.yaml"
    path.write_text(zones if isinstance(zones, str) else yaml.safe_dump(zones))
    assert_one_line_error(patrol("analyze", VIDEO, "--zones", path), "zones.yaml", *words)


def test_a_missing_zones_file(tmp_path):
    assert_one_line_error(patrol("analyze", VIDEO, "--zones", tmp_path / "zones.yaml"), "zones.yaml", "not found")


@pytest.mark.parametrize("settings, words", [
    ({"model": {"imgsz": 300}}, ["model.imgsz", "multiple of 32"]),
    ({"modle": {"imgsz": 320}}, ["modle"]),
    ("model: {imgsz: [320}\n", ["not valid YAML"]),
])
def test_an_invalid_settings_file(tmp_path, settings, words):
    path = tmp_path / "bad.yaml"
    path.write_text(settings if isinstance(settings, str) else yaml.safe_dump(settings))
    assert_one_line_error(patrol("--config", path, "analyze", VIDEO), "bad.yaml", *words)


def test_a_missing_settings_file(tmp_path):
    assert_one_line_error(patrol("--config", tmp_path / "bad.yaml", "analyze", VIDEO), "bad.yaml", "not found")


def test_missing_model_weights(tmp_path):
    settings = tmp_path / "patrol.yaml"
    settings.write_text(yaml.safe_dump({"model": {"weights": str(tmp_path / "none.pt")}}))
    assert_one_line_error(patrol("--config", settings, "analyze", VIDEO), "none.pt")


@pytest.mark.skipif(not WEIGHTS.exists(), reason=f"needs the detector weights {WEIGHTS} (not trained yet)")
def test_a_truncated_mp4_with_its_index_first(tmp_path):
    # A "fast start" MP4 (index first) cut in half opens fine and decodes up to the cut:
    # the truncation shows only at the end, after the detector has run.
    if not shutil.which("ffmpeg"):
        pytest.skip("needs ffmpeg to rewrite the sample with its index first")
    faststart = tmp_path / "faststart.mp4"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", VIDEO, "-c", "copy", "-movflags", "+faststart",
                    faststart], check=True, timeout=60)
    data = faststart.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 2])
    result = patrol("analyze", "--json", cut)
    # the cases found before the cut are kept and printed; the error still says what happened
    assert_one_line_error(result, "cut.mp4", "truncated", output_allowed=True)
    for line in result.stdout.splitlines():
        assert json.loads(line)["event_type"]


def test_a_broken_category_mapping_is_a_one_line_error(tmp_path):
    categories = tmp_path / "categories.yaml"
    categories.write_text("event_types:\n  dust: [\n")
    settings = tmp_path / "patrol.yaml"
    settings.write_text(yaml.safe_dump({"cases": {"categories_file": str(categories)}}))
    assert_one_line_error(patrol("--config", settings, "analyze", VIDEO), "categories.yaml", "not valid YAML")


def test_a_broken_handling_file_stops_serve_with_a_one_line_error(tmp_path):
    handling = tmp_path / "handling.yaml"
    handling.write_text("management_after: 0\n")
    settings = tmp_path / "patrol.yaml"
    settings.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"),
                                        "cases": {"handling_file": str(handling)}}))
    assert_one_line_error(patrol("--config", settings, "serve"), "handling.yaml", "management_after",
                          "at least 1")


def test_the_help_says_where_snapshots_go():
    r = patrol("analyze", "--help")
    assert r.returncode == 0 and "DATA_DIR/analyze/" in " ".join(r.stdout.split())


@pytest.mark.skipif(not WEIGHTS.exists(), reason=f"needs the detector weights {WEIGHTS}")
def test_snapshots_go_under_the_data_folder(tmp_path):
    env = {k: v for k, v in os.environ.items() if not (k.startswith("PATROL_") or k in ("REDIS_URL", "DATABASE_URL"))}
    env["PATROL_DATA_DIR"] = str(tmp_path / "data")
    r = subprocess.run([*PATROL, "analyze", "--json", str(VIDEO)], capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows, "the sample gave no case"
    for row in rows:
        snapshot = Path(row["snapshot"])
        assert snapshot.is_file() and snapshot.is_relative_to(tmp_path / "data" / "analyze" / VIDEO.stem), snapshot
