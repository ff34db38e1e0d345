"""The audit log: who did what to what, and when — every review action, every
webhook delivery attempt, and whatever else a caller records (logins, user changes).

Append-only twice over: this module offers no way to change or delete a row, and
the database refuses UPDATE, DELETE (and TRUNCATE on PostgreSQL) on the table by
trigger (``db.forbid_changes``). A row is written in the same transaction as the
act it records, so an act without its audit row cannot exist.

Targets are ``kind:id`` strings: ``case:CP-20261129-0001``, ``user:alice``,
``delivery:17``; actions are ``noun.verb``: ``case.approve``, ``webhook.delivered``.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import cursor
from .db import Base, take_append_lock, utcnow

LOG = "audit"


class AuditEntry(Base):
    __tablename__ = "audit_log"
    __table_args__ = {"sqlite_autoincrement": True}  # ids are never reused, even after a rollback

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(64), index=True)
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(128), index=True)
    detail: Mapped[dict[str, Any]]


class AuditEntryView(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True, json_schema_extra={"examples": [{
        "id": 42, "at": "2026-11-29T03:12:45.120000Z", "actor": "analyst.wang", "action": "case.approve",
        "target": "case:CP-20261129-0007", "detail": {"case_id": 7, "feed_seq": 31}}]})

    id: int
    at: datetime = Field(description="when, UTC")
    actor: str = Field(description="who: a user name, or system:<part> for the product's own loops")
    action: str = Field(description="what, as noun.verb: case.approve, case.reject, case.reclassify, "
                                    "webhook.delivered, webhook.failed, webhook.dead, webhook.retry, …")
    target: str = Field(description="what it was done to, as kind:id (case:CP-…, delivery:17, user:alice)")
    detail: dict[str, Any] = Field(description="the particulars: reason and note, from/to categories, HTTP status, …")


class AuditPage(BaseModel):
    items: list[AuditEntryView]
    next_cursor: str = Field(description="pass as cursor to continue after the last item (also when items is empty)")
    has_more: bool


def record(session: Session, actor: str, action: str, target: str, detail: dict[str, Any] | None = None) -> int:
    """Append one row in the caller's transaction and return its id.

    Call it last in the transaction, after any row locks (it takes the lock that
    keeps ids in commit order; see ``db.take_append_lock``).
    """
    actor, action, target = (actor or "").strip(), (action or "").strip(), (target or "").strip()
    if not actor or not action or not target:
        raise ValueError("an audit record needs an actor, an action and a target")
    take_append_lock(session)
    row = AuditEntry(at=utcnow(), actor=actor[:64], action=action[:64], target=target[:128], detail=detail or {})
    session.add(row)
    session.flush()
    return row.id


def page(session: Session, after: str | None = None, limit: int = 100, *, actor: str | None = None,
         target: str | None = None, action: str | None = None,
         order: Literal["oldest", "newest"] = "oldest") -> AuditPage:
    """One page of the log, oldest first (or newest first), filtered by exact actor,
    target or action; ``target`` ending in ``:`` matches a whole kind (``case:``)."""
    if not 1 <= limit <= 1000:
        raise ValueError("limit must be between 1 and 1000")
    log = f"{LOG}-{order}"
    position = cursor.decode(after, log) if after else None
    query = select(AuditEntry)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    if action:
        query = query.where(AuditEntry.action == action)
    if target:
        query = query.where(AuditEntry.target.startswith(target, autoescape=True) if target.endswith(":")
                            else AuditEntry.target == target)
    if order == "oldest":
        if position is not None:
            query = query.where(AuditEntry.id > position)
        query = query.order_by(AuditEntry.id)
    else:
        if position is not None:
            query = query.where(AuditEntry.id < position)
        query = query.order_by(AuditEntry.id.desc())
    rows = session.scalars(query.limit(limit + 1)).all()
    items = [AuditEntryView.model_validate(r) for r in rows[:limit]]
    if items:
        next_position = items[-1].id
    elif position is not None:
        next_position = position
    else:  # an empty log: oldest-first resumes from the start; newest-first has nothing older to give
        next_position = 0
    return AuditPage(items=items, next_cursor=cursor.encode(log, next_position), has_more=len(rows) > limit)
