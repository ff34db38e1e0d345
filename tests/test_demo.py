"""`patrol demo` brings the product up on a fresh data folder, and within two minutes
the API lists draft cases of all three event types, each with a snapshot."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "patrol-v1.pt"

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_demo_lists_cases_of_all_three_types(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}  # embedded defaults
    proc = subprocess.Popen([sys.executable, "-m", "patrol.cli", "demo", "--port", str(port), "--data-dir",
                             str(tmp_path / "demo")], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    types: set[str] = set()
    cases: list[dict] = []
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and types != {"street_vending", "illegal_construction", "dust"}:
            assert proc.poll() is None, f"demo exited early:\n{proc.stdout.read()}"
            time.sleep(3)
            try:
                cases = httpx.get(f"{base}/api/v1/cases", params={"limit": 200}, timeout=5).json()["items"]
            except httpx.HTTPError:
                continue
            types = {c["event_type"] for c in cases}
        assert types == {"street_vending", "illegal_construction", "dust"}, f"after 120 s: {types}"
        for case in cases:
            snap = httpx.get(base + case["snapshot_url"], timeout=5)
            assert snap.status_code == 200 and snap.headers["content-type"] == "image/jpeg"
        sources = httpx.get(f"{base}/api/v1/sources", timeout=5).json()["items"]
        assert len(sources) == 7
        assert {s["state"] for s in sources} & {"live", "connecting"}, sources
        page = httpx.get(base + "/", timeout=5)
        assert page.status_code == 200 and cases[0]["case_no"] in page.text
        assert httpx.get(f"{base}/health", timeout=5).json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
