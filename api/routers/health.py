"""Health: is the API up, can it reach its database and Redis."""
from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.deps import bus as get_bus, parts as get_parts

router = APIRouter(tags=["health"])


@router.get("/health", summary="Liveness and reachability of the stores")
def health(parts=Depends(get_parts), bus=Depends(get_bus)):
    checks = {}
    try:
        parts.store.list_cases(limit=1)
        checks["database"] = "ok"
    except Exception as err:
        checks["database"] = f"error: {err}"
    if bus is not None:
        try:
            bus.r.ping()
            checks["redis"] = "ok"
            checks["pending_events"] = bus.pending_count()
        except Exception as err:
            checks["redis"] = f"error: {err}"
    ok = all(v == "ok" for k, v in checks.items() if k in ("database", "redis"))
    return JSONResponse({"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503)
