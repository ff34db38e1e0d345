"""The capacity benchmark: its verdicts, its profile summary, and a short real run of both
sides (the product's worker and ultralytics' streaming prediction) on a few simulated
sources. Figures are not asserted here (benchmarks are not tests); their presence and
plausibility are."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.capacity import decode_costs, judge, rss_slope, summarize_profile
from core.settings import Settings
from tests.media_servers import require_ffmpeg

ROOT = Path(__file__).resolve().parents[1]


def _result(analysed: list[int], interval_s: float = 1.0, window_s: float = 60.0, lags=None) -> dict:
    return {"window_s": window_s, "per_source": [
        {"id": f"s{i}", "interval_s": interval_s, "analysed": a, **({"lags": lags[i]} if lags else {})}
        for i, a in enumerate(analysed)]}


def test_judge_requires_every_source_at_its_rate():
    assert judge(_result([60, 59, 57]))["sustained"]  # 57 >= 0.95 * 60 - 1
    v = judge(_result([60, 60, 55]))
    assert not v["sustained"] and v["sources_below_rate"] == 1 and "s2" in v["why"]
    assert v["min_rate_ratio"] == pytest.approx(55 / 60, abs=1e-3)
    assert judge(_result([30, 29], interval_s=2.0))["sustained"]
    assert not judge(_result([25], interval_s=2.0))["sustained"]


def test_judge_requires_lag_not_growing():
    steady = [0.2, 0.3, 0.2, 0.25, 0.3, 0.2, 0.25, 0.2, 0.3]
    growing = [0.2, 0.5, 0.9, 1.5, 2.0, 2.6, 3.1, 3.8, 4.4]
    assert judge(_result([60], lags=[steady]))["sustained"]
    v = judge(_result([60], lags=[growing]))
    assert not v["sustained"] and "lag grew" in v["why"] and v["lag_growth_max_s"] > 3


def test_judge_reports_a_failed_trial():
    assert judge({"error": "trial process failed"}) == {"sustained": False, "why": "trial process failed"}


def test_rss_slope():
    assert rss_slope([(0, 100), (60, 100), (120, 100)]) == 0
    assert rss_slope([(0, 100), (1800, 110), (3600, 120)]) == 20.0
    assert rss_slope([(0, 100)]) is None


def test_profile_summary_sorts_busy_samples_and_sets_waits_apart(tmp_path):
    raw = tmp_path / "raw.txt"
    raw.write_text("\n".join([
        "thread (1): reader:a;LiveReader._run (streams/live.py:236);LiveReader._read (streams/live.py:300);"
        "Sampler.push (streams/reader.py:289);Sampler._decode (streams/reader.py:300) 60",
        "thread (1): reader:a;LiveReader._read (streams/live.py:300);Sampler.push (streams/reader.py:289);"
        "Sampler._decode (streams/reader.py:300);Sampler._convert (streams/reader.py:327) 20",
        "thread (2): worker;PatrolWorker.step (workers/patrol.py:150);Pipeline.step (vision/pipeline.py:60);"
        "Detector.detect (vision/detector.py:60);RuntimeModel.predict (vision/runtime.py:44);"
        "forward (vision/runtime.py:62);InferRequest.infer (openvino/_ov_api.py:202) 90",
        "thread (2): worker;Pipeline.step (vision/pipeline.py:60);Detector.detect (vision/detector.py:60);"
        "RuntimeModel.predict (vision/runtime.py:40);letterbox (vision/runtime.py:97) 10",
        "thread (3): MainThread;_Watchdog._run (streams/live.py:9999);Condition.wait (threading.py:331) 500",
    ]))
    s = summarize_profile(raw)
    assert s["busy_samples"] == 180 and s["idle_samples"] == 500
    share = s["share_pct"]
    assert share["inference: model forward (OpenVINO / ONNX Runtime / torch)"] == pytest.approx(50.0, abs=0.1)
    assert share["inference: pre/post-processing (letterbox, NMS)"] == pytest.approx(5.6, abs=0.1)
    assert share["decode (PyAV / FFmpeg H.264)"] == pytest.approx(33.3, abs=0.1)
    assert share["scale + colour conversion"] == pytest.approx(11.1, abs=0.1)


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    require_ffmpeg()
    d = tmp_path_factory.mktemp("clips")
    for name, size in (("fixed_street_vending", "960x540"), ("mobile_street_vending", "540x960")):
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate=10", "-t", "4", "-c:v", "libx264", "-preset", "ultrafast",
                        "-pix_fmt", "yuv420p", str(d / f"{name}.mp4")], check=True, timeout=60)
    return d


def test_decode_costs_tell_a_key_frame_from_an_average_frame(clips):
    """testsrc2 at ultrafast: key frames every 250 frames cost more than the P-frames between."""
    (row,) = decode_costs([clips / "mobile_street_vending.mp4"], repeats=1)
    assert row["path"] == "mobile_street_vending.mp4" and row["fps"] == 10
    assert row["key_frame_kb"] > 0 and row["decode_key_ms"] > 0 and row["decode_all_ms"] > 0
    assert row["decode_key_ms"] > row["decode_all_ms"]


@pytest.mark.slow
def test_a_short_capacity_run_reports_both_sides(clips, tmp_path):
    """Two sources (a fixed camera's sub-stream and a phone) for a few seconds through the
    worker and through ultralytics, no search: the report carries every figure."""
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "patrol.cli", "bench", "capacity", "--mix", "city", "--transport", "file",
           "--sources", "2", "--seconds", "6", "--warmup", "3", "--samples", str(clips),
           "--cache", str(tmp_path / "cache"), "--out", str(out), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=ROOT)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads(r.stdout)
    assert json.loads(out.read_text()) == report
    assert report["mix"] == "city" and report["transport"] == "file" and report["machine"]["cores"] >= 1
    assert {m["profile"] for m in report["media"]} == {"sub360", "hd720", "main1080"}
    for m in report["media"]:
        assert m["fps"] == 25 and m["kbps"] > 0 and m["gop_s"] in (1.0, 2.0)

    pipe = report["pipeline"]
    assert len(pipe["trials"]) == 1 and pipe["trials"][0]["sources"] == 2
    trial = pipe["at_sustained"] or pipe["first_not_sustained"]
    assert trial["sources"] == 2 and trial["window_s"] >= 5.5
    assert trial["analysed"] > 0 and trial["samples_per_s"] > 0
    assert 0 < trial["cpu_cores"] <= (report["machine"]["cores"] or 1) + 0.5
    assert trial["decode_ms_per_sample"] > 0 and trial["inference_ms_per_sample"] > 0
    assert trial["rss_mb"] > trial["rss_base_mb"] > 50
    assert trial["model"].startswith(Settings().model.weights.stem)  # the configured default model
    assert trial["dropped"] >= 0 and trial["reconnects"] >= 0
    # the 4 s clips start again inside the 6 s window: a restart is not lag (it was once taken for 4 s of it)
    assert trial["verdict"]["lag_growth_max_s"] < 3

    base = report["ultralytics"]
    b = base["at_sustained"] or base["first_not_sustained"]
    assert not b.get("errors"), b.get("errors")
    assert b["sources"] == 2 and b["analysed"] > 0 and b["cpu_cores"] > 0
    assert set(b["predictors"]) == {"2s", "1s"}
    assert b["predictors"]["2s"]["vid_stride"] == 50 and b["predictors"]["1s"]["vid_stride"] == 25
    assert "FIFO" in base["how"]
    if pipe["sustained_sources"] and base["sustained_sources"]:
        assert report["ratio"] == pytest.approx(pipe["sustained_sources"] / base["sustained_sources"])
    if pipe["sustained_sources"]:
        assert report["city"]["machines_needed"] == -(-254 // pipe["sustained_sources"])


def test_bad_input_is_refused_in_one_line():
    for args, msg in ((["--seconds", "0"], "--seconds must be positive"),
                      (["--sources", "0"], "--sources must be at least 1")):
        r = subprocess.run([sys.executable, "-m", "patrol.cli", "bench", "capacity", *args], capture_output=True,
                           text=True, timeout=60, cwd=ROOT)
        assert r.returncode == 2 and msg in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "patrol.cli", "bench", "soak"], capture_output=True, text=True,
                       timeout=60, cwd=ROOT)
    assert r.returncode == 2 and "--sources" in r.stderr
