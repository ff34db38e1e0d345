"""The console shows a case's 721 hint and its place's history, and approves with the
handling the analyst keeps or changes, by keys alone: a real browser (Playwright driving
Debian's Chromium) on a real uvicorn server over a real store (cases from the real builder)."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from auth_helpers import make_user
from cases.place_history import approve
from feed_helpers import T0, make_event
from core.settings import Settings
from core.wiring import Parts
from streams.sources import load_registry
from webhook_receiver import free_port

CONFIG = Path(__file__).resolve().parents[1] / "config"
CHROMIUM = Path("/usr/bin/chromium")
ANALYST, PASSWORD = "analyst.zhao", "hint-by-keys-only"
EAST_GATE = (30.6000, 114.3000)  # fixed-east-gate in the demo registry

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture
def served(tmp_path):
    """Two approved street-vending cases at the East Gate and a third draft there; a server over them."""
    parts = Parts(Settings(data_dir=tmp_path / "data"))  # SQLite, with the city's grid
    cases = [parts.builder.apply(make_event(start=T0 + day * 86_400, lat=EAST_GATE[0], lon=EAST_GATE[1]), "fixed")
             for day in range(3)]
    for case in cases[:2]:
        approve(parts.store, parts.handling, case.id, "analyst.li")
    make_user(parts, ANALYST, "analyst", PASSWORD)
    app = create_app(parts, bus=None, registry=load_registry(CONFIG / "demo_sources.yaml"))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield {"base": f"http://127.0.0.1:{port}", "parts": parts, "cases": cases}
    finally:
        server.should_exit = True
        thread.join(10)
        parts.store.close()


def test_the_console_shows_the_hint_and_approves_with_the_chosen_handling(served, tmp_path):
    base, parts, (first, second, third) = served["base"], served["parts"], served["cases"]
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 960})
            errors = []
            page.on("pageerror", lambda err: errors.append(str(err)))
            kb = page.keyboard
            page.goto(base + "/")
            page.wait_for_url("**/login?next=%2F")
            page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")
            kb.type(ANALYST)
            kb.press("Tab")
            kb.type(PASSWORD)
            kb.press("Enter")
            page.wait_for_url(base + "/")

            # the draft queue holds the third case; its detail shows the hint and the place's history
            page.wait_for_selector(f'#case[data-id="{third.id}"]')
            handling = page.inner_text("#handling")
            assert "管理（责令整改）" in handling and "management" in handling
            assert page.inner_text("#handling .history-count") == "2"
            china = timezone(timedelta(hours=8))
            rows = page.eval_on_selector_all("#handling .place-history li", "ls => ls.map(l => l.innerText)")
            assert len(rows) == 2
            for row, earlier in zip(rows, (second, first)):  # newest first: number, date in China time, outcome
                assert earlier.case_no in row
                assert datetime.fromtimestamp(earlier.first_seen, china).strftime("%Y-%m-%d %H:%M") in row
                assert "已确认 Approved" in row and "服务（劝导）" in row
            assert "approve: 管理（责令整改）" in page.inner_text("#case .keys-hint")
            page.screenshot(path=str(tmp_path / "console-handling.png"))

            # a: the approve dialog opens on the suggestion; ↓ and Enter choose enforcement instead
            kb.press("a")
            page.wait_for_selector("#overlay:not([hidden]) #handlings li.active")
            assert page.get_attribute("#handlings li.active", "data-handling") == "management"
            assert "suggested" in page.inner_text("#handlings li.active")
            kb.press("ArrowDown")
            assert page.get_attribute("#handlings li.active", "data-handling") == "enforcement"
            kb.press("Enter")
            deadline = time.monotonic() + 10
            while parts.store.get_case(third.id).status != "approved":
                assert time.monotonic() < deadline, "the case was not approved"
                time.sleep(0.1)
            details = parts.store.approval(third.id)
            assert (details["handling"], details["hint"], details["history_count"]) == ("enforcement", "management", 2)
            page.wait_for_selector(f'#items .item[data-id="{third.id}"]', state="detached")
            assert errors == []
        finally:
            browser.close()
