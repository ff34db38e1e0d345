"""The coordinate systems Chinese senders use, turned into WGS84.

Phone map SDKs (AMap, Tencent, Baidu) report GCJ-02, the obfuscated system every map
published in China must use, or Baidu's BD-09, a further shift of GCJ-02. Both differ from
WGS84 by a few hundred metres, enough to put a case in the wrong grid cell. GCJ-02 is
defined only forwards (WGS84 → GCJ-02), so it is inverted here by fixed-point iteration to
well under a centimetre. Outside mainland China GCJ-02 equals WGS84.

The forward formulas are the published ones (the Krasovsky 1940 ellipsoid and the sine
series used by every open implementation, e.g. googollee/eviltransform, MIT).
"""
from __future__ import annotations

import math
from typing import Literal

CRS = Literal["wgs84", "gcj02", "bd09"]
CRS_NAMES: tuple[str, ...] = ("wgs84", "gcj02", "bd09")

_A = 6378245.0  # Krasovsky 1940 semi-major axis, metres
_EE = 0.00669342162296594323  # its first eccentricity squared
_X_PI = math.pi * 3000.0 / 180.0


def _outside_china(lat: float, lon: float) -> bool:
    return not (72.004 <= lon <= 137.8347 and 0.8293 <= lat <= 55.8271)


def _shift(lat: float, lon: float) -> tuple[float, float]:
    """GCJ-02 minus WGS84 at a WGS84 point, in degrees (lat, lon)."""
    x, y = lon - 105.0, lat - 35.0
    d = 20.0 * math.sin(6.0 * x * math.pi) + 20.0 * math.sin(2.0 * x * math.pi)
    dlat = -100.0 + 2.0 * x + 3.0 * y + 0.2 * y * y + 0.1 * x * y + 0.2 * math.sqrt(abs(x))
    dlat += (d + 20.0 * math.sin(y * math.pi) + 40.0 * math.sin(y / 3.0 * math.pi)
             + 160.0 * math.sin(y / 12.0 * math.pi) + 320.0 * math.sin(y * math.pi / 30.0)) * 2.0 / 3.0
    dlon = 300.0 + x + 2.0 * y + 0.1 * x * x + 0.1 * x * y + 0.1 * math.sqrt(abs(x))
    dlon += (d + 20.0 * math.sin(x * math.pi) + 40.0 * math.sin(x / 3.0 * math.pi)
             + 150.0 * math.sin(x / 12.0 * math.pi) + 300.0 * math.sin(x / 30.0 * math.pi)) * 2.0 / 3.0
    rad = lat / 180.0 * math.pi
    magic = 1 - _EE * math.sin(rad) ** 2
    sqrt_magic = math.sqrt(magic)
    dlat = dlat * 180.0 / ((_A * (1 - _EE)) / (magic * sqrt_magic) * math.pi)
    dlon = dlon * 180.0 / (_A / sqrt_magic * math.cos(rad) * math.pi)
    return dlat, dlon


def wgs84_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    if _outside_china(lat, lon):
        return lat, lon
    dlat, dlon = _shift(lat, lon)
    return lat + dlat, lon + dlon


def gcj02_to_wgs84(lat: float, lon: float) -> tuple[float, float]:
    """Invert the forward shift: iterate until the WGS84 guess maps onto the given point."""
    if _outside_china(lat, lon):
        return lat, lon
    wlat, wlon = lat, lon
    for _ in range(30):
        glat, glon = wgs84_to_gcj02(wlat, wlon)
        elat, elon = glat - lat, glon - lon
        wlat, wlon = wlat - elat, wlon - elon
        if abs(elat) < 1e-10 and abs(elon) < 1e-10:  # about 0.01 mm
            break
    return wlat, wlon


def bd09_to_gcj02(lat: float, lon: float) -> tuple[float, float]:
    """Baidu's published inverse, then refined against the forward formula (it is off by cm)."""
    x, y = lon - 0.0065, lat - 0.006
    z = math.sqrt(x * x + y * y) - 0.00002 * math.sin(y * _X_PI)
    theta = math.atan2(y, x) - 0.000003 * math.cos(x * _X_PI)
    glat, glon = z * math.sin(theta), z * math.cos(theta)
    for _ in range(10):
        blat, blon = gcj02_to_bd09(glat, glon)
        elat, elon = blat - lat, blon - lon
        glat, glon = glat - elat, glon - elon
        if abs(elat) < 1e-10 and abs(elon) < 1e-10:
            break
    return glat, glon


def gcj02_to_bd09(lat: float, lon: float) -> tuple[float, float]:
    z = math.sqrt(lon * lon + lat * lat) + 0.00002 * math.sin(lat * _X_PI)
    theta = math.atan2(lat, lon) + 0.000003 * math.cos(lon * _X_PI)
    return z * math.sin(theta) + 0.006, z * math.cos(theta) + 0.0065


def to_wgs84(lat: float, lon: float, crs: str = "wgs84") -> tuple[float, float]:
    """(lat, lon) in ``crs`` as WGS84; ValueError naming the systems understood."""
    crs = (crs or "wgs84").lower().replace("-", "").replace("_", "")
    if crs in ("wgs84", "cgcs2000", "epsg4326"):  # CGCS2000 agrees with WGS84 to about a metre
        return lat, lon
    if crs == "gcj02":
        return gcj02_to_wgs84(lat, lon)
    if crs == "bd09":
        return gcj02_to_wgs84(*bd09_to_gcj02(lat, lon))
    raise ValueError(f"unknown coordinate system {crs!r}; one of wgs84, gcj02, bd09")
