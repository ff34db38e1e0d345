"""Small geometry on the city's scale: distances, a point ahead along a bearing, and the
ground point a camera sees at a place in its picture.

A city is a few tens of kilometres across, so a local flat-earth approximation around the
camera is good to centimetres; no projection library is needed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from streams.frame import CameraPose, GeoPoint

EARTH_RADIUS_M = 6371008.8
MAX_GROUND_RANGE = 8.0  # a ray that meets the ground farther than this many heights away is near the horizon


def metres(a: GeoPoint, b: GeoPoint) -> float:
    """Great-circle distance (haversine)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(h)))


def bearing(a: GeoPoint, b: GeoPoint) -> float:
    """Initial bearing from a to b, degrees clockwise from north (0-360)."""
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dl = math.radians(b.lon - a.lon)
    y = math.sin(dl) * math.cos(p2)
    x = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return math.degrees(math.atan2(y, x)) % 360.0


def ahead(p: GeoPoint, bearing_deg: float, distance_m: float) -> GeoPoint:
    """The point ``distance_m`` from ``p`` along ``bearing_deg`` (local east-north plane)."""
    b = math.radians(bearing_deg)
    north, east = distance_m * math.cos(b), distance_m * math.sin(b)
    dlat = math.degrees(north / EARTH_RADIUS_M)
    dlon = math.degrees(east / (EARTH_RADIUS_M * math.cos(math.radians(p.lat))))
    return GeoPoint(p.lat + dlat, p.lon + dlon, p.alt)


@dataclass(frozen=True, slots=True)
class Placement:
    """A detection's place on the ground and how it was found (for the rule trace)."""

    point: GeoPoint
    how: str


def place(camera: GeoPoint, pose: CameraPose | None, centre: tuple[float, float] | None = None,
          aspect: float = 16 / 9) -> Placement:
    """The ground point of a detection whose box centre is at ``centre`` (fractions of the
    picture's width and height) in a picture taken from ``camera`` with ``pose``.

    A drone with height, gimbal pitch, heading and field of view: the ground point under
    the box, by casting the ray through it onto flat ground. A ground camera with a heading
    and an offset: the point that far ahead. Anything less: the camera's own position,
    which is what the trace then says.
    """
    if pose is None:
        return Placement(camera, "the camera's position")
    if (pose.height_m is not None and pose.pitch is not None and pose.heading is not None
            and pose.hfov_deg is not None and pose.height_m > 0):
        ground = _ray_to_ground(camera, pose, centre or (0.5, 0.5), aspect)
        if ground is not None:
            return ground
        return Placement(camera, "the camera's position (the box is at or above the horizon)")
    if pose.offset_m and pose.heading is not None:
        return Placement(ahead(camera, pose.heading, pose.offset_m),
                         f"{pose.offset_m:g} m ahead of the camera, heading {pose.heading:.0f}°")
    return Placement(camera, "the camera's position")


def _ray_to_ground(camera: GeoPoint, pose: CameraPose, centre: tuple[float, float], aspect: float) -> Placement | None:
    u, v = centre
    half_h = math.tan(math.radians(pose.hfov_deg) / 2)
    half_v = half_h / aspect
    # the ray through the box centre in the camera's frame: x right, y up, z forward
    x, y, z = (2 * u - 1) * half_h, (1 - 2 * v) * half_v, 1.0
    pitch = math.radians(pose.pitch)
    # tilt by the gimbal's pitch about the right axis: forward goes down for a negative pitch
    fwd = z * math.cos(pitch) - y * math.sin(pitch)  # horizontal, along the heading
    up = z * math.sin(pitch) + y * math.cos(pitch)
    if up >= -1e-6:
        return None
    t = pose.height_m / -up
    along, right = fwd * t, x * t
    dist = math.hypot(along, right)
    if dist > MAX_GROUND_RANGE * pose.height_m:
        return None
    azimuth = (pose.heading + math.degrees(math.atan2(right, along))) % 360.0 if dist > 0 else pose.heading
    point = ahead(camera, azimuth, dist)
    return Placement(GeoPoint(point.lat, point.lon, None),
                     f"on the ground under the box: {dist:.0f} m at {azimuth:.0f}° from the drone "
                     f"({pose.height_m:.0f} m up, gimbal {pose.pitch:.0f}°)")
