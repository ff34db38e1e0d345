"""Events → draft cases: one case per violation, however often and by whom it is seen.

The rules publish an event every time it changes (same ``event_id``, growing
``revision``), messages may arrive twice or out of order, a stall may flicker
out of view and back, and one shed may be seen by two cameras. The builder folds
all of that into a single draft case:

* an event id already stored at this or a newer revision changes nothing;
* a known event updates its case (times, best evidence, hits, trace);
* a new event joins an existing case of the same type when it is the same
  violation: the same source and zone, or another source within
  ``merge_radius_m``, seen within ``cooldown_s`` of the case (so a source
  taken over from a worker that died continues its case: the new worker's
  event joins it, and the dead worker's event, left open, is ended);
* otherwise it opens a new case.

Once an analyst has decided on a case, a sighting of the same violation at the
same place joins it whatever its status, so neither a restart nor a failover (new
event ids) brings it back as a new draft:

* an **approved** case records it as *still there*: its last sighting moves on
  (and the cooldown with it), the raw-event feed reports it, and nothing the
  analyst reviewed changes; after ``cooldown_s`` without a sighting the violation
  is over, and a later one opens a new draft (a repeat at the place);
* a **rejected** case (a false alarm, a permitted stall) *suppresses* it for
  ``suppress_rejected_s`` after the rejection: recorded with the case, reported to
  no one; after that a sighting opens a new draft again.

Every revision the builder stores is also appended to the raw-event feed
(``feed.py``) in the same transaction; stale or repeated revisions, and events
attached to nothing, are not stored and so not reported.

Location: the builder uses the event's own lat/lon (telemetry of drones, vehicles
and phones). For a fixed camera the caller fills ``event.lat``/``event.lon`` from
the source registry before ``apply``; without a location a case can only merge
with cases of its own source, and its grid is the source's configured one.
"""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from streams.frame import GeoPoint, is_wall_clock
from streams.geo import EARTH_RADIUS_M, metres  # noqa: F401  (EARTH_RADIUS_M: re-exported)
from vision.events import Event, EventState

from . import clean_frames, evidence_index, feed
from .evidence_store import EvidenceStore
from .grid import GridIndex
from .store import (  # noqa: F401  (MAX_TRACE_LINES re-exported)
    MAX_TRACE_LINES, CaseEvent, DraftCase, DraftCaseView, Store, merged_into, refold, utcnow)
from .taxonomy import Taxonomy



def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    return metres(GeoPoint(lat1, lon1), GeoPoint(lat2, lon2))


class CaseBuilder:
    def __init__(
        self,
        store: Store,
        taxonomy: Taxonomy,
        grid: GridIndex | None = None,
        evidence: EvidenceStore | None = None,
        cooldown_s: float = 300.0,
        merge_radius_m: float = 30.0,
        suppress_rejected_s: float = 7 * 86400.0,
    ):
        self.store = store
        self.taxonomy = taxonomy
        self.grid = grid
        self.evidence = evidence
        self.cooldown_s = cooldown_s
        self.merge_radius_m = merge_radius_m
        self.suppress_rejected_s = suppress_rejected_s

    def apply(self, event: Event, source_kind: str, source_grid: str | None = None,
              seen_by: tuple[str, str] | None = None) -> DraftCaseView | None:
        """Fold one event message into the cases.

        Returns the draft case the event opened or updated, or None when it
        changed no case: a stale or repeated revision, or an event of a case
        that has already been reviewed. ``source_grid`` is the source's
        configured grid cell, used when the event's location gives none.
        ``seen_by`` (Chinese, English) names what saw it in a new case's description
        (an uploaded flight: its file, pilot and time) instead of the source id.
        """
        with self.store.transaction() as s:
            # Two builders deciding "merge or open?" at once would both open.
            self.store.lock(s, "cases.builder")
            known = s.scalar(select(CaseEvent).where(CaseEvent.event_id == event.event_id).with_for_update())
            if known is not None:
                if event.revision <= known.revision:
                    return None
                _copy_progress(known, event)
                case = s.scalar(select(DraftCase).where(DraftCase.id == known.case_id).with_for_update())
                if case.status != "draft":
                    self._decided(s, case, event, source_kind)
                    return None
            else:
                case, reason = self._same_violation(s, event)
                if case is not None and case.status != "draft":
                    target = merged_into(s, case)  # an analyst's merge sends its sightings on
                    if target is not None and target.status == "draft":
                        case, reason = target, f"{reason}; {case.case_no} was merged into {target.case_no}"
                    else:
                        decided = target or case
                        s.add(_new_case_event(decided.id, event, joined=self._verdict(decided, reason)))
                        self._decided(s, decided, event, source_kind)
                        return None
                if case is None:
                    case = self._open(s, event, source_kind, source_grid, seen_by)
                elif event.source_id not in case.source_ids:
                    case.source_ids = case.source_ids + [event.source_id]
                s.add(_new_case_event(case.id, event, joined=reason or None))
                _end_orphans(s, case.id, event)
            self._update(s, case, event)
            s.flush()
            feed.append_event(s, event, source_kind, case)  # last: it takes the append lock (see cases/db.py)
            return DraftCaseView.model_validate(case)

    # -- deciding where a new event belongs ------------------------------------

    def _same_violation(self, s: Session, event: Event) -> tuple[DraftCase | None, str]:
        """The case a new event continues, if any (draft or not), and why."""
        window = self.cooldown_s
        in_window = and_(DraftCase.last_seen >= event.start - window, DraftCase.first_seen <= event.last_seen + window)
        # a false alarm the analysts dismissed stays quiet for a while, however long it was out of view
        quiet = and_(DraftCase.status == "rejected",
                     DraftCase.reviewed_at >= utcnow() - timedelta(seconds=self.suppress_rejected_s))
        candidates = s.scalars(
            select(DraftCase)
            .where(DraftCase.event_type == event.event_type, or_(in_window, quiet))
            .with_for_update()
        ).all()
        best, best_key, best_reason = None, None, ""
        for case in candidates:
            distance = self._distance(case, event)
            if case.source_id == event.source_id:
                # The same camera and zone: a flicker, unless a moving source has
                # since driven somewhere else. Another zone is another violation,
                # even though a fixed camera gives both the same location.
                if case.zone != event.zone or (distance is not None and distance > self.merge_radius_m):
                    continue
                gap = max(0.0, event.start - case.last_seen)
                # (on a tie a draft wins over a case merged into it or decided on)
                key = (0, 0.0, -case.last_seen, case.status != "draft")
                reason = f"same source and zone, {gap:.0f} s after the last sighting"
            else:
                if distance is None or distance > self.merge_radius_m or not _comparable_clocks(case, event):
                    continue
                key = (1, distance, -case.last_seen, case.status != "draft")
                reason = f"{event.source_id} saw it {distance:.0f} m from the case"
            if best_key is None or key < best_key:
                best, best_key, best_reason = case, key, reason
        return best, best_reason

    def _distance(self, case: DraftCase, event: Event) -> float | None:
        if case.lat is None or case.lon is None or event.lat is None or event.lon is None:
            return None
        return haversine_m(case.lat, case.lon, event.lat, event.lon)

    # -- cases already decided on ------------------------------------------------

    def _verdict(self, case: DraftCase, reason: str) -> str:
        if case.status == "approved":
            return f"still there after approval: {reason}"
        return f"suppressed: {case.case_no} was rejected ({case.review_reason or 'no reason'}); {reason}"

    def _decided(self, s: Session, case: DraftCase, event: Event, source_kind: str) -> None:
        """A sighting of a reviewed case: an approved one is still there, a rejected one stays quiet."""
        if case.status != "approved":
            return  # suppressed: its event row keeps it with the case; reported to no one
        if event.last_seen > case.last_seen:
            case.last_seen = event.last_seen  # only the time moves on: what the analyst reviewed stays
            case.updated_at = utcnow()
        s.flush()
        feed.append_event(s, event, source_kind, case)  # last: it takes the append lock (see cases/db.py)

    # -- writing ---------------------------------------------------------------

    def _open(self, s: Session, event: Event, source_kind: str, source_grid: str | None,
              seen_by: tuple[str, str] | None = None) -> DraftCase:
        category = self.taxonomy.category_for(event.event_type, event.label)
        now = utcnow()
        case = DraftCase(
            case_no=self.store.next_case_no(s, now),
            status="draft",
            event_type=event.event_type,
            major=category.major,
            major_name=category.major_name,
            minor=category.minor,
            minor_name=category.minor_name,
            description=self.taxonomy.describe(event.event_type, source_kind, event.source_id, event.zone, seen_by),
            source_id=event.source_id,
            source_kind=source_kind,
            source_ids=[event.source_id],
            lat=event.lat,
            lon=event.lon,
            grid=self._grid_at(event.lat, event.lon) or source_grid,
            first_seen=event.start,
            last_seen=event.last_seen,
            created_at=now,
            updated_at=now,
            ended=False,
            confidence=event.confidence,
            bbox=list(event.bbox),
            label=event.label,
            zone=event.zone,
            trace=[],
            snapshot_key=self._store_snapshot(s, event),
            model_version=event.model_version,
            hits=0,
            samples=0,
        )
        s.add(case)
        s.flush()  # assigns the id the event row points to
        return case

    def _update(self, s: Session, case: DraftCase, event: Event) -> None:
        case.first_seen = min(case.first_seen, event.start)
        case.last_seen = max(case.last_seen, event.last_seen)
        if event.confidence > case.confidence:
            # The evidence moves as one: box, label and picture of the best sighting.
            case.confidence, case.bbox, case.label = event.confidence, list(event.bbox), event.label
            case.model_version = event.model_version
            case.snapshot_key = self._store_snapshot(s, event) or case.snapshot_key
        elif case.snapshot_key is None:
            case.snapshot_key = self._store_snapshot(s, event)
        self._store_views(s, case, event)
        if case.lat is None and event.lat is not None and event.lon is not None:
            case.lat, case.lon = event.lat, event.lon
            case.grid = self._grid_at(event.lat, event.lon) or case.grid
        refold(s, case)
        case.updated_at = utcnow()

    def _grid_at(self, lat: float | None, lon: float | None) -> str | None:
        if self.grid is None or lat is None or lon is None:
            return None
        return self.grid.cell_at(lat, lon)

    def _store_snapshot(self, s: Session, event: Event) -> str | None:
        # Content-addressed, so writing before the transaction commits is safe:
        # a rollback leaves at most an unreferenced file, never a wrong one.
        if self.evidence is None or not event.snapshot:
            return None
        key = self.evidence.put(event.snapshot, "jpg")
        if event.frame:  # the same picture undrawn, for training (clean_frames.py)
            clean_frames.put(s, key, self.evidence.put(event.frame, "jpg"), event.frame_size, event.boxes)
        return key

    def _store_views(self, s: Session, case: DraftCase, event: Event) -> None:
        """The event's view before, latest view and clip, replacing its older revision's."""
        if self.evidence is None:
            return
        for kind, data, ext, ts in (("before", event.before, "jpg", event.before_ts),
                                    ("after", event.after, "jpg", event.after_ts),
                                    ("clip", event.clip, "mp4", event.start)):
            if data:
                evidence_index.put(s, case.id, event.event_id, event.source_id, kind, self.evidence.put(data, ext), ts)


def _end_orphans(s: Session, case_id: int, event: Event) -> None:
    """A worker closes a source's events before it lets the source go, so an event of
    the same source still open in this case when a new one joins it was left by a
    worker that died (its source taken over by another): it ended at its last
    sighting, and the new event continues the case."""
    orphans = s.scalars(select(CaseEvent).where(CaseEvent.case_id == case_id, CaseEvent.source_id == event.source_id,
                                                CaseEvent.state != EventState.CLOSED, CaseEvent.event_id != event.event_id))
    for row in orphans:
        row.state, row.end = EventState.CLOSED, row.last_seen
        row.trace = [*row.trace, f"ended at its last sighting: its worker stopped without closing it; "
                                 f"event {event.event_id} of the same source continues the case"]


def _new_case_event(case_id: int, event: Event, joined: str | None) -> CaseEvent:
    row = CaseEvent(
        event_id=event.event_id, case_id=case_id, source_id=event.source_id, start=event.start, joined=joined
    )
    _copy_progress(row, event)
    return row


def _copy_progress(row: CaseEvent, event: Event) -> None:
    row.revision, row.state, row.last_seen, row.end = event.revision, event.state, event.last_seen, event.end
    row.confidence, row.hits, row.samples = event.confidence, event.hits, event.samples
    row.trace = list(event.trace)  # each revision carries its event's whole trace


def _comparable_clocks(case: DraftCase, event: Event) -> bool:
    """Seconds into two different uploaded files say nothing about being seen at
    the same time, so only wall-clock times may join cases across sources."""
    return is_wall_clock(case.first_seen) and is_wall_clock(event.start)

