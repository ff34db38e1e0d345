"""Health: is the API up, can it reach its database and Redis.

Public (load balancers ask it), so a failing check says only "error: unavailable";
the error itself (a socket path, a host name, a driver's message) is for admins and
monitoring tokens, who get it in the same answer, and for the log.
"""
from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.auth import optional_principal
from api.deps import bus as get_bus, parts as get_parts

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)
SEES_DETAILS = ("admin", "monitoring")


@router.get("/health", summary="Liveness and reachability of the stores (error details: admin and monitoring)")
def health(request: Request, parts=Depends(get_parts), bus=Depends(get_bus)):
    who = optional_principal(request)
    details = who is not None and who.role in SEES_DETAILS

    def failed(what: str, err: Exception) -> str:
        log.warning("health: %s unavailable: %s", what, err)
        return f"error: {err}" if details else "error: unavailable"

    checks = {}
    try:
        parts.store.list_cases(limit=1)
        checks["database"] = "ok"
    except Exception as err:
        checks["database"] = failed("database", err)
    if bus is not None:
        try:
            bus.r.ping()
            checks["redis"] = "ok"
            checks["pending_events"] = bus.pending_count()
        except Exception as err:
            checks["redis"] = failed("redis", err)
    ok = all(v == "ok" for k, v in checks.items() if k in ("database", "redis"))
    return JSONResponse({"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503)
