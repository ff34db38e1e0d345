"""The lean install: `pip install .` brings no torch, and the runtime (demo, serve, worker, analyze,
detect with the default export) runs without anything of the training extra. Each run goes
through tests/without_training_stack.py, where those packages cannot be imported at all."""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import av
import cv2
import httpx
import pytest

from vision.detector import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
LEAN = [sys.executable, str(ROOT / "tests" / "without_training_stack.py")]
TRAINING = {"torch", "torchvision", "ultralytics"}

needs_model = pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="default model not in models/")


def lean(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*LEAN, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)


def tried(run: subprocess.CompletedProcess | str) -> str:
    out = run if isinstance(run, str) else run.stdout
    return re.findall(r"^tried: (.*)$", out, re.M)[-1]


def still(clip: str, t: float, out: Path) -> Path:
    with av.open(str(ROOT / "sample_videos" / f"{clip}.mp4")) as c:
        for f in c.decode(video=0):
            if f.time >= t:
                cv2.imwrite(str(out), f.to_ndarray(format="bgr24"))
                return out
    raise AssertionError(f"no frame at {t} s in {clip}")


def _name(requirement: str) -> str:
    return re.split(r"[\s<>=!~\[;]", requirement, maxsplit=1)[0].lower()


def test_the_runtime_dependencies_hold_no_training_stack():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    runtime = {_name(r) for r in project["dependencies"]}
    extras = project["optional-dependencies"]
    assert not runtime & TRAINING, f"the runtime would install {runtime & TRAINING}"
    assert TRAINING <= {_name(r) for r in extras["train"]}
    assert "city-patrol[train]" in extras["dev"]  # make test installs everything
    pins = {_name(r): r for r in extras["train"]}
    assert (pins["torch"], pins["torchvision"]) == ("torch==2.14.1", "torchvision==0.29.1")  # from local disk


def test_every_runtime_module_imports_without_the_training_stack():
    run = lean("import-runtime")
    assert run.returncode == 0, run.stderr
    assert tried(run) == "none"


@needs_model
def test_detect_runs_the_default_export_without_the_training_stack(tmp_path):
    dust = still("fixed_dust", 20, tmp_path / "dust.jpg")
    run = lean("patrol", "detect", "--json", str(dust))
    assert run.returncode == 0, run.stderr
    row = json.loads(run.stdout.splitlines()[0])
    assert "dust" in row["events"] and "dust" in [d["label"] for d in row["detections"]]
    assert tried(run) == "none"


@needs_model
def test_analyze_finds_the_sample_clips_violation_without_the_training_stack(tmp_path):
    run = lean("patrol", "analyze", str(ROOT / "sample_videos" / "fixed_dust.mp4"), "--json",
               "--evidence", str(tmp_path / "evidence"))
    assert run.returncode == 0, run.stderr
    cases = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert "dust" in {c["event_type"] for c in cases}
    assert tried(run) == "none"


def test_pt_weights_without_the_training_extra_name_the_export_to_use(tmp_path):
    pt = tmp_path / "patrol.pt"
    pt.write_bytes(b"not read: ultralytics is missing")
    env = {**os.environ, "PATROL_MODEL__WEIGHTS": str(pt)}
    run = lean("patrol", "detect", str(tmp_path / "any.jpg"), env=env)  # the model loads first
    assert run.returncode == 2
    assert "pip install '.[train]'" in run.stderr and str(DEFAULT_WEIGHTS) in run.stderr, run.stderr


def test_lab_commands_without_the_training_extra_say_what_to_install(tmp_path):
    run = lean("patrol", "train", "--generate", "10", "--dataset-dir", str(tmp_path / "data"))
    assert run.returncode == 2
    assert run.stderr.strip() == "patrol: patrol train needs the training extra: pip install '.[train]' (missing torch)"
    assert not (tmp_path / "data").exists()  # said before rendering anything


@pytest.mark.slow
@needs_model
def test_demo_serves_cases_without_the_training_stack(tmp_path):
    """`patrol demo` is serve + worker + upload worker on the embedded Redis."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["PATROL_AUTH__DEMO_PASSWORD"] = password = "demo-password-for-tests"
    proc = subprocess.Popen([*LEAN, "patrol", "demo", "--port", str(port), "--data-dir", str(tmp_path / "demo")],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    cases: list = []
    try:
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not cases:
            assert proc.poll() is None, f"demo exited early:\n{proc.stdout.read()}"
            time.sleep(3)
            try:
                if client.post("/api/v1/auth/login", json={"username": "demo", "password": password}).is_success:
                    cases = client.get("/api/v1/cases").json()["items"]
            except httpx.HTTPError:
                continue
        assert cases, "no draft case after 120 s"
    finally:
        proc.send_signal(signal.SIGINT)
        out = proc.communicate(timeout=60)[0]
    assert tried(out) == "none", out
