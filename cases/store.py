"""Durable case state: draft cases, the events behind them, and the review audit trail.

SQLite by default, PostgreSQL by URL (SQLAlchemy 2.0). Nothing ORM-shaped leaves
this module's public methods: callers get frozen pydantic views, so a view can
be serialised or kept after its session is gone.

SQLite is shared by the API and the case builder, which run as separate
processes: the file runs in WAL mode (readers never block the writer) with a
busy timeout, and write transactions start with ``BEGIN IMMEDIATE`` so two
writers queue up instead of one failing when it upgrades a read lock.
"""
from __future__ import annotations

import math
import zlib
from contextlib import contextmanager
from datetime import datetime, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from pydantic import BaseModel, ConfigDict
from sqlalchemy import (
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
    func,
    or_,
    select,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.pool import StaticPool

from streams.frame import is_wall_clock
from vision.events import EventState

from . import audit, evidence_index, feed, outbox
from .db import Base, UTCDateTime, utcnow  # noqa: F401  (re-exported: callers import them from here)
from .evidence_index import EvidenceView
from .grid import GridIndex
from .taxonomy import Category, Taxonomy, TaxonomyError
from streams.city import CITY_TZ

class CaseStatus(StrEnum):
    """A draft until an analyst decides; nothing else changes it."""

    DRAFT = "draft"
    APPROVED = "approved"
    REJECTED = "rejected"


STATUSES = tuple(CaseStatus)
MAX_TRACE_LINES = 200
REJECT_REASONS = ("false_alarm", "duplicate", "permitted", "other")
ORDERS = ("newest", "confidence")
CHINA_TZ = CITY_TZ  # (the name other modules import)


class CaseError(Exception):
    """A review action that the case's state does not allow, or bad review input."""


class CaseNotFound(CaseError, LookupError):
    pass


class DraftCase(Base):
    __tablename__ = "draft_cases"
    __table_args__ = (Index("ix_draft_cases_type_last_seen", "event_type", "last_seen"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_no: Mapped[str] = mapped_column(String(32), unique=True)
    status: Mapped[str] = mapped_column(String(16), index=True, default="draft")
    event_type: Mapped[str] = mapped_column(String(32))
    major: Mapped[str] = mapped_column(String(8))
    major_name: Mapped[str] = mapped_column(String(64))
    minor: Mapped[str] = mapped_column(String(8))
    minor_name: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text)
    source_id: Mapped[str] = mapped_column(String(64), index=True)
    source_kind: Mapped[str] = mapped_column(String(16))
    source_ids: Mapped[list[str]]  # every source that saw it, first one first
    lat: Mapped[float | None] = mapped_column(Float)
    lon: Mapped[float | None] = mapped_column(Float)
    grid: Mapped[str | None] = mapped_column(String(15), index=True)
    address: Mapped[str | None] = mapped_column(String(200))
    first_seen: Mapped[float] = mapped_column(Float)  # Unix seconds (live) or seconds into the file (uploads)
    last_seen: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(index=True)
    updated_at: Mapped[datetime] = mapped_column(index=True)  # consoles ask what changed since (review stream)
    ended: Mapped[bool] = mapped_column(Boolean, default=False)
    confidence: Mapped[float] = mapped_column(Float)  # the best of its events
    bbox: Mapped[list[float]]  # at the best evidence, in the source video's pixels
    label: Mapped[str] = mapped_column(String(64), default="")
    zone: Mapped[str | None] = mapped_column(String(64))
    trace: Mapped[list[str]]
    snapshot_key: Mapped[str | None] = mapped_column(String(80))
    model_version: Mapped[str] = mapped_column(String(64), default="")
    hits: Mapped[int] = mapped_column(Integer, default=0)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    reviewer: Mapped[str | None] = mapped_column(String(64))
    review_reason: Mapped[str | None] = mapped_column(String(16))
    review_note: Mapped[str | None] = mapped_column(Text)
    reviewed_at: Mapped[datetime | None]


class CaseEvent(Base):
    """The newest revision seen of each event, and the case it went into."""

    __tablename__ = "case_events"

    event_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("draft_cases.id"), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    source_id: Mapped[str] = mapped_column(String(64), index=True)
    state: Mapped[str] = mapped_column(String(16))
    start: Mapped[float] = mapped_column(Float)
    last_seen: Mapped[float] = mapped_column(Float)
    end: Mapped[float | None] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    samples: Mapped[int] = mapped_column(Integer, default=0)
    trace: Mapped[list[str]]  # the newest revision's rule trace
    joined: Mapped[str | None] = mapped_column(String(200))  # why it joined an existing case; None if it opened it


class ReviewAction(Base):
    """Append-only audit trail: who did what to which case, when."""

    __tablename__ = "review_actions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("draft_cases.id"), index=True)
    action: Mapped[str] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime]
    details: Mapped[dict[str, Any]]


class _View(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)


class DraftCaseView(_View):
    id: int
    case_no: str
    status: str
    event_type: str
    major: str
    major_name: str
    minor: str
    minor_name: str
    description: str
    source_id: str
    source_kind: str
    source_ids: list[str]
    lat: float | None
    lon: float | None
    grid: str | None
    address: str | None
    first_seen: float
    last_seen: float
    created_at: datetime
    updated_at: datetime
    ended: bool
    confidence: float
    bbox: list[float]
    label: str
    zone: str | None
    trace: list[str]
    snapshot_key: str | None
    model_version: str
    hits: int
    samples: int
    reviewer: str | None
    review_reason: str | None
    review_note: str | None
    reviewed_at: datetime | None

    @property
    def category(self) -> Category:
        return Category(self.major, self.major_name, self.minor, self.minor_name)


class CaseEventView(_View):
    event_id: str
    case_id: int
    revision: int
    source_id: str
    state: str
    start: float
    last_seen: float
    end: float | None
    confidence: float
    hits: int
    samples: int
    trace: list[str]
    joined: str | None


class ReviewActionView(_View):
    id: int
    case_id: int
    action: str
    actor: str
    at: datetime
    details: dict[str, Any]


class CasePage(_View):
    items: list[DraftCaseView]
    total: int  # matching cases in all, not just this page
    limit: int
    offset: int


class Store:
    """The case database. ``url`` is an SQLAlchemy URL or a plain path to an SQLite file.

    ``webhooks`` maps a webhook event (``case.approved``) to the names of the
    endpoints that subscribe to it: an approval queues one outbox row for each,
    in its own transaction (see ``outbox.py``).
    """

    def __init__(self, url: str, *, case_prefix: str = "CP", local_tz: timezone = CHINA_TZ, busy_timeout_s: float = 30.0,
                 webhooks: Mapping[str, Sequence[str]] | None = None):
        self.case_prefix = case_prefix
        self.local_tz = local_tz
        self.webhooks = {event: tuple(names) for event, names in (webhooks or {}).items()}
        unknown = set(self.webhooks) - set(outbox.EVENTS)
        if unknown:
            raise ValueError(f"unknown webhook event(s) {', '.join(sorted(unknown))}; one of {', '.join(outbox.EVENTS)}")
        self.engine = make_engine(url, busy_timeout_s)
        self.is_sqlite = self.engine.dialect.name == "sqlite"
        from .migrate import prepare  # (the schema gathers every table module, this one among them)

        prepare(self.engine)  # creates a fresh database; refuses, or on SQLite upgrades, an older one
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(self.engine.execution_options(sqlite_write=True), expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A write transaction, committed on success (for the case domain's own writers)."""
        with self._writes.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A read session (for the case domain's own readers)."""
        with self._reads() as session:
            yield session

    def lock(self, session: Session, name: str) -> None:
        """Serialise writers that must see each other's rows (e.g. two case builders
        deciding whether to merge). SQLite's BEGIN IMMEDIATE already does; on
        PostgreSQL this takes a transaction-scoped advisory lock."""
        if not self.is_sqlite:
            session.execute(select(func.pg_advisory_xact_lock(zlib.crc32(name.encode()))))

    def next_case_no(self, session: Session, now: datetime) -> str:
        """``CP-20261129-0001``: the city's local date and a per-day sequence."""
        prefix = f"{self.case_prefix}-{now.astimezone(self.local_tz):%Y%m%d}-"
        # Order by length first so that -10000 sorts after -9999.
        last = session.scalar(
            select(DraftCase.case_no)
            .where(DraftCase.case_no.like(prefix + "%"))
            .order_by(func.length(DraftCase.case_no).desc(), DraftCase.case_no.desc())
            .limit(1)
        )
        seq = int(last[len(prefix):]) + 1 if last else 1
        return f"{prefix}{seq:04d}"

    # -- reading ---------------------------------------------------------------

    def get_case(self, case_id: int) -> DraftCaseView | None:
        with self._reads() as s:
            case = s.get(DraftCase, case_id)
            return DraftCaseView.model_validate(case) if case else None

    def list_cases(
        self,
        status: str | None = None,
        event_type: str | None = None,
        source_id: str | None = None,
        grid: str | None = None,
        since: datetime | float | None = None,
        until: datetime | float | None = None,
        order: str = "newest",
        limit: int = 50,
        offset: int = 0,
    ) -> CasePage:
        """One page of cases and the total that match.

        ``source_id`` matches any camera that saw the case; ``grid`` is a cell code,
        or a shorter prefix for a whole street (9 digits) or community (12).
        ``since``/``until`` bound when the case was opened (``created_at``, UTC; a
        float is Unix seconds), because event times of uploaded footage are
        seconds into a file and cannot be compared with the clock.
        """
        if status is not None and status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {', '.join(ORDERS)}")
        if limit < 1 or offset < 0:
            raise ValueError("limit must be at least 1 and offset at least 0")
        query = select(DraftCase)
        if status:
            query = query.where(DraftCase.status == status)
        if event_type:
            query = query.where(DraftCase.event_type == event_type)
        if source_id:
            seen_by = select(CaseEvent.case_id).where(CaseEvent.source_id == source_id)
            query = query.where(or_(DraftCase.source_id == source_id, DraftCase.id.in_(seen_by)))
        if grid:
            query = query.where(DraftCase.grid == grid if len(grid) >= 14 else DraftCase.grid.like(grid + "%"))
        if since is not None:
            query = query.where(DraftCase.created_at >= _as_datetime(since))
        if until is not None:
            query = query.where(DraftCase.created_at < _as_datetime(until))
        if order == "confidence":
            ordered = query.order_by(DraftCase.confidence.desc(), DraftCase.id.desc())
        else:
            ordered = query.order_by(DraftCase.created_at.desc(), DraftCase.id.desc())
        with self._reads() as s:
            total = s.scalar(select(func.count()).select_from(query.subquery()))
            rows = s.scalars(ordered.limit(limit).offset(offset)).all()
            items = [DraftCaseView.model_validate(r) for r in rows]
        return CasePage(items=items, total=total, limit=limit, offset=offset)

    def actions(self, case_id: int) -> list[ReviewActionView]:
        with self._reads() as s:
            rows = s.scalars(select(ReviewAction).where(ReviewAction.case_id == case_id).order_by(ReviewAction.id))
            return [ReviewActionView.model_validate(r) for r in rows]

    def events(self, case_id: int) -> list[CaseEventView]:
        with self._reads() as s:
            rows = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id).order_by(CaseEvent.start))
            return [CaseEventView.model_validate(r) for r in rows]

    def evidence(self, case_id: int) -> list[EvidenceView]:
        """The views before and after and the clips of the case's events (the snapshot is on the case)."""
        with self._reads() as s:
            return evidence_index.of_case(s, case_id)

    def changed_since(self, since: datetime | None, limit: int = 200) -> list[DraftCaseView]:
        """Cases opened or changed after ``since`` (the newest ``limit`` of them when
        None), oldest change first: what a live view has to redraw."""
        query = select(DraftCase)
        if since is not None:
            query = query.where(DraftCase.updated_at > _as_datetime(since))
        with self._reads() as s:
            rows = s.scalars(query.order_by(DraftCase.updated_at.desc(), DraftCase.id.desc()).limit(limit)).all()
            return [DraftCaseView.model_validate(r) for r in reversed(rows)]

    # -- review ----------------------------------------------------------------

    def approve(self, case_id: int, actor: str, handling: Mapping[str, Any] | None = None) -> DraftCaseView:
        """Approve a draft. In the same transaction: its entry in the case feed, an
        outbox row per subscribed webhook, and the audit record — so an approval
        is never without its delivery, whatever crashes afterwards.

        ``handling`` (the 721 handling chosen and the hint shown, see
        ``place_history.approve``) is kept in the review action's details: the feed,
        the webhooks and later cases at the place read it from there."""
        details = dict(handling or {})
        with self.transaction() as s:
            case = self._draft_for_review(s, case_id, "approve")
            self._decide(s, case, "approve", actor, details)
            seq = feed.append_case(s, case)
            outbox.enqueue(s, self.webhooks.get("case.approved", ()), "case.approved", case, seq)
            audit.record(s, case.reviewer, "case.approve", f"case:{case.case_no}",
                         {"case_id": case.id, "feed_seq": seq, **details})
            return DraftCaseView.model_validate(case)

    def approval(self, case_id: int) -> dict[str, Any] | None:
        """The details its approval recorded (the handling), or None for a case never approved."""
        with self._reads() as s:
            return approvals(s, [case_id]).get(case_id)

    def reject(self, case_id: int, actor: str, reason: str, note: str | None = None) -> DraftCaseView:
        if reason not in REJECT_REASONS:
            raise CaseError(f"reason must be one of {', '.join(REJECT_REASONS)}, got {reason!r}")
        note = (note or "").strip() or None
        if reason == "other" and not note:
            raise CaseError("reason 'other' needs a note saying why")
        with self.transaction() as s:
            case = self._draft_for_review(s, case_id, "reject")
            case.review_reason, case.review_note = reason, note
            self._decide(s, case, "reject", actor, {"reason": reason, "note": note})
            audit.record(s, case.reviewer, "case.reject", f"case:{case.case_no}",
                         {"case_id": case.id, "reason": reason, "note": note})
            return DraftCaseView.model_validate(case)

    def reclassify(
        self,
        case_id: int,
        actor: str,
        *,
        event_type: str | None = None,
        major: str | None = None,
        minor: str | None = None,
        taxonomy: Taxonomy,
    ) -> DraftCaseView:
        """Change a draft's event type and/or category.

        With only ``event_type``, the category follows the taxonomy's mapping for
        that type (and the case's detector label); ``major`` and ``minor`` pick a
        category explicitly and must be given together.
        """
        if (major is None) != (minor is None):
            raise CaseError("give both major and minor, or neither")
        if event_type is None and major is None:
            raise CaseError("nothing to reclassify to: give an event_type, or major and minor")
        actor = _actor(actor)
        with self.transaction() as s:
            case = self._draft_for_review(s, case_id, "reclassify")
            new_type = event_type or case.event_type
            try:
                target = taxonomy.category(major, minor) if major is not None else taxonomy.category_for(new_type, case.label)
                description = taxonomy.describe(new_type, case.source_kind, case.source_id, case.zone)
            except TaxonomyError as err:
                raise CaseError(str(err)) from None
            before = {"event_type": case.event_type, "major": case.major, "minor": case.minor}
            after = {"event_type": new_type, "major": target.major, "minor": target.minor}
            if before == after:
                raise CaseError(f"case {case.case_no} is already {new_type}, {target}")
            case.event_type, case.description = new_type, description
            case.major, case.major_name, case.minor, case.minor_name = (
                target.major, target.major_name, target.minor, target.minor_name)
            case.updated_at = now = utcnow()
            s.add(ReviewAction(case_id=case.id, action="reclassify", actor=actor, at=now,
                               details={"from": before, "to": after}))
            s.flush()
            audit.record(s, actor, "case.reclassify", f"case:{case.case_no}",
                         {"case_id": case.id, "from": before, "to": after})
            return DraftCaseView.model_validate(case)

    def merge(self, case_id: int, other_id: int, actor: str) -> DraftCaseView:
        """Fold draft ``other_id`` into draft ``case_id``: one violation proposed twice.

        The kept case takes the other's events (so later sightings update it), their
        evidence, sources and time span, and the better snapshot; the other is
        rejected as a duplicate whose note names the case it went into. Both cases'
        histories and the audit log record it.
        """
        if case_id == other_id:
            raise CaseError("a case cannot be merged into itself")
        actor = _actor(actor)
        with self.transaction() as s:
            self.lock(s, "cases.builder")  # before the rows, in the builder's order: no deadlock with it
            keep = self._draft_for_review(s, case_id, "merge into")
            other = self._draft_for_review(s, other_id, "merge")
            for row in s.scalars(select(CaseEvent).where(CaseEvent.case_id == other.id)):
                row.case_id, row.joined = keep.id, f"merged from {other.case_no} by {actor}"[:200]
            evidence_index.move(s, other.id, keep.id)
            keep.source_ids = keep.source_ids + [x for x in other.source_ids if x not in keep.source_ids]
            if is_wall_clock(keep.first_seen) == is_wall_clock(other.first_seen) and (
                    is_wall_clock(keep.first_seen) or keep.source_id == other.source_id):
                # (seconds into two different files are not one time line)
                keep.first_seen = min(keep.first_seen, other.first_seen)
                keep.last_seen = max(keep.last_seen, other.last_seen)
            if other.confidence > keep.confidence and other.snapshot_key:
                keep.confidence, keep.bbox, keep.label = other.confidence, list(other.bbox), other.label
                keep.model_version, keep.snapshot_key = other.model_version, other.snapshot_key
            if keep.lat is None and other.lat is not None:
                keep.lat, keep.lon, keep.grid = other.lat, other.lon, other.grid or keep.grid
            keep.grid = keep.grid or other.grid
            s.flush()
            refold(s, keep)
            now = utcnow()
            keep.updated_at = now
            other.status, other.review_reason, other.review_note = "rejected", "duplicate", f"merged into {keep.case_no}"
            other.reviewer, other.reviewed_at, other.updated_at = actor, now, now
            s.add(ReviewAction(case_id=keep.id, action="merge", actor=actor, at=now,
                               details={"absorbed": other.id, "case_no": other.case_no}))
            s.add(ReviewAction(case_id=other.id, action="merge", actor=actor, at=now,
                               details={"into": keep.id, "case_no": keep.case_no}))
            s.flush()
            audit.record(s, actor, "case.merge", f"case:{keep.case_no}",
                         {"case_id": keep.id, "absorbed": other.case_no, "absorbed_id": other.id})
            return DraftCaseView.model_validate(keep)

    def relocate(self, case_id: int, actor: str, lat: float, lon: float, grid: GridIndex | None = None) -> DraftCaseView:
        """Put a draft where the analyst says the violation is. With the city's
        ``grid`` its cell follows the point, and a point outside every cell is refused."""
        if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
            raise CaseError(f"not a WGS84 position: lat {lat}, lon {lon}")
        cell = grid.cell_at(lat, lon) if grid is not None else None
        if grid is not None and cell is None:
            raise CaseError(f"{lat:.6f}, {lon:.6f} lies in none of the city's {len(grid)} grid cells; "
                            "choose a place inside the city")
        actor = _actor(actor)
        with self.transaction() as s:
            case = self._draft_for_review(s, case_id, "relocate")
            before = {"lat": case.lat, "lon": case.lon, "grid": case.grid}
            case.lat, case.lon = lat, lon
            if grid is not None:
                case.grid = cell
            after = {"lat": case.lat, "lon": case.lon, "grid": case.grid}
            if before == after:
                raise CaseError(f"case {case.case_no} is already at {lat:.6f}, {lon:.6f}")
            case.updated_at = now = utcnow()
            s.add(ReviewAction(case_id=case.id, action="relocate", actor=actor, at=now,
                               details={"from": before, "to": after}))
            s.flush()
            audit.record(s, actor, "case.relocate", f"case:{case.case_no}",
                         {"case_id": case.id, "from": before, "to": after})
            return DraftCaseView.model_validate(case)

    def _draft_for_review(self, s: Session, case_id: int, verb: str) -> DraftCase:
        # FOR UPDATE (PostgreSQL) so a builder merging into the case and a reviewer
        # deciding on it take turns; SQLite's BEGIN IMMEDIATE already serialises them.
        case = s.scalar(select(DraftCase).where(DraftCase.id == case_id).with_for_update())
        if case is None:
            raise CaseNotFound(f"no case {case_id}")
        if case.status != "draft":
            by = f" by {case.reviewer}" if case.reviewer else ""
            when = f" at {case.reviewed_at:%Y-%m-%d %H:%M} UTC" if case.reviewed_at else ""
            raise CaseError(f"cannot {verb} case {case.case_no}: it was already {case.status}{by}{when}; "
                            "only a draft can be reviewed")
        return case

    def _decide(self, s: Session, case: DraftCase, action: str, actor: str, details: dict) -> None:
        actor = _actor(actor)
        now = utcnow()
        case.status = {"approve": "approved", "reject": "rejected"}[action]
        case.reviewer, case.reviewed_at, case.updated_at = actor, now, now
        s.add(ReviewAction(case_id=case.id, action=action, actor=actor, at=now, details=details))
        s.flush()


def approvals(s: Session, case_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The approve action's details of each approved case among ``case_ids``."""
    if not case_ids:
        return {}
    rows = s.execute(select(ReviewAction.case_id, ReviewAction.details)
                     .where(ReviewAction.case_id.in_(list(case_ids)), ReviewAction.action == "approve")
                     .order_by(ReviewAction.id))
    return {case_id: dict(details or {}) for case_id, details in rows}


def merged_into(s: Session, case: DraftCase) -> DraftCase | None:
    """The case an analyst merged ``case`` into (following a chain of merges), or None."""
    seen, target = {case.id}, None
    while True:
        details = s.scalars(select(ReviewAction.details).where(ReviewAction.case_id == case.id,
                                                               ReviewAction.action == "merge")).all()
        into = next((d["into"] for d in details if "into" in d), None)
        if into is None or into in seen:
            return target
        seen.add(into)
        target = case = s.scalar(select(DraftCase).where(DraftCase.id == into).with_for_update())
        if case is None:
            return None


def refold(s: Session, case: DraftCase) -> None:
    """Sightings, samples, whether it ended, and the trace: recomputed from the case's events."""
    events = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.start)).all()
    case.hits = sum(e.hits for e in events)
    case.samples = sum(e.samples for e in events)
    case.ended = all(e.state == EventState.CLOSED for e in events)
    case.trace = case_trace(events)


def case_trace(events: list[CaseEvent]) -> list[str]:
    """Each event's trace in turn, the later ones headed by why they joined; when
    it grows long, the first lines (why the case opened) and the newest are kept."""
    lines: list[str] = []
    for e in events:
        if e.joined:
            lines.append(f"case: event {e.event_id} from {e.source_id} joined ({e.joined})")
        lines.extend(e.trace)
    if len(lines) <= MAX_TRACE_LINES:
        return lines
    half = MAX_TRACE_LINES // 2
    return lines[:half] + [f"… {len(lines) - 2 * half} lines omitted"] + lines[-half:]


def _actor(actor: str) -> str:
    actor = (actor or "").strip()
    if not actor:
        raise CaseError("a review action needs the actor's name")
    return actor


def _as_datetime(value: datetime | float) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(value), timezone.utc)


def make_engine(url: str, busy_timeout_s: float) -> Engine:
    if "://" not in url:  # a plain path means an SQLite file
        url = f"sqlite:///{Path(url).expanduser().resolve()}"
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(parsed, pool_pre_ping=True)

    database = parsed.database or ""
    in_memory = database in ("", ":memory:") or parsed.query.get("mode") == "memory"
    kwargs: dict[str, Any] = {"connect_args": {"timeout": busy_timeout_s, "check_same_thread": False}}
    if in_memory:
        kwargs["poolclass"] = StaticPool  # one connection, or every session sees an empty database
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" below issue BEGIN itself
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("sqlite_write") else "BEGIN")

    return engine
