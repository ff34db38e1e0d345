"""The clean twin of each evidence snapshot: the same picture with nothing drawn on it.

An analyst approves or rejects a case by its snapshot, which has the box and label
burnt in; those decisions are what the next model learns from (``patrol
export-dataset``), and a drawn box in a training picture would teach the model the
drawing. So beside each snapshot the builder stores the undrawn sample, the size of
the pixels the case's ``bbox`` is in, and the detections that box is the union of.

Keyed by the snapshot's evidence key, the twin follows the case's picture wherever
the case's evidence moves (a better sighting, a merge) without any bookkeeping of
its own. Cases stored before this table existed simply have no twin.
"""
from __future__ import annotations

from datetime import datetime
from typing import Iterable

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, Integer, String, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from .db import Base, utcnow


class CleanFrame(Base):
    __tablename__ = "clean_frames"

    snapshot_key: Mapped[str] = mapped_column(String(80), primary_key=True)  # EvidenceStore keys
    frame_key: Mapped[str] = mapped_column(String(80))
    width: Mapped[int] = mapped_column(Integer)  # the pixels of the case's bbox and of ``boxes``
    height: Mapped[int] = mapped_column(Integer)
    boxes: Mapped[list] = mapped_column(JSON)  # [[label, confidence, x1, y1, x2, y2], ...]
    created_at: Mapped[datetime]


class CleanFrameView(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    snapshot_key: str
    frame_key: str
    width: int
    height: int
    boxes: list[list]


def put(session: Session, snapshot_key: str, frame_key: str, size: tuple[int, int] | None, boxes: list) -> None:
    """Record the clean twin of ``snapshot_key`` (once: the key is a content hash, so
    the same snapshot always has the same twin)."""
    if size is None or session.get(CleanFrame, snapshot_key) is not None:
        return
    session.add(CleanFrame(snapshot_key=snapshot_key, frame_key=frame_key, width=int(size[0]), height=int(size[1]),
                           boxes=[list(b) for b in boxes], created_at=utcnow()))


def of_snapshots(session: Session, keys: Iterable[str]) -> dict[str, CleanFrameView]:
    """The twins of the given snapshot keys that have one."""
    keys = sorted(set(keys))
    out: dict[str, CleanFrameView] = {}
    for i in range(0, len(keys), 500):  # (bound parameters per statement are limited)
        for row in session.scalars(select(CleanFrame).where(CleanFrame.snapshot_key.in_(keys[i:i + 500]))):
            out[row.snapshot_key] = CleanFrameView.model_validate(row)
    return out
