"""The first stage's data type: one analysed sample of one source."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


# Times at or above this are Unix wall-clock seconds (live sources); below, seconds
# into a recorded file. Every stage that compares or shows times relies on it.
WALL_CLOCK_FROM = 1e9


def is_wall_clock(ts: float) -> bool:
    return ts >= WALL_CLOCK_FROM


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """WGS84 position (CGCS2000 agrees to about a metre)."""

    lat: float
    lon: float
    alt: float | None = None


@dataclass(frozen=True, slots=True)
class CameraPose:
    """Where a moving camera looks, as far as its telemetry tells.

    ``heading``: degrees clockwise from north of the view's centre; ``pitch``: degrees
    below (negative) or above the horizon, -90 straight down; ``height_m``: above the
    ground under the camera; ``hfov_deg``: the picture's horizontal field of view;
    ``offset_m``: how far ahead a ground camera's view is placed (a vehicle's or a
    phone's camera sees the street in front of it, not the spot it stands on).
    """

    heading: float | None = None
    pitch: float | None = None
    height_m: float | None = None
    hfov_deg: float | None = None
    offset_m: float | None = None


@dataclass(slots=True)
class Frame:
    """A decoded sample, already at the size the detector works at.

    ``ts`` is seconds from the start of the file for recorded footage and Unix
    wall-clock seconds for live sources (live streams restart their own clocks on
    every reconnect, so their presentation times cannot order events).
    ``source_size`` is the (width, height) of the original video, so boxes found
    on the small sample can be reported in the video's own pixels.
    ``geo`` is the camera's position when the sample was taken and ``pose`` where it
    looked; a moving source's sample without a position says why in ``place_note``.
    """

    source_id: str
    ts: float
    image: np.ndarray  # BGR uint8, H x W x 3
    index: int = 0  # sequence number of this sample on its source
    source_size: tuple[int, int] | None = None
    geo: GeoPoint | None = None
    pose: CameraPose | None = None
    place_note: str | None = None
    keyframe: bool = True
    extra: dict = field(default_factory=dict)

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.image.shape[:2]
        return w, h

    @property
    def scale(self) -> tuple[float, float]:
        """Factors that turn sample pixels into source-video pixels."""
        if self.source_size is None:
            return 1.0, 1.0
        w, h = self.size
        return self.source_size[0] / w, self.source_size[1] / h
