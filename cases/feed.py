"""Two append-only feeds for the case platform: confirmed cases, and raw events.

Each entry gets a ``seq`` drawn in the same transaction as the fact it reports
(``Store.approve`` for a case, ``CaseBuilder.apply`` for an event revision), under
the append lock that makes seqs visible in seq order (``db.take_append_lock``).
A consumer that remembers the last seq it processed (inside an opaque cursor)
and asks for "after that" therefore misses nothing and sees nothing twice —
across restarts of the API, since the position lives in the database. Paging by
approval time or case id would not do: a case opened earlier (smaller id) can be
approved later.

A case entry holds no copy of the case: an approved case never changes again
(the builder and the review only touch drafts), so it is read from the case row,
with evidence URLs made absolute for whoever serves it. An event entry keeps the
revision it reports, because ``case_events`` keeps only the newest one.

This module only writes and reads entries (the store writes them, so it cannot
import the store); ``platform.py`` turns them into what the platform reads.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from vision.events import Event

from . import cursor
from .db import Base, take_append_lock, utcnow

CASES, EVENTS = "cases", "events"
MAX_LIMIT = 500


class FeedEntry(Base):
    __tablename__ = "feed_entries"
    __table_args__ = (Index("ix_feed_entries_feed_seq", "feed", "seq"),
                      {"sqlite_autoincrement": True})  # never reuse a seq, even one a rollback gave back

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    feed: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime]
    case_id: Mapped[int | None] = mapped_column(ForeignKey("draft_cases.id"), index=True)
    event_id: Mapped[str | None] = mapped_column(String(128))
    revision: Mapped[int | None] = mapped_column(Integer)
    payload: Mapped[dict[str, Any]]


def append_case(session: Session, case) -> int:
    """Report an approval; call it in the approving transaction, after the case's row lock."""
    take_append_lock(session)
    entry = FeedEntry(feed=CASES, at=utcnow(), case_id=case.id, payload={})
    session.add(entry)
    session.flush()
    return entry.seq


def append_event(session: Session, event: Event, source_kind: str, case=None) -> int:
    """Report one stored revision of an event; call it last in the builder's transaction."""
    take_append_lock(session)
    payload = {
        "event_id": event.event_id, "revision": event.revision, "state": event.state,
        "event_type": event.event_type, "label": event.label,
        "source_kind": source_kind, "source_id": event.source_id, "start": event.start,
        "last_seen": event.last_seen, "end": event.end,
        "confidence": round(float(event.confidence), 4), "bbox": [float(v) for v in event.bbox],
        "lat": event.lat, "lon": event.lon, "zone": event.zone, "hits": event.hits, "samples": event.samples,
        "model_version": event.model_version, "case_id": case.id if case else None,
        "case_no": case.case_no if case else None,
    }
    entry = FeedEntry(feed=EVENTS, at=utcnow(), case_id=case.id if case else None, event_id=event.event_id,
                      revision=event.revision, payload=payload)
    session.add(entry)
    session.flush()
    return entry.seq


def entries(session: Session, feed: str, after: str | None, limit: int) -> tuple[list[FeedEntry], bool, int]:
    """Up to ``limit`` entries of ``feed`` after the cursor, whether more follow, and
    the position the cursor named. Raises ``cursor.CursorError`` for a cursor this
    feed did not issue, ``ValueError`` for a limit out of bounds."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    position = cursor.decode(after, feed) if after else 0
    rows = session.scalars(select(FeedEntry).where(FeedEntry.feed == feed, FeedEntry.seq > position)
                           .order_by(FeedEntry.seq).limit(limit + 1)).all()
    return list(rows[:limit]), len(rows) > limit, position


def case_entry(session: Session, case_id: int) -> FeedEntry | None:
    """The case feed's entry of an approved case (None for a case never approved)."""
    return session.scalar(select(FeedEntry).where(FeedEntry.feed == CASES, FeedEntry.case_id == case_id))
