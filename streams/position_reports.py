"""Position reports from senders: JSON batches and GB/T 28181 ``MobilePosition`` notifications,
checked and turned into WGS84 fixes of known sources.

A report is refused, with the reason, when its source is unknown or does not move, when it
lies far outside the city, or when its time is in the future or too old to place anything.
A report that jumps faster than its source can move is kept but flagged (``Fix.suspect``):
the next report tells whether the receiver or the source moved.
"""
from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Iterable, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from streams.crs import to_wgs84
from streams.positions import Fix
from streams.sources import Registry, Source
from streams.tracks import parse_moment

KMH_MPS = 1 / 3.6
MAX_BATCH = 1000


class PositionIn(BaseModel):
    """One position as a sender writes it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    source_id: str = Field(min_length=1, max_length=64)
    t: float | str = Field(description="Unix seconds, or an ISO 8601 time (no zone = China time)")
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)
    alt: float | None = Field(None, ge=-500, le=10000, description="metres above sea level")
    heading: float | None = Field(None, ge=0, le=360, description="degrees clockwise from north")
    speed: float | None = Field(None, ge=0, le=200, description="metres per second")
    accuracy_m: float | None = Field(None, ge=0, le=100000)
    height_m: float | None = Field(None, ge=-100, le=2000, description="drones: height above the ground")
    pitch: float | None = Field(None, ge=-90, le=90, description="drones: gimbal pitch, -90 straight down")
    crs: Literal["wgs84", "gcj02", "bd09"] | None = None

    @field_validator("t")
    @classmethod
    def _time(cls, v):
        return v if isinstance(v, float) else parse_time(v)


class PositionBatch(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    crs: Literal["wgs84", "gcj02", "bd09"] = Field("wgs84", description="of every position that names none")
    positions: list[PositionIn] = Field(min_length=1, max_length=MAX_BATCH)


@dataclass
class Checked:
    """The outcome of one batch: fixes to keep (suspect ones flagged) and refused reports."""

    accepted: list[tuple[str, Fix]] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)

    @property
    def flagged(self) -> list[dict]:
        return [{"source_id": sid, "t": fx.t, "reason": fx.suspect} for sid, fx in self.accepted if fx.suspect]


class CityArea:
    """Where positions of the city's sources can be: its grid (or its sources) plus a margin."""

    def __init__(self, south: float, west: float, north: float, east: float, margin_km: float):
        self.box = (south, west, north, east)
        self.margin_km = margin_km
        dlat = margin_km / 111.32
        mid = math.radians((south + north) / 2)
        dlon = margin_km / (111.32 * max(0.1, math.cos(mid)))
        self._outer = (south - dlat, west - dlon, north + dlat, east + dlon)

    @classmethod
    def around(cls, bounds: tuple[float, float, float, float] | None, registry: Registry | None,
               margin_km: float) -> "CityArea | None":
        if bounds is None and registry is not None:
            pts = [(s.lat, s.lon) for s in registry if s.lat is not None]
            if pts:
                bounds = (min(p[0] for p in pts), min(p[1] for p in pts), max(p[0] for p in pts),
                          max(p[1] for p in pts))
        return cls(*bounds, margin_km) if bounds is not None else None

    def contains(self, lat: float, lon: float) -> bool:
        s, w, n, e = self._outer
        return s <= lat <= n and w <= lon <= e


def parse_time(text: str) -> float:
    """A sender's time: Unix seconds, or ISO 8601 (no zone = China time)."""
    return parse_moment(text, "t")


def parse_mobile_position(body: bytes) -> list[dict]:
    """The positions of a GB/T 28181 ``MobilePosition`` notification (one ``<Notify>``, or
    several inside any root), as PositionIn-shaped dicts keyed by the device's code.

    The standard's XML declares GB2312 (which the XML parser does not read itself), times are
    local (China) and speed is in km/h.
    """
    text = _decode_declared(body)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise ValueError(f"not valid XML: {err}") from None
    notes = [root] if _tag(root) in ("Notify", "Response") else [e for e in root if _tag(e) in ("Notify", "Response")]
    out = []
    for note in notes:
        fields = {_tag(c): (c.text or "").strip() for c in note}
        if fields.get("CmdType") != "MobilePosition":
            raise ValueError(f"a {fields.get('CmdType') or 'notification without CmdType'}, not a MobilePosition")
        missing = [k for k in ("DeviceID", "Time", "Longitude", "Latitude") if not fields.get(k)]
        if missing:
            raise ValueError(f"MobilePosition without {', '.join(missing)}")
        item = {"source_id": fields["DeviceID"], "t": fields["Time"],
                "lat": _number(fields, "Latitude"), "lon": _number(fields, "Longitude")}
        if fields.get("Speed"):
            item["speed"] = _number(fields, "Speed") * KMH_MPS
        if fields.get("Direction"):
            item["heading"] = _number(fields, "Direction") % 360.0
        if fields.get("Altitude"):
            item["alt"] = _number(fields, "Altitude")
        out.append(item)
    if not out:
        raise ValueError("no <Notify> with CmdType MobilePosition in the body")
    return out


class Intake:
    """Checks position reports against the registry, the city's area and the clock."""

    def __init__(self, registry: Registry, area: CityArea | None, future_s: float = 60.0, max_age_s: float = 86400.0):
        self.area = area
        self.future_s = future_s
        self.max_age_s = max_age_s
        self._by_id = {s.id: s for s in registry}
        self._by_device = {s.device_id: s for s in registry if getattr(s, "device_id", None)}

    def source(self, name: str) -> Source | None:
        return self._by_id.get(name) or self._by_device.get(name)

    def check(self, items: Iterable[PositionIn], now: float, default_crs: str = "wgs84") -> Checked:
        out = Checked()
        for i, item in enumerate(items):
            src = self.source(item.source_id)
            why = self._refuse(item, src, now)
            if why is not None:
                out.rejected.append({"index": i, "source_id": item.source_id, "error": why})
                continue
            lat, lon = to_wgs84(item.lat, item.lon, item.crs or default_crs)
            if self.area is not None and not self.area.contains(lat, lon):
                out.rejected.append({"index": i, "source_id": item.source_id, "error": (
                    f"position ({lat:.5f}, {lon:.5f}) is more than {self.area.margin_km:g} km outside the city; "
                    f"wrong coordinate system (crs: gcj02 or bd09?) or swapped lat/lon?")})
                continue
            out.accepted.append((src.id, Fix(float(item.t), lat, lon, item.alt, item.heading, item.speed,
                                             item.accuracy_m, item.height_m, item.pitch)))
        return out

    def _refuse(self, item: PositionIn, src: Source | None, now: float) -> str | None:
        if src is None:
            return f"unknown source {item.source_id!r}: not in the source registry (by id or GB/T 28181 device_id)"
        if not src.moves:
            return f"source {src.id!r} is a fixed camera; its place is in the registry"
        t = float(item.t)
        if t > now + self.future_s:
            return f"time {t:.0f} is {t - now:.0f} s in the future (the server's clock is {now:.0f}); check the sender's clock"
        if t < now - self.max_age_s:
            return f"time {t:.0f} is {(now - t) / 3600:.0f} h old; fixes older than {self.max_age_s / 3600:g} h place nothing"
        return None


def _decode_declared(body: bytes) -> str:
    head = body[:200].decode("ascii", errors="replace")
    match = re.search(r"encoding\s*=\s*[\"']([A-Za-z0-9_.-]+)[\"']", head)
    encoding = match.group(1) if match else "utf-8"
    try:
        text = body.decode(encoding)
    except (LookupError, UnicodeDecodeError):
        try:
            text = body.decode("gb18030")  # a superset of GB2312 and GBK
        except UnicodeDecodeError:
            raise ValueError(f"the body is not text in its declared encoding {encoding}") from None
    return re.sub(r"^\s*<\?xml[^>]*\?>", "", text)


def _tag(el) -> str:
    return el.tag.rsplit("}", 1)[-1]


def _number(fields: dict, key: str) -> float:
    try:
        return float(fields[key])
    except ValueError:
        raise ValueError(f"{key} {fields[key]!r} is not a number") from None
