"""Recorded tracks beside a video: GPX, NMEA and plain ``t,lat,lon`` CSV, as dashcams and
phones write them, read into fixes for ``patrol analyze --track``.

GPX and NMEA give UTC times; a CSV gives Unix seconds, an ISO time, or seconds into the
video (numbers below 10^9). ``align`` turns the track's times into seconds of the video,
given the moment the video started (from the command line or the file's creation time).
"""
from __future__ import annotations

import csv
import io
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path

from streams.crs import to_wgs84
from streams.frame import WALL_CLOCK_FROM
from streams.positions import Fix
from streams.city import CITY_TZ

KNOT_MPS = 0.514444


class TrackError(ValueError):
    """A track file cannot be used; the message says which file and why, in one line."""


def read_track(path: str | os.PathLike, crs: str = "wgs84") -> list[Fix]:
    """The fixes of a GPX, NMEA or CSV file (chosen by content, not by name), in time order."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise TrackError(f"{path}: track file not found") from None
    except OSError as err:
        raise TrackError(f"{path}: cannot read the track: {err.strerror or err}") from None
    text = raw.decode("utf-8-sig", errors="replace")
    head = text.lstrip()[:400]
    if head.startswith("<") and "gpx" in head.lower():
        fixes = parse_gpx(text, str(path))
    elif head.startswith("$") or re.search(r"^\$G[PNLAB]", text, re.M):
        fixes = parse_nmea(text, str(path))
    else:
        fixes = parse_csv(text, str(path))
    if crs != "wgs84":
        fixes = [replace(f, **dict(zip(("lat", "lon"), to_wgs84(f.lat, f.lon, crs)))) for f in fixes]
    if not fixes:
        raise TrackError(f"{path}: no position with a time in it")
    return sorted(fixes, key=lambda f: f.t)


def parse_gpx(text: str, name: str = "GPX") -> list[Fix]:
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise TrackError(f"{name}: not valid GPX: {err}") from None
    fixes = []
    for el in root.iter():
        if _local(el.tag) not in ("trkpt", "rtept", "wpt"):
            continue
        when = _child(el, "time")
        if when is None:
            continue
        try:
            lat, lon = float(el.attrib["lat"]), float(el.attrib["lon"])
        except (KeyError, ValueError):
            raise TrackError(f"{name}: a track point without a numeric lat/lon: {el.attrib}") from None
        ele, course, speed = _child(el, "ele"), _child(el, "course"), _child(el, "speed")
        fixes.append(_checked(Fix(_iso_time(when, name), lat, lon,
                                  alt=_float(ele), heading=_float(course), speed=_float(speed)), name))
    return fixes


def parse_nmea(text: str, name: str = "NMEA") -> list[Fix]:
    """RMC sentences (date, time, position, speed, course) and GGA (altitude) of one receiver."""
    fixes: dict[float, Fix] = {}
    alts: dict[str, float] = {}
    bad = 0
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("$"):
            continue
        body, _, checksum = line[1:].partition("*")
        if checksum and not _checksum_ok(body, checksum):
            bad += 1
            continue
        f = body.split(",")
        kind = f[0][2:]
        if kind == "GGA" and len(f) > 9 and f[1] and f[9]:
            alts[f[1]] = float(f[9])
        elif kind == "RMC" and len(f) > 9 and f[2] == "A" and f[1] and f[9]:  # A: a valid fix
            try:
                day = datetime.strptime(f[9], "%d%m%y").date()
                t = _utc_seconds(day, f[1])
                lat, lon = _nmea_degrees(f[3], f[4]), _nmea_degrees(f[5], f[6])
            except ValueError:
                bad += 1
                continue
            speed = float(f[7]) * KNOT_MPS if f[7] else None
            heading = float(f[8]) if f[8] else None
            fixes[t] = _checked(Fix(t, lat, lon, alt=alts.get(f[1]), heading=heading, speed=speed), name)
    if not fixes and bad:
        raise TrackError(f"{name}: {bad} NMEA sentences with a bad checksum or field, none usable")
    return list(fixes.values())


def parse_csv(text: str, name: str = "CSV") -> list[Fix]:
    """A header naming ``t`` (or ``time``), ``lat`` and ``lon``; optional alt, heading, speed."""
    rows = csv.DictReader(io.StringIO(text))
    fields = {(h or "").strip().lower(): h for h in rows.fieldnames or []}
    col = {k: next((fields[a] for a in aliases if a in fields), None) for k, aliases in {
        "t": ("t", "time", "timestamp"), "lat": ("lat", "latitude"), "lon": ("lon", "lng", "longitude"),
        "alt": ("alt", "altitude", "ele"), "heading": ("heading", "course", "bearing"), "speed": ("speed",)}.items()}
    missing = [k for k in ("t", "lat", "lon") if col[k] is None]
    if missing:
        raise TrackError(f"{name}: not a GPX, NMEA or t,lat,lon CSV file (no column {', '.join(missing)} in its "
                         f"header {list(fields)})")
    fixes = []
    for n, row in enumerate(rows, start=2):
        try:
            t_text = row[col["t"]].strip()
            t = float(t_text) if re.fullmatch(r"[-+]?\d+(\.\d+)?", t_text) else _iso_time(t_text, name)
            fix = Fix(t, float(row[col["lat"]]), float(row[col["lon"]]),
                      **{k: _float(row[col[k]]) for k in ("alt", "heading", "speed") if col[k] is not None})
        except (TypeError, ValueError, AttributeError) as err:
            raise TrackError(f"{name}: line {n}: {err}") from None
        fixes.append(_checked(fix, f"{name}: line {n}"))
    return fixes


def is_relative(fixes: list[Fix]) -> bool:
    """The track's times are seconds into the video rather than moments."""
    return bool(fixes) and fixes[-1].t < WALL_CLOCK_FROM


def align(fixes: list[Fix], video_start: float | None, name: str = "track") -> list[Fix]:
    """Fixes with ``t`` in seconds of the video. ``video_start``: Unix seconds at its first frame."""
    if is_relative(fixes):
        return fixes
    if video_start is None:
        raise TrackError(f"{name}: its times are moments (first {_show(fixes[0].t)}), but when the video "
                         "started is unknown: give --start (e.g. 2026-12-03T09:30:00+08:00)")
    out = [replace(f, t=f.t - video_start) for f in fixes]
    return out


def _show(t: float) -> str:
    return datetime.fromtimestamp(t, CITY_TZ).strftime("%Y-%m-%d %H:%M:%S China time")


def parse_moment(text: str, name: str = "--start") -> float:
    """An ISO time (no zone = China time) or Unix seconds, as Unix seconds; TrackError naming ``name``."""
    text = text.strip()
    if re.fullmatch(r"[-+]?\d+(\.\d+)?", text):
        return float(text)
    return _iso_time(text, name)


def _iso_time(text: str, name: str) -> float:
    value = text.strip().replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise TrackError(f"{name}: {text!r} is not a time (ISO 8601, e.g. 2026-12-03T09:30:00Z)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=CITY_TZ)
    return moment.timestamp()


def _utc_seconds(day: date, hhmmss: str) -> float:
    h, m, s = int(hhmmss[0:2]), int(hhmmss[2:4]), float(hhmmss[4:])
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp() + h * 3600 + m * 60 + s


def _nmea_degrees(value: str, hemisphere: str) -> float:
    if not value:
        raise ValueError("empty coordinate")
    raw = float(value)
    degrees = math.floor(raw / 100)
    out = degrees + (raw - degrees * 100) / 60
    return -out if hemisphere in ("S", "W") else out


def _checksum_ok(body: str, checksum: str) -> bool:
    value = 0
    for ch in body:
        value ^= ord(ch)
    try:
        return value == int(checksum[:2], 16)
    except ValueError:
        return False


def _checked(fix: Fix, where: str) -> Fix:
    if not (-90 <= fix.lat <= 90 and -180 <= fix.lon <= 180):
        raise TrackError(f"{where}: position out of range (lat {fix.lat}, lon {fix.lon})")
    return fix


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(el, name: str) -> str | None:
    for c in el:
        if _local(c.tag) == name and c.text:
            return c.text.strip()
        if _local(c.tag) == "extensions":  # speed and course often sit in an extension
            for e in c.iter():
                if _local(e.tag) == name and e.text:
                    return e.text.strip()
    return None


def _float(v) -> float | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    return float(v)
