"""The audit log and the webhook deliveries, for administrators."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from sqlalchemy.orm import Session

from api.auth import Principal, require
from api.deps import parts as get_parts
from api.params import RowId
from cases import audit, outbox
from cases.cursor import CursorError
from core.wiring import Parts

router = APIRouter(prefix="/api/v1", tags=["audit"])
admin = require("admin")

BAD_CURSOR = {400: {"description": "a cursor this list did not issue"}}


def _listing(fn):
    try:
        return fn()
    except (CursorError, ValueError) as err:
        raise HTTPException(400, str(err)) from None


@router.get("/audit", response_model=audit.AuditPage, responses=BAD_CURSOR,
            summary="The audit log: who did what, when (admin)",
            description="Every review action, every webhook delivery attempt, logins and account changes. "
                        "Append-only. Page with `next_cursor`; filter by exact actor, action or target "
                        "(a target ending in ':' matches a whole kind, e.g. `case:`).")
def audit_log(cursor: str | None = Query(None, max_length=200), limit: int = Query(100, ge=1, le=1000),
              actor: str | None = Query(None, max_length=64), action: str | None = Query(None, max_length=64),
              target: str | None = Query(None, max_length=128, description="e.g. case:CP-20261129-0007"),
              order: Literal["oldest", "newest"] = "oldest",
              parts: Parts = Depends(get_parts), _: Principal = Depends(admin)):
    with Session(parts.store.engine) as s:
        return _listing(lambda: audit.page(s, cursor, limit, actor=actor, action=action, target=target, order=order))


@router.get("/webhooks/deliveries", response_model=outbox.DeliveryPage, responses=BAD_CURSOR,
            summary="Webhook deliveries: pending, delivered and dead (admin)")
def deliveries(cursor: str | None = Query(None, max_length=200), limit: int = Query(100, ge=1, le=1000),
               state: Literal["pending", "delivered", "dead"] | None = None,
               endpoint: str | None = Query(None, max_length=64), case_no: str | None = Query(None, max_length=32),
               parts: Parts = Depends(get_parts), _: Principal = Depends(admin)):
    with Session(parts.store.engine) as s:
        return _listing(lambda: outbox.page(s, cursor, limit, state=state, endpoint=endpoint, case_no=case_no))


@router.post("/webhooks/deliveries/{delivery_id}/retry", response_model=outbox.Delivery,
             summary="Put a dead (or waiting) delivery back in line now (admin)")
def retry(delivery_id: RowId, parts: Parts = Depends(get_parts), principal: Principal = Depends(admin)):
    try:
        return outbox.retry(parts.store, delivery_id, principal.username)
    except LookupError as err:
        raise HTTPException(404, str(err)) from None
    except outbox.OutboxError as err:
        raise HTTPException(409, str(err)) from None
