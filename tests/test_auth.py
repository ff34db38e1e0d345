"""Logging in and the credentials behind every request: password hashing, sessions
(cookie and bearer), expiry, disabled users, API tokens and their revocation, the
users and tokens API, and the audit rows all of it leaves. SQLite and PostgreSQL.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.app import create_app
from api.auth import SESSION_COOKIE, safe_next
from auth_helpers import FAST_KDF, PASSWORD, bearer, client_as, login, make_user
from cases import audit
from cases.accounts import (DEFAULT_KDF, AccountError, AccountNotFound, Accounts, Scrypt, Unauthenticated,
                            verify_password)
from db_fixtures import db_url  # noqa: F401  (fixture)
from core.settings import AuthSettings, CaseSettings, Settings
from core.wiring import Parts
from streams.sources import load_registry

CONFIG = Path(__file__).resolve().parents[1] / "config"


@pytest.fixture
def parts(db_url, tmp_path):
    settings = Settings(data_dir=tmp_path / "data", cases=CaseSettings(grid_file=None),
                        auth=AuthSettings(session_hours=2))
    p = Parts(settings, db_url=db_url)
    yield p
    p.store.close()


@pytest.fixture
def app(parts):
    return create_app(parts, bus=None, registry=load_registry(CONFIG / "demo_sources.yaml"))


@pytest.fixture
def accounts(parts) -> Accounts:
    return Accounts(parts.store, kdf=FAST_KDF)


def audit_rows(parts, action: str | None = None) -> list[tuple[str, str, str]]:
    with parts.store.transaction() as s:
        rows = s.scalars(select(audit.AuditEntry).order_by(audit.AuditEntry.id)).all()
        return [(r.actor, r.action, r.target) for r in rows if action is None or r.action == action]


# ---------------------------------------------------------------- the KDF


def test_the_default_kdf_is_scrypt_with_a_salt_per_password():
    one, two = DEFAULT_KDF.hash("street-order-2026"), DEFAULT_KDF.hash("street-order-2026")
    assert one != two  # a salt of its own each
    assert one.startswith("scrypt$32768$8$3$") and DEFAULT_KDF.is_current(one)
    assert verify_password("street-order-2026", one) and verify_password("street-order-2026", two)
    assert not verify_password("street-order-2027", one)
    assert not verify_password("", one)


def test_a_hash_keeps_its_cost_so_old_hashes_verify_after_it_is_raised():
    cheap = Scrypt(n=2**10, r=8, p=1).hash("patrol-password")
    assert verify_password("patrol-password", cheap) and not DEFAULT_KDF.is_current(cheap)
    for broken in ("", "scrypt$1$2", "bcrypt$x$y$z$a$b", "scrypt$1024$8$1$!!$??", cheap[:-8]):
        assert not verify_password("patrol-password", broken)


# ---------------------------------------------------------------- the library


def test_users_need_a_valid_name_role_and_password(accounts):
    with pytest.raises(AccountError, match="username"):
        accounts.add_user("../root", "analyst", PASSWORD)
    with pytest.raises(AccountError, match="not a user role.*API tokens"):
        accounts.add_user("city-platform", "platform", PASSWORD)
    with pytest.raises(AccountError, match="at least 8"):
        accounts.add_user("li", "analyst", "short")
    accounts.add_user("li", "analyst", PASSWORD)
    with pytest.raises(AccountError, match="already exists"):
        accounts.add_user("li", "operator", PASSWORD)
    assert [(u.username, u.role, u.disabled) for u in accounts.users()] == [("li", "analyst", False)]


def test_login_checks_the_password_and_says_the_same_for_an_unknown_user(accounts):
    accounts.add_user("li", "analyst", PASSWORD)
    with pytest.raises(Unauthenticated) as wrong:
        accounts.login("li", PASSWORD + "!")
    with pytest.raises(Unauthenticated) as unknown:
        accounts.login("nobody", PASSWORD)
    assert str(wrong.value) == str(unknown.value) == "wrong username or password"
    session = accounts.login("li", PASSWORD)
    assert accounts.authenticate(session.token).username == "li"


def test_a_login_upgrades_a_hash_made_at_a_lower_cost(parts, accounts):
    accounts.add_user("li", "analyst", PASSWORD)  # FAST_KDF
    parts.accounts.login("li", PASSWORD)  # the default cost
    from cases.accounts import User

    with parts.store.transaction() as s:
        stored = s.scalar(select(User.password_hash).where(User.username == "li"))
    assert DEFAULT_KDF.is_current(stored) and verify_password(PASSWORD, stored)


def test_a_session_expires(accounts):
    accounts.add_user("li", "analyst", PASSWORD)
    started = datetime.now(timezone.utc) - timedelta(hours=13)  # default session: 12 hours
    old = accounts.start_session("li", now=started)
    assert old.expires_at == started + timedelta(hours=12)
    with pytest.raises(Unauthenticated, match="expired"):
        accounts.authenticate(old.token)
    assert accounts.authenticate(old.token, now=started + timedelta(hours=11)).username == "li"


def test_an_api_token_expires_and_can_be_revoked(accounts):
    made = accounts.create_token("city-platform", "platform", days=30, by="admin")
    assert made.token.startswith("pat_") and made.info.expires_at is not None
    who = accounts.authenticate(made.token)
    assert (who.username, who.role, who.user_id) == ("token:city-platform", "platform", None)
    with pytest.raises(Unauthenticated, match="expired"):
        accounts.authenticate(made.token, now=datetime.now(timezone.utc) + timedelta(days=31))
    accounts.revoke_token(made.info.id, by="admin")
    with pytest.raises(Unauthenticated, match="revoked"):
        accounts.authenticate(made.token)
    with pytest.raises(AccountNotFound):
        accounts.revoke_token(999, by="admin")
    with pytest.raises(AccountError, match="token role"):
        accounts.create_token("x", "admin")
    # only the hash is kept
    from cases.accounts import ApiToken

    with accounts.store.transaction() as s:
        assert made.token not in str(s.scalars(select(ApiToken.token_hash)).all())


def test_the_last_admin_cannot_be_disabled(accounts):
    accounts.add_user("root", "admin", PASSWORD)
    with pytest.raises(AccountError, match="last active admin"):
        accounts.disable_user("root", by="root")
    accounts.add_user("chief", "admin", PASSWORD)
    assert accounts.disable_user("root", by="chief").disabled


# ---------------------------------------------------------------- over HTTP


def test_wrong_password_is_401_and_a_login_sets_an_httponly_cookie(app, parts):
    make_user(parts, "li", "analyst")
    with TestClient(app) as c:
        r = c.post("/api/v1/auth/login", json={"username": "li", "password": "not-the-password"})
        assert r.status_code == 401 and r.json()["detail"] == "wrong username or password"
        assert c.get("/api/v1/auth/me").status_code == 401

        r = c.post("/api/v1/auth/login", json={"username": "li", "password": PASSWORD})
        assert r.status_code == 200
        body = r.json()
        assert body["user"] == {"username": "li", "role": "analyst"} and body["token"].startswith("pcs_")
        expires = datetime.fromisoformat(body["expires_at"])  # auth.session_hours of the settings: 2
        assert timedelta(hours=1.9) < expires - datetime.now(timezone.utc) <= timedelta(hours=2)
        cookie = r.headers["set-cookie"]
        assert cookie.startswith(f"{SESSION_COOKIE}={body['token']}")
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower() and "Path=/" in cookie
        assert c.get("/api/v1/auth/me").json() == {"username": "li", "role": "analyst"}  # by cookie
    with TestClient(app) as other:  # no cookie: the token as a bearer works as well
        assert other.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['token']}"}).status_code == 200
        assert other.get("/api/v1/auth/me", headers={"Authorization": f"Basic {body['token']}"}).status_code == 401
        assert other.get("/api/v1/auth/me", headers={"Authorization": "Bearer pcs_made-up"}).status_code == 401


def test_logout_ends_the_session_for_cookie_and_bearer_alike(app, parts):
    make_user(parts, "li", "analyst")
    with TestClient(app) as c:
        token = login(c, "li")["token"]
        assert c.post("/api/v1/auth/logout").status_code == 204
        assert c.get("/api/v1/auth/me").status_code == 401
        r = c.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401 and "ended" in r.json()["detail"]
        assert c.post("/api/v1/auth/logout").status_code == 204  # again: harmless


def test_an_expired_session_is_401_with_the_reason(app, parts):
    make_user(parts, "li", "analyst")
    old = parts.accounts.start_session("li", now=datetime.now(timezone.utc) - timedelta(hours=3))
    with TestClient(app) as c:
        r = c.get("/api/v1/cases", headers={"Authorization": f"Bearer {old.token}"})
        assert r.status_code == 401 and r.json()["detail"] == "the session has expired; log in again"
        assert r.headers["www-authenticate"] == "Bearer"
        c.cookies.set(SESSION_COOKIE, old.token)
        page = c.get("/", follow_redirects=False)  # a browser with a stale cookie is sent to log in
        assert page.status_code == 303 and page.headers["location"] == "/login?next=%2F"


def test_a_disabled_user_is_out_at_once(app, parts):
    make_user(parts, "li", "analyst")
    with client_as(app, "admin", "chief") as admin, TestClient(app) as li:
        login(li, "li")
        assert li.get("/api/v1/cases").status_code == 200
        r = admin.post("/api/v1/users/li/disable")
        assert r.status_code == 200 and r.json()["disabled"] is True
        assert li.get("/api/v1/cases").status_code == 401  # the open session ended
        r = li.post("/api/v1/auth/login", json={"username": "li", "password": PASSWORD})
        assert r.status_code == 401 and "disabled" in r.json()["detail"]
        assert admin.post("/api/v1/users/nobody/disable").status_code == 404
        assert admin.post("/api/v1/users/chief/disable").status_code == 409  # the last admin


def test_admin_manages_users_and_tokens_and_a_revoked_token_is_refused(app, parts):
    with client_as(app, "admin", "chief") as admin:
        r = admin.post("/api/v1/users", json={"username": "wu", "role": "operator", "password": "drone-pilot-7"})
        assert r.status_code == 201 and r.json()["created_by"] == "chief" and "password" not in r.text
        assert admin.post("/api/v1/users", json={"username": "wu", "role": "operator",
                                                 "password": "drone-pilot-7"}).status_code == 409
        assert admin.post("/api/v1/users", json={"username": "x", "role": "platform",
                                                 "password": "drone-pilot-7"}).status_code == 422
        assert admin.post("/api/v1/users", json={"username": "y", "role": "analyst",
                                                 "password": "short"}).status_code == 422
        assert {u["username"] for u in admin.get("/api/v1/users").json()} == {"chief", "wu"}

        r = admin.post("/api/v1/tokens", json={"name": "city-platform", "days": 90})
        assert r.status_code == 201
        made = r.json()
        assert made["role"] == "platform" and made["token"].startswith("pat_")
        assert "token" not in admin.get("/api/v1/tokens").json()[0]  # shown once, never listed
        platform = {"Authorization": f"Bearer {made['token']}"}
        assert admin.get("/api/v1/auth/me", headers=platform).json() == {"username": "token:city-platform",
                                                                         "role": "platform"}
        assert admin.delete(f"/api/v1/tokens/{made['id']}").json()["revoked_by"] == "chief"
        r = admin.get("/api/v1/auth/me", headers=platform)
        assert r.status_code == 401 and "revoked" in r.json()["detail"]
        assert admin.delete("/api/v1/tokens/999").status_code == 404
    with TestClient(app) as wu:
        login(wu, "wu", "drone-pilot-7")
        assert wu.get("/api/v1/sources").status_code == 200
        assert wu.get("/api/v1/users").status_code == 403


def test_a_user_changes_their_own_password(app, parts):
    make_user(parts, "li", "analyst")
    with TestClient(app) as c:
        login(c, "li")
        assert c.post("/api/v1/auth/password", json={"current_password": "guess-guess",
                                                     "new_password": "new-password-1"}).status_code == 403
        assert c.post("/api/v1/auth/password", json={"current_password": PASSWORD,
                                                     "new_password": "new-password-1"}).status_code == 204
        assert c.get("/api/v1/auth/me").status_code == 401  # every session ended
        login(c, "li", "new-password-1")


def test_a_cookie_request_from_another_site_is_refused(app, parts):
    make_user(parts, "li", "analyst")
    with TestClient(app) as c:
        login(c, "li")
        r = c.post("/api/v1/cases/1/approve", headers={"Origin": "https://evil.example"})
        assert r.status_code == 403 and "cross-site" in r.json()["detail"]
        assert c.post("/api/v1/cases/1/approve", headers={"Origin": "http://testserver"}).status_code == 404
        # a bearer token is never sent by a browser on its own: no origin check needed
        r = c.post("/api/v1/cases/1/approve", headers={"Origin": "https://evil.example", **bearer(parts, "li")})
        assert r.status_code == 404


def test_the_login_page_and_the_redirect_back(app, parts):
    with TestClient(app, follow_redirects=False) as c:
        r = c.get("/", params={"status": "approved"})
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2F%3Fstatus%3Dapproved"
        page = c.get("/login", params={"next": "/?status=approved"})
        assert page.status_code == 200 and 'data-next="/?status=approved"' in page.text
        assert 'action="/api/v1/auth/login"' in page.text and 'type="password"' in page.text
        assert 'data-next="/"' in c.get("/login", params={"next": "//evil.example/"}).text  # no open redirect
    assert [safe_next(t) for t in ("/x?y=1", "//evil", "https://evil", "/\\evil", None)] == ["/x?y=1", "/", "/", "/", "/"]


def test_logins_and_account_changes_are_in_the_audit_log(app, parts):
    make_user(parts, "li", "analyst")
    with client_as(app, "admin", "chief") as admin, TestClient(app) as c:
        c.post("/api/v1/auth/login", json={"username": "li", "password": "wrong-password"})
        login(c, "li")
        c.post("/api/v1/auth/logout")
        token_id = admin.post("/api/v1/tokens", json={"name": "prometheus", "role": "monitoring"}).json()["id"]
        admin.delete(f"/api/v1/tokens/{token_id}")
        admin.post("/api/v1/users/li/disable")
    rows = audit_rows(parts)
    assert ("tests", "user.add", "user:li") in rows and ("tests", "user.add", "user:chief") in rows
    assert rows[-6:] == [("li", "auth.login_failed", "user:li"), ("li", "auth.login", "user:li"),
                         ("li", "auth.logout", "user:li"), ("chief", "token.create", f"token:{token_id}"),
                         ("chief", "token.revoke", f"token:{token_id}"), ("chief", "user.disable", "user:li")]
