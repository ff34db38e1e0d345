"""The role matrix: every route of the app, asked by every role, is let through or refused
exactly as the table below says (SQLite and PostgreSQL).

The test walks ``app.routes`` itself. A route that is in neither ``EXPECTED`` nor an
area of ``AREAS`` fails it, so a new route cannot ship without someone deciding who
may use it; an entry whose route is gone fails it too, so the table stays true.

"Let through" means auth did not refuse: the handler may still answer 404 or 422
(the requests carry made-up ids and empty bodies). "Refused" means: anonymous gets
401 (an API) or a 303 to /login (a page); a logged-in role gets our 403 (a page: a readable
HTML one, or for the start page a 303 to the role's own page).
"""
from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from api.app import create_app
from api.pages import PAGES
from auth_helpers import headers_for
from db_fixtures import db_url  # noqa: F401  (fixture)
from core.settings import CaseSettings, Settings
from core.wiring import Parts
from streams.sources import load_registry

CONFIG = Path(__file__).resolve().parents[1] / "config"
ROLES = ("anonymous", "analyst", "operator", "platform", "monitoring", "telemetry", "admin")


@dataclass(frozen=True)
class Access:
    roles: frozenset[str]  # who is let through; "anonymous" in it means public
    page: bool = False  # an HTML page: anonymous is sent to /login, not answered 401


def api(*roles: str) -> Access:
    return Access(frozenset(roles))


PUBLIC = api(*ROLES)
LOGGED_IN = api(*ROLES[1:])
PEOPLE = api("analyst", "operator", "admin")
ANALYST = api("analyst", "admin")  # admin may do what an analyst may (api/auth.py)
OPERATOR = api("operator", "admin")
ADMIN = api("admin")
PLATFORM = api("platform", "admin")
TELEMETRY = api("telemetry")  # position senders only: a person never posts a vehicle's position

EXPECTED: dict[tuple[str, str], Access] = {
    # liveness for load balancers and the API's description: no data in them
    ("GET", "/health"): PUBLIC,
    ("GET", "/openapi.json"): PUBLIC,
    ("GET", "/docs"): PUBLIC,
    ("GET", "/docs/oauth2-redirect"): PUBLIC,
    ("GET", "/redoc"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/api/v1/auth/login"): PUBLIC,
    ("POST", "/api/v1/auth/logout"): PUBLIC,  # ends the caller's own session, if any
    ("GET", "/api/v1/auth/me"): LOGGED_IN,
    ("POST", "/api/v1/auth/password"): PEOPLE,
    # positions of vehicles, phones and the drone from the gateway
    ("POST", "/api/v1/positions"): TELEMETRY,
    # review
    ("GET", "/"): Access(ANALYST.roles, page=True),
    ("GET", "/api/v1/cases"): ANALYST,
    ("GET", "/api/v1/cases/{case_id}"): ANALYST,
    ("POST", "/api/v1/cases/{case_id}/approve"): ANALYST,
    ("POST", "/api/v1/cases/{case_id}/reject"): ANALYST,
    ("POST", "/api/v1/cases/{case_id}/reclassify"): ANALYST,
    ("GET", "/api/v1/cases/{case_id}/snapshot"): ANALYST,
    ("GET", "/api/v1/categories"): ANALYST,
    # the review console: its page and fragments, evidence, merge, move, the live stream
    ("GET", "/ui/queue"): ANALYST,
    ("GET", "/ui/cases/{case_id}"): ANALYST,
    ("GET", "/api/v1/cases/stream"): ANALYST,
    ("GET", "/api/v1/cases/{case_id}/evidence"): ANALYST,
    ("GET", "/api/v1/cases/{case_id}/evidence/{item_id}"): ANALYST,
    ("POST", "/api/v1/cases/{case_id}/merge"): ANALYST,
    ("POST", "/api/v1/cases/{case_id}/location"): ANALYST,
    ("GET", "/api/v1/grid/at"): ANALYST,
    ("GET", "/ui/static/{name}"): PUBLIC,  # the console's script and style sheet: no data in them
    # sources: analysts (where a case came from), operators (the drone of an upload)
    ("GET", "/api/v1/sources"): api("analyst", "operator", "admin"),
    ("GET", "/api/v1/sources/{source_id}"): api("analyst", "operator", "admin"),
    ("GET", "/sources"): Access(frozenset({"analyst", "operator", "admin"}), page=True),
    ("GET", "/ui/sources"): api("analyst", "operator", "admin"),
    ("GET", "/metrics"): api("admin", "monitoring"),
    ("GET", "/api/v1/workers"): api("admin", "monitoring"),  # beside /metrics: the same figures as JSON
    # drone uploads: the operator's page (the API is the /api/v1/uploads area below)
    ("GET", "/uploads"): Access(OPERATOR.roles, page=True),
    # administration
    ("GET", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users"): ADMIN,
    ("POST", "/api/v1/users/{name}/disable"): ADMIN,
    ("GET", "/api/v1/tokens"): ADMIN,
    ("POST", "/api/v1/tokens"): ADMIN,
    ("DELETE", "/api/v1/tokens/{token_id}"): ADMIN,
    ("GET", "/api/v1/audit"): ADMIN,
    ("GET", "/api/v1/webhooks/deliveries"): ADMIN,
    ("POST", "/api/v1/webhooks/deliveries/{delivery_id}/retry"): ADMIN,
    # the case platform: /api/v1/feed... (AREAS below)
}

# Areas other parts of the product add routes to: a route under one of these prefixes
# that has no entry of its own above is held to the area's access.
AREAS: list[tuple[str, Access]] = [
    ("/api/v1/feed", PLATFORM),  # the case platform's feed
    ("/api/v1/uploads", OPERATOR),  # drone footage after a flight
]

# Mounted apps (static files) are not routes with methods: public unless listed here.
PUBLIC_MOUNTS = {"/static"}


def _routes(app):
    """Every route with its full path. FastAPI >= 0.16x keeps included routers as
    lazy branches in app.routes; iter_route_contexts flattens them."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # older FastAPI: app.routes is already flat
        return [(r, r) for r in app.routes]
    return [(ctx.original_route, ctx) for ctx in iter_route_contexts(app.routes)]


def endpoints(app) -> list[tuple[str, str]]:
    out = []
    for original, route in _routes(app):
        if isinstance(original, Mount):
            out.append(("MOUNT", route.path))
        elif isinstance(original, (APIRoute, Route)):
            out += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]  # HEAD is GET
        else:
            out.append((type(original).__name__, getattr(route, "path", "?")))
    return out


def expected_access(method: str, path: str) -> Access | None:
    if (method, path) in EXPECTED:
        return EXPECTED[(method, path)]
    if method == "MOUNT":
        return PUBLIC if path in PUBLIC_MOUNTS else None
    for prefix, access in AREAS:
        if path == prefix or path.startswith(prefix + "/"):
            return access
    return None


def concrete(path: str) -> str:
    """A made-up URL for a route path: every parameter 1 (valid as an int and a name)."""
    return re.sub(r"\{[^}]+\}", "1", path)


def outcome(r) -> str:
    """What auth did with the request: 'through', 'unauthenticated', 'to-login' or 'forbidden'."""
    if r.status_code == 401:
        return "unauthenticated"
    if r.status_code == 303 and r.headers.get("location", "").startswith("/login?next="):
        return "to-login"
    if r.status_code == 403 and str(_detail(r)).startswith("forbidden: role"):
        return "forbidden"
    if r.status_code == 403 and r.headers.get("content-type", "").startswith("text/html") \
            and "not for your role" in r.text:
        return "forbidden"  # a page: the readable refusal (api/pages.py)
    if r.status_code == 303 and r.headers.get("location") in {p.path for p in PAGES}:
        return "forbidden"  # the start page sends a role to its own page
    return "through"


def _detail(r):
    try:
        return r.json().get("detail")
    except ValueError:
        return None


def wanted(access: Access, role: str) -> str:
    if role in access.roles:
        return "through"
    if role == "anonymous":
        return "to-login" if access.page else "unauthenticated"
    return "forbidden"


@pytest.fixture
def app(db_url, tmp_path):
    parts = Parts(Settings(data_dir=tmp_path / "data", cases=CaseSettings(grid_file=None)), db_url=db_url)
    app = create_app(parts, bus=None, registry=load_registry(CONFIG / "demo_sources.yaml"))
    app.state.stopping = threading.Event()
    app.state.stopping.set()  # as at shutdown: the console's event stream answers and ends at once
    yield app
    parts.store.close()


def test_every_route_is_declared(app):
    undeclared = [f"{m} {p}" for m, p in endpoints(app) if expected_access(m, p) is None]
    assert not undeclared, ("routes nobody decided access for (add them to EXPECTED in tests/test_roles.py, "
                            "and protect them with api.auth.require): " + ", ".join(undeclared))
    present = set(endpoints(app))
    gone = [f"{m} {p}" for m, p in EXPECTED if (m, p) not in present]
    assert not gone, "EXPECTED lists routes the app no longer has: " + ", ".join(gone)


def test_every_route_for_every_role(app):
    parts = app.state.parts
    wrong = []
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        for method, path in endpoints(app):
            access = expected_access(method, path)
            if access is None:
                continue  # reported by test_every_route_is_declared
            url = concrete(path) if method != "MOUNT" else path.rstrip("/") + "/no-such-file"
            for role in ROLES:
                # fresh credentials per request: a route may end a session (logout) or revoke a token
                headers = {} if role == "anonymous" else headers_for(parts, role, name=f"{role}-matrix")
                kwargs = {"json": {}} if method in ("POST", "PUT", "PATCH") else {}
                r = client.request("GET" if method == "MOUNT" else method, url, headers=headers, **kwargs)
                got, want = outcome(r), wanted(access, role)
                if got != want:
                    wrong.append(f"{method} {path} as {role}: {want} expected, got {got} ({r.status_code} {r.text[:120]})")
    assert not wrong, f"{len(wrong)} wrong answer(s):\n" + "\n".join(wrong)


def test_the_matrix_would_catch_an_unprotected_route(app):
    """The walk is only worth something if it notices: a route added without
    require() and without an entry is reported."""
    @app.get("/api/v1/forgotten")
    def forgotten():
        return {"secret": 1}

    assert expected_access("GET", "/api/v1/forgotten") is None
    assert ("GET", "/api/v1/forgotten") in endpoints(app)

    @app.get("/api/v1/feed/forgotten")
    def forgotten_in_an_area():
        return {"secret": 2}

    with TestClient(app) as client:  # declared by its area, but unprotected: anonymous gets through
        r = client.get("/api/v1/feed/forgotten")
    assert outcome(r) == "through" != wanted(expected_access("GET", "/api/v1/feed/forgotten"), "anonymous")
