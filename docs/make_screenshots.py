"""Regenerate the console screenshots in docs/ from a real `patrol demo` run.

    .venv/bin/python docs/make_screenshots.py [--out docs] [--timeout 240]

Starts the demo on a fresh data folder and a free port (embedded Redis, SQLite, the
worker over the seven sample videos, the case builder, the API), waits until draft
cases of all three event types exist and the sources report live, then logs in as
the demo analyst in Debian's Chromium (Playwright) and photographs the console with
the keyboard: the queue with a case's evidence, the evidence viewer, the reject
chooser, the help overlay, and the source status page. Nothing is staged or faked.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from PIL import Image  # Pillow comes with ultralytics
from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "screenshots-only"
TYPES = {"street_vending", "illegal_construction", "dust"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_cases(base: str, deadline: float) -> None:
    with httpx.Client(base_url=base, timeout=5) as api:
        while time.monotonic() < deadline:
            try:
                if api.post("/api/v1/auth/login", json={"username": "demo", "password": PASSWORD}).status_code == 200:
                    cases = api.get("/api/v1/cases", params={"limit": 200}).json()["items"]
                    states = {s["state"] for s in api.get("/api/v1/sources").json()["items"]}
                    if {c["event_type"] for c in cases} == TYPES and "live" in states:
                        return
            except httpx.HTTPError:
                pass
            time.sleep(3)
    raise SystemExit("the demo did not show cases of all three types in time")


def photograph(base: str, out: Path) -> list[Path]:
    shots = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1440, "height": 960})
        kb = page.keyboard

        def shot(name: str) -> None:
            page.wait_for_timeout(600)  # let pictures and the clip's first frame paint
            path = out / f"console-{name}.png"
            page.screenshot(path=str(path))
            # 256 colours, dithered: a third of the bytes, and no difference that matters in docs
            picture = Image.open(path).convert("RGB")
            picture.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG).save(
                path, optimize=True)
            shots.append(path)

        page.goto(base + "/")
        kb.type("demo")
        kb.press("Tab")
        kb.type(PASSWORD)
        kb.press("Enter")
        page.wait_for_url(base + "/")
        page.wait_for_selector("#case")
        # walk down to an illegal-construction draft: its view before shows the place without the structure
        for _ in range(len(page.query_selector_all("#items .item"))):
            if page.get_attribute("#case", "data-event-type") == "illegal_construction":
                break
            before = page.get_attribute("#case", "data-id")
            kb.press("j")
            page.wait_for_function(f"() => document.querySelector('#case').dataset.id !== '{before}'", timeout=5000)
        page.wait_for_selector("#case video")
        shot("queue")
        kb.press("e")
        page.wait_for_selector("#viewer img")
        shot("evidence")
        kb.press("Escape")
        kb.press("r")
        page.wait_for_selector("#reasons")
        shot("reject")
        kb.press("Escape")
        kb.press("?")
        page.wait_for_selector("table.keys")
        shot("help")
        kb.press("Escape")
        page.goto(base + "/sources")
        page.wait_for_selector("table.sources")
        shot("sources")
        browser.close()
    return shots


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "docs"), help="folder for console-*.png (default: docs/)")
    ap.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the demo's cases")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL", "PATROL_CONFIG")}
    env["PATROL_AUTH__DEMO_PASSWORD"] = PASSWORD
    with tempfile.TemporaryDirectory(prefix="patrol-shots-") as data:
        demo = subprocess.Popen([sys.executable, "-m", "patrol.cli", "demo", "--port", str(port), "--data-dir", data],
                                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for_cases(f"http://127.0.0.1:{port}", time.monotonic() + args.timeout)
            for path in photograph(f"http://127.0.0.1:{port}", out):
                print(path)
        finally:
            demo.send_signal(signal.SIGINT)
            try:
                demo.wait(timeout=30)
            except subprocess.TimeoutExpired:
                demo.kill()
    return 0


if __name__ == "__main__":
    sys.exit(main())
