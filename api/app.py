"""The HTTP face: draft cases, review actions, evidence, sources, health.

A thin layer: every route calls the store, the taxonomy or the bus and turns
their errors into HTTP answers with a readable ``detail``.
"""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from api import faults, pages
from api.edge import RequestGuard
from api.routers import cases, health, metrics, review, sources, ui
from api.routers import admin, auth
from api.routers import audit, feed
from api.routers import positions, uploads
from core.wiring import Parts

DESCRIPTION = """City Patrol proposes **draft cases** (street vending, illegal construction, dust)
found on the city's video sources. Nothing becomes a case on the city platform until an
analyst approves it; every review action is recorded with who and when."""


def create_app(parts: Parts, bus=None, registry=None) -> FastAPI:
    app = FastAPI(title="City Patrol", version="0.1.0", description=DESCRIPTION,
                  openapi_tags=[{"name": "cases", "description": "Draft cases and their review"},
                                {"name": "sources", "description": "Video sources and their live state"},
                                {"name": "health", "description": "Liveness of the service and its stores"},
                                {"name": "auth", "description": "Logging in: session cookie or bearer token"},
                                {"name": "admin", "description": "Users and API tokens (admin only)"},
                                {"name": "platform", "description": "The case platform's feeds of confirmed cases "
                                 "and raw events (docs/platform-interface.md; webhooks are described there too)"},
                                {"name": "audit", "description": "Audit log and webhook deliveries (admin only)"},
                                {"name": "uploads", "description": "Drone flight uploads: resumable chunks, checks, "
                                 "the analysis job and its progress (operators: their own flights)"},
                                {"name": "positions", "description": "Live positions of vehicles, phones and the "
                                 "drone (telemetry tokens; JSON or GB/T 28181 MobilePosition)"}])
    app.state.parts = parts
    app.add_middleware(RequestGuard, chunk_limit=parts.settings.uploads.chunk_max_bytes)
    app.add_exception_handler(RequestValidationError, validation_failed)
    pages.register(app)  # a page a role may not use answers with a readable page
    faults.register(app)  # a write refused by a full disk: 503 with Retry-After
    app.state.bus = bus
    app.state.registry = registry
    app.include_router(review.router)  # first: its /cases/stream must not be taken for /cases/{case_id}
    app.include_router(cases.router)
    app.include_router(sources.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(ui.router)
    app.include_router(auth.router)
    app.include_router(auth.pages)
    app.include_router(admin.router)
    app.include_router(feed.router)
    app.include_router(audit.router)
    app.include_router(uploads.router)
    app.include_router(uploads.pages)
    app.include_router(positions.router)
    return app


async def validation_failed(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 saying where and why, never echoing the input: it may be megabytes, or a
    NaN that JSON cannot even carry back."""
    return JSONResponse({"detail": [_brief(e) for e in exc.errors()[:20]]}, status_code=422)


def _brief(error: dict) -> dict:
    return {"type": error.get("type"), "loc": [str(x)[:64] if isinstance(x, str) else x for x in error.get("loc", ())],
            "msg": str(error.get("msg", ""))[:300]}
