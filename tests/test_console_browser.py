"""The review console in a real browser (Playwright driving Debian's Chromium).

Everything is real: the pipeline fills a fresh SQLite store from three sample
videos, ``patrol serve`` runs the API and the webhook delivery loop in its own
process, an analyst logs in through /login, and a webhook receiver started here
checks the signature of what arrives. The analyst works with the keyboard alone:
next/previous, the help overlay, the evidence viewer (whose H.264 clip must play),
approve, reject as a false alarm, reclassify, merge and move a draft. A fourth
video analysed while the page is open must show up in the queue without a reload.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from auth_helpers import make_user
from cases.signing import verify_signature
from feed_helpers import SECRET
from core.analyze import analyze_video, load_zones
from core.settings import load_settings
from core.wiring import Parts
from streams.frame import GeoPoint
from streams.placement import View
from streams.sources import load_registry
from webhook_receiver import Receiver, free_port
from vision.detector import DEFAULT_WEIGHTS

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
MODEL = DEFAULT_WEIGHTS
SAMPLES = ROOT / "sample_videos"
ANALYST, PASSWORD = "analyst.wang", "review-keys-only"

# sample video -> the demo registry's source that plays it (config/demo_sources.yaml)
FIRST = {"fixed_street_vending": "fixed-east-gate", "fixed_illegal_construction": "fixed-xinhua-rd",
         "fixed_dust": "fixed-site-7"}
LATER = ("vehicle_street_vending", "vehicle-01")  # analysed while the console is open

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed (.ci/run installs it)"),
    pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/"),
]


def analyze(parts: Parts, registry, clip: str, source_id: str) -> list[int]:
    src = registry.get(source_id)
    zones = SAMPLES / f"{clip}.zones.yaml"
    # placed as the demo places it: a fixed camera where it stands, a vehicle by its recorded track
    where = {"track": src.track, "view": View.of(src)} if src.track else {"location": GeoPoint(src.lat, src.lon)}
    result = analyze_video(parts, SAMPLES / f"{clip}.mp4", kind=src.kind, source_id=source_id,
                           zones=load_zones(zones) if zones.exists() else (), **where)
    assert result.cases, f"{clip} gave no case"
    return [c.id for c in result.cases]


@pytest.fixture
def stack(tmp_path):
    """A filled store, `patrol serve` over it, a webhook receiver and the parts to check results with."""
    receiver = Receiver(secret=SECRET).start()
    port = free_port()
    config = tmp_path / "patrol.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "sources": str(ROOT / "config" / "demo_sources.yaml"),
        "api": {"port": port},
        "webhooks": [{"name": "city-platform", "url": receiver.url, "secret": SECRET}],
        "delivery": {"poll_s": 0.5},
    }))
    settings = load_settings(config)
    parts = Parts(settings)
    registry = load_registry(settings.sources)
    first = [i for clip, source in FIRST.items() for i in analyze(parts, registry, clip, source)]
    make_user(parts, ANALYST, "analyst", PASSWORD)
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL")}
    env["PATROL_CONFIG"] = str(config)
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "patrol.cli", "serve", "--no-builder", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"patrol serve exited:\n{(tmp_path / 'serve.log').read_text()}"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "patrol serve did not answer within 60 s"
            time.sleep(0.3)
        yield {"base": base, "parts": parts, "registry": registry, "receiver": receiver, "first": first,
               "shots": Path(os.environ.get("PATROL_CONSOLE_SCREENSHOTS") or tmp_path / "shots")}
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        receiver.stop()
        parts.store.close()


@pytest.fixture
def browser():
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


def selected(page) -> dict:
    """The case in the detail pane, as the page says (waits for it to match the queue's selection)."""
    page.wait_for_function("""() => {
        const li = document.querySelector('#items .item.selected'), c = document.querySelector('#case');
        return li && c && li.dataset.id === c.dataset.id; }""")
    return page.eval_on_selector("#case", "c => ({...c.dataset})")


def wait_status(parts, case_id: int, status: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        case = parts.store.get_case(case_id)
        if case.status == status:
            return case
        time.sleep(0.1)
    raise AssertionError(f"case {case_id} is {parts.store.get_case(case_id).status}, not {status}, after {timeout} s")


def shot(page, stack, name: str) -> None:
    path = stack["shots"] / f"console-{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    assert path.stat().st_size > 20_000, f"{path} looks blank"


def test_an_analyst_reviews_the_queue_with_the_keyboard_alone(stack, browser):
    parts, base = stack["parts"], stack["base"]
    page = browser.new_page(viewport={"width": 1440, "height": 960})
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    kb = page.keyboard

    # -- log in through /login (the console sends us there), keys only
    page.goto(base + "/")
    page.wait_for_url("**/login?next=%2F")
    # autofocus lands after "load" on a busy machine: type only once the field holds the focus
    page.wait_for_function("document.activeElement && document.activeElement.name === 'username'")
    kb.type(ANALYST)  # the user name field has the focus
    kb.press("Tab")
    kb.type(PASSWORD)
    kb.press("Enter")
    page.wait_for_url(base + "/")
    page.wait_for_selector("#live.on", timeout=10_000)  # the server-sent event stream is open

    # -- the queue: the pipeline's three drafts, newest first; the first is selected
    queue = page.eval_on_selector_all("#items .item", "xs => xs.map(x => +x.dataset.id)")
    assert sorted(queue) == sorted(stack["first"]) and queue == sorted(queue, reverse=True)
    first = selected(page)
    assert int(first["id"]) == queue[0]
    kb.press("j")
    assert int(selected(page)["id"]) == queue[1]
    kb.press("k")
    assert int(selected(page)["id"]) == queue[0]

    # the detail shows the evidence: snapshot, the view before, the latest view, a clip, the trace, the map
    for sel in ("figure.snapshot img", "figure[data-view=before] img", "figure[data-view=after] img",
                "figure[data-view=clip] video", ".trace li", "#gridmap path.cell.marked", "#gridmap #marker"):
        assert page.query_selector(sel), f"the detail has no {sel}"
    assert "seen in" in page.inner_text(".trace")
    case0 = parts.store.get_case(queue[0])
    assert f"{case0.major}" in page.inner_text(".facts") and case0.minor_name in page.inner_text(".facts")
    assert page.get_attribute("#gridmap path.marked", "data-code") == case0.grid
    shot(page, stack, "queue")

    # -- help overlay on ?, closed with Esc
    kb.press("?")
    page.wait_for_selector("#overlay:not([hidden]) table.keys")
    shot(page, stack, "help")
    kb.press("Escape")
    page.wait_for_selector("#overlay", state="hidden")

    # -- evidence viewer on e; the clip (4th view) is H.264 that Chromium really decodes
    kb.press("e")
    page.wait_for_selector("#viewer img")
    shot(page, stack, "evidence")
    kb.press("4")
    page.wait_for_function("() => { const v = document.querySelector('#viewer video'); "
                           "return v && v.readyState >= 2 && v.videoWidth > 0; }", timeout=10_000)
    kb.press("Escape")

    # -- a fourth video analysed now: its draft appears without a reload
    [later] = analyze(parts, stack["registry"], *LATER)
    page.wait_for_selector(f'#items .item[data-id="{later}"]', timeout=15_000)
    assert int(selected(page)["id"]) == queue[0]  # the analyst's place is kept

    # -- approve (a, then a: with the suggested 721 handling): the case leaves the draft queue, the next is selected
    approved = selected(page)
    kb.press("a")
    page.wait_for_selector("#overlay:not([hidden]) #handlings li.active")
    kb.press("a")
    wait_status(parts, int(approved["id"]), "approved")
    assert parts.store.approval(int(approved["id"]))["handling"] == approved["hint"]
    page.wait_for_selector(f'#items .item[data-id="{approved["id"]}"]', state="detached")

    # -- reject as a false alarm (r, 1)
    rejected = selected(page)
    assert rejected["id"] != approved["id"]
    kb.press("r")
    page.wait_for_selector("#reasons")
    shot(page, stack, "reject")
    kb.press("1")
    case = wait_status(parts, int(rejected["id"]), "rejected")
    assert case.review_reason == "false_alarm" and case.reviewer == ANALYST
    # the store has it before the page does: wait for the queue to move on, as after approving
    page.wait_for_selector(f'#items .item[data-id="{rejected["id"]}"]', state="detached")

    # -- reclassify (c): type to filter the choices, Enter applies the first
    target = selected(page)
    new_type = next(t for t in ("dust", "illegal_construction", "street_vending") if t != target["eventType"])
    kb.press("c")
    page.wait_for_selector("#choice-filter:focus")
    kb.type(new_type.split("_")[0])
    kb.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#case').dataset.eventType === '{new_type}'")
    case = parts.store.get_case(int(target["id"]))
    assert case.event_type == new_type and case.status == "draft"
    assert (case.major, case.minor) == (parts.taxonomy.category_for(new_type, case.label).major,
                                        parts.taxonomy.category_for(new_type, case.label).minor)

    # -- merge (m, 1): the other remaining draft goes into this one
    drafts = {c.id for c in parts.store.list_cases(status="draft").items}
    assert drafts == {int(target["id"]), later}
    kb.press("m")
    page.wait_for_selector("#merge-list li[data-id]")
    shot(page, stack, "merge")
    kb.press("1")
    merged = wait_status(parts, later, "rejected")
    assert merged.review_reason == "duplicate" and merged.review_note == f"merged into {target['caseNo']}"
    page.wait_for_function("() => document.querySelectorAll('#case .history li').length >= 2")

    # -- edit the location (l): type a position in another grid cell, Enter saves
    cell = next(code for code in parts.grid.codes if code != case.grid)
    lat, lon = parts.grid.cell_center(cell)
    kb.press("l")
    page.wait_for_selector("#loc-lat:focus")
    kb.type(f"{lat:.6f}")  # the field's text is selected: typing replaces it
    kb.press("Tab")  # the next field's text is selected on a keyboard focus too
    kb.type(f"{lon:.6f}")
    page.wait_for_function(f"() => document.querySelector('#loc-grid').textContent === '{cell}'")
    kb.press("Enter")
    page.wait_for_function(f"() => document.querySelector('#case').dataset.grid === '{cell}'")
    moved = parts.store.get_case(int(target["id"]))
    assert moved.grid == cell and moved.status == "draft"

    # -- the approved case reached the platform's webhook, signed
    [request] = stack["receiver"].wait_for(1, timeout=30)
    body, headers = request["body"], request["headers"]
    assert verify_signature(SECRET, body, headers["X-Patrol-Timestamp"], headers["X-Patrol-Signature"])
    message = json.loads(body)
    assert message["event"] == "case.approved" and message["data"]["case_no"] == approved["caseNo"]
    assert message["data"]["approved_by"] == ANALYST
    assert message["data"]["handling"]["handling"] == message["data"]["handling"]["hint"] == approved["hint"]

    # -- the source status page lists every source of the registry
    page.goto(base + "/sources")
    rows = page.eval_on_selector_all("table.sources tbody tr", "rs => rs.map(r => r.dataset.source)")
    assert sorted(rows) == sorted(s.id for s in stack["registry"])
    shot(page, stack, "sources")
    assert not errors, f"errors in the page: {errors}"

