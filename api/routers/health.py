"""Health: is the API up, can it reach its database and Redis, is there room to write.

Public (load balancers ask it), so a failing check says only "error: unavailable";
the error itself (a socket path, a host name, a driver's message) is for admins and
monitoring tokens, who get it in the same answer, and for the log.
"""
from __future__ import annotations

import logging
import time

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from api.auth import optional_principal
from api.deps import bus as get_bus, parts as get_parts
from cases import disk, retention

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
    checks["disk"], checks["free_bytes"] = disk_check(parts)
    usage = retention.LAST_USAGE  # measured by this process's last retention run; None before the first
    if usage is not None:
        checks["evidence"] = usage.as_dict()
        if usage.warning:  # a warning, not a fault: the status stays ok
            checks["warnings"] = [usage.warning]
    ok = all(v == "ok" for k, v in checks.items() if k in ("database", "redis", "disk"))
    return JSONResponse({"status": "ok" if ok else "degraded", **checks}, status_code=200 if ok else 503)


def disk_check(parts) -> tuple[str, int | None]:
    """"ok", or why writes fail or are about to: little free space on the data folder's
    file system, or a write refused for want of room and none succeeded since."""
    min_free = int(parts.settings.retention.min_free_mb * (1 << 20))
    problems = []
    try:
        room = disk.space(parts.evidence.root)
    except OSError as err:
        room = None
        problems.append(f"free space unknown ({disk.describe(err)})")
    if room is not None and room.free <= min_free:
        problems.append(f"{'no' if room.free == 0 else 'low'} free space on the data folder: "
                        f"{disk.human(room.free)} free of {disk.human(room.total)} (needs {disk.human(min_free)})")
    fault = disk.FAULTS.current()
    if fault is not None:
        problems.append(f"last {fault.what} write failed {time.time() - fault.at:.0f} s ago: {fault.reason}")
    return ("degraded: " + "; ".join(problems) if problems else "ok"), (room.free if room else None)
