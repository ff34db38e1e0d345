"""The audit log over the real store (SQLite and PostgreSQL): every review action
recorded with who, what and when, in the same transaction; append-only down to
the database; readable by administrators through the API."""
from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from api.app import create_app
from auth_helpers import client_as, headers_for
from cases import audit
from cases.store import CaseError, utcnow
from db_fixtures import db_url, taxonomy  # noqa: F401  (fixtures)
from feed_helpers import make_drafts, make_parts


@pytest.fixture
def parts(db_url, tmp_path):
    p = make_parts(db_url, tmp_path)
    yield p
    p.store.close()


def entries(parts, **filters) -> list[audit.AuditEntryView]:
    with Session(parts.store.engine) as s:
        return audit.page(s, limit=1000, **filters).items


def test_every_review_action_is_recorded_with_who_what_and_when(parts, taxonomy):
    a, b, c = make_drafts(parts, 3)
    before = utcnow()
    approved = parts.store.approve(a, "analyst.wang")
    rejected = parts.store.reject(b, "analyst.li", "other", "a licensed market day")
    moved = parts.store.reclassify(c, "analyst.li", event_type="dust", taxonomy=taxonomy)
    log = entries(parts, target="case:")
    assert [(e.actor, e.action, e.target) for e in log] == [
        ("analyst.wang", "case.approve", f"case:{approved.case_no}"),
        ("analyst.li", "case.reject", f"case:{rejected.case_no}"),
        ("analyst.li", "case.reclassify", f"case:{moved.case_no}"),
    ]
    assert all(before - timedelta(seconds=1) <= e.at <= utcnow() for e in log)
    assert log[0].detail["case_id"] == a and log[0].detail["feed_seq"] >= 1
    assert log[1].detail == {"case_id": b, "reason": "other", "note": "a licensed market day"}
    assert log[2].detail["from"]["event_type"] == "street_vending" and log[2].detail["to"]["event_type"] == "dust"
    assert [e.id for e in log] == sorted(e.id for e in log)


def test_a_refused_action_leaves_no_audit_row(parts):
    [a] = make_drafts(parts, 1)
    parts.store.approve(a, "analyst.wang")
    with pytest.raises(CaseError):
        parts.store.approve(a, "analyst.li")
    with pytest.raises(CaseError):
        parts.store.reject(a, "analyst.li", "false_alarm")
    assert [(e.actor, e.action) for e in entries(parts)] == [("analyst.wang", "case.approve")]


@pytest.mark.parametrize("table", ["audit_log", "feed_entries"])
def test_the_database_refuses_to_rewrite_history(parts, table):
    [a] = make_drafts(parts, 1)
    parts.store.approve(a, "analyst.wang")
    column = "actor" if table == "audit_log" else "feed"
    statements = [f"UPDATE {table} SET {column} = 'someone else'", f"DELETE FROM {table}"]
    if not parts.store.is_sqlite:
        statements.append(f"TRUNCATE {table}")
    for sql in statements:
        with pytest.raises(DBAPIError, match="append-only"):
            with parts.store.engine.begin() as conn:
                conn.execute(text(sql))
    with parts.store.engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar() >= 1


def test_the_triggers_survive_a_second_store_on_the_same_database(db_url, tmp_path):
    first = make_parts(db_url, tmp_path)
    [a] = make_drafts(first, 1)
    first.store.approve(a, "analyst.wang")
    second = make_parts(db_url, tmp_path)
    _ = second.store  # creates the tables and the guards again: harmless
    try:
        with pytest.raises(DBAPIError, match="append-only"):
            with second.store.engine.begin() as conn:
                conn.execute(text("DELETE FROM audit_log"))
    finally:
        first.store.close()
        second.store.close()


def test_record_needs_actor_action_and_target(parts):
    with parts.store.transaction() as s:
        for actor, action, target in [("", "x.y", "case:1"), ("li", " ", "case:1"), ("li", "x.y", "")]:
            with pytest.raises(ValueError, match="actor, an action and a target"):
                audit.record(s, actor, action, target)
        row_id = audit.record(s, "system:tests", "thing.done", "thing:1", {"n": 1})
    [entry] = entries(parts)
    assert (entry.id, entry.actor, entry.action, entry.target, entry.detail) == (
        row_id, "system:tests", "thing.done", "thing:1", {"n": 1})


def test_the_audit_api_pages_and_filters_for_admins_only(parts):
    ids = make_drafts(parts, 5)
    for case_id in ids[:4]:
        parts.store.approve(case_id, "analyst.wang" if case_id % 2 else "analyst.li")
    app = create_app(parts)
    with TestClient(app) as api:
        assert api.get("/api/v1/audit").status_code == 401
        for role in ("analyst", "operator", "platform", "monitoring"):
            assert api.get("/api/v1/audit", headers=headers_for(parts, role)).status_code == 403, role
        admin = headers_for(parts, "admin", "admin.zhao")

        seen, cursor = [], None
        while True:
            page = api.get("/api/v1/audit", params={"limit": 3, "action": "case.approve"} |
                           ({"cursor": cursor} if cursor else {}), headers=admin).json()
            seen += page["items"]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                break
        assert len(seen) == 4 and [e["id"] for e in seen] == sorted(e["id"] for e in seen)
        parts.store.approve(ids[4], "analyst.li")
        more = api.get("/api/v1/audit", params={"cursor": cursor, "action": "case.approve"}, headers=admin).json()
        assert [e["target"] for e in more["items"]] == [f"case:{parts.store.get_case(ids[4]).case_no}"]

        newest = api.get("/api/v1/audit", params={"order": "newest", "limit": 2, "action": "case.approve"},
                         headers=admin).json()
        assert [e["id"] for e in newest["items"]] == sorted((e["id"] for e in seen + more["items"]), reverse=True)[:2]
        older = api.get("/api/v1/audit", params={"order": "newest", "cursor": newest["next_cursor"],
                                                  "action": "case.approve"}, headers=admin).json()
        assert older["items"][0]["id"] < newest["items"][-1]["id"]
        # a newest-first cursor is not an oldest-first one
        r = api.get("/api/v1/audit", params={"cursor": newest["next_cursor"]}, headers=admin)
        assert r.status_code == 400 and "audit-newest" in r.json()["detail"]
        assert api.get("/api/v1/audit", params={"cursor": "???"}, headers=admin).status_code == 400

        li = api.get("/api/v1/audit", params={"actor": "analyst.li"}, headers=admin).json()["items"]
        assert li and all(e["actor"] == "analyst.li" for e in li)
        one = f"case:{parts.store.get_case(ids[0]).case_no}"
        assert [e["target"] for e in api.get("/api/v1/audit", params={"target": one},
                                             headers=admin).json()["items"]] == [one]


def test_an_approval_through_the_api_is_recorded_as_the_logged_in_user(parts):
    [case_id] = make_drafts(parts, 1)
    app = create_app(parts)
    with client_as(app, "analyst", "analyst.zhou") as analyst:
        assert analyst.post(f"/api/v1/cases/{case_id}/approve", json={"actor": "analyst.zhou"}).status_code == 200
    [entry] = entries(parts, action="case.approve")
    assert entry.actor == "analyst.zhou"


def test_the_openapi_document_shows_an_audit_example(parts):
    with TestClient(create_app(parts)) as api:
        schemas = api.get("/openapi.json").json()["components"]["schemas"]
    assert schemas["AuditEntryView"]["examples"][0]["action"] == "case.approve"
    assert schemas["Delivery"]["examples"][0]["idempotency_key"]
