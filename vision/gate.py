"""The change gate: skip samples in which nothing can be new.

A fixed camera's view is the same from one sample to the next most of the
time; running the detector on it again finds what it found before. The gate
compares a tiny blurred copy of each sample with the last analysed one and lets
it through when enough of the picture changed, or when the slow re-check timer
falls due, so static violations are still looked at regularly.

A camera on a vehicle, a drone or in a hand moves, so every pixel changes even
where nothing in the world did. `MovingGate` first finds how far the view
shifted since the last analysed sample (phase correlation on a small grey copy),
lines the two up, and counts only what still differs: the camera moving over a
street that stays the same is no news, a stall set up while it moves is. Ground
the camera has moved on to was never looked at, so a view that has moved by more
than a set share lets the sample through as well, and so does a shift too large
or too blurred to measure.
"""
from __future__ import annotations

import cv2
import numpy as np

_SIZE = (64, 36)


def _thumb(image: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(cv2.resize(image, _SIZE, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(gray, (3, 3), 0).astype(np.int16)


class ChangeGate:
    def __init__(self, recheck_s: float = 30.0, pixel_delta: int = 12, changed_fraction: float = 0.004):
        self.recheck_s = recheck_s
        self.pixel_delta = pixel_delta  # grey levels: above sensor noise and compression flicker
        self.changed_fraction = changed_fraction  # share of the thumbnail that must change
        self._ref: np.ndarray | None = None
        self._last_pass: float | None = None
        self.passed = 0
        self.skipped = 0

    def check(self, image: np.ndarray, ts: float) -> tuple[bool, str]:
        """(analyse?, why) for a sample taken at ``ts`` seconds."""
        thumb = _thumb(image)
        if self._ref is None or thumb.shape != self._ref.shape:
            return self._pass(thumb, ts, "first sample")
        if ts - self._last_pass >= self.recheck_s:
            return self._pass(thumb, ts, "re-check timer")
        changed = float(np.mean(np.abs(thumb - self._ref) > self.pixel_delta))
        if changed >= self.changed_fraction:
            return self._pass(thumb, ts, f"{changed:.1%} of the view changed")
        self.skipped += 1
        return False, "no change"

    def _pass(self, thumb: np.ndarray, ts: float, why: str) -> tuple[bool, str]:
        self._ref, self._last_pass = thumb, ts
        self.passed += 1
        return True, why


# Long side of the grey copy a moving camera is aligned on: enough detail to
# measure a shift to a fraction of a pixel, small enough to cost well under 1 ms.
_MOVING_SIDE = 160


def _gray(image: np.ndarray, long_side: int = _MOVING_SIDE) -> np.ndarray:
    h, w = image.shape[:2]
    scale = long_side / max(h, w)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    gray = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2GRAY)
    return cv2.GaussianBlur(gray, (3, 3), 0).astype(np.float32)


class MovingGate:
    """The change gate for sources whose camera moves (vehicle, drone, mobile).

    ``min_overlap``: the share of the view that must still show ground the last
    analysed sample showed; ``min_response``: the phase-correlation peak below
    which the shift is not trusted (motion blur, a new scene). A pixel counts as
    changed only when it lies ``pixel_delta`` grey levels outside everything the
    aligned reference has within a pixel of it, so the rounding of a sub-pixel
    shift, a slight roll of a hand-held phone and compression flicker do not count.
    """

    def __init__(self, recheck_s: float = 30.0, pixel_delta: int = 14, changed_fraction: float = 0.004,
                 min_overlap: float = 0.75, min_response: float = 0.1):
        self.recheck_s = recheck_s
        self.pixel_delta = pixel_delta
        self.changed_fraction = changed_fraction
        self.min_overlap = min_overlap
        self.min_response = min_response
        self._ref: np.ndarray | None = None
        self._window: np.ndarray | None = None
        self._last_pass: float | None = None
        self.passed = 0
        self.skipped = 0
        self.shift: tuple[float, float] = (0.0, 0.0)  # latest measured view shift, thumbnail pixels

    def check(self, image: np.ndarray, ts: float) -> tuple[bool, str]:
        """(analyse?, why) for a sample taken at ``ts`` seconds."""
        cur = _gray(image)
        if self._ref is None or cur.shape != self._ref.shape:
            self._window = cv2.createHanningWindow(cur.shape[::-1], cv2.CV_32F)
            return self._pass(cur, ts, "first sample")
        if ts - self._last_pass >= self.recheck_s:
            return self._pass(cur, ts, "re-check timer")
        # (copies: OpenCV applies the window to its inputs in place)
        (dx, dy), response = cv2.phaseCorrelate(self._ref.copy(), cur.copy(), self._window)
        self.shift = (dx, dy)
        h, w = cur.shape
        moved = f"picture shifted {dx / w:+.0%}, {dy / h:+.0%}"
        if response < self.min_response:
            return self._pass(cur, ts, f"view changed beyond alignment (match {response:.2f})")
        overlap = max(0.0, 1 - abs(dx) / w) * max(0.0, 1 - abs(dy) / h)
        if overlap < self.min_overlap:
            return self._pass(cur, ts, f"{1 - overlap:.0%} of the view is new ground ({moved})")
        changed = self._changed(cur, dx, dy)
        if changed >= self.changed_fraction:
            return self._pass(cur, ts, f"{changed:.1%} of the view changed ({moved})")
        self.skipped += 1
        return False, f"no change ({changed:.1%} differs; {moved})"

    def shift_px(self, size: tuple[int, int]) -> tuple[float, float]:
        """The view's latest measured shift since the last analysed sample, in the
        pixels of a sample of ``size`` (w, h): where its boxes have moved to."""
        if self._ref is None:
            return 0.0, 0.0
        h, w = self._ref.shape
        return self.shift[0] * size[0] / w, self.shift[1] * size[1] / h

    def _changed(self, cur: np.ndarray, dx: float, dy: float) -> float:
        """Share of the overlapping view that differs once the reference is lined up."""
        h, w = cur.shape
        shift = np.float32([[1, 0, dx], [0, 1, dy]])
        ref = cv2.warpAffine(self._ref, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        valid = cv2.warpAffine(np.ones((h, w), np.uint8), shift, (w, h), flags=cv2.INTER_NEAREST)
        valid = cv2.erode(valid, np.ones((5, 5), np.uint8))  # edges: interpolated from outside
        kernel = np.ones((3, 3), np.uint8)
        low, high = cv2.erode(ref, kernel), cv2.dilate(ref, kernel)
        differs = ((cur < low - self.pixel_delta) | (cur > high + self.pixel_delta)) & (valid > 0)
        return float(differs.sum()) / max(1, int(valid.sum()))

    def _pass(self, cur: np.ndarray, ts: float, why: str) -> tuple[bool, str]:
        self._ref, self._last_pass = cur, ts
        self.shift = (0.0, 0.0)  # the new reference is where the boxes are found
        self.passed += 1
        return True, why
