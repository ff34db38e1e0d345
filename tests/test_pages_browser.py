"""What a new user meets on the pages, in a real browser (Playwright driving Debian's Chromium).

Real parts, no pipeline: a SQLite store filled through the case builder, a private
database on the local Redis server, the demo's registry, real logins, and the app
served by uvicorn on a socket. Each test logs in as the person it is about: an
operator lands on the uploads page and never sees the review tab; the evidence keys
keep their meaning when a view is missing; names are Chinese; times are China time;
the map labels cells and shows the camera; moving sources show their last fix.
"""
from __future__ import annotations

import threading
import time
from contextlib import contextmanager
from datetime import timezone
from pathlib import Path

import pytest
import uvicorn

from api.app import create_app
from auth_helpers import PASSWORD, make_user
from cases.store import CHINA_TZ
from core.settings import Settings
from core.wiring import Parts
from streams.sources import load_registry
from test_bus import private_redis_db, redis_unreachable, wait_for
from test_console_api import EAST_GATE, T0, XINHUA, event
from workers.bus import Bus
from test_console_browser import browser  # noqa: F401  (fixture: Debian's Chromium through Playwright)

CONFIG = Path(__file__).resolve().parents[1] / "config"
CHROMIUM = Path("/usr/bin/chromium")

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright (the dev extra) is not installed")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="Debian's chromium is not installed")


@contextmanager
def served(app):
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 20, "uvicorn started")
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def bus():
    if redis_unreachable():
        pytest.skip(redis_unreachable())
    with private_redis_db() as url:
        b = Bus.connect(url)
        yield b
        b.r.close()


@pytest.fixture
def site(tmp_path, bus):
    """The app over a store with two drafts (one without views before/after), two users."""
    parts = Parts(Settings(data_dir=tmp_path / "data"), db_url=f"sqlite:///{tmp_path / 'cases.db'}")
    registry = load_registry(CONFIG / "demo_sources.yaml")
    registry.get("fixed-east-gate").heading = 90.0  # looks east
    make_user(parts, "wang", "analyst")
    make_user(parts, "pilot-li", "operator")
    cases = [parts.builder.apply(event("fixed-east-gate", "street_vending", EAST_GATE, T0), "fixed"),
             parts.builder.apply(event("fixed-xinhua-rd", "illegal_construction", XINHUA, T0 + 60, 0.9, views=False),
                                 "fixed")]
    app = create_app(parts, bus=bus, registry=registry)
    with served(app) as base:
        yield {"base": base, "parts": parts, "bus": bus, "registry": registry, "cases": cases}
    parts.store.close()


def log_in(browser, base: str, user: str, start: str = "/"):
    page = browser.new_page(viewport={"width": 1440, "height": 960})
    page.errors = []
    page.on("pageerror", lambda err: page.errors.append(str(err)))
    page.goto(base + start)
    page.wait_for_url("**/login?next=**")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button")
    return page


def tabs(page) -> list[str]:
    return page.eval_on_selector_all("header.top nav a", "xs => xs.map(a => a.getAttribute('href'))")


def test_each_role_lands_on_its_own_page_and_sees_only_its_tabs(site, browser):
    base = site["base"]
    op = log_in(browser, base, "pilot-li")
    op.wait_for_url(base + "/uploads")  # not the review page's JSON refusal
    op.wait_for_selector("#form")
    assert tabs(op) == ["/uploads", "/sources"]

    # the review page, typed in by hand: a readable page that links to what the operator may use
    response = op.goto(base + "/")
    assert op.url == base + "/uploads" and response.status == 200  # the start page is the role's own
    assert op.request.get(base + "/ui/queue").status == 403  # the console's fragments: JSON, for its script

    # an analyst sent to the uploads page: HTML that says why and links to the analyst's own pages
    analyst = log_in(browser, base, "wang", "/uploads")
    analyst.wait_for_url(base + "/uploads")
    assert analyst.inner_text("main").startswith("无权访问")
    assert "needs admin or operator" in analyst.inner_text("main")
    assert analyst.eval_on_selector_all("main a", "xs => xs.map(a => a.getAttribute('href'))")[:2] == ["/", "/sources"]
    assert tabs(analyst) == ["/", "/sources"]
    analyst.click("main a[href='/']")
    analyst.wait_for_selector("#case")
    assert not op.errors and not analyst.errors


def test_evidence_keys_keep_their_meaning_names_are_chinese_and_badges_stay_on_one_line(site, browser):
    parts, base = site["parts"], site["base"]
    no_views, with_views = site["cases"][1], site["cases"][0]  # newest first in the queue
    parts.store.approve(with_views.id, "wang")  # a reviewed case: its badge is the longer one
    page = log_in(browser, base, "wang", "/?status=")
    page.wait_for_selector("#case")
    kb = page.keyboard
    assert int(page.eval_on_selector("#case", "c => c.dataset.id")) == no_views.id

    # names from config/categories.yaml: the event type and the object, not raw class names
    caption = page.inner_text("figure.snapshot figcaption")
    assert "私搭乱建" in caption and "彩钢棚" not in caption  # this draft's label is "stall" (hand-made)
    assert "流动摊位" in caption and "stall:" not in caption and "illegal_construction" not in caption

    # the case without before/after/clip: 3 is "after" and says it is missing; 4 is the clip, missing too
    kb.press("e")
    page.wait_for_selector("#viewer")
    assert page.eval_on_selector_all("#viewer .tabs span", "xs => xs.map(x => x.textContent)") == \
        ["1 snapshot", "2 before", "3 after", "4 clip"]
    kb.press("3")
    assert page.inner_text("#viewer .tabs .on") == "3 after"
    assert "no later view" in page.inner_text("#viewer .missing")
    kb.press("4")
    assert page.inner_text("#viewer .tabs .on") == "4 clip" and "no clip" in page.inner_text("#viewer .missing")
    kb.press("1")
    page.wait_for_selector("#viewer img")
    kb.press("Escape")

    # the case with every view: 4 plays the clip
    kb.press("j")
    page.wait_for_function(f"document.querySelector('#case').dataset.id === '{with_views.id}'")
    kb.press("e")
    kb.press("4")
    page.wait_for_selector("#viewer video")
    kb.press("Escape")

    # every queue item's case number sits on one line, whole
    for item in page.query_selector_all("#items .item"):
        b = item.query_selector(".line1 b")
        box, size = b.bounding_box(), b.evaluate("b => parseFloat(getComputedStyle(b).fontSize)")
        assert box["height"] < 2 * size and b.evaluate("b => b.scrollWidth <= b.clientWidth + 1"), b.inner_text()
    assert page.query_selector("#items .item .badge.approved")
    assert not page.errors


def test_the_uploads_page_shows_china_time_whatever_the_browsers_zone(site, browser):
    parts, base = site["parts"], site["base"]
    flight = parts.flights.create(id="f" * 20, owner="pilot-li", video_name="DJI_0042.MP4", video_size=10,
                                  video_sha256="0" * 64, srt_name=None, srt_size=None, srt_sha256=None)
    context = browser.new_context(timezone_id="America/New_York")  # a browser far from the city
    page = context.new_page()
    page.goto(base + "/uploads")
    page.fill("input[name=username]", "pilot-li")
    page.fill("input[name=password]", PASSWORD)
    page.click("button")
    page.wait_for_url(base + "/uploads")
    page.wait_for_function("document.getElementById('flights').textContent.includes('DJI_0042')")
    created = flight.created_at if flight.created_at.tzinfo else flight.created_at.replace(tzinfo=timezone.utc)
    shown = page.inner_text("#flights tr td:last-child")
    assert shown == created.astimezone(CHINA_TZ).strftime("%Y-%m-%d %H:%M:%S")
    assert "北京时间" in page.inner_text("thead")
    context.close()


def test_the_sources_page_shows_each_moving_sources_last_fix_and_its_age(site, browser):
    """The fix travels as workers report it: a dict under "fix" in the source's state on Redis."""
    bus, base, now = site["bus"], site["base"], time.time()
    bus.set_source_states({
        "vehicle-01": {"state": "live", "worker": "w1",
                       "fix": {"lat": 30.5951, "lon": 114.2903, "t": now - 12, "age_s": 12.0, "suspect": False}},
        "mobile-officer-017": {"state": "live", "worker": "w1",  # the phone's fix is five minutes old, and suspect
                               "fix": {"lat": 30.6031, "lon": 114.2981, "t": now - 300, "age_s": 300.0,
                                       "suspect": True}},
        "fixed-east-gate": {"state": "live", "worker": "w1"},  # a fixed camera: no fix
    })
    page = log_in(browser, base, "wang", "/sources")
    page.wait_for_url(base + "/sources")
    items = {r["id"]: r for r in page.request.get(base + "/api/v1/sources").json()["items"]}
    assert items["vehicle-01"]["fix"]["lat"] == 30.5951 and items["mobile-officer-017"]["fix"]["suspect"] is True

    markers = page.eval_on_selector_all("#sourcesmap .fix-marker", """gs => gs.map(g => ({
        id: g.dataset.source, stale: g.classList.contains('stale'), suspect: g.classList.contains('suspect'),
        text: g.querySelector('text').textContent}))""")
    assert sorted(m["id"] for m in markers) == ["mobile-officer-017", "vehicle-01"]
    vehicle = next(m for m in markers if m["id"] == "vehicle-01")
    phone = next(m for m in markers if m["id"] == "mobile-officer-017")
    assert vehicle["text"] == "vehicle-01 · 12 s ago" and not vehicle["stale"] and not vehicle["suspect"]
    assert phone["text"] == "mobile-officer-017 · 5 min ago" and phone["stale"] and phone["suspect"]
    # the marker sits inside the map, over the cell of its point
    box, dot = page.locator("#sourcesmap").bounding_box(), page.locator(
        "#sourcesmap .fix-marker[data-source='vehicle-01'] circle").bounding_box()
    assert box["x"] <= dot["x"] <= box["x"] + box["width"] and box["y"] <= dot["y"] <= box["y"] + box["height"]

    row = page.inner_text("tr[data-source='vehicle-01'] td.fix")
    assert "30.59510, 114.29030" in row and "12 s ago" in row
    assert page.eval_on_selector("tr[data-source='mobile-officer-017'] td.fix", "td => td.classList.contains('stale')")
    assert "suspect" in page.inner_text("tr[data-source='mobile-officer-017'] td.fix")
    assert page.inner_text("tr[data-source='fixed-east-gate'] td.fix").strip() == "—"
    assert not page.errors


def test_the_case_map_labels_the_cells_and_shows_the_camera_and_fetches_nothing_else(site, browser):
    parts, base = site["parts"], site["base"]
    east_gate = site["cases"][0]
    page = log_in(browser, base, "wang", "/?status=&source_id=fixed-east-gate")
    hosts = set()
    page.on("request", lambda r: hosts.add(r.url.split("/")[2]))
    page.wait_for_selector("#gridmap")
    labels = page.eval_on_selector_all("#gridmap text.cell-label", "ts => ts.map(t => [t.dataset.code, t.textContent])")
    cells = page.eval_on_selector_all("#gridmap path.cell", "ps => ps.map(p => p.dataset.code)")
    assert len(cells) > 4 and sorted(code for code, _ in labels) == sorted(cells)  # the cell and its neighbours
    assert all(text == code[9:] for code, text in labels)
    assert page.text_content("#gridmap text.cell-label.marked") == east_gate.grid[9:]

    # the camera where the registry puts it, its view a wedge to the east (heading 90°)
    cam = page.locator("#camera rect").bounding_box()
    cone = page.locator("#camera .cone").bounding_box()
    assert cone["x"] + cone["width"] / 2 > cam["x"] + cam["width"]  # east of the camera
    assert abs((cone["y"] + cone["height"] / 2) - (cam["y"] + cam["height"] / 2)) < cam["height"]
    assert page.get_attribute("#camera", "data-heading") == "90.0"
    assert page.query_selector("#gridmap image") is None  # no basemap configured: no tiles ...
    assert hosts == {base.split("/")[2]}  # ... and nothing asked of any other server
    assert not page.errors
