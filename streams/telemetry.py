"""DJI ``.SRT`` side-car telemetry: read every known dialect into a Track, write one back.

DJI drones write a subtitle file beside each video, one cue per frame (newer models) or
per second (older ones). Each cue carries the position in one of several layouts, the
"dialects" below (shared/reference/dji_srt_formats.md). The dialect is detected per cue,
so a file is read whatever model wrote it.

Order inside ``GPS(a, b, ...)``/``RTK(a, b, ...)`` differs by model, so it is decided per
cue by these rules, first match wins:

1. a value outside ±90 can only be a longitude;
2. in China, where the product runs, longitudes are 73–135 and latitudes 18–54, so a pair
   that lands in that box only one way round is read that way round;
3. otherwise the pair is ambiguous and the model's documented order is used
   (``GPS(lon, lat)`` on the Mavic Pro/Phantom 4/Mavic Mini/Phantom 4 RTK,
   ``GPS(lat, lon)`` on the Matrice 300). When rules 1–2 overrule that order, the Track
   says so in ``warnings``: it usually means the dialect was guessed wrong.

``0, 0`` means "no fix": such cues are kept as samples with ``lat``/``lon`` set to None,
as are cues with out-of-range coordinates, so no position is ever invented from them.
"""
from __future__ import annotations

import bisect
import codecs
import math
import os
import re
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from streams.frame import GeoPoint

DIALECTS: dict[str, str] = {
    "mavic3": "Air 2S / Mavic 3: [latitude: ..] [longitude: ..] [altitude: ..]",
    "mini": "Mini 3/4, Mavic 3: [latitude: ..] [longitude: ..] [rel_alt: .. abs_alt: ..]",
    "mavic2": "Mavic 2: [latitude : ..] [longtitude : ..] [altitude: ..]",
    "mavic_pro": "Mavic Pro / Phantom 4: GPS(lon,lat,sats) BAROMETER:..",
    "mavic_mini": "Mavic Mini: GPS (lon, lat, sats), D ..m, H ..m",
    "p4rtk": "Phantom 4 RTK: RTK (lon, lat, n), H ..m, G.PRY (pitch, roll, yaw)",
    "m300": "Matrice 300 RTK: GPS(lat,lon,altM) BAROMETER:..M",
}
# Whether the model writes longitude first inside GPS(...)/RTK(...).
_LON_FIRST = {"mavic_pro": True, "mavic_mini": True, "p4rtk": True, "m300": False}

_NUM = r"[-+]?\d+(?:\.\d+)?"
_CUE_TIME = re.compile(
    r"^\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})\s*-->\s*(\d+):(\d{1,2}):(\d{1,2})[,.](\d{1,3})"
)
_CUE_NUMBER = re.compile(r"^\d+$")
_CUT_CUE_TIME = re.compile(r"^\d+:\d")  # a cue time line that the end of the file cut short
_TAG = re.compile(r"<[^>]*>")
_WORD = re.compile(r"[A-Za-z]+")
# Values must be followed by a separator (or a closing bracket/parenthesis), so that a
# number cut short by the end of a truncated file is never read as a smaller number.
_KEY_VALUE = re.compile(
    rf"\b(latitude|longitude|longtitude|altitude|rel_alt|abs_alt|gb_pitch|gb_yaw|focal_len)\s*:\s*({_NUM})(?=[\s\],])"
)
_GPS = re.compile(rf"\b(GPS|RTK)\s*\(\s*({_NUM})\s*,\s*({_NUM})\s*(?:,\s*({_NUM})\s*(M?)\s*)?\)")
_BAROMETER = re.compile(rf"\bBAROMETER\s*:\s*({_NUM})\s*(M?)(?![\d.])")
_HEIGHT = re.compile(rf"\bH\s+({_NUM})\s*m\b")
_GIMBAL_PRY = re.compile(rf"\bG\.PRY\s*\(\s*({_NUM})°?\s*,\s*({_NUM})°?\s*,\s*({_NUM})°?\s*\)")
_WALLCLOCK = re.compile(
    r"\b(\d{4})[-./](\d{1,2})[-./](\d{1,2})\s+(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d{1,6}))?(?:,(\d{1,3}))?"
)


class TelemetryError(ValueError):
    """A telemetry file cannot be used; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class TelemetrySample:
    """One cue: where the drone was from video second ``t`` (cue start) to ``end``.

    ``lat``/``lon`` are None when the cue has no GPS fix. ``alt`` is the absolute
    altitude (metres above sea level) and ``rel_alt`` the height above take-off (the
    barometer or ``H`` of older models). ``wallclock`` is the drone's naive local time.
    """

    t: float
    lat: float | None
    lon: float | None
    alt: float | None = None
    rel_alt: float | None = None
    wallclock: datetime | None = None
    gimbal_pitch: float | None = None
    end: float | None = None
    gimbal_yaw: float | None = None  # where the camera looks, degrees clockwise from north
    focal_mm: float | None = None  # 35 mm-equivalent focal length, hence the field of view

    @property
    def hfov_deg(self) -> float | None:
        """Horizontal field of view of a 35 mm-equivalent focal length (36 mm wide frame)."""
        if not self.focal_mm or self.focal_mm <= 0:
            return None
        return math.degrees(2 * math.atan(36.0 / (2 * self.focal_mm)))

    @property
    def has_fix(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass
class Track(Sequence):
    """The samples of one flight clip, ordered by video time."""

    samples: tuple[TelemetrySample, ...]
    dialect: str | None = None
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.samples = tuple(sorted(self.samples, key=lambda s: s.t))
        self._times = [s.t for s in self.samples]

    def __repr__(self) -> str:
        return (f"Track({len(self.samples)} samples, dialect={self.dialect!r}, "
                f"duration={self.duration:.3f}, warnings={self.warnings!r})")

    def __getitem__(self, index):
        return self.samples[index]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def duration(self) -> float:
        """Video seconds covered: from 0 to the end of the last cue."""
        if not self.samples:
            return 0.0
        last = self.samples[-1]
        return last.end if last.end is not None else last.t

    def position_at(self, t: float, tolerance_s: float = 0.5) -> GeoPoint | None:
        """Position at video second ``t``, linearly interpolated between neighbouring fixes.

        Within a fix's cue that is followed by a no-fix cue, the fix's own position. None
        inside a no-fix cue (a lost fix is never bridged) and before the first cue or after
        the last one by more than ``tolerance_s``.
        """
        i = bisect.bisect_right(self._times, t) - 1
        before = self.samples[i] if i >= 0 else None
        after = self.samples[i + 1] if i + 1 < len(self.samples) else None
        if before is None:
            return _point(after) if after is not None and after.has_fix and after.t - t <= tolerance_s else None
        if not before.has_fix:
            return None
        if after is not None and after.has_fix:
            span = after.t - before.t
            return _lerp(before, after, (t - before.t) / span if span > 0 else 0.0)
        cue_end = before.end if before.end is not None else before.t
        return _point(before) if t <= cue_end + (tolerance_s if after is None else 0.0) else None

    def nearest(self, t: float) -> TelemetrySample:
        """The cue whose start is closest to video second ``t`` (the track must not be empty)."""
        i = bisect.bisect_left(self._times, t)
        near = [self.samples[j] for j in (i - 1, i) if 0 <= j < len(self.samples)]
        return min(near, key=lambda s: abs(s.t - t))

    def check_against(self, video_duration_s: float, tolerance_s: float = 2.0) -> None:
        """Raise TelemetryError when this SRT cannot belong to a video of that length."""
        gap = self.duration - video_duration_s
        if abs(gap) > tolerance_s:
            raise TelemetryError(
                f"telemetry does not match the video: the SRT covers {self.duration:.1f} s but the "
                f"video lasts {video_duration_s:.1f} s ({abs(gap):.1f} s {'longer' if gap > 0 else 'shorter'}, "
                f"tolerance {tolerance_s:g} s); is it the side-car of another clip?"
            )


def _point(s: TelemetrySample) -> GeoPoint:
    return GeoPoint(s.lat, s.lon, s.alt)


def _lerp(a: TelemetrySample, b: TelemetrySample, f: float) -> GeoPoint:
    dlon = b.lon - a.lon
    if abs(dlon) > 180:  # the short way across the antimeridian
        dlon -= 360 if dlon > 0 else -360
    lon = a.lon + f * dlon
    if abs(lon) > 180:
        lon -= 360 if lon > 0 else -360
    alt = a.alt + f * (b.alt - a.alt) if a.alt is not None and b.alt is not None else None
    return GeoPoint(a.lat + f * (b.lat - a.lat), lon, alt)


# ---------------------------------------------------------------------------------- parsing


@dataclass
class _Cue:
    number: int  # position in the file, from 1
    start: float
    end: float
    body: list[str]  # non-blank lines after the time line


@dataclass
class _Fields:
    """What one cue says, before coordinates are checked."""

    dialect: str
    lat: float
    lon: float
    alt: float | None
    rel_alt: float | None
    gimbal_pitch: float | None
    swapped: bool
    gimbal_yaw: float | None = None
    focal_mm: float | None = None  # the GPS pair was read in the opposite order to the model's


class _Notes:
    """Warnings grouped by kind, so a per-frame file yields one line per problem, not 30 a second."""

    def __init__(self) -> None:
        self._seen: dict[str, list] = {}

    def add(self, kind: str, detail: str) -> None:
        self._seen.setdefault(kind, [0, detail])[0] += 1

    def lines(self) -> list[str]:
        return [f"{kind}: {n} cues, first {detail}" if n > 1 else f"{kind}: {detail}"
                for kind, (n, detail) in self._seen.items()]


def parse_srt(source: str | os.PathLike | bytes) -> Track:
    """Read a DJI SRT given as a path, its text or its bytes.

    A str holding no line break is taken as a path. Raises TelemetryError for input that
    cannot be telemetry; recoverable problems (truncation, no-fix or out-of-range cues,
    mixed dialects) are kept in ``Track.warnings``.
    """
    text, name = _load(source)
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise TelemetryError(f"{name}: empty file")
    cues, warnings = _split_cues(text, name)
    notes, dialects, samples = _Notes(), Counter(), []
    for cue in cues:
        body = _TAG.sub(" ", "\n".join(cue.body))
        fields = _read_fields(body)
        lat = lon = alt = rel_alt = pitch = yaw = focal = None
        if fields is None:
            notes.add("cues without any position", f"cue {cue.number} at {cue.start:.3f} s")
        else:
            dialects[fields.dialect] += 1
            alt, rel_alt, pitch, yaw = fields.alt, fields.rel_alt, fields.gimbal_pitch, fields.gimbal_yaw
            focal = fields.focal_mm
            if fields.swapped:
                order = "lon, lat" if _LON_FIRST[fields.dialect] else "lat, lon"
                notes.add(f"GPS pair not in the {fields.dialect} order ({order})",
                          f"cue {cue.number}: read as lat {fields.lat}, lon {fields.lon}")
            if fields.lat == 0 and fields.lon == 0:
                notes.add("cues without a GPS fix (0, 0)", f"cue {cue.number} at {cue.start:.3f} s")
            elif not (-90 <= fields.lat <= 90 and -180 <= fields.lon <= 180):
                notes.add("coordinates out of range, kept as no fix",
                          f"cue {cue.number}: lat {fields.lat}, lon {fields.lon}")
            else:
                lat, lon = fields.lat, fields.lon
        samples.append(TelemetrySample(cue.start, lat, lon, alt, rel_alt, _wallclock(body), pitch, cue.end,
                                       yaw % 360.0 if yaw is not None else None, focal))
    if not dialects:
        raise TelemetryError(f"{name}: no GPS position in any of its {len(cues)} cues; not DJI telemetry?")
    if any(b.t < a.t for a, b in zip(samples, samples[1:])):
        warnings.append("cues out of time order; sorted by start time")
    if len(dialects) > 1:
        warnings.append("mixed dialects: " + ", ".join(f"{d} ({n} cues)" for d, n in dialects.most_common()))
    if not any(s.has_fix for s in samples):
        warnings.append("no cue has a GPS fix: the track gives no positions")
    return Track(tuple(samples), dialects.most_common(1)[0][0], warnings + notes.lines())


def _load(source: str | os.PathLike | bytes) -> tuple[str, str]:
    """(text, name for messages) of a path, text or bytes."""
    if isinstance(source, str) and ("\n" in source or "\r" in source or not source.strip()):
        return source, "SRT text"
    if isinstance(source, bytes):
        data, name = source, "SRT data"
    else:
        path = Path(source)
        name = str(path)
        try:
            data = path.read_bytes()
        except OSError as e:
            raise TelemetryError(f"{name}: cannot read ({e.strerror or e})") from None
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # re-saved on Windows
        return data.decode("utf-16", errors="replace"), name
    if b"\x00" in data:
        raise TelemetryError(f"{name}: not an SRT file (binary data)")
    return data.decode("utf-8-sig", errors="replace"), name


def _split_cues(text: str, name: str) -> tuple[list[_Cue], list[str]]:
    """The complete cues of a file, and a warning when its end was cut off."""
    lines = [line.strip() for line in text.split("\n")]
    starts = [i for i, line in enumerate(lines) if _CUE_TIME.match(line)]
    if not starts:
        raise TelemetryError(f"{name}: not an SRT file (no 'HH:MM:SS,mmm --> HH:MM:SS,mmm' cue times)")
    cues = []
    for number, (i, stop) in enumerate(zip(starts, starts[1:] + [len(lines)]), 1):
        body = [line for line in lines[i + 1:stop] if line]
        if stop != len(lines) and body and _CUE_NUMBER.match(body[-1]):
            body.pop()  # the next cue's number
        times = _CUE_TIME.match(lines[i]).groups()
        cues.append(_Cue(number, _seconds(*times[:4]), _seconds(*times[4:]), body))

    last = cues[-1]
    fragment = next((k for k, line in enumerate(last.body) if _CUE_NUMBER.match(line) or _CUT_CUE_TIME.match(line)), None)
    if fragment is not None:
        # The writer moved on to a next cue, so this one is whole; only the next one's header is cut.
        del last.body[fragment:]
        return cues, [f"truncated file: it ends inside the header of cue {last.number + 1}; "
                      f"all {len(cues)} complete cues are kept"]
    previous = cues[-2] if len(cues) > 1 else None
    if not _is_complete(last, previous):
        cues.pop()
        if not cues:
            raise TelemetryError(f"{name}: truncated file with no complete cue")
        return cues, [f"truncated file: cue {last.number} at {last.start:.3f} s is incomplete and was "
                      f"skipped; the {len(cues)} complete cues before it are kept"]
    return cues, []


def _seconds(h: str, m: str, s: str, ms: str) -> float:
    return int(h) * 3600 + int(m) * 60 + int(s) + int(ms.ljust(3, "0")) / 1000


def _is_complete(cue: _Cue, previous: _Cue | None) -> bool:
    """Whether the last cue was written to its end.

    Cues of one file share a layout, so a last cue with fewer words than the one before
    it lost its tail; an unclosed <font> tag says the same for the bracketed dialects.
    """
    body = "\n".join(cue.body)
    if not body or body.count("<font") > body.count("</font>"):
        return False
    return previous is None or len(_WORD.findall(body)) >= len(_WORD.findall("\n".join(previous.body)))


def _read_fields(body: str) -> _Fields | None:
    """The position fields of one cue (tags removed), or None if it carries no position."""
    pairs = {key: float(value) for key, value in _KEY_VALUE.findall(body)}
    lon = pairs.get("longitude", pairs.get("longtitude"))
    if "latitude" in pairs and lon is not None:
        if "longtitude" in pairs:
            dialect = "mavic2"
        elif "rel_alt" in pairs or "abs_alt" in pairs:
            dialect = "mini"
        else:
            dialect = "mavic3"
        alt = pairs.get("altitude", pairs.get("abs_alt"))
        focal = pairs.get("focal_len")
        if focal is not None and focal > 100:  # most models write tenths of a millimetre (240 = 24 mm)
            focal /= 10.0
        return _Fields(dialect, pairs["latitude"], lon, alt, pairs.get("rel_alt"), pairs.get("gb_pitch"), False,
                       pairs.get("gb_yaw"), focal)

    gps = _GPS.search(body)
    if gps is None:
        return None
    kind, a, b, _third, metres = gps.groups()  # third: satellites, or the M300's altitude ("0.0M")
    barometer = _BAROMETER.search(body)
    if kind == "RTK" or ".PRY" in body:
        dialect = "p4rtk"
    elif metres or (barometer and barometer.group(2)):
        dialect = "m300"
    elif barometer:
        dialect = "mavic_pro"
    else:
        dialect = "mavic_mini"
    lat, lon, swapped = _order(float(a), float(b), _LON_FIRST[dialect])
    height = _HEIGHT.search(body)
    rel_alt = float(barometer.group(1)) if barometer else float(height.group(1)) if height else None
    gimbal = _GIMBAL_PRY.search(body)
    pitch, yaw = (float(gimbal.group(1)), float(gimbal.group(3))) if gimbal else (None, None)
    return _Fields(dialect, lat, lon, None, rel_alt, pitch, swapped, yaw)


def _order(a: float, b: float, lon_first: bool) -> tuple[float, float, bool]:
    """(lat, lon, swapped) from the pair inside GPS(a, b); the rules are in the module doc."""
    if abs(a) > 90 >= abs(b):
        a_is_lon = True
    elif abs(b) > 90 >= abs(a):
        a_is_lon = False
    elif _in_china(lat=b, lon=a) != _in_china(lat=a, lon=b):
        a_is_lon = _in_china(lat=b, lon=a)
    else:
        a_is_lon = lon_first
    return (b, a, not lon_first) if a_is_lon else (a, b, lon_first)


def _in_china(lat: float, lon: float) -> bool:
    return 18 <= lat <= 54 and 73 <= lon <= 135


def _wallclock(body: str) -> datetime | None:
    """The drone's local time in a cue, if it has one (DJI writes no time zone)."""
    m = _WALLCLOCK.search(body)
    if m is None:
        return None
    *date_time, fraction, micro = m.groups()
    if micro is not None and len(fraction) <= 3:  # "ss,mmm,uuu": milliseconds, then microseconds
        microsecond = int(fraction) * 1000 + int(micro)
    else:
        microsecond = int((fraction or "0").ljust(6, "0"))
    try:
        return datetime(*map(int, date_time), microsecond)
    except ValueError:  # an impossible date is no timestamp
        return None


# ---------------------------------------------------------------------------------- writing


def write_srt(samples: Iterable[TelemetrySample], path: str | os.PathLike, dialect: str = "mavic3") -> Path:
    """Write samples as one cue each in the ``mavic3`` (Air 2S) or ``mini`` dialect.

    Per-frame or per-second depends only on the samples given. A cue ends at the sample's
    ``end``, else at the next sample's start, else one typical step later. ``parse_srt``
    reads the file back to the same samples, up to what the format keeps: times to the
    millisecond, coordinates to 1e-6 degree, altitudes to the millimetre, the ``mini``
    wall clock to the millisecond. No-fix samples are written as DJI does, ``0, 0``.
    """
    if dialect not in ("mavic3", "mini"):
        raise ValueError(f"write_srt writes the 'mavic3' or 'mini' dialect, not {dialect!r}")
    samples = list(samples)
    if any(b.t < a.t for a, b in zip(samples, samples[1:])):
        raise ValueError("write_srt needs samples in time order")
    if dialect == "mavic3" and any(s.rel_alt is not None for s in samples):
        raise ValueError("the mavic3 dialect has no relative altitude; use dialect='mini' to keep rel_alt")
    steps = [b.t - a.t for a, b in zip(samples, samples[1:]) if b.t > a.t]
    step = statistics.median(steps) if steps else 1.0
    cues = []
    for n, s in enumerate(samples, 1):
        if s.has_fix and not (-90 <= s.lat <= 90 and -180 <= s.lon <= 180):
            raise ValueError(f"sample {n}: coordinates out of range (lat {s.lat}, lon {s.lon})")
        end = s.end if s.end is not None else samples[n].t if n < len(samples) else s.t + step
        cues.append(f"{n}\n{_srt_time(s.t)} --> {_srt_time(end)}\n{_cue_text(n, s, end, dialect)}\n")
    path = Path(path)
    path.write_text("\n".join(cues), encoding="utf-8", newline="\n")
    return path


def _cue_text(n: int, s: TelemetrySample, end: float, dialect: str) -> str:
    lat, lon = (s.lat, s.lon) if s.has_fix else (0.0, 0.0)
    # From the rounded cue times, so that rewriting a parsed file reproduces it byte for byte.
    diff_ms = round(end * 1000) - round(s.t * 1000)
    lines = [f'<font size="{36 if dialect == "mavic3" else 28}">SrtCnt : {n}, DiffTime : {diff_ms}ms']
    if s.wallclock is not None:
        w = s.wallclock
        if dialect == "mavic3":
            lines.append(f"{w:%Y-%m-%d %H:%M:%S},{w.microsecond // 1000:03d},{w.microsecond % 1000:03d}")
        else:
            lines.append(f"{w:%Y-%m-%d %H:%M:%S}.{w.microsecond // 1000:03d}")
    items = [f"[latitude: {lat:.6f}]", f"[longitude: {lon:.6f}]"]
    if dialect == "mavic3" and s.alt is not None:
        items.append(f"[altitude: {s.alt:.6f}]")
    heights = [f"{key}: {value:.3f}" for key, value in (("rel_alt", s.rel_alt), ("abs_alt", s.alt))
               if dialect == "mini" and value is not None]
    if heights:
        items.append(f"[{' '.join(heights)}]")
    if s.gimbal_pitch is not None:
        items.append(f"[gb_pitch: {s.gimbal_pitch:.1f}]")
    if s.gimbal_yaw is not None:
        items.append(f"[gb_yaw: {s.gimbal_yaw:.1f}]")
    lines.append(" ".join(items) + " </font>")
    return "\n".join(lines)


def _srt_time(seconds: float) -> str:
    ms = round(seconds * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"
