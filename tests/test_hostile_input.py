"""Hostile input at every route: whatever a client sends, the answer is a 4xx, never a 500.

The walk reads the app's own OpenAPI description, so a route added later is walked too.
Every path and query parameter gets, in turn, each of ``PARAM_VALUES`` (numbers past
2^63, non-ASCII digits, dates of year 1 and 9999, forged cursors, long strings, ...),
every field of every JSON body each of ``FIELD_VALUES`` (NaN, Infinity, 10^30, ...),
and every route the upload headers' hostile forms, as admin (or the role a route is
for) and unauthenticated, against a real app on SQLite with Redis.
"""
from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from auth_helpers import FAST_KDF, headers_for, session_token
from cases.accounts import Accounts
from core.settings import Settings
from core.wiring import Parts
from streams.sources import load_registry
from test_bus import private_redis_db, redis_unreachable
from test_console_api import EAST_GATE, T0, event
from workers.bus import Bus

CONFIG = Path(__file__).resolve().parents[1] / "config"


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


BIG = str(2**63)
PARAM_VALUES = [
    BIG, str(10**30), "-" + BIG, "-1", "1e400", "NaN", "²", "٣", "", "x" * 4000, "../../etc/passwd", "\x00",
    "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-12:00",
    _cursor("v1:cases:²"), _cursor("v1:cases:" + "9" * 40), _cursor("v1:events:" + BIG),
    _cursor("v1:audit-oldest:" + "9" * 25), _cursor("v1:deliveries:٣"),
]
# JSON text, so that NaN and numbers no Python float holds can be sent as they are
FIELD_VALUES = ["NaN", "Infinity", "1e400", str(10**30), str(-(10**30)), "1e7", '"²"', json.dumps("x" * 100_000),
                "null", "[]", "{}", '"0001-01-01T00:00:00"', '"9999-12-31T23:59:59"']
WHOLE_BODIES = [b"NaN", b"[" * 5000 + b"]" * 5000, b"\xff\xfe", b'{"a": ' * 2000 + b"1" + b"}" * 2000, b""]
HEADER_VALUES = [{"Upload-Offset": v} for v in ("²", "٣", BIG, "1e3", "-1", " ")] + \
                [{"Content-Range": v} for v in ("bytes ²-3/10", "bytes 0-٣/10", f"bytes 0-{BIG}/{BIG}",
                                                "bytes 3-1/10", "bytes */10", "kilobytes 0-1/2")]

# Plausible values for body fields, so that the walk gets past the first check of a body
PLAUSIBLE = {"filename": "flight.mp4", "sha256": "a" * 64, "size": 1000, "username": "nobody",
             "password": "not-the-password", "current_password": "not-the-password",
             "new_password": "another-password", "name": "walker", "lat": 30.59, "lon": 114.30}


@pytest.fixture
def redis_for_walk(tmp_path):
    if redis_unreachable():
        from workers.bus import EmbeddedRedis
        embedded = EmbeddedRedis(tmp_path / "redis")
        yield embedded.url
        embedded.close()
        return
    with private_redis_db() as url:
        yield url


@pytest.fixture
def app(tmp_path, redis_for_walk):
    parts = Parts(Settings(data_dir=tmp_path / "data"), db_url=f"sqlite:///{tmp_path / 'cases.db'}")
    parts.__dict__["accounts"] = Accounts(parts.store, kdf=FAST_KDF)  # a login costs milliseconds, not 0.3 s
    bus = Bus.connect(redis_for_walk)
    app = create_app(parts, bus=bus, registry=load_registry(CONFIG / "demo_sources.yaml"))
    app.state.stopping = threading.Event()
    app.state.stopping.set()  # the console's event stream answers and ends at once
    parts.builder.apply(event("fixed-east-gate", "street_vending", EAST_GATE, T0), "fixed")  # case 1
    yield app
    bus.r.close()
    parts.store.close()


# ---------------------------------------------------------------------------------- the walk


def _resolve(schema: dict, spec: dict, root: dict) -> dict:
    while "$ref" in schema:
        ref = schema["$ref"]
        if ref.startswith("#/components/schemas/"):
            schema = spec["components"]["schemas"][ref.rsplit("/", 1)[1]]
        else:  # "#/$defs/X" of a schema given whole (openapi_extra)
            schema = root["$defs"][ref.rsplit("/", 1)[1]]
    if "anyOf" in schema:
        options = [s for s in schema["anyOf"] if s.get("type") != "null"]
        return _resolve(options[0], spec, root) if options else {}
    if "allOf" in schema and len(schema["allOf"]) == 1:
        return _resolve(schema["allOf"][0], spec, root)
    return schema


def baseline(schema: dict, spec: dict, root: dict, name: str = ""):
    """A value the schema accepts, or close to it."""
    schema = _resolve(schema, spec, root)
    if name in PLAUSIBLE:
        return PLAUSIBLE[name]
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return {k: baseline(v, spec, root, k) for k, v in schema.get("properties", {}).items()
                if k in schema.get("required", ())}
    return {"integer": 1, "number": 1.5, "boolean": True, "array": []}.get(kind, "x")


def field_paths(schema: dict, spec: dict, root: dict, prefix=()) -> list[tuple]:
    """Every field of a body schema, nested objects included, as key paths."""
    schema = _resolve(schema, spec, root)
    out = []
    for key, sub in schema.get("properties", {}).items():
        out.append(prefix + (key,))
        resolved = _resolve(sub, spec, root)
        if "properties" in resolved:
            out += field_paths(resolved, spec, root, prefix + (key,))
    return out


def with_field(body: dict, path: tuple, marker: str) -> dict:
    body = json.loads(json.dumps(body))
    target = body
    for key in path[:-1]:
        if not isinstance(target.get(key), dict):
            target[key] = {}
        target = target[key]
    target[path[-1]] = marker
    return body


def requests_for(spec: dict, path: str, method: str, op: dict, defaults: dict, bodies: bool = True):
    """(url, query, body bytes or None, headers) for every hostile variant of one operation."""
    params = [p for p in op.get("parameters", []) if p["in"] in ("path", "query")]
    base_path = {p["name"]: defaults.get(p["name"], "1") for p in params if p["in"] == "path"}
    base_query = {p["name"]: "30.59" if p["name"] in ("lat", "lon") else "1"
                  for p in params if p["in"] == "query" and p.get("required")}

    def url(path_values):
        out = path
        for k, v in path_values.items():
            out = out.replace("{" + k + "}", quote(v, safe="") if v else "%20")
        return out

    content = op.get("requestBody", {}).get("content", {})
    json_schema = content.get("application/json", {}).get("schema")
    body = baseline(json_schema, spec, json_schema) if json_schema else None
    base_body = json.dumps(body).encode() if body is not None else None

    yield url(base_path), base_query, base_body, {}
    for p in params:
        for v in PARAM_VALUES:
            if p["in"] == "path":
                yield url({**base_path, p["name"]: v}), base_query, base_body, {}
            else:
                yield url(base_path), {**base_query, p["name"]: v}, base_body, {}
    if json_schema is not None and bodies:
        for field in field_paths(json_schema, spec, json_schema):
            for v in FIELD_VALUES:
                marker = "\u0000HOSTILE\u0000"
                text = json.dumps(with_field(body if isinstance(body, dict) else {}, field, marker))
                yield url(base_path), base_query, text.replace(json.dumps(marker), v).encode(), {}
    if method in ("post", "put", "patch") and bodies:
        for raw in WHOLE_BODIES:
            yield url(base_path), base_query, raw, {}
    for headers in HEADER_VALUES:
        yield url(base_path), base_query, base_body if base_body is not None else b"abcd", headers


def walk(app, identity, *, bodies: bool = True, only: str = "") -> tuple[int, list[str]]:
    """Send every hostile variant of every operation (of those whose path starts with
    ``only``); (requests sent, 5xx answers). ``bodies``: walk the body fields too."""
    spec = app.openapi()
    parts = app.state.parts
    upload = TestClient(app, headers=headers_for(parts, "admin", "walk-admin")).post(
        "/api/v1/uploads", json={"filename": "walk.mp4", "size": 1000, "sha256": "a" * 64})
    assert upload.status_code == 201, upload.text
    defaults = {"upload_id": upload.json()["id"], "part": "video", "source_id": "fixed-east-gate",
                "case_no": "CP-20260101-0001", "name": "nobody"}
    sent, failures = 0, []
    with TestClient(app, raise_server_exceptions=False, follow_redirects=False) as client:
        for path, operations in spec["paths"].items():
            for method, op in operations.items() if path.startswith(only) else ():
                for url, query, body, extra in requests_for(spec, path, method, op, defaults, bodies):
                    headers = {"content-type": "application/json", **identity(method, path)}
                    headers.update({k: v.encode() for k, v in extra.items()})
                    r = client.request(method.upper(), url, params=query, content=body, headers=headers)
                    sent += 1
                    if r.status_code >= 500:
                        shown = (body or b"")[:80]
                        failures.append(f"{r.status_code} {method.upper()} {url[:100]} {query} {shown!r} "
                                        f"{extra} -> {r.text[:160]}")
    return sent, failures


def test_no_route_answers_hostile_input_with_a_server_error(app):
    parts = app.state.parts
    admin = headers_for(parts, "admin", "walker")
    telemetry = headers_for(parts, "telemetry")

    def as_admin(method, path):
        if path == "/api/v1/auth/logout":  # would end the walker's own session
            return {"Authorization": f"Bearer {session_token(parts, 'walker')}"}
        if path == "/api/v1/positions":  # telemetry tokens only
            return telemetry
        return admin

    sent, failures = walk(app, as_admin)
    assert sent > 2000, f"the walk sent only {sent} requests: is the OpenAPI description empty?"
    assert not failures, f"{len(failures)} server error(s) among {sent} hostile requests:\n" + "\n".join(failures[:40])

    # Anonymous changes are refused before their bodies are read (api/edge.py): parameters only.
    sent, failures = walk(app, lambda method, path: {}, bodies=False)
    assert not failures, f"{len(failures)} server error(s) unauthenticated:\n" + "\n".join(failures[:40])


def test_the_walk_would_catch_a_route_that_fails(app):
    """The walk is worth something only if it notices: a route that takes an unbounded
    id to the database is reported."""
    store = app.state.parts.store

    @app.get("/api/v1/fragile/{n}")
    def fragile(n: int):
        return {"case": store.get_case(n) is not None}

    app.openapi_schema = None  # described anew, with the new route
    admin = headers_for(app.state.parts, "admin", "walker")
    sent, failures = walk(app, lambda method, path: admin, only="/api/v1/fragile/")
    assert any("/api/v1/fragile/" + BIG in f for f in failures), failures[:5]
