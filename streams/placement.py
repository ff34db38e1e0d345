"""Samples of moving sources placed in time and space.

A sample gets the camera's position at its capture time (``Frame.geo``), where the camera
looked (``Frame.pose``) and, in words, how the place was found or why there is none
(``Frame.place_note``). Where a detection lies on the ground follows from these in the
rules (streams/geo.py ``place``). The same placing serves live sources (positions posted
to the intake) and recordings (a DJI SRT or a GPX/NMEA/CSV track).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from streams.frame import CameraPose, Frame
from streams.positions import MAX_SPEED_MPS, Fix, FixTrack, Located
from streams.sources import Source
from streams.telemetry import Track

DEFAULT_MAX_FIX_AGE_S = 10.0


class Positions(Protocol):
    def at(self, t: float) -> Located: ...


@dataclass(frozen=True, slots=True)
class View:
    """How a source's camera sits, from its registry entry."""

    kind: str
    heading: float | None = None  # on a vehicle or phone: relative to its heading (0 = ahead)
    offset_m: float | None = None
    hfov_deg: float | None = None

    @classmethod
    def of(cls, source: Source) -> "View":
        return cls(source.kind, source.heading, source.view_offset_m, source.hfov_deg)


def place_sample(frame: Frame, located: Located, view: View) -> None:
    """Put ``located`` on the sample: its position, its pose, and how it was placed."""
    frame.place_note = located.how
    if located.point is None:
        frame.geo, frame.pose = None, None
        return
    frame.geo = located.point
    if view.kind in ("drone", "upload"):
        # a drone reports where its gimbal looks; its height and pitch place the box on the ground
        frame.pose = CameraPose(heading=located.heading, pitch=located.pitch, height_m=located.height_m,
                                hfov_deg=view.hfov_deg or located.hfov_deg)
    else:
        heading = None
        if located.heading is not None:
            heading = (located.heading + (view.heading or 0.0)) % 360.0
        frame.pose = CameraPose(heading=heading, offset_m=view.offset_m)


class SrtPositions:
    """A DJI SRT track as positions by video second: a lost fix is never bridged."""

    def __init__(self, track: Track):
        self.track = track

    def at(self, t: float) -> Located:
        point = self.track.position_at(t)
        if point is None:
            return Located(None, f"position unknown: the drone's telemetry has no fix at {t:.1f} s")
        near = self.track.nearest(t)
        return Located(point, f"the drone's telemetry at {t:.1f} s", near.gimbal_yaw, near.rel_alt,
                       near.gimbal_pitch, abs(near.t - t), near.hfov_deg)


def recorded_track(fixes: list[Fix], max_age_s: float = DEFAULT_MAX_FIX_AGE_S, kind: str = "vehicle") -> FixTrack:
    """A whole recording's fixes (times in seconds of the video) as one track, nothing forgotten."""
    track = FixTrack(max_age_s=max_age_s, max_speed_mps=MAX_SPEED_MPS.get(kind, 42.0), keep_s=math.inf)
    for fix in fixes:
        track.add(fix)
    return track
