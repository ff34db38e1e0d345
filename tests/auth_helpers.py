"""Logging in from tests: real users, real sessions, real tokens in the test's database.

    from auth_helpers import client_as, login, make_user, bearer

    with client_as(app, "analyst") as c:        # a TestClient whose requests carry a bearer session
        c.get("/api/v1/cases")
    make_user(parts, "li", "analyst", "secret-pass")
    login(client, "li", "secret-pass")           # through POST /api/v1/auth/login: the client keeps the cookie
    client.get("/api/v1/cases", headers=bearer(parts, "li"))
    client.get("/api/v1/feed", headers=token_headers(parts, "platform"))

Users made here hash their password with real scrypt at a lower cost (``FAST_KDF``):
a test makes many users and the default cost is a third of a second each. The
default cost itself is tested in test_auth.py. A login through the API re-hashes
the password at the default cost, as it would after the cost was raised.
"""
from __future__ import annotations

import itertools

from fastapi.testclient import TestClient

from cases.accounts import TOKEN_ROLES, USER_ROLES, Accounts, Scrypt

FAST_KDF = Scrypt(n=2**10, r=8, p=1)
PASSWORD = "correct horse battery"  # the password of users made without one
_names = itertools.count(1)


def _fast(parts) -> Accounts:
    return Accounts(parts.store, kdf=FAST_KDF, session_hours=parts.settings.auth.session_hours)


def make_user(parts, name: str, role: str, password: str = PASSWORD):
    """A user in the database of ``parts`` (a core.wiring.Parts); returns its UserView."""
    return _fast(parts).add_user(name, role, password, by="tests")


def login(client: TestClient, name: str, password: str = PASSWORD) -> dict:
    """Log in through the API; the client keeps the session cookie. Returns the JSON answer."""
    r = client.post("/api/v1/auth/login", json={"username": name, "password": password})
    assert r.status_code == 200, f"login of {name!r} failed: {r.status_code} {r.text}"
    return r.json()


def session_token(parts, name: str) -> str:
    """A fresh session token for an existing user, without the password round-trip."""
    return parts.accounts.start_session(name).token


def bearer(parts, name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {session_token(parts, name)}"}


def token_headers(parts, role: str = "platform", name: str | None = None) -> dict[str, str]:
    """Headers with a new API token of a machine role (platform, monitoring)."""
    made = parts.accounts.create_token(name or f"{role}-{next(_names)}", role, by="tests")
    return {"Authorization": f"Bearer {made.token}"}


def headers_for(parts, role: str, name: str | None = None) -> dict[str, str]:
    """Authorization headers of someone with ``role``: a new user for a person's role,
    a new API token for a machine's."""
    if role in TOKEN_ROLES:
        return token_headers(parts, role, name)
    if role not in USER_ROLES:
        raise ValueError(f"unknown role {role!r}")
    name = name or f"{role}-{next(_names)}"
    if parts.accounts.get_user(name) is None:
        make_user(parts, name, role)
    return bearer(parts, name)


def client_as(app, role: str, name: str | None = None, **kwargs) -> TestClient:
    """A TestClient (use it in ``with``) whose every request is made as ``role``
    (``name``: the user's name, made if missing)."""
    return TestClient(app, headers=headers_for(app.state.parts, role, name), **kwargs)
