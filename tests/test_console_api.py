"""The console's server side over real parts (SQLite and PostgreSQL stores, the city's
grid, real logins): its pages and fragments, every piece of evidence, merge and
move, the grid lookup, and the server-sent event stream on a real uvicorn server."""
from __future__ import annotations

import re
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
import uvicorn
from fastapi.testclient import TestClient

from api.app import create_app
from api.routers import review
from auth_helpers import bearer, client_as, make_user
from db_fixtures import db_url  # noqa: F401  (fixture)
from core.settings import Settings
from core.wiring import Parts
from streams.sources import load_registry
from vision.events import Event
from vision.evidence import draw_snapshot, make_clip, thumbnail
from webhook_receiver import free_port

CONFIG = Path(__file__).resolve().parents[1] / "config"
T0 = 1_780_000_000.0
EAST_GATE = (30.6000, 114.3000)  # fixed-east-gate in the demo registry
XINHUA = (30.5900, 114.3100)


def picture(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (360, 640, 3), dtype=np.uint8)


def event(source: str, event_type: str, at: tuple[float, float], start: float, conf: float = 0.8,
          views: bool = True) -> Event:
    seed = int(start) % 1000
    frames = [thumbnail(picture(seed + i)) for i in range(3)]
    return Event(event_id=uuid.uuid4().hex, source_id=source, event_type=event_type, state="opened", start=start,
                 last_seen=start + 40, confidence=conf, bbox=(100.0, 200.0, 300.0, 400.0), label="stall",
                 zone=None, revision=1, hits=3, samples=5, lat=at[0], lon=at[1], model_version="patrol-test",
                 trace=["stall in view for 40 s, seen in 3 of 5 samples"],
                 snapshot=draw_snapshot(picture(seed), (50, 100, 150, 200), f"{event_type}: stall {conf:.2f}"),
                 before=frames[0] if views else None, before_ts=start - 2 if views else None,
                 after=frames[2] if views else None, after_ts=start + 40 if views else None,
                 clip=make_clip(frames) if views else None)


@pytest.fixture
def parts(db_url, tmp_path):
    p = Parts(Settings(data_dir=tmp_path / "data"), db_url=db_url)  # with the city's 945 grid cells
    yield p
    p.store.close()


@pytest.fixture
def app(parts):
    return create_app(parts, bus=None, registry=load_registry(CONFIG / "demo_sources.yaml"))


@pytest.fixture
def drafts(parts):
    """Three drafts: two street vending (one without evidence views), one illegal construction."""
    made = [parts.builder.apply(event("fixed-east-gate", "street_vending", EAST_GATE, T0), "fixed"),
            parts.builder.apply(event("fixed-xinhua-rd", "illegal_construction", XINHUA, T0 + 3600, 0.9), "fixed"),
            parts.builder.apply(event("vehicle-01", "street_vending", (30.5950, 114.2900), T0 + 7200, 0.6,
                                      views=False), "vehicle")]
    assert all(made) and len({c.id for c in made}) == 3
    return made


@pytest.fixture
def analyst(app):
    with client_as(app, "analyst", "analyst.wang") as c:
        yield c


# ---------------------------------------------------------------- evidence


def test_evidence_lists_and_serves_every_piece(analyst, drafts, parts):
    case = drafts[0]
    r = analyst.get(f"/api/v1/cases/{case.id}/evidence")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["snapshot"]["url"] == f"/api/v1/cases/{case.id}/snapshot"
    assert {i["kind"] for i in body["items"]} == {"before", "after", "clip"}
    assert body["before"]["ts"] == T0 - 2 and body["after"]["ts"] == T0 + 40
    clip = analyst.get(body["clip"]["url"])
    assert clip.status_code == 200 and clip.headers["content-type"] == "video/mp4" and clip.content[4:8] == b"ftyp"
    before = analyst.get(body["before"]["url"])
    assert before.headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(before.content, np.uint8), cv2.IMREAD_COLOR) is not None
    # an item id of another case is not this case's evidence
    other = drafts[1]
    assert analyst.get(body["clip"]["url"].replace(f"/cases/{case.id}/", f"/cases/{other.id}/")).status_code == 404
    bare = analyst.get(f"/api/v1/cases/{drafts[2].id}/evidence").json()
    assert bare["items"] == [] and bare["clip"] is None and bare["snapshot"] is not None
    assert analyst.get("/api/v1/cases/999999/evidence").status_code == 404


def test_evidence_merge_and_move_need_an_analyst(app, drafts):
    case = drafts[0]
    with TestClient(app) as anonymous:
        assert anonymous.get(f"/api/v1/cases/{case.id}/evidence").status_code == 401
        assert anonymous.post(f"/api/v1/cases/{case.id}/merge", json={"other_id": drafts[1].id}).status_code == 401
        assert anonymous.get("/api/v1/grid/at", params={"lat": 30.6, "lon": 114.3}).status_code == 401
        assert anonymous.get("/ui/queue").status_code == 401
        page = anonymous.get("/", follow_redirects=False)
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"
        assert anonymous.get("/sources", follow_redirects=False).status_code == 303
    with client_as(app, "operator") as operator:
        assert operator.post(f"/api/v1/cases/{case.id}/location", json={"lat": 30.6, "lon": 114.3}).status_code == 403
        assert operator.get("/sources").status_code == 200  # operators see the sources too


# ---------------------------------------------------------------- merge and move


def test_merge_through_the_api(analyst, drafts, parts):
    keep, other = drafts[0], drafts[2]
    r = analyst.post(f"/api/v1/cases/{keep.id}/merge", json={"other_id": other.id})
    assert r.status_code == 200, r.text
    assert r.json()["source_ids"] == ["fixed-east-gate", "vehicle-01"]
    gone = analyst.get(f"/api/v1/cases/{other.id}").json()
    assert (gone["status"], gone["review_reason"], gone["reviewer"]) == ("rejected", "duplicate", "analyst.wang")
    again = analyst.post(f"/api/v1/cases/{keep.id}/merge", json={"other_id": other.id})
    assert again.status_code == 409 and "already rejected" in again.json()["detail"]
    assert analyst.post(f"/api/v1/cases/{keep.id}/merge", json={"other_id": keep.id}).status_code == 422
    assert analyst.post(f"/api/v1/cases/{keep.id}/merge", json={}).status_code == 422
    assert analyst.post(f"/api/v1/cases/{keep.id}/merge",
                        json={"other_id": drafts[1].id, "actor": "someone.else"}).status_code == 422


def test_move_through_the_api_and_the_grid_lookup(analyst, drafts, parts):
    case = drafts[0]
    cell = parts.grid.codes[0]
    lat, lon = parts.grid.cell_center(cell)
    assert analyst.get("/api/v1/grid/at", params={"lat": lat, "lon": lon}).json()["grid"] == cell
    assert analyst.get("/api/v1/grid/at", params={"lat": 39.9, "lon": 116.4}).json()["grid"] is None
    assert analyst.get("/api/v1/grid/at", params={"lat": 91, "lon": 116.4}).status_code == 422
    r = analyst.post(f"/api/v1/cases/{case.id}/location", json={"lat": lat, "lon": lon})
    assert r.status_code == 200, r.text
    assert (r.json()["lat"], r.json()["lon"], r.json()["grid"]) == (lat, lon, cell)
    outside = analyst.post(f"/api/v1/cases/{case.id}/location", json={"lat": 39.9, "lon": 116.4})
    assert outside.status_code == 422 and "none of the city's 945 grid cells" in outside.json()["detail"]
    assert analyst.post(f"/api/v1/cases/{case.id}/location", json={"lat": "north", "lon": 1}).status_code == 422
    history = analyst.get(f"/api/v1/cases/{case.id}").json()["actions"]
    assert [(a["action"], a["actor"], a["details"]["to"]["grid"]) for a in history] == [
        ("relocate", "analyst.wang", cell)]


# ---------------------------------------------------------------- pages and fragments


def queue_ids(analyst, **params) -> list[int]:
    r = analyst.get("/ui/queue", params=params)
    assert r.status_code == 200, r.text
    return [int(x) for x in re.findall(r'class="item [^"]*" data-id="(\d+)"', r.text)]


def test_queue_fragment_filters_and_orders(analyst, drafts, parts):
    a, b, c = (d.id for d in drafts)
    assert queue_ids(analyst) == [c, b, a]  # drafts, newest first
    assert queue_ids(analyst, order="confidence") == [b, a, c]
    assert queue_ids(analyst, event_type="street_vending") == [c, a]
    assert queue_ids(analyst, source_id="fixed-xinhua-rd") == [b]
    assert queue_ids(analyst, grid=drafts[1].grid) == [b]
    assert queue_ids(analyst, grid=drafts[1].grid[:9]) == sorted(
        [d.id for d in drafts if d.grid and d.grid.startswith(drafts[1].grid[:9])], reverse=True)
    parts.store.approve(a, "analyst.wang")
    assert queue_ids(analyst) == [c, b]
    assert queue_ids(analyst, status="approved") == [a]
    assert queue_ids(analyst, status="") == [c, b, a]  # any status
    city_now = datetime.now(timezone(timedelta(hours=8)))
    later = (city_now + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    earlier = (city_now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M")
    assert queue_ids(analyst, status="", since=later) == []
    assert queue_ids(analyst, status="", since=earlier, until=later) == [c, b, a]
    assert analyst.get("/ui/queue", params={"since": "yesterday"}).status_code == 422
    assert analyst.get("/ui/queue", params={"grid": "east"}).status_code == 422


def test_console_page_and_case_detail(analyst, drafts, parts):
    page = analyst.get("/")
    assert page.status_code == 200
    text = page.text
    assert all(d.case_no in text for d in drafts)
    assert 'src="/ui/static/console.js"' in text and "analyst.wang" in text
    for cat in parts.taxonomy.categories():  # every category is a reclassification choice
        assert f'data-major="{cat.major}" data-minor="{cat.minor}"' in text
    case = drafts[1]
    detail = analyst.get(f"/ui/cases/{case.id}")
    assert detail.status_code == 200
    html = detail.text
    assert f'data-case-no="{case.case_no}"' in html and case.trace[0] in html
    assert f"/api/v1/cases/{case.id}/snapshot" in html
    evidence = analyst.get(f"/api/v1/cases/{case.id}/evidence").json()
    for kind in ("before", "after", "clip"):
        assert evidence[kind]["url"] in html
    assert "before the structure appeared" in html  # construction: the view before it stood there
    assert f'class="cell marked" data-code="{case.grid}"' in html and 'id="marker"' in html
    assert f"<code>{case.major}</code> {case.major_name}" in html
    assert analyst.get("/ui/cases/999999").status_code == 404
    no_views = analyst.get(f"/ui/cases/{drafts[2].id}").text
    assert "no clip" in no_views and "no view before" in no_views


def test_sources_page_and_static_files(analyst):
    page = analyst.get("/sources")
    assert page.status_code == 200 and 'data-source="fixed-east-gate"' in page.text
    table = analyst.get("/ui/sources").text
    assert table.count("<tr class=") == 7 and "unassigned 7" in table
    js = analyst.get("/ui/static/console.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert analyst.get("/ui/static/console.css").headers["content-type"].startswith("text/css")
    assert analyst.get("/ui/static/..%2Fapp.py").status_code == 404
    assert analyst.get("/ui/static/nothing.js").status_code == 404


# ---------------------------------------------------------------- live updates


@pytest.fixture
def server(app, monkeypatch):
    monkeypatch.setattr(review, "STREAM_POLL_S", 0.1)
    monkeypatch.setattr(review, "STREAM_MAX_S", 4.0)
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


def test_stream_tells_of_new_and_changed_cases(server, parts, drafts):
    make_user(parts, "analyst.li", "analyst")
    headers = bearer(parts, "analyst.li")
    seen: list[str] = []
    with httpx.stream("GET", f"{server}/api/v1/cases/stream", headers=headers, timeout=10) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        lines = r.iter_lines()
        assert next(lines) == "retry: 3000"
        new = parts.builder.apply(event("fixed-site-7", "dust", (30.605, 114.285), T0 + 9000), "fixed")
        for line in lines:
            seen.append(line)
            if line.startswith("data:"):
                break
        parts.store.approve(drafts[0].id, "analyst.li")
        for line in lines:
            seen.append(line)
            if line.startswith("data:") and len(seen) > 3:
                break
    events = [line for line in seen if line.startswith(("event:", "data:"))]
    assert events[0] == "event: cases" and f'"id": {new.id}' in events[1] and '"status": "draft"' in events[1]
    assert f'"id": {drafts[0].id}' in events[3] and '"status": "approved"' in events[3]
    assert httpx.get(f"{server}/api/v1/cases/stream", timeout=5).status_code == 401


def test_stream_ends_when_the_server_stops(server, app, parts):
    # patrol serve hangs its stop event on the app; an open console must not hold up a shutdown
    stopping = threading.Event()
    app.state.stopping = stopping
    make_user(parts, "analyst.li", "analyst")
    with httpx.stream("GET", f"{server}/api/v1/cases/stream", headers=bearer(parts, "analyst.li"), timeout=10) as r:
        lines = r.iter_lines()
        assert next(lines) == "retry: 3000"
        stopping.set()
        started = time.monotonic()
        rest = list(lines)  # returns once the server ends the response
    assert time.monotonic() - started < 2.0 and not any(line.startswith("data:") for line in rest)


def test_case_detail_shows_the_721_hint_and_the_place_history(analyst, drafts, parts):
    first = drafts[0]
    assert analyst.post(f"/api/v1/cases/{first.id}/approve", json={"handling": "management"}).status_code == 200
    later = parts.builder.apply(event("fixed-east-gate", "street_vending", EAST_GATE, T0 + 86_400), "fixed")
    html = analyst.get(f"/ui/cases/{later.id}").text
    assert 'data-hint="enforcement"' in html and "建议 执法（立案） · enforcement" in html
    assert '<b class="history-count">1</b>' in html
    # the earlier case: its number, its date in China time, its outcome
    seen = datetime.fromtimestamp(T0, timezone(timedelta(hours=8))).strftime("%Y-%m-%d %H:%M")
    assert re.search(rf'<li class="counted" data-case-id="{first.id}"><b>{first.case_no}</b> · {seen}\s+'
                     r"· 已确认 Approved · 管理（责令整改） · 0 m</li>", html), html
    # the approved case's own record says what was chosen and what was suggested
    mine = analyst.get(f"/ui/cases/{first.id}").text
    assert "已选 chosen: <b class=\"chosen\">管理（责令整改） · management</b>" in mine
    assert "approve</b> · 管理（责令整改） (suggested 服务（劝导）)" in mine


def test_the_maps_draw_the_citys_basemap_when_one_is_set(db_url, tmp_path):
    from core.settings import UiSettings

    url = "https://tiles.city.example/{z}/{x}/{y}.png"
    p = Parts(Settings(data_dir=tmp_path / "data", ui=UiSettings(map_tiles_url=url)), db_url=db_url)
    case = p.builder.apply(event("fixed-east-gate", "street_vending", EAST_GATE, T0), "fixed")
    app = create_app(p, bus=None, registry=load_registry(CONFIG / "demo_sources.yaml"))
    with client_as(app, "admin", "chief") as admin:
        detail = admin.get(f"/ui/cases/{case.id}").text
        upload = admin.get("/uploads").text
    for html in (detail, upload):
        hrefs = re.findall(r'<image class="tile" href="([^"]+)"', html)
        assert hrefs and all(re.fullmatch(r"https://tiles\.city\.example/\d+/\d+/\d+\.png", h) for h in hrefs)
        assert "over-tiles" in html
    p.store.close()
