"""The webhook outbox: one row per (endpoint, approval), written in the approving
transaction, so a crash between approval and delivery loses nothing — the row is
there when any delivery loop next looks.

Delivery is at-least-once: a loop *claims* due rows (pushing their next attempt
a lease into the future), posts them outside any transaction, then records the
outcome. A loop that dies mid-post leaves the row to be claimed again when the
lease runs out, so the receiver may get a message twice — always with the same
``idempotency_key``, which is what it deduplicates on. After ``max_attempts``
failures a row is ``dead``: still listed, with its last error, and
``retry`` puts it back in line.

Every attempt's outcome is written to the audit log in the same transaction as
the row's new state. The delivery policy (backoff, signing, HTTP) lives in
``workers/webhooks.py``; this module is only the durable state.
"""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Index, Integer, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import audit, cursor
from .db import Base, utcnow

EVENTS = ("case.approved",)
STATES = ("pending", "delivered", "dead")
ACTOR = "system:webhooks"
LOG = "deliveries"


class OutboxError(ValueError):
    pass


class OutboxRow(Base):
    __tablename__ = "webhook_outbox"
    __table_args__ = (Index("ix_webhook_outbox_due", "state", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    endpoint: Mapped[str] = mapped_column(String(64), index=True)  # the name of a configured webhook
    event: Mapped[str] = mapped_column(String(32))
    case_id: Mapped[int] = mapped_column(Integer, index=True)
    case_no: Mapped[str] = mapped_column(String(32))
    feed_seq: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime]
    state: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_attempt_at: Mapped[datetime | None]
    last_status: Mapped[int | None] = mapped_column(Integer)  # HTTP status of the last answer, if any
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]


class Delivery(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True, json_schema_extra={"examples": [{
        "id": 17, "endpoint": "city-platform", "event": "case.approved", "case_id": 7, "case_no": "CP-20261129-0007",
        "feed_seq": 31, "idempotency_key": "3f6c1e0a9b6d4c1e8f0a2b3c4d5e6f70", "created_at": "2026-11-29T03:12:45Z",
        "state": "pending", "attempts": 2, "next_attempt_at": "2026-11-29T03:13:05Z",
        "last_attempt_at": "2026-11-29T03:12:57Z", "last_status": 503, "last_error": "HTTP 503 Service Unavailable",
        "delivered_at": None}]})

    id: int
    endpoint: str = Field(description="name of the configured webhook")
    event: str = Field(description="case.approved")
    case_id: int
    case_no: str
    feed_seq: int = Field(description="the case's seq in the case feed")
    idempotency_key: str = Field(description="sent as Idempotency-Key with every attempt of this delivery")
    created_at: datetime
    state: Literal["pending", "delivered", "dead"]
    attempts: int
    next_attempt_at: datetime
    last_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str
    has_more: bool


def enqueue(session: Session, endpoints: Iterable[str], event: str, case: Any, feed_seq: int) -> list[int]:
    """One pending row per endpoint, in the caller's (approving) transaction."""
    if event not in EVENTS:
        raise OutboxError(f"unknown webhook event {event!r}; one of {', '.join(EVENTS)}")
    now = utcnow()
    rows = [OutboxRow(endpoint=name, event=event, case_id=case.id, case_no=case.case_no, feed_seq=feed_seq,
                      idempotency_key=uuid.uuid4().hex, created_at=now, state="pending", attempts=0,
                      next_attempt_at=now) for name in endpoints]
    session.add_all(rows)
    session.flush()
    return [r.id for r in rows]


def claim(store, endpoints: Iterable[str], *, limit: int = 20, lease_s: float = 60.0,
          now: datetime | None = None) -> list[Delivery]:
    """Due pending rows for these endpoints, each now leased to the caller for ``lease_s``.

    Two loops never claim the same row within a lease: PostgreSQL skips rows
    another claim has locked, and SQLite's write transactions run one at a time.
    """
    names = list(endpoints)
    if not names:
        return []
    now = now or utcnow()
    with store.transaction() as s:
        rows = s.scalars(select(OutboxRow)
                         .where(OutboxRow.state == "pending", OutboxRow.next_attempt_at <= now,
                                OutboxRow.endpoint.in_(names))
                         .order_by(OutboxRow.next_attempt_at, OutboxRow.id).limit(limit)
                         .with_for_update(skip_locked=True)).all()
        for row in rows:
            row.next_attempt_at = now + timedelta(seconds=lease_s)
        s.flush()
        return [Delivery.model_validate(r) for r in rows]


def delivered(store, delivery_id: int, status: int, elapsed_s: float) -> Delivery:
    """Record an attempt the receiver accepted (2xx)."""
    with store.transaction() as s:
        row = _row(s, delivery_id)
        now = utcnow()
        row.attempts += 1
        row.last_attempt_at, row.last_status, row.last_error = now, status, None
        if row.state != "delivered":  # a second loop's late success changes nothing more
            row.state, row.delivered_at = "delivered", now
        audit.record(s, ACTOR, "webhook.delivered", f"case:{row.case_no}", _detail(row, status=status,
                     elapsed_ms=round(elapsed_s * 1000)))
        return Delivery.model_validate(row)


def failed(store, delivery_id: int, error: str, status: int | None, retry_at: datetime | None) -> Delivery:
    """Record a failed attempt: try again at ``retry_at``, or give up (``None``: dead)."""
    with store.transaction() as s:
        row = _row(s, delivery_id)
        now = utcnow()
        row.attempts += 1
        row.last_attempt_at, row.last_status, row.last_error = now, status, error[:2000]
        if row.state == "delivered":  # another loop got it through meanwhile; keep that
            action = "webhook.failed"
        elif retry_at is None:
            row.state, action = "dead", "webhook.dead"
        else:
            row.next_attempt_at, action = retry_at, "webhook.failed"
        audit.record(s, ACTOR, action, f"case:{row.case_no}", _detail(row, status=status, error=error[:500],
                     retry_at=retry_at.isoformat() if retry_at and row.state == "pending" else None))
        return Delivery.model_validate(row)


def retry(store, delivery_id: int, actor: str) -> Delivery:
    """Put a dead (or waiting) delivery back in line now; a delivered one stays delivered."""
    with store.transaction() as s:
        row = _row(s, delivery_id)
        if row.state == "delivered":
            raise OutboxError(f"delivery {delivery_id} of {row.case_no} to {row.endpoint} was already delivered "
                              f"at {row.delivered_at:%Y-%m-%d %H:%M:%S} UTC")
        row.state, row.next_attempt_at = "pending", utcnow()
        audit.record(s, actor, "webhook.retry", f"case:{row.case_no}", _detail(row))
        return Delivery.model_validate(row)


def get(session: Session, delivery_id: int) -> Delivery | None:
    row = session.get(OutboxRow, delivery_id)
    return Delivery.model_validate(row) if row else None


def page(session: Session, after: str | None = None, limit: int = 100, *, state: str | None = None,
         endpoint: str | None = None, case_no: str | None = None) -> DeliveryPage:
    """Deliveries in the order they were queued, filtered; dead ones included."""
    if state is not None and state not in STATES:
        raise ValueError(f"state must be one of {', '.join(STATES)}")
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be between 1 and 1000")
    position = cursor.decode(after, LOG) if after else 0
    query = select(OutboxRow).where(OutboxRow.id > position)
    if state:
        query = query.where(OutboxRow.state == state)
    if endpoint:
        query = query.where(OutboxRow.endpoint == endpoint)
    if case_no:
        query = query.where(OutboxRow.case_no == case_no)
    rows = session.scalars(query.order_by(OutboxRow.id).limit(limit + 1)).all()
    items = [Delivery.model_validate(r) for r in rows[:limit]]
    return DeliveryPage(items=items, next_cursor=cursor.encode(LOG, items[-1].id if items else position),
                        has_more=len(rows) > limit)


def _row(s: Session, delivery_id: int) -> OutboxRow:
    row = s.scalar(select(OutboxRow).where(OutboxRow.id == delivery_id).with_for_update())
    if row is None:
        raise LookupError(f"no webhook delivery {delivery_id}")
    return row


def _detail(row: OutboxRow, **extra) -> dict[str, Any]:
    base = {"delivery_id": row.id, "endpoint": row.endpoint, "event": row.event, "attempt": row.attempts,
            "idempotency_key": row.idempotency_key, "feed_seq": row.feed_seq}
    return base | {k: v for k, v in extra.items() if v is not None}
