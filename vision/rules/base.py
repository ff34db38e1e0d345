"""Rules turn detections into events: persistence, zones, dwell, absence.

A detection is only evidence. An event needs the violation to be seen in k of
the last n analysed samples, where it matters (a no-vending zone, outside a
permitted site), for long enough; it ends after a spell of absence. Each event
remembers why it fired, in words an analyst can read.
"""
from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np
from shapely.geometry import Point, Polygon
from shapely.prepared import prep

from streams.frame import Frame, is_wall_clock
from streams.geo import place
from vision.detections import Detections
from vision.events import Event, EventState
from vision.evidence import RecentSamples, Sample, clean_frame, draw_snapshot, make_clip
from vision.plume import RESCUE_CONF, PlumeMeasure, measure, supports_dust
from vision.rules.place import Anchor, PlaceCheck, ViewMotion
from streams.city import CITY_TZ

CLIP_SAMPLES = 12  # the view before, then the first samples of a presence: how it began


@dataclass(frozen=True)
class RuleConfig:
    """How one event type is confirmed. Defaults live in each type's module."""

    event_type: str
    labels: frozenset[str]
    min_confidence: float = 0.35
    window: int = 5  # n: samples looked back on
    min_hits: int = 3  # k: of which this many must show the violation
    min_dwell_s: float = 0.0  # and the first of them at least this long ago
    absence_s: float = 20.0  # no sighting for this long ends the event
    update_every_s: float = 60.0  # re-publish a lasting event at most this often
    required_role: str | None = None  # if the source has zones of this role, only inside them
    excluded_role: str | None = None  # never inside zones of this role
    plume_check: bool = False  # judge each box with the image's plume measure too (vision/plume.py)
    stationary: bool = False  # the thing must stay at one place in the world (vision/rules/place.py)
    # how the evidence picture names event types and detector labels (the city's Chinese names,
    # config/categories.yaml); a name missing here is written as the label itself
    names: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ZoneShape:
    name: str
    role: str
    polygon: object  # prepared shapely polygon in normalised image coordinates


def prepare_zones(zones) -> list[ZoneShape]:
    """Zones from the registry (points as fractions of the image) made fast to query."""
    return [ZoneShape(z.name, z.role, prep(Polygon(z.polygon))) for z in zones]


@dataclass
class _Track:
    """The state of one (event type, zone) on one source."""

    history: deque
    event: Event | None = None
    last_emit_ts: float = 0.0
    emitted_confidence: float = 0.0
    best_frame: Frame | None = None
    best_box_px: tuple | None = None  # on the sample, for drawing evidence
    # The best sighting's evidence belongs to this track: frames are shared by every
    # rule and zone of a source, so nothing of it may be kept on the frame itself.
    best_conf: float = -1.0
    best_label: str = ""
    best_bbox: tuple | None = None  # in source-video pixels
    best_boxes: list | None = None  # the detections bbox is the union of: [label, conf, x1, y1, x2, y2], same pixels
    since: float | None = None  # first sighting of the current presence (for dwell)
    looked: int = 0  # samples looked at since the event's window began
    confirmed: tuple[int, int] = (0, 0)  # (sightings, samples) in the window that opened the event
    best_plume: PlumeMeasure | None = None  # the plume measure at the best sighting (dust)
    # Where the presence was first seen, and the view then (vision/rules/place.py); it outlives
    # refused sightings, so a thing that keeps moving is refused every time, not every other.
    anchor: Anchor | None = None
    sighted: deque = field(default_factory=deque)  # per sample: any relevant detection, kept or refused
    refused: dict = field(default_factory=dict)  # kind -> [count, latest reason in words]
    # How it began: the source's view before the first sighting (for a structure, the
    # place before it stood there), then the samples from that sighting on.
    before: Sample | None = None
    clip: list = field(default_factory=list)  # Samples, before first
    clip_mp4: bytes | None = None
    clip_encoded: int = 0  # how many of ``clip`` the cached MP4 holds
    ended: str | None = None  # why the event is closing, for its trace


class EventRule:
    """Confirms, updates and ends the events of one type on one source."""

    def __init__(self, config: RuleConfig, zones: list[ZoneShape], source_id: str, model_version: str = ""):
        self.config = config
        self.zones = zones
        self.source_id = source_id
        self.model_version = model_version
        self.tracks: dict[str | None, _Track] = {}
        # The source's recent samples, shared by its rules (SourceRules sets it); without
        # it events carry only the snapshot.
        self.recent: RecentSamples | None = None
        self._required = [z for z in zones if z.role == config.required_role]
        self._excluded = [z for z in zones if z.role == config.excluded_role]
        self._plumes: dict[str | None, PlumeMeasure] = {}  # this sample's best measure per zone
        # The source's view from sample to sample, shared by its rules (SourceRules sets it);
        # without it (a single picture) no sighting is judged against an earlier one.
        self.motion: ViewMotion | None = None
        self.place = PlaceCheck(config.stationary)
        self.refused: dict[str, int] = {}  # refusals of this rule on this source, by kind

    # -- where a detection counts -----------------------------------------------------
    def _zone_of(self, x: float, y: float) -> tuple[bool, str | None]:
        p = Point(x, y)
        if any(z.polygon.contains(p) for z in self._excluded):
            return False, None
        if self._required:
            for z in self._required:
                if z.polygon.contains(p):
                    return True, z.name
            return False, None
        return True, None

    def relevant(self, frame: Frame, dets: Detections) -> dict[str | None, Detections]:
        """The detections that are evidence for this rule, grouped by zone."""
        cfg = self.config
        floor = min(cfg.min_confidence, RESCUE_CONF) if cfg.plume_check else cfg.min_confidence
        keep = np.array([lab in cfg.labels for lab in dets.labels], bool) & (dets.confidence >= floor)
        dets = dets[keep]
        self._plumes = {}
        plumes: list[PlumeMeasure | None] = [None] * len(dets)
        if cfg.plume_check and len(dets):
            plumes = [measure(frame.image, box) for box in dets.xyxy]
            ok = np.array([supports_dust(float(c), m, cfg.min_confidence) for c, m in zip(dets.confidence, plumes)], bool)
            dets, plumes = dets[ok], [m for m, k in zip(plumes, ok) if k]
        if not len(dets):
            return {}
        w, h = frame.size
        groups: dict[str | None, list[int]] = {}
        for i, (x, y) in enumerate(dets.bottoms):
            # objects stand where their box touches the ground; a plume starts there too
            ok, zone = self._zone_of(float(x) / w, min(float(y), h - 1) / h)
            if ok:
                groups.setdefault(zone, []).append(i)
                m = plumes[i]
                if m is not None and (zone not in self._plumes or m.score > self._plumes[zone].score):
                    self._plumes[zone] = m
        return {z: dets[np.array(ix)] for z, ix in groups.items()}

    # -- the state machine ------------------------------------------------------------
    def _judge_places(self, frame: Frame, found: dict[str | None, Detections]) -> None:
        """Keep, per zone, the detections of the thing first seen there; refuse the others."""
        view = self.motion.state if self.motion is not None else None
        w, h = frame.size
        for zone, track in self.tracks.items():
            track.sighted.append(zone in found)
            if track.anchor is not None and track.event is None and not any(track.sighted):
                track.anchor = None  # nothing seen here for a whole window: the next sighting starts afresh
        if view is None:
            return
        scale = np.array([w, h, w, h], np.float32)
        for zone, group in list(found.items()):
            track = self.tracks.setdefault(zone, self._new_track())
            if not track.sighted:
                track.sighted.append(True)
            boxes = [tuple(b) for b in (group.xyxy / scale).tolist()]
            verdict = self.place.judge(track.anchor, view, boxes)
            for kind, why in verdict.refusals:
                entry = track.refused.setdefault(kind, [0, ""])
                entry[0] += 1
                entry[1] = why
                self.refused[kind] = self.refused.get(kind, 0) + 1
            if track.anchor is None or not verdict.keep.any():
                # a first sighting anchors the presence; a wholly refused one moves the anchor,
                # so what keeps moving is compared with where it was a sample ago
                track.anchor = Anchor(boxes, view)
            if verdict.keep.all():
                continue
            if verdict.keep.any():
                found[zone] = group[verdict.keep]
            else:
                del found[zone]

    def _new_track(self) -> _Track:
        return _Track(deque(maxlen=self.config.window), sighted=deque(maxlen=self.config.window))

    def update(self, frame: Frame, dets: Detections) -> list[Event]:
        cfg = self.config
        out: list[Event] = []
        found = self.relevant(frame, dets)
        self._judge_places(frame, found)
        for zone in set(found) | set(self.tracks):
            track = self.tracks.setdefault(zone, self._new_track())
            hit = found.get(zone)
            track.history.append((frame.ts, hit is not None))
            if hit is not None:
                if track.since is None:
                    track.since = frame.ts
                    self._begin_clip(track, frame.ts)
                self._observe(track, frame, hit, zone)
            if track.since is not None:
                self._extend_clip(track, frame.ts)
            ev = track.event
            if ev is not None:
                track.looked += 1
            if ev is None:
                hits = [ts for ts, h in track.history if h]
                # Dwell counts from the first sighting of this presence, which may be older
                # than the k-of-n window; without a dwell the event starts at the window's first hit.
                start = track.since if cfg.min_dwell_s > 0 else (hits[0] if hits else None)
                if len(hits) >= cfg.min_hits and hit is not None and frame.ts - start >= cfg.min_dwell_s:
                    out.append(self._open(track, zone, start, len(hits), frame.ts))
            elif hit is not None:
                improved = ev.confidence >= track.emitted_confidence + 0.1
                if frame.ts - track.last_emit_ts >= cfg.update_every_s or improved:
                    out.append(self._emit(track, EventState.UPDATED, frame.ts))
            elif frame.ts - ev.last_seen >= cfg.absence_s:
                out.append(self._close(track, zone, frame.ts))
            if track.event is None and not any(h for _, h in track.history):
                self._forget(track)
                if track.anchor is None:
                    del self.tracks[zone]
        return out

    def flush(self, now: float | None = None, why: str | None = None) -> list[Event]:
        """End every open event (the source ended or is being released); ``why`` says
        so in the trace."""
        out = []
        for zone, track in list(self.tracks.items()):
            if track.event is not None:
                out.append(self._close(track, zone, now if now is not None else track.event.last_seen, why))
        return out

    def _observe(self, track: _Track, frame: Frame, hit: Detections, zone=None) -> None:
        conf = float(hit.confidence.max())
        x1, y1 = hit.xyxy[:, 0].min(), hit.xyxy[:, 1].min()
        x2, y2 = hit.xyxy[:, 2].max(), hit.xyxy[:, 3].max()
        sx, sy = frame.scale
        label = hit.labels[int(hit.confidence.argmax())]
        ev = track.event
        if ev is not None:
            ev.last_seen = frame.ts
            ev.hits += 1
            if ev.lat is None and frame.geo is not None:  # the first sighting with a known place
                _locate(ev, frame, (x1, y1, x2, y2))
        best = ev.confidence if ev is not None else track.best_conf
        if conf > best:
            track.best_frame = frame
            track.best_conf = conf
            track.best_label = label
            track.best_bbox = (float(x1 * sx), float(y1 * sy), float(x2 * sx), float(y2 * sy))
            track.best_box_px = (float(x1), float(y1), float(x2), float(y2))
            track.best_boxes = [[lab, round(float(c), 4), float(b[0] * sx), float(b[1] * sy), float(b[2] * sx),
                                 float(b[3] * sy)] for lab, c, b in zip(hit.labels, hit.confidence, hit.xyxy)]
            track.best_plume = self._plumes.get(zone)
            if ev is not None:
                self._take_evidence(ev, track)

    @staticmethod
    def _forget(track: _Track) -> None:
        track.best_frame, track.best_box_px, track.best_bbox, track.best_boxes = None, None, None, None
        track.best_conf, track.best_label, track.since = -1.0, "", None
        track.best_plume = None
        track.before, track.clip, track.clip_mp4, track.clip_encoded = None, [], None, 0

    def _begin_clip(self, track: _Track, ts: float) -> None:
        if self.recent is None:
            return
        track.before = self.recent.before(ts)
        track.clip = [track.before] if track.before is not None else []
        track.clip_mp4, track.clip_encoded = None, 0

    def _extend_clip(self, track: _Track, ts: float) -> None:
        newest = self.recent.newest() if self.recent is not None else None
        if newest is not None and newest.ts == ts and len(track.clip) < CLIP_SAMPLES:
            track.clip.append(newest)

    def _take_evidence(self, ev: Event, track: _Track) -> None:
        frame = track.best_frame
        ev.confidence = track.best_conf
        ev.label = track.best_label
        ev.bbox = track.best_bbox
        ev.evidence_ts = frame.ts
        ev.snapshot = ev.frame = None  # drawn (and encoded clean) lazily when published
        ev.boxes = [list(b) for b in track.best_boxes or []]
        ev.frame_size = tuple(int(v) for v in (frame.source_size or frame.size))  # the pixels of bbox and boxes
        _locate(ev, frame, track.best_box_px)

    def _open(self, track: _Track, zone, start: float, hits: int, now: float) -> Event:
        ev = Event(
            event_id=uuid.uuid4().hex, source_id=self.source_id, event_type=self.config.event_type, state=EventState.OPENED,
            start=start, last_seen=now, confidence=0.0, bbox=(0, 0, 0, 0), zone=zone, hits=hits,
            model_version=self.model_version,
        )
        self._take_evidence(ev, track)
        track.event = ev
        track.looked = len(track.history)
        track.confirmed = (hits, len(track.history))
        return self._emit(track, EventState.OPENED, now)

    def _emit(self, track: _Track, state: str, now: float) -> Event:
        ev = track.event
        ev.state = state
        ev.revision += 1
        ev.samples = track.looked
        ev.trace = self._trace(track, ev)
        self._views(track, ev)
        track.last_emit_ts = now
        track.emitted_confidence = ev.confidence
        return _snapshot_copy(ev, track, self.config.names)

    def _close(self, track: _Track, zone, now: float, why: str | None = None) -> Event:
        ev = track.event
        ev.end = ev.last_seen
        track.ended = why or f"not seen for {self.config.absence_s:.0f} s"
        out = self._emit(track, EventState.CLOSED, now)
        track.event, track.ended = None, None
        self._forget(track)
        track.history.clear()
        return out

    def _views(self, track: _Track, ev: Event) -> None:
        """Before, after and clip on the event. Every revision carries them (as it
        carries the snapshot), so the newest revision alone is the whole evidence."""
        if self.recent is None:
            return
        if track.before is not None:
            ev.before, ev.before_ts = track.before.jpeg, track.before.ts
        after = self.recent.newest()  # the latest view; once closed, the place after it went
        if after is not None and (track.before is None or after.ts != track.before.ts):
            ev.after, ev.after_ts = after.jpeg, after.ts
        # Encoding runs on the worker's detection loop: at the first revision, once the clip is
        # full, and at the close, not at every revision in between (a revision in between
        # carries the clip as last encoded).
        grown = len(track.clip) >= 2 and track.clip_encoded != len(track.clip)
        if grown and (track.clip_mp4 is None or len(track.clip) >= CLIP_SAMPLES or ev.state == EventState.CLOSED):
            track.clip_mp4 = make_clip([s.jpeg for s in track.clip])
            track.clip_encoded = len(track.clip)
        ev.clip = track.clip_mp4

    def _trace(self, track: _Track, ev: Event) -> list[str]:
        """Why the event fired, in words an analyst reads at a glance."""
        cfg = self.config
        where = f"in {cfg.required_role.replace('_', '-')} zone '{ev.zone}'" if ev.zone else "in view"
        seen, window = track.confirmed
        lines = [
            f"{ev.label} {where} for {_duration(ev.last_seen - ev.start)}, seen in {ev.hits} of {ev.samples} samples",
            f"confirmed when seen in {seen} of the last {window} samples "
            f"(rule: at least {cfg.min_hits} of {cfg.window}, confidence >= {cfg.min_confidence:.2f})",
            f"first seen {_when(ev.start)}, last seen {_when(ev.last_seen)}, best confidence {ev.confidence:.2f}",
        ]
        if track.best_plume is not None:
            lines.append(f"at the best sighting: {track.best_plume.describe()}")
        for kind, (count, why) in sorted(track.refused.items()):
            lines.append(f"not counted: {count} sighting{'s' if count > 1 else ''} {kind} (latest: {why})")
        if self._excluded:
            lines.append(f"detections inside {cfg.excluded_role.replace('_', ' ')} zones "
                         f"({', '.join(z.name for z in self._excluded)}) are ignored")
        if ev.place:
            lines.append(f"place: {ev.place}")
        if ev.state == EventState.CLOSED:
            lines.append(f"ended: {track.ended or f'not seen for {cfg.absence_s:.0f} s'}")
        return lines




def _locate(ev: Event, frame: Frame, box) -> None:
    """Place the event where the sample shows it: the ground point of the box's foot when
    the sample has a position (moving sources), or say why it has none. A sighting without
    a place never erases the place of an earlier one."""
    if frame.geo is None:
        if ev.lat is None and frame.place_note:
            ev.place = frame.place_note
        return
    w, h = frame.size
    foot = ((box[0] + box[2]) / 2 / w, box[3] / h) if box is not None else (0.5, 0.5)
    spot = place(frame.geo, frame.pose, foot, aspect=w / h)
    ev.lat, ev.lon = spot.point.lat, spot.point.lon
    ev.place = f"{spot.how}; camera position: {frame.place_note}" if frame.place_note else spot.how


def _when(ts: float) -> str:
    if is_wall_clock(ts):
        return datetime.fromtimestamp(ts, CITY_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return f"at {ts:.1f} s of the video"


def _caption(ts: float) -> str:
    """The time burnt into an evidence thumbnail (short: it sits in a corner)."""
    if is_wall_clock(ts):
        return datetime.fromtimestamp(ts, CITY_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return f"{ts:.1f} s"


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def caption(ev: Event, names: Mapping[str, str]) -> tuple[str, str]:
    """The evidence picture's caption in the city's names, and in the raw labels."""
    raw = f"{ev.event_type}: {ev.label} {ev.confidence:.2f}"
    named = f"{names.get(ev.event_type, ev.event_type)}: {names.get(ev.label, ev.label)} {ev.confidence:.2f}"
    return named, raw


def _snapshot_copy(ev: Event, track: _Track, names: Mapping[str, str]) -> Event:
    """A detached copy of the event for publishing, with its evidence drawn."""
    if ev.snapshot is None and track.best_frame is not None and track.best_box_px is not None:
        label, raw = caption(ev, names)
        ev.snapshot = draw_snapshot(track.best_frame.image, track.best_box_px, label, fallback=raw)
    if ev.frame is None and track.best_frame is not None:
        ev.frame = clean_frame(track.best_frame.image)
    return replace(ev, trace=list(ev.trace), bbox=tuple(ev.bbox), boxes=[list(b) for b in ev.boxes])


@dataclass
class SourceRules:
    """All rules of one source: one ``update`` per analysed sample."""

    source_id: str
    rules: list[EventRule] = field(default_factory=list)

    recent: RecentSamples | None = None

    motion: ViewMotion | None = None

    @classmethod
    def build(cls, source_id: str, zones, configs: list[RuleConfig], model_version: str = "",
              moving: bool = False) -> "SourceRules":
        """``moving``: the camera moves (vehicle, drone, phone): what stays fixed in its picture
        while the view moves on is refused (vision/rules/place.py)."""
        shapes = prepare_zones(zones)
        rules = cls(source_id, [EventRule(c, shapes, source_id, model_version) for c in configs],
                    RecentSamples(caption=_caption), ViewMotion(moving))
        for rule in rules.rules:
            rule.recent = rules.recent
            rule.motion = rules.motion
        return rules

    def refused(self) -> dict[str, dict[str, int]]:
        """Sightings refused so far, per event type and kind of refusal."""
        return {r.config.event_type: dict(r.refused) for r in self.rules if r.refused}

    last_ts: float | None = None  # the latest sample's time

    def update(self, frame: Frame, dets: Detections) -> list[Event]:
        self.last_ts = frame.ts
        if self.motion is not None:
            self.motion.update(frame)
        if self.recent is not None:
            self.recent.add(frame.ts, frame.image)
        return [ev for rule in self.rules for ev in rule.update(frame, dets)]

    def flush(self, now: float | None = None, cause: str = "stopped") -> list[Event]:
        """End the open events: ``cause`` "video_ended" when a recorded file ran out,
        "stopped" when the source's patrol stops (released, or the worker stops)."""
        at = self.last_ts
        if at is None:
            why = None
        elif cause == "video_ended":
            why = (f"the video ended (its last sample {_when(at)})" if is_wall_clock(at)
                   else f"the video ended at {at:.1f} s (its last sample)")
        else:
            why = f"the source's patrol stopped (its last sample {_when(at)})"
        return [ev for rule in self.rules for ev in rule.flush(now, why)]
