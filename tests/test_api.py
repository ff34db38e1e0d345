"""The HTTP face over real parts: the case store (SQLite and PostgreSQL), the
evidence store, the taxonomy, the demo registry and, where asked, Redis.

Cases are seeded the way the product makes them: hand-made events folded in by
the real ``CaseBuilder.apply``, with JPEG snapshots drawn by ``draw_snapshot``.
Requests are made by a logged-in analyst, ``li`` (who may use which route is
tested in test_roles.py; logging in itself in test_auth.py).
"""
from __future__ import annotations

import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from auth_helpers import client_as
from db_fixtures import db_url  # noqa: F401  (fixture)
from core.settings import CaseSettings, Settings
from core.wiring import Parts
from streams.sources import load_registry
from vision.events import Event
from vision.evidence import draw_snapshot

CONFIG = Path(__file__).resolve().parents[1] / "config"
REDIS_URL_TEST = os.environ.get("REDIS_URL_TEST", "redis://127.0.0.1:6379/9")
T0 = 1_764_000_000.0  # live sources report Unix seconds

# (source, kind, event type, label, confidence, zone, grid, with snapshot); an hour apart,
# far beyond the cooldown, so each is its own case
SEEDS = [
    ("fixed-east-gate", "fixed", "street_vending", "stall", 0.91, "East Gate pavement", "42011700200818", True),
    ("fixed-east-gate", "fixed", "street_vending", "goods", 0.55, "East Gate pavement", "42011700200818", True),
    ("fixed-xinhua-rd", "fixed", "illegal_construction", "steel_shed", 0.77, None, None, True),
    ("fixed-site-7", "fixed", "dust", "dust", 0.66, None, None, True),
    ("drone-01", "drone", "illegal_construction", "scaffold", 0.83, None, None, True),
    ("mobile-officer-017", "mobile", "street_vending", "umbrella", 0.48, None, None, False),
]


@pytest.fixture(scope="module")
def demo_registry():
    return load_registry(CONFIG / "demo_sources.yaml")


@pytest.fixture
def parts(db_url, tmp_path):
    # no grid polygons: a fixed camera's case takes the source's configured cell (the real path)
    settings = Settings(data_dir=tmp_path / "data", cases=CaseSettings(grid_file=None))
    p = Parts(settings, db_url=db_url)
    yield p
    p.store.close()  # before the schema is dropped


@pytest.fixture
def app(parts, demo_registry):
    return create_app(parts, bus=None, registry=demo_registry)


@pytest.fixture
def client(app):
    with client_as(app, "analyst", "li") as c:
        yield c


def make_event(source_id, event_type, label, confidence, start, zone=None, snapshot=True) -> Event:
    picture = np.random.default_rng(int(confidence * 100)).integers(0, 255, (360, 640, 3), dtype=np.uint8)
    box = (100, 200, 220, 330)
    return Event(
        event_id=uuid.uuid4().hex, source_id=source_id, event_type=event_type, state="opened",
        start=start, last_seen=start + 30, confidence=confidence, bbox=(300, 600, 660, 990), label=label,
        zone=zone, revision=1, hits=3, samples=5, evidence_ts=start + 10, model_version="patrol-test",
        trace=[f"{label} in view, seen in 3 of the last 5 samples (rule: at least 3 of 5)"],
        snapshot=draw_snapshot(picture, box, f"{event_type}: {label} {confidence:.2f}") if snapshot else None,
    )


def seed(parts) -> list[dict]:
    """The SEEDS as draft cases; returns one dict per case with its id and the JPEG stored."""
    out = []
    for i, (source, kind, etype, label, conf, zone, grid, snap) in enumerate(SEEDS):
        ev = make_event(source, etype, label, conf, T0 + i * 3600, zone, snap)
        case = parts.builder.apply(ev, kind, grid)
        assert case is not None
        out.append({"id": case.id, "case_no": case.case_no, "source": source, "event_type": etype,
                    "confidence": conf, "snapshot": ev.snapshot})
    return out


@pytest.fixture
def cases(parts):
    return seed(parts)


def ids(response) -> list[int]:
    assert response.status_code == 200, response.text
    return [c["id"] for c in response.json()["items"]]


# ---------------------------------------------------------------- listing


def test_list_returns_every_case_newest_first(client, cases):
    r = client.get("/api/v1/cases")
    assert ids(r) == [c["id"] for c in reversed(cases)]
    body = r.json()
    assert (body["total"], body["limit"], body["offset"]) == (6, 50, 0)
    first = body["items"][-1]
    assert first["case_no"] == cases[0]["case_no"] and first["status"] == "draft"
    assert (first["major"], first["minor"]) == ("05", "01")
    assert first["grid"] == "42011700200818" and first["zone"] == "East Gate pavement"
    urls = {c["id"]: c["snapshot_url"] for c in body["items"]}
    assert urls[cases[0]["id"]] == f"/api/v1/cases/{cases[0]['id']}/snapshot"
    assert urls[cases[5]["id"]] is None  # seeded without a snapshot


def test_filters_by_event_type_source_and_status(client, cases):
    by = lambda **q: set(ids(client.get("/api/v1/cases", params=q)))  # noqa: E731
    vending = {c["id"] for c in cases if c["event_type"] == "street_vending"}
    assert by(event_type="street_vending") == vending and len(vending) == 3
    assert by(source_id="fixed-east-gate") == {cases[0]["id"], cases[1]["id"]}
    assert by(event_type="illegal_construction", source_id="drone-01") == {cases[4]["id"]}
    assert by(source_id="no-such-camera") == set()

    assert client.post(f"/api/v1/cases/{cases[2]['id']}/approve", json={"actor": "li"}).status_code == 200
    assert client.post(f"/api/v1/cases/{cases[3]['id']}/reject",
                       json={"actor": "li", "reason": "false_alarm"}).status_code == 200
    assert by(status="approved") == {cases[2]["id"]}
    assert by(status="rejected") == {cases[3]["id"]}
    assert by(status="draft") == {c["id"] for c in cases} - {cases[2]["id"], cases[3]["id"]}
    assert client.get("/api/v1/cases", params={"status": "open"}).status_code == 422


def test_paging_walks_through_every_case_once(client, cases):
    seen, offset = [], 0
    while True:
        r = client.get("/api/v1/cases", params={"limit": 4, "offset": offset})
        page = ids(r)
        assert r.json()["total"] == 6
        if not page:
            break
        assert len(page) <= 4
        seen += page
        offset += 4
    assert seen == [c["id"] for c in reversed(cases)]
    assert client.get("/api/v1/cases", params={"limit": 0}).status_code == 422
    assert client.get("/api/v1/cases", params={"offset": -1}).status_code == 422


def test_order_by_confidence(client, cases):
    r = client.get("/api/v1/cases", params={"order": "confidence"})
    confidences = [c["confidence"] for c in r.json()["items"]]
    assert confidences == sorted((c["confidence"] for c in cases), reverse=True)
    assert client.get("/api/v1/cases", params={"order": "loudest"}).status_code == 422


# ---------------------------------------------------------------- one case and its review


def test_get_one_case_with_its_actions(client, cases):
    case_id = cases[1]["id"]
    r = client.get(f"/api/v1/cases/{case_id}")
    assert r.status_code == 200
    body = r.json()
    assert body["case_no"] == cases[1]["case_no"] and body["actions"] == []
    assert (body["major"], body["minor"], body["label"]) == ("05", "04", "goods")  # goods outside a shop
    assert body["source_ids"] == ["fixed-east-gate"] and body["trace"]

    client.post(f"/api/v1/cases/{case_id}/approve")
    actions = client.get(f"/api/v1/cases/{case_id}").json()["actions"]
    assert [(a["action"], a["actor"]) for a in actions] == [("approve", "li")]
    assert client.get("/api/v1/cases/999999").status_code == 404


def test_approve_records_who_and_when(client, cases):
    before = datetime.now(timezone.utc)
    r = client.post(f"/api/v1/cases/{cases[0]['id']}/approve", json={"actor": "li"})
    after = datetime.now(timezone.utc)
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["reviewer"]) == ("approved", "li")
    assert before <= datetime.fromisoformat(body["reviewed_at"]) <= after


def test_approving_a_rejected_case_is_a_conflict_with_a_readable_detail(app, client, cases):
    case = cases[0]
    assert client.post(f"/api/v1/cases/{case['id']}/reject", json={"reason": "duplicate"}).status_code == 200
    with client_as(app, "analyst", "wang") as wang:
        r = wang.post(f"/api/v1/cases/{case['id']}/approve")
    assert r.status_code == 409
    detail = r.json()["detail"]
    assert case["case_no"] in detail and "rejected" in detail and "by li" in detail
    assert client.get(f"/api/v1/cases/{case['id']}").json()["status"] == "rejected"  # unchanged


def test_reject_needs_a_valid_reason(client, cases):
    url = f"/api/v1/cases/{cases[0]['id']}/reject"
    assert client.post(url, json={"actor": "li"}).status_code == 422
    assert client.post(url, json={"actor": "li", "reason": "ugly"}).status_code == 422
    assert client.post(url, json={"actor": "wang", "reason": "false_alarm"}).status_code == 422  # not who is logged in
    assert client.post(url, json={"actor": "  ", "reason": "false_alarm"}).status_code == 422
    # "other" needs a note saying why: bad input, not a conflict with the case's state
    assert client.post(url, json={"actor": "li", "reason": "other"}).status_code == 422
    assert client.get(f"/api/v1/cases/{cases[0]['id']}").json()["status"] == "draft"

    r = client.post(url, json={"actor": "li", "reason": "other", "note": "a licensed market day"})
    assert r.status_code == 200
    body = r.json()
    assert (body["status"], body["review_reason"], body["review_note"]) == ("rejected", "other", "a licensed market day")


def test_review_of_a_missing_case_is_404(client):
    assert client.post("/api/v1/cases/999999/approve", json={"actor": "li"}).status_code == 404
    assert client.post("/api/v1/cases/999999/reject", json={"actor": "li", "reason": "duplicate"}).status_code == 404


def test_reclassify_changes_the_category_and_the_audit_trail_records_it(client, cases):
    case_id = cases[0]["id"]  # a stall: 05/01
    before = datetime.now(timezone.utc)
    r = client.post(f"/api/v1/cases/{case_id}/reclassify",
                    json={"event_type": "illegal_construction"})
    after = datetime.now(timezone.utc)
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["event_type"], body["major"], body["minor"]) == ("illegal_construction", "01", "01")
    assert body["minor_name"] == "私搭乱建" and body["status"] == "draft"  # still to be decided on

    actions = client.get(f"/api/v1/cases/{case_id}").json()["actions"]
    assert len(actions) == 1
    a = actions[0]
    assert (a["action"], a["actor"]) == ("reclassify", "li")
    assert before <= datetime.fromisoformat(a["at"]) <= after
    assert a["details"]["from"] == {"event_type": "street_vending", "major": "05", "minor": "01"}
    assert a["details"]["to"] == {"event_type": "illegal_construction", "major": "01", "minor": "01"}
    # listing by the new type finds it
    assert case_id in ids(client.get("/api/v1/cases", params={"event_type": "illegal_construction"}))


def test_reclassify_to_an_explicit_category(client, cases):
    r = client.post(f"/api/v1/cases/{cases[0]['id']}/reclassify", json={"actor": "li", "major": "05", "minor": "04"})
    assert r.status_code == 200
    assert (r.json()["event_type"], r.json()["minor"]) == ("street_vending", "04")


def test_reclassify_rejects_bad_input_with_422_and_a_decided_case_with_409(client, cases):
    url = f"/api/v1/cases/{cases[0]['id']}/reclassify"
    assert client.post(url, json={"actor": "li"}).status_code == 422  # nothing to change to
    assert client.post(url, json={"actor": "li", "event_type": "graffiti"}).status_code == 422
    assert client.post(url, json={"actor": "li", "major": "05"}).status_code == 422  # minor missing
    assert client.post(url, json={"actor": "li", "major": "77", "minor": "01"}).status_code == 422
    assert client.get(f"/api/v1/cases/{cases[0]['id']}").json()["actions"] == []

    client.post(f"/api/v1/cases/{cases[0]['id']}/approve", json={"actor": "li"})
    r = client.post(url, json={"actor": "li", "event_type": "dust"})
    assert r.status_code == 409 and "approved" in r.json()["detail"]


# ---------------------------------------------------------------- evidence


def test_the_snapshot_is_served_as_jpeg(client, cases):
    r = client.get(f"/api/v1/cases/{cases[0]['id']}/snapshot")
    assert r.status_code == 200
    assert r.headers["content-type"] == "image/jpeg"
    assert r.content == cases[0]["snapshot"]
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (360, 640, 3)


def test_a_missing_snapshot_is_404(client, parts, cases):
    r = client.get(f"/api/v1/cases/{cases[5]['id']}/snapshot")  # seeded without one
    assert r.status_code == 404 and cases[5]["case_no"] in r.json()["detail"]
    assert client.get("/api/v1/cases/999999/snapshot").status_code == 404
    # the file gone from the evidence store (a cleaned disk) is a 404 too, not a 500
    key = parts.store.get_case(cases[0]["id"]).snapshot_key
    parts.evidence.path(key).unlink()
    assert client.get(f"/api/v1/cases/{cases[0]['id']}/snapshot").status_code == 404


# ---------------------------------------------------------------- sources, health, schema, page


def test_sources_lists_the_demo_registry_with_a_state(client, demo_registry):
    r = client.get("/api/v1/sources")
    assert r.status_code == 200
    body = r.json()
    assert body["total"] == 7
    assert [s["id"] for s in body["items"]] == [s.id for s in demo_registry]
    assert all(s["state"] == "unassigned" for s in body["items"])  # no bus: no worker reports
    east = client.get("/api/v1/sources/fixed-east-gate").json()
    assert (east["kind"], east["zones"], east["grid"]) == ("fixed", ["East Gate pavement"], "42011700200818")
    assert client.get("/api/v1/sources/nope").status_code == 404


@pytest.fixture
def bus():
    import redis

    from workers.bus import SOURCE_STATE, SOURCES, Bus

    try:
        b = Bus.connect(REDIS_URL_TEST)
    except redis.RedisError as err:
        pytest.skip(f"Redis at {REDIS_URL_TEST} unreachable: {err}")
    yield b
    # remove only what these tests wrote: other tests may share the server
    for sid in ("fixed-east-gate", "fixed-site-7"):
        b.r.delete(SOURCE_STATE + sid)
        b.r.srem(SOURCES, sid)
    b.r.close()


def test_sources_show_the_state_workers_report_through_redis(parts, demo_registry, bus):
    from workers.bus import SOURCE_STATE

    bus.set_source_state("fixed-east-gate", {"state": "live", "fps": 0.5, "dropped": 3})
    bus.set_source_state("fixed-site-7", {"state": "live"})
    bus.r.hset(SOURCE_STATE + "fixed-site-7", "at", time.time() - 120)  # its worker went quiet
    with client_as(create_app(parts, bus=bus, registry=demo_registry), "analyst") as c:
        rows = {s["id"]: s for s in c.get("/api/v1/sources").json()["items"]}
        health = c.get("/health")
    assert rows["fixed-east-gate"]["state"] == "live" and rows["fixed-east-gate"]["dropped"] == 3
    assert rows["fixed-site-7"]["state"] == "unreported"
    assert rows["fixed-riverside"]["state"] == "unassigned"
    assert health.status_code == 200
    assert (health.json()["database"], health.json()["redis"]) == ("ok", "ok")


def test_the_source_page_marks_a_lagging_source(parts, demo_registry, bus):
    bus.set_source_state("fixed-east-gate", {"state": "live", "lag_s": 7.5, "lagging": True, "interval_s": 2.0})
    bus.set_source_state("fixed-site-7", {"state": "live", "lag_s": 0.4, "lagging": False, "interval_s": 2.0})
    with client_as(create_app(parts, bus=bus, registry=demo_registry), "analyst") as c:
        table = c.get("/ui/sources").text
    rows = {r.split('"')[0]: r for r in table.split('data-source="')[1:]}
    assert "7.5 s" in rows["fixed-east-gate"] and "s-lagging" in rows["fixed-east-gate"]
    assert "0.4 s" in rows["fixed-site-7"] and "s-lagging" not in rows["fixed-site-7"]


def test_health_answers(client):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert isinstance(body.pop("free_bytes"), int)
    assert body == {"status": "ok", "database": "ok", "disk": "ok"}


def test_health_reports_an_unreachable_database(tmp_path, demo_registry):
    settings = Settings(data_dir=tmp_path / "data", cases=CaseSettings(grid_file=None))
    down = Parts(settings, db_url="postgresql+psycopg2://postgres@127.0.0.1:1/none")  # nothing listens on port 1
    with TestClient(create_app(down, registry=demo_registry)) as c:
        r = c.get("/health")
    assert r.status_code == 503
    assert r.json()["status"] == "degraded" and r.json()["database"].startswith("error")


def test_public_health_does_not_show_internal_error_text(tmp_path, demo_registry):
    """A load balancer learns that Redis is unavailable; only admins and monitoring
    learn the socket path in the error."""
    import redis

    from auth_helpers import headers_for
    from workers.bus import Bus

    socket_path = tmp_path / "secret-place" / "redis.sock"  # nothing listens there
    parts = Parts(Settings(data_dir=tmp_path / "data", cases=CaseSettings(grid_file=None)),
                  db_url=f"sqlite:///{tmp_path / 'cases.db'}")
    app = create_app(parts, bus=Bus(redis.Redis(unix_socket_path=str(socket_path))), registry=demo_registry)
    with TestClient(app) as c:
        public = c.get("/health")
        analyst = c.get("/health", headers=headers_for(parts, "analyst"))
        monitoring = c.get("/health", headers=headers_for(parts, "monitoring"))
    assert public.status_code == 503
    assert {k: v for k, v in public.json().items() if k not in ("disk", "free_bytes")} == {
        "status": "degraded", "database": "ok", "redis": "error: unavailable"}
    assert analyst.json()["redis"] == "error: unavailable"
    assert str(socket_path) in monitoring.json()["redis"], monitoring.json()


def test_openapi_lists_the_routes(client):
    r = client.get("/openapi.json")
    assert r.status_code == 200
    paths = r.json()["paths"]
    for path, method in [
        ("/api/v1/cases", "get"), ("/api/v1/cases/{case_id}", "get"),
        ("/api/v1/cases/{case_id}/approve", "post"), ("/api/v1/cases/{case_id}/reject", "post"),
        ("/api/v1/cases/{case_id}/reclassify", "post"), ("/api/v1/cases/{case_id}/snapshot", "get"),
        ("/api/v1/sources", "get"), ("/api/v1/sources/{source_id}", "get"), ("/health", "get"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} missing from the OpenAPI document"
    assert "/" not in paths  # the HTML page is not part of the API


def test_openapi_names_each_model_plainly(client):
    # Two models of one name in different modules would be published under their module
    # paths (api__models__cases__X), changing the document clients generate code from.
    names = client.get("/openapi.json").json()["components"]["schemas"]
    assert {"CaseOut", "CaseEvidence", "Merge", "UploadOut", "LoginOut", "NewTokenOut"} <= set(names)
    qualified = sorted(n for n in names if "__" in n)
    assert not qualified, f"models published under module paths: {qualified}"


def test_the_review_page_shows_the_drafts_with_their_evidence(client, cases):
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for c in cases:
        assert c["case_no"] in page
    for c in cases[:5]:
        assert f'src="/api/v1/cases/{c["id"]}/snapshot"' in page
    assert f'/api/v1/cases/{cases[5]["id"]}/snapshot' not in page  # it has none
    assert "6 案件 cases" in page  # the count above the queue


def test_the_review_page_hides_decided_cases_unless_asked(client, cases):
    client.post(f"/api/v1/cases/{cases[0]['id']}/approve", json={"actor": "li"})
    assert cases[0]["case_no"] not in client.get("/").text
    approved = client.get("/", params={"status": "approved"}).text
    assert cases[0]["case_no"] in approved and cases[1]["case_no"] not in approved


# ---------------------------------------------------------------- who acts


def test_the_audit_trail_records_the_logged_in_user_not_a_typed_name(app, client, cases):
    """The actor is the principal. A body may repeat the user's own name (older
    clients did); another name is refused and nothing is recorded."""
    case_id = cases[0]["id"]
    r = client.post(f"/api/v1/cases/{case_id}/approve", json={"actor": "director-zhang"})
    assert r.status_code == 422 and "not the logged-in user 'li'" in r.json()["detail"]
    assert client.get(f"/api/v1/cases/{case_id}").json()["actions"] == []

    with client_as(app, "admin", "chief") as chief:  # admin may review, and is recorded as themself
        r = chief.post(f"/api/v1/cases/{case_id}/reclassify", json={"major": "05", "minor": "04"})
        assert r.status_code == 200, r.text
        assert chief.post(f"/api/v1/cases/{case_id}/approve").json()["reviewer"] == "chief"
    actions = client.get(f"/api/v1/cases/{case_id}").json()["actions"]
    assert [(a["action"], a["actor"]) for a in actions] == [("reclassify", "chief"), ("approve", "chief")]


def test_only_analysts_review(app, cases):
    url = f"/api/v1/cases/{cases[0]['id']}/approve"
    with client_as(app, "operator", "pilot-wu") as operator:
        r = operator.post(url)
    assert r.status_code == 403 and "needs admin or analyst" in r.json()["detail"]
    with TestClient(app) as anonymous:
        assert anonymous.post(url, json={"actor": "li"}).status_code == 401
        assert anonymous.get(f"/api/v1/cases/{cases[0]['id']}/snapshot").status_code == 401  # evidence too
    assert app.state.parts.store.get_case(cases[0]["id"]).status == "draft"
