"""The source registry: every camera, vehicle, drone and phone the city patrols.

Loaded from YAML and validated up front, so a typo in one camera's entry stops
the start with a message naming that source and field instead of surfacing as
a dead stream hours later.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SourceKind = Literal["fixed", "vehicle", "drone", "mobile", "upload"]
ZoneRole = Literal["no_vending", "permitted_construction", "watch"]

# Patrol rates per kind: the violations are slow, so one look every second or two
# is enough, and a fixed camera's static view needs even less.
DEFAULT_INTERVAL_S: dict[str, float] = {"fixed": 2.0, "vehicle": 1.0, "drone": 1.0, "mobile": 1.0, "upload": 1.0}

GRID_CODE = re.compile(r"^\d{14,15}$")
SOURCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
URL_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "rtmps://", "http://", "https://", "file://", "srt://", "udp://")


class ConfigError(ValueError):
    """A configuration file is wrong; the message says where and how."""


class Zone(BaseModel):
    """A polygon on the picture with a meaning for the rules.

    Points are fractions of the image width and height (0-1), so one zone fits
    both the main stream and the sub-stream of a camera.
    """

    model_config = ConfigDict(extra="forbid")

    name: str
    role: ZoneRole
    polygon: list[tuple[float, float]]

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, pts):
        if len(pts) < 3:
            raise ValueError("a polygon needs at least 3 points")
        for x, y in pts:
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise ValueError(f"point ({x}, {y}) is outside 0-1; zone points are fractions of the image size")
        return pts


class SamplingPolicy(BaseModel):
    """How often a source is looked at, and how cheaply."""

    model_config = ConfigDict(extra="forbid")

    interval_s: float = Field(2.0, gt=0, le=3600, description="seconds between analysed samples")
    keyframes_only: bool | None = Field(
        None, description="decode only key frames; None = decide from the stream's GOP and the interval"
    )
    recheck_s: float = Field(30.0, gt=0, description="force a sample through the change gate this often")
    gate: bool = Field(True, description="skip samples in which nothing changed")


class Source(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    kind: SourceKind
    url: str
    sub_url: str | None = None
    name: str = ""
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    location: Literal["fixed", "telemetry"] = "fixed"
    # Which way the camera looks, degrees clockwise from north: a fixed camera's view direction;
    # on a vehicle, relative to the vehicle's heading (0 = straight ahead).
    heading: float | None = Field(None, ge=0, lt=360)
    # A moving camera sees the street ahead of itself: a case is placed this far along its view.
    view_offset_m: float | None = Field(None, ge=0, le=500)
    # Horizontal field of view, for placing a drone's detection on the ground under its box.
    hfov_deg: float | None = Field(None, gt=0, lt=180)
    grid: str | None = None
    # GB/T 28181 device code (20 digits): MobilePosition notifications name the source by it
    device_id: str | None = Field(None, pattern=r"^\d{20}$")
    srt: str | None = None  # DJI telemetry side-car for recorded drone footage
    track: str | None = None  # recorded footage of a vehicle or phone: its GPX, NMEA or t,lat,lon CSV track
    track_crs: Literal["wgs84", "gcj02", "bd09"] = "wgs84"
    zones: list[Zone] = Field(default_factory=list)
    policy: SamplingPolicy | None = None
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _id(cls, v):
        if not SOURCE_ID.match(v):
            raise ValueError("use letters, digits, '_', '-', '.' (at most 64), starting with a letter or digit")
        return v

    @field_validator("url", "sub_url")
    @classmethod
    def _url(cls, v):
        if v is None:
            return v
        if "://" in v and not v.lower().startswith(URL_SCHEMES):
            raise ValueError(f"unsupported URL scheme in {v!r}; expected one of {', '.join(URL_SCHEMES)} or a file path")
        return v

    @field_validator("grid")
    @classmethod
    def _grid(cls, v):
        if v is not None and not GRID_CODE.match(v):
            raise ValueError("a unit-grid code has 14 digits (6 county + 3 street + 3 community + 2 cell) or 15")
        return v

    @model_validator(mode="after")
    def _fill(self):
        if (self.lat is None) != (self.lon is None):
            missing, given = ("lon", "lat") if self.lon is None else ("lat", "lon")
            raise ValueError(f"field '{missing}' is missing while '{given}' is given: "
                             "give both lat and lon, or neither")
        if self.policy is None:
            self.policy = SamplingPolicy(interval_s=DEFAULT_INTERVAL_S[self.kind])
        if self.track and self.is_live:
            raise ValueError("field 'track': a recorded track belongs to recorded footage (a file); "
                             "a live source's positions are posted to /api/v1/positions")
        if self.kind == "drone" and self.lat is None:
            self.location = "telemetry"
        return self

    @property
    def moves(self) -> bool:
        """Its camera moves: vehicles, drones and phones are placed by their positions."""
        return self.kind in ("vehicle", "drone", "mobile") or self.location == "telemetry"

    @property
    def is_live(self) -> bool:
        return "://" in self.url and not self.url.startswith("file://")

    def zones_with(self, role: str) -> list[Zone]:
        return [z for z in self.zones if z.role == role]


class Registry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[Source]

    @model_validator(mode="after")
    def _unique(self):
        first: dict[str, int] = {}
        dups = []
        for i, s in enumerate(self.sources):
            if s.id in first:
                dups.append(f"source #{i + 1} (id {s.id!r}): field 'id': "
                            f"{s.id!r} is already used by source #{first[s.id] + 1}")
            else:
                first[s.id] = i
        if dups:
            raise ValueError("; ".join(dups))
        return self

    def get(self, source_id: str) -> Source:
        for s in self.sources:
            if s.id == source_id:
                return s
        raise KeyError(source_id)

    def __iter__(self):
        return iter(self.sources)

    def __len__(self) -> int:
        return len(self.sources)


def _describe(err: ValidationError, raw: dict) -> str:
    lines = []
    for e in err.errors():
        loc = list(e["loc"])
        where = ""
        if len(loc) >= 2 and loc[0] == "sources" and isinstance(loc[1], int):
            i = loc[1]
            try:
                sid = raw["sources"][i].get("id", "?")
            except (KeyError, IndexError, TypeError, AttributeError):
                sid = "?"
            where = f"source #{i + 1} (id {sid!r})"
            loc = loc[2:]
        msg = e["msg"].removeprefix("Value error, ")
        field = ".".join(str(p) for p in loc)
        # checks across fields (lat with lon, unique ids) name their fields in the message
        what = f"field '{field}': {msg}" if field else msg
        lines.append(f"{where + ': ' if where else ''}{what}")
    return "; ".join(lines)


def yaml_problem(err: yaml.YAMLError) -> str:
    """A YAML error on one line, with where it is: PyYAML's own text spans several."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(err).split())


def parse_registry(raw: dict, origin: str = "<config>") -> Registry:
    if not isinstance(raw, dict) or "sources" not in raw:
        raise ConfigError(f"{origin}: expected a mapping with a 'sources' list")
    try:
        registry = Registry.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{origin}: {_describe(err, raw)}") from None
    base = Path(origin).parent if origin != "<config>" else Path(".")
    for s in registry.sources:  # relative file paths are relative to the registry file
        for attr in ("url", "sub_url", "srt", "track"):
            v = getattr(s, attr)
            if v and "://" not in v and not Path(v).is_absolute():
                setattr(s, attr, str((base / v).resolve()))
    return registry


def read_yaml(path: str | Path, what: str):
    """A configuration file's content, or a one-line ConfigError naming the file and ``what`` it is."""
    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: {what} not found") from None
    except OSError as err:  # a directory, no permission, ...
        raise ConfigError(f"{path}: cannot read the {what}: {err.strerror or err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {yaml_problem(err)}") from None


def load_registry(path: str | Path) -> Registry:
    return parse_registry(read_yaml(path, "source registry"), str(path))
