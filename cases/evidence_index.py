"""Which evidence files belong to a case besides its snapshot.

Per event, and replaced by each newer revision: the view before the first
sighting (``before``), the latest view (``after``) and the short clip of how it
began (``clip``). The files live in the EvidenceStore under their content hash;
this table only says whose they are. It is keyed by event, not by case, so a case
seen by two cameras (or two drafts an analyst merged) keeps every camera's views.
"""
from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlalchemy import Float, ForeignKey, Integer, String, UniqueConstraint, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column

from .db import Base, utcnow

KINDS = ("before", "after", "clip")


class CaseEvidence(Base):
    __tablename__ = "case_evidence"
    __table_args__ = (UniqueConstraint("event_id", "kind", name="uq_case_evidence_event_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("draft_cases.id"), index=True)
    event_id: Mapped[str] = mapped_column(String(128))
    source_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    key: Mapped[str] = mapped_column(String(80))  # EvidenceStore key
    ts: Mapped[float | None] = mapped_column(Float)  # the sample a picture shows; for a clip, its event's start
    updated_at: Mapped[datetime]


class EvidenceView(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: int
    case_id: int
    event_id: str
    source_id: str
    kind: str
    key: str
    ts: float | None

    @property
    def media_type(self) -> str:
        return "video/mp4" if self.key.endswith(".mp4") else "image/jpeg"


def put(session: Session, case_id: int, event_id: str, source_id: str, kind: str, key: str,
        ts: float | None = None) -> None:
    """Record (or replace) the ``kind`` evidence of one event."""
    if kind not in KINDS:
        raise ValueError(f"evidence kind must be one of {', '.join(KINDS)}, got {kind!r}")
    row = session.scalar(select(CaseEvidence).where(CaseEvidence.event_id == event_id, CaseEvidence.kind == kind)
                         .with_for_update())
    if row is None:
        session.add(CaseEvidence(case_id=case_id, event_id=event_id, source_id=source_id, kind=kind, key=key, ts=ts,
                                 updated_at=utcnow()))
    elif (row.key, row.ts, row.case_id) != (key, ts, case_id):
        row.key, row.ts, row.case_id, row.updated_at = key, ts, case_id, utcnow()


def of_case(session: Session, case_id: int) -> list[EvidenceView]:
    rows = session.scalars(select(CaseEvidence).where(CaseEvidence.case_id == case_id)
                           .order_by(CaseEvidence.kind, CaseEvidence.ts, CaseEvidence.id))
    return [EvidenceView.model_validate(r) for r in rows]


def move(session: Session, from_case: int, to_case: int) -> None:
    """Give one case's evidence to another (a merge)."""
    session.execute(update(CaseEvidence).where(CaseEvidence.case_id == from_case).values(case_id=to_case))


def pick(items: list[EvidenceView]) -> dict[str, EvidenceView]:
    """The one of each kind a reviewer looks at first: the earliest view before (how
    the place looked before any camera saw it), the latest view after, and the clip
    of the event that began first."""
    chosen: dict[str, EvidenceView] = {}
    for kind, latest in (("before", False), ("after", True), ("clip", False)):
        found = [e for e in items if e.kind == kind]
        if found:
            key = (lambda e: (e.ts if e.ts is not None else 0.0, e.id))
            chosen[kind] = max(found, key=key) if latest else min(found, key=key)
    return chosen
