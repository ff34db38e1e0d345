"""Webhooks to the case platform, against a real HTTP receiver started by each test
(``http.server`` on a free port) that checks every signature it gets, over the real
store on SQLite and PostgreSQL."""
from __future__ import annotations

import json
import random
import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from api.app import create_app
from auth_helpers import client_as, headers_for
from cases import audit, outbox
from cases.signing import sign, verify_signature
from cases.store import utcnow
from db_fixtures import db_url  # noqa: F401  (fixture)
from feed_helpers import PUBLIC_URL, SECRET, make_drafts, make_parts
from core.settings import load_settings
from streams.sources import ConfigError
from webhook_receiver import Receiver
from workers.webhooks import Backoff, Endpoint, WebhookDelivery

HOOK = "city-platform"
FAST = Backoff(base_s=0.05, max_s=0.2, max_attempts=8)


@pytest.fixture
def receiver():
    r = Receiver().start()
    yield r
    r.stop()


def hook_parts(db_url, tmp_path, *urls: str):
    hooks = [{"name": HOOK if i == 0 else f"{HOOK}-{i}", "url": url, "secret": SECRET} for i, url in enumerate(urls)]
    return make_parts(db_url, tmp_path, webhooks=hooks)


def loop_for(parts, *urls: str, backoff: Backoff = FAST, **kwargs) -> WebhookDelivery:
    endpoints = [Endpoint(HOOK if i == 0 else f"{HOOK}-{i}", url, SECRET, timeout_s=2.0) for i, url in enumerate(urls)]
    return WebhookDelivery(parts.store, endpoints, PUBLIC_URL, backoff, poll_s=0.05, **kwargs)


def deliveries(parts, **filters) -> list[outbox.Delivery]:
    with Session(parts.store.engine) as s:
        return outbox.page(s, limit=1000, **filters).items


def audit_actions(parts, target: str) -> list[str]:
    with Session(parts.store.engine) as s:
        return [e.action for e in audit.page(s, limit=1000, target=target).items]


def deliver_until(loop: WebhookDelivery, parts, state: str, timeout: float = 10.0) -> outbox.Delivery:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        loop.deliver_due()
        rows = deliveries(parts)
        if rows and all(r.state == state for r in rows):
            return rows[0]
        time.sleep(0.02)
    raise AssertionError(f"deliveries not {state} in {timeout} s: {deliveries(parts)}")


def test_an_approval_through_the_api_reaches_the_platform_signed(db_url, tmp_path, receiver):
    parts = hook_parts(db_url, tmp_path, receiver.url)
    [case_id] = make_drafts(parts, 1)
    stop = threading.Event()
    thread = threading.Thread(target=loop_for(parts, receiver.url).run, args=(stop,), daemon=True)
    thread.start()
    try:
        app = create_app(parts)
        with client_as(app, "analyst", "analyst.li") as analyst:
            r = analyst.post(f"/api/v1/cases/{case_id}/approve", json={"actor": "analyst.li"})
            assert r.status_code == 200, r.text
        [request] = receiver.wait_for(1)
        with TestClient(app) as api:
            [fed] = api.get("/api/v1/feed", headers=headers_for(parts, "platform")).json()["items"]
    finally:
        stop.set()
        thread.join(5)
    headers, body = request["headers"], request["body"]
    assert request["valid"] and request["path"] == "/patrol/hook"
    assert headers["X-Patrol-Signature"] == sign(SECRET, body, int(headers["X-Patrol-Timestamp"]))
    assert abs(int(headers["X-Patrol-Timestamp"]) - time.time()) < 30
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    message = json.loads(body)
    [row] = deliveries(parts)
    assert headers["Idempotency-Key"] == message["id"] == row.idempotency_key
    assert message["event"] == "case.approved" and message["created_at"].endswith("+08:00")
    assert message["data"] == fed  # the webhook and the feed say the same, in the same field names
    assert message["data"]["approved_by"] == "analyst.li"
    assert row.state == "delivered" and row.attempts == 1 and row.last_status == 200
    assert audit_actions(parts, f"case:{fed['case_no']}") == ["case.approve", "webhook.delivered"]
    parts.store.close()


def test_a_receiver_that_is_down_gets_it_once_it_is_up(db_url, tmp_path):
    down = Receiver()  # a port with nobody listening yet
    parts = hook_parts(db_url, tmp_path, down.url)
    [case_id] = make_drafts(parts, 1)
    case = parts.store.approve(case_id, "li")
    loop = loop_for(parts, down.url)
    assert loop.deliver_due() == 1
    [row] = deliveries(parts)
    assert row.state == "pending" and row.attempts == 1 and row.last_status is None
    assert "cannot reach" in row.last_error and row.next_attempt_at > row.last_attempt_at
    assert loop.deliver_due(now=row.next_attempt_at - timedelta(milliseconds=1)) == 0  # not before its backoff
    down.start()
    try:
        row = deliver_until(loop, parts, "delivered")
        assert row.attempts == 2 and row.last_error is None
        [request] = down.wait_for(1)
        assert request["valid"]
    finally:
        down.stop()
    assert audit_actions(parts, f"case:{case.case_no}") == ["case.approve", "webhook.failed", "webhook.delivered"]
    parts.store.close()


def test_a_crash_between_approval_and_delivery_loses_nothing(db_url, tmp_path, receiver):
    # The API approves with no delivery loop running, then its process is gone.
    parts = hook_parts(db_url, tmp_path, receiver.url)
    ids = make_drafts(parts, 3)
    numbers = [parts.store.approve(i, "li").case_no for i in ids]
    parts.store.close()
    assert receiver.requests == []

    fresh = hook_parts(db_url, tmp_path, receiver.url)  # a new process, a fresh loop
    try:
        loop = loop_for(fresh, receiver.url)
        deliver_until(loop, fresh, "delivered")
        got = receiver.wait_for(3)
        assert sorted(json.loads(r["body"])["data"]["case_no"] for r in got) == sorted(numbers)
        assert all(r["valid"] for r in got) and len(got) == 3
    finally:
        fresh.store.close()


def test_a_loop_that_dies_mid_delivery_leaves_it_to_the_next_after_the_lease(db_url, tmp_path, receiver):
    parts = hook_parts(db_url, tmp_path, receiver.url)
    [case_id] = make_drafts(parts, 1)
    parts.store.approve(case_id, "li")
    [claimed] = outbox.claim(parts.store, [HOOK], lease_s=30)  # ... and then this loop dies
    other = loop_for(parts, receiver.url)
    assert other.deliver_due() == 0  # leased: not taken while the first might still be posting
    assert other.deliver_due(now=utcnow() + timedelta(seconds=31)) == 1  # the lease has run out
    [request] = receiver.wait_for(1)
    assert request["headers"]["Idempotency-Key"] == claimed.idempotency_key
    parts.store.close()


def test_a_repeated_delivery_carries_the_same_idempotency_key_and_body(db_url, tmp_path, receiver):
    # The platform took the first one in but its answer was an error (or got lost):
    # the retry is a duplicate it must recognise by the key.
    receiver.answers = [(503, {})]
    parts = hook_parts(db_url, tmp_path, receiver.url)
    [case_id] = make_drafts(parts, 1)
    parts.store.approve(case_id, "li")
    deliver_until(loop_for(parts, receiver.url), parts, "delivered")
    first, second = receiver.wait_for(2)
    assert first["answered"] == 503 and second["answered"] == 200
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]
    assert first["body"] == second["body"]
    assert first["valid"] and second["valid"]
    parts.store.close()


def test_verify_signature_refuses_replays_and_forgeries(db_url, tmp_path, receiver):
    parts = hook_parts(db_url, tmp_path, receiver.url)
    [case_id] = make_drafts(parts, 1)
    parts.store.approve(case_id, "li")
    deliver_until(loop_for(parts, receiver.url), parts, "delivered")
    [request] = receiver.wait_for(1)
    body, ts = request["body"], int(request["headers"]["X-Patrol-Timestamp"])
    sig = request["headers"]["X-Patrol-Signature"]
    assert verify_signature(SECRET, body, ts, sig, now=ts + 299)
    assert verify_signature(SECRET, body, str(ts), sig, now=ts - 10)  # a receiver clock a little behind
    assert not verify_signature(SECRET, body, ts, sig, now=ts + 301)  # replayed after the window
    assert not verify_signature(SECRET, body, ts, sig, now=ts + 60, tolerance_s=30)
    assert not verify_signature(SECRET, body, ts, sig, now=ts - 400)  # dated in the future
    assert not verify_signature(SECRET, body, ts + 1, sig, now=ts)  # timestamp changed
    assert not verify_signature(SECRET, body.replace(b"li", b"xx"), ts, sig, now=ts)  # body changed
    assert not verify_signature("another-secret-entirely", body, ts, sig, now=ts)
    assert not verify_signature(SECRET, body, "yesterday", sig, now=ts)
    assert not verify_signature(SECRET, body, ts, sig.removeprefix("sha256="), now=ts)
    assert not verify_signature(SECRET, body, ts, None, now=ts)
    parts.store.close()


def test_after_max_attempts_a_delivery_is_dead_listed_and_can_be_retried(db_url, tmp_path, receiver):
    receiver.answers = [(500, {})] * 3
    parts = hook_parts(db_url, tmp_path, receiver.url)
    [case_id] = make_drafts(parts, 1)
    case = parts.store.approve(case_id, "li")
    loop = loop_for(parts, receiver.url, backoff=Backoff(base_s=0.02, max_s=0.05, max_attempts=3))
    dead = deliver_until(loop, parts, "dead")
    assert dead.attempts == 3 and dead.last_status == 500 and "HTTP 500" in dead.last_error
    assert len(receiver.wait_for(3)) == 3
    time.sleep(0.1)
    assert loop.deliver_due() == 0 and len(receiver.requests) == 3  # dead: not tried again by itself
    assert audit_actions(parts, f"case:{case.case_no}") == [
        "case.approve", "webhook.failed", "webhook.failed", "webhook.dead"]

    app = create_app(parts)
    with TestClient(app) as api:
        admin = headers_for(parts, "admin", "admin.zhao")
        listed = api.get("/api/v1/webhooks/deliveries", params={"state": "dead"}, headers=admin).json()
        assert [(d["id"], d["state"], d["case_no"]) for d in listed["items"]] == [(dead.id, "dead", case.case_no)]
        assert api.get("/api/v1/webhooks/deliveries", params={"state": "pending"}, headers=admin).json()["items"] == []
        for role in ("analyst", "platform"):
            assert api.get("/api/v1/webhooks/deliveries", headers=headers_for(parts, role)).status_code == 403
            assert api.post(f"/api/v1/webhooks/deliveries/{dead.id}/retry",
                            headers=headers_for(parts, role)).status_code == 403
        r = api.post(f"/api/v1/webhooks/deliveries/{dead.id}/retry", headers=admin)
        assert r.status_code == 200 and r.json()["state"] == "pending"
        row = deliver_until(loop, parts, "delivered")
        assert row.attempts == 4
        r = api.post(f"/api/v1/webhooks/deliveries/{dead.id}/retry", headers=admin)
        assert r.status_code == 409 and "already delivered" in r.json()["detail"]
        assert api.post("/api/v1/webhooks/deliveries/99999/retry", headers=admin).status_code == 404
        assert api.get("/api/v1/webhooks/deliveries", params={"cursor": "nonsense!"},
                       headers=admin).status_code == 400
    with Session(parts.store.engine) as s:
        retried = [e for e in audit.page(s, target=f"case:{case.case_no}").items if e.action == "webhook.retry"]
    assert [(e.actor, e.detail["delivery_id"]) for e in retried] == [("admin.zhao", dead.id)]
    parts.store.close()


def test_backoff_doubles_up_to_its_cap_with_jitter():
    backoff = Backoff(base_s=1.0, max_s=10.0, max_attempts=12)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1), (2, 2), (3, 4), (4, 8), (5, 10), (9, 10)]:
        delays = [backoff.delay_s(attempt, rng) for _ in range(50)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert len(set(delays)) > 1  # jittered: senders do not come back in step


def test_retry_after_from_the_receiver_is_honoured_and_redirects_are_failures(db_url, tmp_path, receiver):
    receiver.answers = [(429, {"Retry-After": "30"}), (302, {"Location": "http://127.0.0.1:1/elsewhere"})]
    parts = hook_parts(db_url, tmp_path, receiver.url)
    [case_id] = make_drafts(parts, 1)
    parts.store.approve(case_id, "li")
    loop = loop_for(parts, receiver.url, backoff=Backoff(base_s=0.05, max_s=60, max_attempts=5))
    assert loop.deliver_due() == 1
    [row] = deliveries(parts)
    assert row.last_status == 429 and row.next_attempt_at >= row.last_attempt_at + timedelta(seconds=29)
    assert loop.deliver_due(now=utcnow() + timedelta(seconds=31)) == 1
    [row] = deliveries(parts)
    assert row.state == "pending" and row.last_status == 302  # not followed: the platform must give its real URL
    assert len(receiver.requests) == 2
    parts.store.close()


def test_every_subscribed_endpoint_gets_its_own_delivery(db_url, tmp_path, receiver):
    second = Receiver().start()
    try:
        parts = hook_parts(db_url, tmp_path, receiver.url, second.url)
        [case_id] = make_drafts(parts, 1)
        parts.store.approve(case_id, "li")
        rows = deliveries(parts)
        assert sorted(r.endpoint for r in rows) == [HOOK, f"{HOOK}-1"]
        deliver_until(loop_for(parts, receiver.url, second.url), parts, "delivered")
        [a], [b] = receiver.wait_for(1), second.wait_for(1)
        assert json.loads(a["body"])["data"] == json.loads(b["body"])["data"]
        assert a["headers"]["Idempotency-Key"] != b["headers"]["Idempotency-Key"]
        parts.store.close()
    finally:
        second.stop()


def test_two_loops_over_one_database_deliver_each_approval_once(db_url, tmp_path, receiver):
    parts = hook_parts(db_url, tmp_path, receiver.url)
    ids = make_drafts(parts, 6)
    for case_id in ids:
        parts.store.approve(case_id, "li")
    other = make_parts(db_url, tmp_path)  # another process's store
    loops = [loop_for(parts, receiver.url, batch=2), WebhookDelivery(
        other.store, [Endpoint(HOOK, receiver.url, SECRET, 2.0)], PUBLIC_URL, FAST, batch=2)]
    threads = [threading.Thread(target=lambda lp=lp: [lp.deliver_due() for _ in range(10)]) for lp in loops]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    got = receiver.wait_for(6)
    time.sleep(0.2)
    keys = [r["headers"]["Idempotency-Key"] for r in receiver.requests]
    assert len(keys) == 6 == len(set(keys))
    assert all(r.state == "delivered" for r in deliveries(parts))
    assert sum(lp.delivered for lp in loops) == 6 and all(r["valid"] for r in got)
    other.store.close()
    parts.store.close()


def test_webhook_settings_are_checked_and_secrets_may_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("CITY_HOOK_SECRET", SECRET)
    s = load_settings(webhooks=[{"name": HOOK, "url": "https://platform.example/hook", "secret_env": "CITY_HOOK_SECRET"}])
    assert s.webhooks[0].key() == SECRET and s.webhooks[0].events == ["case.approved"]
    assert SECRET not in repr(load_settings(webhooks=[{"name": HOOK, "url": "http://x/h", "secret": SECRET}]))
    bad = [
        ({"name": HOOK, "url": "http://x/h", "secret_env": "NOT_SET_ANYWHERE"}, "NOT_SET_ANYWHERE"),
        ({"name": HOOK, "url": "http://x/h"}, "either secret or secret_env"),
        ({"name": HOOK, "url": "http://x/h", "secret": "short"}, "at least 16"),
        ({"name": HOOK, "url": "ftp://x/h", "secret": SECRET}, "webhooks.0.url"),
        ({"name": HOOK, "url": "http://x/h", "secret": SECRET, "events": ["case.rejected"]}, "webhooks.0.events"),
    ]
    for hook, why in bad:
        with pytest.raises(ConfigError, match=why):
            load_settings(webhooks=[hook])
    with pytest.raises(ConfigError, match="repeated: city-platform"):
        load_settings(webhooks=[{"name": HOOK, "url": "http://x/h", "secret": SECRET}] * 2)
