"""Login throttling (api/login_guard.py), the refusals at the edge (api/edge.py) and the
audit of invented names (cases/failed_logins.py), against the real app and database."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.app import create_app
from auth_helpers import FAST_KDF, PASSWORD, make_user
from cases.accounts import Accounts
from cases.audit import AuditEntry
from core.settings import AuthSettings, Settings
from core.wiring import Parts


@pytest.fixture
def parts(tmp_path):
    auth = AuthSettings(login_failures_per_name=3, login_attempts_per_address=6, login_window_s=600)
    p = Parts(Settings(data_dir=tmp_path / "data", auth=auth), db_url=f"sqlite:///{tmp_path / 'cases.db'}")
    p.__dict__["accounts"] = Accounts(p.store, kdf=FAST_KDF)
    make_user(p, "li", "analyst")
    yield p
    p.store.close()


def _login(client, name, password="wrong-password"):
    return client.post("/api/v1/auth/login", json={"username": name, "password": password})


def _audit(parts, action):
    with Session(parts.store.engine) as s:
        return s.scalars(select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.id)).all()


def test_a_name_is_throttled_after_its_failures_and_an_address_after_its_attempts(parts):
    with TestClient(create_app(parts)) as client:
        assert [_login(client, "li").status_code for _ in range(3)] == [401, 401, 401]
        r = _login(client, "li", PASSWORD)  # even the right password waits now
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 500, (r.status_code, r.headers)
        assert "try again later" in r.json()["detail"]
        assert _login(client, "ghost").status_code == 401  # an unknown name: the same answers
        assert _login(client, "ghost-2").status_code == 401
        assert _login(client, "ghost-3").status_code == 401
        # six attempts from this address in the window (successes are not counted): the seventh waits
        r = _login(client, "ghost-4")
        assert r.status_code == 429 and r.headers["Retry-After"], r.text


def test_a_successful_login_does_not_count_against_the_address(parts):
    with TestClient(create_app(parts)) as client:
        for _ in range(10):
            assert _login(client, "li", PASSWORD).status_code == 200


def test_invented_names_are_counted_in_one_audit_row_a_window(parts):
    with TestClient(create_app(parts)) as client:
        for n in range(5):
            client.post("/api/v1/auth/login", json={"username": f"ghost-{n}", "password": "x" * 10})
        assert _login(client, "li").status_code == 401
    first = _audit(parts, "auth.login_failed")
    assert [(e.actor, e.target) for e in first] == [("ghost-0", "user:ghost-0"), ("li", "user:li")]
    assert first[0].detail["address"] == "testclient"
    assert _audit(parts, "auth.login_failed_unknown") == []  # counted, written when the window ends
    parts.accounts.unknown_names.flush()
    [summary] = _audit(parts, "auth.login_failed_unknown")
    assert summary.detail["count"] == 4 and summary.detail["names_sample"] == [f"ghost-{n}" for n in range(1, 5)]
    parts.accounts.unknown_names.flush()  # nothing more counted: no row
    assert len(_audit(parts, "auth.login_failed_unknown")) == 1


def test_the_window_is_written_by_itself_when_it_ends(parts):
    import time
    failures = parts.accounts.unknown_names
    failures.window_s = 0.2
    for n in range(3):
        failures.note(f"nobody-{n}", "10.0.0.1")
    deadline = time.monotonic() + 5
    while not _audit(parts, "auth.login_failed_unknown") and time.monotonic() < deadline:
        time.sleep(0.05)
    [summary] = _audit(parts, "auth.login_failed_unknown")
    assert summary.detail["count"] == 2 and summary.detail["addresses_sample"] == ["10.0.0.1"]


# ---------------------------------------------------------------- the edge: framing, logout, 422


def test_pages_and_answers_may_not_be_framed(parts):
    with TestClient(create_app(parts)) as client:
        for path in ("/login", "/health", "/api/v1/cases"):
            r = client.get(path)
            assert r.headers["x-frame-options"] == "DENY", path
            assert r.headers["content-security-policy"] == "frame-ancestors 'none'", path


def test_logout_refuses_a_cookie_sent_from_another_site(parts):
    with TestClient(create_app(parts), base_url="http://patrol.city") as client:
        assert _login(client, "li", PASSWORD).status_code == 200  # the client keeps the cookie
        r = client.post("/api/v1/auth/logout", headers={"Origin": "http://evil.example"})
        assert r.status_code == 403 and "cross-site" in r.json()["detail"]
        assert client.get("/api/v1/auth/me").status_code == 200  # still logged in
        assert client.post("/api/v1/auth/logout", headers={"Origin": "http://patrol.city"}).status_code == 204
        client.cookies.clear()


def test_a_validation_error_does_not_echo_the_input(parts):
    with TestClient(create_app(parts)) as client:
        r = client.post("/api/v1/auth/login", json={"username": "u" * 900_000, "password": "x"})
        assert r.status_code == 422 and len(r.content) < 1000, len(r.content)
        assert r.json()["detail"][0]["loc"] == ["body", "username"]
        r = client.post("/api/v1/auth/login", json={"username": "u" * (2 << 20), "password": "x"})
        assert r.status_code == 413 and "at most 1 MiB" in r.json()["detail"]
