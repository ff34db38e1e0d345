"""Uploaded flights: who sent which footage, how far it got, and what it became.

One row per upload, in the case store's database beside the cases it produces.
The bytes live in the upload area (``streams/uploads.py``); the job's live
progress is in Redis; this row is what lasts: owner, the client's (checked) file
names, declared sizes and SHA-256, state, the last known progress, the job's
result and the ids of its draft cases.

States, and who moves an upload between them::

    uploading ──finish──► queued ──worker──► processing ──► done
        │    └──finish, no SRT──► needs_site ──site──┘ ▲          └──► failed
        └──finish, bad bytes──► rejected                └─ a dead worker's job, claimed again

``rejected`` keeps the bytes for inspection; nothing else is affected.
"""
from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, BigInteger, Float, Integer, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column, sessionmaker

from .store import Base, Store, utcnow

class FlightState(StrEnum):
    UPLOADING = "uploading"
    NEEDS_SITE = "needs_site"  # no telemetry: the operator marks the site
    QUEUED = "queued"
    PROCESSING = "processing"
    DONE = "done"
    FAILED = "failed"
    REJECTED = "rejected"  # the finished bytes failed a check


STATES = tuple(FlightState)
F = FlightState
MOVES = {
    F.UPLOADING: {F.QUEUED, F.NEEDS_SITE, F.REJECTED},
    F.NEEDS_SITE: {F.QUEUED},
    F.QUEUED: {F.PROCESSING, F.FAILED},
    F.PROCESSING: {F.PROCESSING, F.DONE, F.FAILED},  # processing → processing: another worker took it over
    F.DONE: set(),
    F.FAILED: set(),
    F.REJECTED: set(),
}


class FlightError(Exception):
    """A change the upload's state does not allow; the message says why."""


class Flight(Base):
    __tablename__ = "flights"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the upload area's id
    owner: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16), index=True)
    kind: Mapped[str] = mapped_column(String(16), default="drone")
    video_name: Mapped[str] = mapped_column(String(255))
    video_size: Mapped[int] = mapped_column(BigInteger)  # 2 GB and more: not a 32-bit integer
    video_sha256: Mapped[str] = mapped_column(String(64))
    srt_name: Mapped[str | None] = mapped_column(String(255))
    srt_size: Mapped[int | None] = mapped_column(BigInteger)
    srt_sha256: Mapped[str | None] = mapped_column(String(64))
    lat: Mapped[float | None] = mapped_column(Float)  # the site the operator marked (flights without SRT)
    lon: Mapped[float | None] = mapped_column(Float)
    site_grid: Mapped[str | None] = mapped_column(String(15))
    codec: Mapped[str | None] = mapped_column(String(16))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    fps: Mapped[float | None] = mapped_column(Float)
    duration_s: Mapped[float | None] = mapped_column(Float)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # 0..1, the last one recorded
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # job runs started (> 1: taken over)
    worker: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    warnings: Mapped[list[str]] = mapped_column(JSON, default=list)
    result: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    case_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime]
    uploaded_at: Mapped[datetime | None]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


class FlightView(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    id: str
    owner: str
    state: str
    kind: str
    video_name: str
    video_size: int
    video_sha256: str
    srt_name: str | None
    srt_size: int | None
    srt_sha256: str | None
    lat: float | None
    lon: float | None
    site_grid: str | None
    codec: str | None
    width: int | None
    height: int | None
    fps: float | None
    duration_s: float | None
    progress: float
    attempts: int
    worker: str | None
    error: str | None
    warnings: list[str]
    result: dict[str, Any]
    case_ids: list[int]
    created_at: datetime
    updated_at: datetime
    uploaded_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None

    @property
    def has_srt(self) -> bool:
        return self.srt_name is not None

    @property
    def has_site(self) -> bool:
        return self.lat is not None and self.lon is not None


class FlightPage(BaseModel):
    model_config = ConfigDict(frozen=True)
    items: list[FlightView]
    total: int


class FlightStore:
    """The ``flights`` table of a case store."""

    def __init__(self, store: Store):
        self.store = store
        self._reads = sessionmaker(store.engine, expire_on_commit=False)

    def create(self, *, id: str, owner: str, video_name: str, video_size: int, video_sha256: str,
               srt_name: str | None = None, srt_size: int | None = None, srt_sha256: str | None = None,
               lat: float | None = None, lon: float | None = None, site_grid: str | None = None,
               kind: str = "drone") -> FlightView:
        now = utcnow()
        row = Flight(id=id, owner=owner, state="uploading", kind=kind, video_name=video_name, video_size=video_size,
                     video_sha256=video_sha256, srt_name=srt_name, srt_size=srt_size, srt_sha256=srt_sha256,
                     lat=lat, lon=lon, site_grid=site_grid, progress=0.0, attempts=0, warnings=[], result={},
                     case_ids=[], created_at=now, updated_at=now)
        with self.store.transaction() as s:
            s.add(row)
            s.flush()
            return FlightView.model_validate(row)

    def get(self, flight_id: str) -> FlightView | None:
        with self._reads() as s:
            row = s.get(Flight, flight_id)
            return FlightView.model_validate(row) if row else None

    def list(self, owner: str | None = None, state: str | None = None, limit: int = 50,
             offset: int = 0) -> FlightPage:
        """Newest first; ``owner`` None lists everyone's."""
        query = select(Flight)
        if owner is not None:
            query = query.where(Flight.owner == owner)
        if state is not None:
            query = query.where(Flight.state == state)
        with self._reads() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery()))
            rows = s.scalars(query.order_by(Flight.created_at.desc(), Flight.id).limit(limit).offset(offset)).all()
            return FlightPage(items=[FlightView.model_validate(r) for r in rows], total=total)

    # -- moves -------------------------------------------------------------------------

    def uploaded(self, flight_id: str, *, codec: str, width: int, height: int, fps: float | None,
                 duration_s: float, warnings: list[str], gps: bool = True) -> FlightView:
        """The bytes are complete and valid: queued, or waiting for a site when there is no position."""
        def change(row: Flight) -> None:
            row.codec, row.width, row.height, row.fps, row.duration_s = codec, width, height, fps, duration_s
            row.warnings = list(warnings)
            row.uploaded_at = utcnow()
            located = (row.srt_name is not None and gps) or (row.lat is not None and row.lon is not None)
            self._move(row, "queued" if located else "needs_site")
        return self._change(flight_id, change)

    def reject(self, flight_id: str, error: str) -> FlightView:
        def change(row: Flight) -> None:
            self._move(row, "rejected")
            row.error = error
            row.finished_at = utcnow()
        return self._change(flight_id, change)

    def set_site(self, flight_id: str, lat: float, lon: float, grid: str | None) -> tuple[FlightView, bool]:
        """Record the operator's site; returns the flight and whether it is now ready to queue."""
        ready = []

        def change(row: Flight) -> None:
            if row.state not in ("uploading", "needs_site"):
                raise FlightError(f"upload {row.id} is {row.state}; the site can only be set before processing")
            row.lat, row.lon, row.site_grid = lat, lon, grid
            if row.state == "needs_site":
                self._move(row, "queued")
                ready.append(True)
        view = self._change(flight_id, change)
        return view, bool(ready)

    def start(self, flight_id: str, worker: str) -> FlightView:
        def change(row: Flight) -> None:
            self._move(row, "processing")
            row.worker, row.attempts, row.progress = worker, row.attempts + 1, 0.0
            row.started_at, row.error = utcnow(), None
        return self._change(flight_id, change)

    def record_progress(self, flight_id: str, fraction: float) -> None:
        with self.store.transaction() as s:
            row = s.get(Flight, flight_id)
            if row is not None and row.state == "processing":
                row.progress = max(0.0, min(1.0, fraction))
                row.updated_at = utcnow()

    def finish(self, flight_id: str, case_ids: list[int], result: dict, warnings: list[str]) -> FlightView:
        def change(row: Flight) -> None:
            self._move(row, "done")
            row.case_ids, row.result, row.progress = sorted(set(case_ids)), dict(result), 1.0
            row.warnings = list(dict.fromkeys(list(row.warnings) + list(warnings)))
            row.error = result.get("error")
            row.finished_at = utcnow()
        return self._change(flight_id, change)

    def fail(self, flight_id: str, error: str) -> FlightView:
        def change(row: Flight) -> None:
            self._move(row, "failed")
            row.error = error
            row.finished_at = utcnow()
        return self._change(flight_id, change)

    def _change(self, flight_id: str, fn) -> FlightView:
        with self.store.transaction() as s:
            row = s.scalar(select(Flight).where(Flight.id == flight_id).with_for_update())
            if row is None:
                raise FlightError(f"no upload {flight_id}")
            fn(row)
            row.updated_at = utcnow()
            s.flush()
            return FlightView.model_validate(row)

    @staticmethod
    def _move(row: Flight, to: str) -> None:
        if to not in MOVES[row.state]:
            raise FlightError(f"upload {row.id} is {row.state}; it cannot become {to}")
        row.state = to


__all__ = ["STATES", "Flight", "FlightError", "FlightPage", "FlightStore", "FlightView"]
