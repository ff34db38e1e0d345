"""Offline analysis of one recorded video: the whole pipeline, as fast as it runs.

Used by ``patrol analyze`` and by upload jobs. The same reader, gate, detector,
rules and case builder as the live system; only the pacing differs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from pydantic import ValidationError

from cases.store import DraftCaseView
from core.wiring import Parts
from streams.frame import GeoPoint
from streams.placement import DEFAULT_MAX_FIX_AGE_S, Positions, SrtPositions, View, place_sample, recorded_track
from streams.reader import SourceError, iter_file_samples, probe
from streams.sources import DEFAULT_INTERVAL_S, ConfigError, Zone, read_yaml
from streams.telemetry import parse_srt
from streams.tracks import TrackError, align, read_track
from vision.events import EventState
from vision.pipeline import Pipeline

BATCH = 8  # consecutive samples per detector call


@dataclass
class Analysis:
    cases: list[DraftCaseView]
    samples: int
    analysed: int
    duration_s: float | None
    warnings: list[str]
    error: str | None = None  # the file broke off part-way: the cases found until then are kept
    opened_at: dict[int, float] = field(default_factory=dict)  # case id -> file time its first event opened


def load_zones(path: str | Path) -> list[Zone]:
    """A zones file: ``zones: [{name, role, polygon: [[x, y], ...]}]`` (fractions of the image)."""
    raw = read_yaml(path, "zones file") or {}
    items = raw.get("zones", []) if isinstance(raw, dict) else raw
    zones = []
    for i, z in enumerate(items or []):
        try:
            zones.append(Zone.model_validate(z))
        except ValidationError as err:
            e = err.errors()[0]
            raise ConfigError(f"{path}: zone #{i + 1}: field '{'.'.join(map(str, e['loc']))}': {e['msg']}") from None
    return zones


def side_files(video: Path) -> dict:
    """What lies beside a clip for ``analyze_video``: X.SRT (drone telemetry), X.track.csv
    (a vehicle's or phone's track) and X.zones.yaml, as its keyword arguments."""
    found: dict = {}
    if (srt := video.with_suffix(".SRT")).exists():
        found["srt"] = srt
    if (track := video.with_name(f"{video.stem}.track.csv")).exists():
        found["track"] = track
    if (zones := video.with_name(f"{video.stem}.zones.yaml")).exists():
        found["zones"] = load_zones(zones)
    return found


def analyze_video(parts: Parts, video: str | Path, kind: str = "fixed", srt: str | Path | None = None,
                  zones: list[Zone] = (), location: GeoPoint | None = None, interval_s: float | None = None,
                  source_id: str | None = None, progress: Callable[[float, float | None], None] | None = None,
                  track: str | Path | None = None, start: float | None = None, crs: str = "wgs84",
                  view: View | None = None, max_fix_age_s: float = DEFAULT_MAX_FIX_AGE_S) -> Analysis:
    """Analyse ``video``. A moving camera is placed by ``srt`` (DJI telemetry) or ``track``
    (GPX, NMEA or CSV; ``start``: Unix seconds at the video's first frame when the track
    holds moments and the file does not say when it was recorded)."""
    video = Path(video)
    info = probe(str(video))  # raises SourceError with a one-line reason
    warnings: list[str] = []
    view = view or View(kind)
    positions: Positions | None = None
    if srt:
        telemetry = parse_srt(Path(srt))
        if info.duration_s:
            telemetry.check_against(info.duration_s)
        warnings.extend(telemetry.warnings)
        positions = SrtPositions(telemetry)
    elif track:
        positions = _track_positions(Path(track), info, start, crs, kind, max_fix_age_s, warnings)
    source_id = source_id or video.stem
    pipeline = Pipeline(parts.detector, parts.rules)
    pipeline.add_source(source_id, zones, gate=(kind == "fixed"), moving=(kind != "fixed"))
    builder = parts.builder
    grid = None
    if location is not None and parts.grid is not None:
        grid = parts.grid.cell_at(location.lat, location.lon)
    touched: dict[int, DraftCaseView] = {}
    opened_at: dict[int, float] = {}

    def deliver(events):
        for ev in events:
            if ev.lat is None and location is not None:
                ev.lat, ev.lon = location.lat, location.lon
            case = builder.apply(ev, kind, grid)
            if case is not None:
                touched[case.id] = case
                if ev.state == EventState.OPENED:  # an event opens at the sample that confirmed it
                    opened_at[case.id] = min(opened_at.get(case.id, ev.last_seen), ev.last_seen)

    batch = []
    samples = 0
    interval = interval_s or DEFAULT_INTERVAL_S[kind if kind in DEFAULT_INTERVAL_S else "fixed"]
    error = None
    try:
        for frame in iter_file_samples(video, interval, parts.settings.worker.sample_max_side, source_id=source_id):
            if positions is not None:
                place_sample(frame, positions.at(frame.ts), view)
            batch.append(frame)
            samples += 1
            if len(batch) >= BATCH:
                deliver(pipeline.step(batch))
                batch = []
                if progress:
                    progress(frame.ts, info.duration_s)
    except SourceError as err:
        if samples == 0:
            raise
        error = str(err)
    if batch:
        deliver(pipeline.step(batch))
    deliver(pipeline.flush(cause="video_ended"))
    if progress:
        progress(info.duration_s or 0.0, info.duration_s)
    state = pipeline.sources[source_id]
    cases = [parts.store.get_case(cid) for cid in sorted(touched)]
    return Analysis([c for c in cases if c is not None], samples, state.analysed, info.duration_s, warnings, error,
                    opened_at)


def _track_positions(path: Path, info, start: float | None, crs: str, kind: str, max_age_s: float,
                     warnings: list[str]) -> Positions:
    fixes = align(read_track(path, crs), start if start is not None else info.created, str(path))
    first, last = fixes[0].t, fixes[-1].t
    duration = info.duration_s or 0.0
    if last < -max_age_s or (duration and first > duration + max_age_s):
        raise TrackError(f"{path}: the track ({first:+.0f} s to {last:+.0f} s of the video) does not overlap the "
                         f"video (0 to {duration:.0f} s): wrong file, or give the video's --start")
    if first > max_age_s or (duration and last < duration - max_age_s):
        warnings.append(f"the track covers {max(first, 0):.0f}-{min(last, duration or last):.0f} s of the "
                        f"{duration:.0f} s video; samples outside it have no position")
    track = recorded_track(fixes, max_age_s, kind)
    flagged = len(fixes) - len(track)
    if flagged:
        warnings.append(f"{flagged} track point(s) jump faster than a {kind} moves and are not used")
    return track


def case_json(case: DraftCaseView, evidence_root: Path) -> dict:
    """The line ``patrol analyze --json`` prints for one draft case."""
    return {
        "case_no": case.case_no,
        "event_type": case.event_type,
        "category": {"major": case.major, "minor": case.minor, "name": case.minor_name, "major_name": case.major_name},
        "start": round(case.first_seen, 2),
        "end": round(case.last_seen, 2),
        "confidence": round(case.confidence, 3),
        "bbox": [round(v, 1) for v in case.bbox],
        "snapshot": str(evidence_root / case.snapshot_key) if case.snapshot_key else None,
        "lat": case.lat,
        "lon": case.lon,
        "grid": case.grid,
        "source": case.source_id,
        "zone": case.zone,
        "model_version": case.model_version,
        "trace": case.trace,
    }


__all__ = ["Analysis", "SourceError", "analyze_video", "case_json", "load_zones"]
