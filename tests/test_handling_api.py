"""The 721 handling through the API, the feed and the webhooks: real parts (SQLite and
PostgreSQL, the real case builder, real logins, a real webhook receiver)."""
from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from auth_helpers import client_as, headers_for
from cases import audit
from db_fixtures import db_url  # noqa: F401  (fixture)
from feed_helpers import PUBLIC_URL, SECRET, T0, make_event, make_parts
from webhook_receiver import Receiver
from workers.webhooks import Backoff, Endpoint, WebhookDelivery

CELL = "42011700200818"


def drafts_at_one_place(parts, n: int) -> list[int]:
    """``n`` street-vending drafts a day apart at one place (the first the oldest)."""
    return [parts.builder.apply(make_event(start=T0 + i * 86_400), "fixed", CELL).id for i in range(n)]


def test_approve_with_a_handling_is_audited_and_travels_to_the_feed_and_the_webhook(db_url, tmp_path):
    receiver = Receiver().start()
    parts = make_parts(db_url, tmp_path, webhooks=[{"name": "city", "url": receiver.url, "secret": SECRET}])
    try:
        first, second, third, fourth = drafts_at_one_place(parts, 4)
        app = create_app(parts)
        with client_as(app, "analyst", "analyst.wang") as analyst:
            # a draft shows its hint and its place's history
            case = analyst.get(f"/api/v1/cases/{first}").json()
            assert case["handling"]["hint"] == "service" and case["handling"]["history_count"] == 0
            assert case["handling"]["history"] == [] and case["handling"]["chosen"] is None

            # approve without a handling: the hint
            r = analyst.post(f"/api/v1/cases/{first}/approve")
            assert r.status_code == 200, r.text
            assert r.json()["handling"]["chosen"] == "service"
            assert analyst.post(f"/api/v1/cases/{second}/approve", json={}).json()["handling"]["chosen"] == "service"

            third_case = analyst.get(f"/api/v1/cases/{third}").json()
            h = third_case["handling"]
            assert (h["hint"], h["hint_zh"], h["history_count"]) == ("management", "管理（责令整改）", 2)
            [newer, older] = h["history"]
            assert newer["case_no"] < third_case["case_no"] and newer["status"] == "approved"
            assert newer["handling"] == "service" and newer["handling_zh"] == "服务（劝导）"
            assert newer["seen_at"] == "2025-11-26T00:00:00+08:00" and newer["counted"] is True
            assert newer["distance_m"] == 0.0 and newer["same_cell"] is True

            # the analyst keeps the order the hint suggests ... or changes it: a bad one is refused
            r = analyst.post(f"/api/v1/cases/{third}/approve", json={"handling": "warning"})
            assert r.status_code == 422 and "handling" in r.text
            r = analyst.post(f"/api/v1/cases/{third}/approve", json={"handling": "management"})
            assert r.status_code == 200, r.text

            # back after an order: enforcement suggested; the analyst chooses management again
            listed = analyst.get("/api/v1/cases", params={"status": "draft"}).json()["items"]
            assert [(c["id"], c["handling"]["hint"]) for c in listed] == [(fourth, "enforcement")]
            r = analyst.post(f"/api/v1/cases/{fourth}/approve", json={"handling": "management"})
            assert r.status_code == 200 and r.json()["handling"]["chosen"] == "management"
            detail = analyst.get(f"/api/v1/cases/{fourth}").json()
            [action] = [a for a in detail["actions"] if a["action"] == "approve"]
            assert action["details"]["handling"] == "management" and action["details"]["hint"] == "enforcement"
            assert action["details"]["history_count"] == 3 and "management" in action["details"]["hint_reason"]

        # the audit trail keeps what was chosen and what was suggested
        case_no = parts.store.get_case(fourth).case_no
        with Session(parts.store.engine) as s:
            [entry] = [e for e in audit.page(s, limit=100, target=f"case:{case_no}").items
                       if e.action == "case.approve"]
        assert entry.actor == "analyst.wang"
        assert (entry.detail["handling"], entry.detail["hint"], entry.detail["history_count"]) == (
            "management", "enforcement", 3)

        # the feed carries the handling, the hint and the history count
        with TestClient(app) as api:
            fed = api.get("/api/v1/feed", headers=headers_for(parts, "platform")).json()["items"]
        assert [c["handling"] for c in fed] == [
            {"handling": "service", "handling_zh": "服务（劝导）", "hint": "service", "hint_zh": "服务（劝导）",
             "history_count": 0},
            {"handling": "service", "handling_zh": "服务（劝导）", "hint": "service", "hint_zh": "服务（劝导）",
             "history_count": 1},
            {"handling": "management", "handling_zh": "管理（责令整改）", "hint": "management",
             "hint_zh": "管理（责令整改）", "history_count": 2},
            {"handling": "management", "handling_zh": "管理（责令整改）", "hint": "enforcement",
             "hint_zh": "执法（立案）", "history_count": 3},
        ]

        # ... and so does the webhook, in the same words
        loop = WebhookDelivery(parts.store, [Endpoint("city", receiver.url, SECRET, timeout_s=2.0)], PUBLIC_URL,
                               Backoff(base_s=0.05, max_s=0.2), poll_s=0.05)
        while loop.deliver_due():
            pass
        messages = {json.loads(r["body"])["data"]["case_no"]: json.loads(r["body"])["data"]
                    for r in receiver.wait_for(4)}
        assert {no: m["handling"] for no, m in messages.items()} == {c["case_no"]: c["handling"] for c in fed}
    finally:
        receiver.stop()
        parts.store.close()


def test_a_case_approved_without_a_recorded_handling_says_so_in_the_feed(db_url, tmp_path):
    parts = make_parts(db_url, tmp_path)
    try:
        [case_id] = drafts_at_one_place(parts, 1)
        parts.store.approve(case_id, "analyst.wang")  # as before handlings were recorded
        with TestClient(create_app(parts)) as api:
            [fed] = api.get("/api/v1/feed", headers=headers_for(parts, "platform")).json()["items"]
            assert fed["handling"] is None
            with client_as(api.app, "analyst") as analyst:
                h = analyst.get(f"/api/v1/cases/{case_id}").json()["handling"]
        assert h["chosen"] is None and h["hint"] == "service"
    finally:
        parts.store.close()
