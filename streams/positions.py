"""Where a moving source was at a moment: its recent fixes, and a sample placed among them.

Vehicles, phones and the live drone report positions every second or few; their samples
are placed at their capture time: between two fixes by interpolation, after the newest one
by carrying it forward along the source's motion. A fix older than ``max_age_s`` at the
sample's time places nothing: the sample's place is *unknown*, said in words, never a
stale place. A fix that jumps faster than the source can move is kept but flagged and not
used, unless the next fix confirms the new place (a receiver that re-acquired its fix).
"""
from __future__ import annotations

import bisect
import math
from dataclasses import asdict, dataclass, replace

from streams.frame import GeoPoint
from streams.geo import ahead, bearing, metres

# Faster than this between two fixes is a jump, not a movement (m/s). Officers' phones
# ride in cars too, so they share the vehicles' bound.
MAX_SPEED_MPS: dict[str, float] = {"vehicle": 42.0, "mobile": 42.0, "drone": 30.0, "upload": 30.0}
MOVED_M = 2.0  # less than this between fixes: standing still, no direction of travel
KEEP_S = 600.0  # fixes older than this behind the newest are forgotten


@dataclass(frozen=True, slots=True)
class Fix:
    """One reported position. ``t``: Unix seconds for live sources, video seconds for a
    recording's track. ``height_m`` (above the ground) and ``pitch`` (the gimbal's,
    degrees, -90 straight down) come from drones. ``suspect`` says why it is not used."""

    t: float
    lat: float
    lon: float
    alt: float | None = None
    heading: float | None = None
    speed: float | None = None
    accuracy_m: float | None = None
    height_m: float | None = None
    pitch: float | None = None
    suspect: str | None = None

    @property
    def point(self) -> GeoPoint:
        return GeoPoint(self.lat, self.lon, self.alt)


@dataclass(frozen=True, slots=True)
class Located:
    """A source's place at a moment, or why there is none (``point`` None)."""

    point: GeoPoint | None
    how: str
    heading: float | None = None
    height_m: float | None = None
    pitch: float | None = None
    fix_age_s: float | None = None
    hfov_deg: float | None = None  # the camera's field of view, where its telemetry tells


class FixTrack:
    """The recent fixes of one moving source, in time order."""

    def __init__(self, max_age_s: float = 10.0, max_speed_mps: float = 42.0, keep_s: float = KEEP_S):
        self.max_age_s = max_age_s
        self.max_speed_mps = max_speed_mps
        self.keep_s = keep_s
        self._fixes: list[Fix] = []  # trusted ones only
        self._times: list[float] = []
        self.newest: Fix | None = None  # the newest received, trusted or not
        self._pending_jump: Fix | None = None

    def __len__(self) -> int:
        return len(self._fixes)

    def add(self, fix: Fix) -> Fix:
        """Keep a fix; returns it, flagged when it jumps away from the track."""
        why = self.jump(fix)
        if why is not None:
            confirmed = self._pending_jump is not None and _speed(self._pending_jump, fix) <= self.max_speed_mps
            if not confirmed:
                fix = replace(fix, suspect=why)
                self._pending_jump = fix
                self.newest = fix if self.newest is None or fix.t >= self.newest.t else self.newest
                return fix
            # the receiver re-acquired its place: the track starts again from the two that agree
            self._fixes, self._times = [replace(self._pending_jump, suspect=None)], [self._pending_jump.t]
        self._pending_jump = None
        i = bisect.bisect_right(self._times, fix.t)
        if i > 0 and self._times[i - 1] == fix.t:
            self._fixes[i - 1] = fix  # a repeat of the same moment: the later report wins
        else:
            self._fixes.insert(i, fix)
            self._times.insert(i, fix.t)
        if self.newest is None or fix.t >= self.newest.t:
            self.newest = fix
        horizon = self._times[-1] - self.keep_s
        cut = bisect.bisect_left(self._times, horizon)
        if cut:
            del self._fixes[:cut], self._times[:cut]
        return fix

    def memory(self) -> dict:
        """The newest trusted fix and an unconfirmed jump, enough to judge the next report."""
        return {"trusted": asdict(self._fixes[-1]) if self._fixes else None,
                "pending": asdict(self._pending_jump) if self._pending_jump is not None else None}

    def jump(self, fix: Fix) -> str | None:
        """Why ``fix`` cannot follow the trusted fix nearest in time, or None."""
        if not self._fixes:
            return None
        i = bisect.bisect_left(self._times, fix.t)
        near = [self._fixes[j] for j in (i - 1, i) if 0 <= j < len(self._fixes)]
        for other in near:
            speed = _speed(other, fix)
            if speed > self.max_speed_mps:
                return (f"jump of {metres(other.point, fix.point):.0f} m in {abs(fix.t - other.t):.1f} s "
                        f"({speed:.0f} m/s, more than {self.max_speed_mps:.0f} m/s)")
        return None

    def at(self, t: float) -> Located:
        """The place at ``t``: interpolated, carried forward, or unknown with the reason."""
        if not self._fixes:
            return Located(None, "position unknown: no position reported yet")
        i = bisect.bisect_right(self._times, t)
        before = self._fixes[i - 1] if i > 0 else None
        after = self._fixes[i] if i < len(self._fixes) else None
        age_before = t - before.t if before is not None else math.inf
        age_after = after.t - t if after is not None else math.inf
        if min(age_before, age_after) > self.max_age_s:
            if before is None:
                return Located(None, f"position unknown: the first fix came {age_after:.0f} s after the sample")
            return Located(None, f"position unknown: the newest fix was {age_before:.0f} s before the sample "
                                 f"(older than {self.max_age_s:.0f} s is not used)", fix_age_s=age_before)
        if before is not None and after is not None and after.t > before.t:
            f = (t - before.t) / (after.t - before.t)
            point = GeoPoint(before.lat + (after.lat - before.lat) * f, before.lon + (after.lon - before.lon) * f,
                             _mix(before.alt, after.alt, f))
            return Located(point, f"interpolated between fixes {age_before:.1f} s before and {age_after:.1f} s after",
                           self._heading(before, after, i - 1), _mix(before.height_m, after.height_m, f),
                           _mix(before.pitch, after.pitch, f), min(age_before, age_after))
        if before is None:  # a little before the first fix
            return Located(after.point, f"the first fix, {age_after:.1f} s after the sample",
                           self._heading(after, None, i), after.height_m, after.pitch, age_after)
        # after the newest fix: carried forward along the motion it reported or showed
        heading = self._heading(before, None, i - 1)
        speed = before.speed if before.speed is not None else self._speed_before(i - 1)
        if heading is not None and speed and age_before > 0:
            point = ahead(before.point, heading, speed * age_before)
            how = f"carried {speed * age_before:.0f} m forward from the fix {age_before:.1f} s before"
        else:
            point, how = before.point, f"the fix {age_before:.1f} s before"
        return Located(point, how, heading, before.height_m, before.pitch, age_before)

    def _heading(self, a: Fix, b: Fix | None, index: int) -> float | None:
        """The reported heading, else the direction of travel around ``index``."""
        if a.heading is not None:
            return a.heading
        if b is not None and metres(a.point, b.point) >= MOVED_M:
            return bearing(a.point, b.point)
        if index > 0 and metres(self._fixes[index - 1].point, a.point) >= MOVED_M:
            return bearing(self._fixes[index - 1].point, a.point)
        return None

    def _speed_before(self, index: int) -> float | None:
        if index <= 0:
            return None
        prev, cur = self._fixes[index - 1], self._fixes[index]
        return _speed(prev, cur) if cur.t > prev.t else None


def _speed(a: Fix, b: Fix) -> float:
    dt = abs(b.t - a.t)
    d = metres(a.point, b.point)
    return d / dt if dt > 0 else (0.0 if d < MOVED_M else math.inf)


def _mix(a: float | None, b: float | None, f: float) -> float | None:
    if a is None or b is None:
        return a if b is None else b
    return a + (b - a) * f
