"""The change gate: skip samples in which nothing can be new.

A fixed camera's view is the same from one sample to the next most of the
time; running the detector on it again finds what it found before. The gate
compares a tiny blurred copy of each sample with the last analysed one and lets
it through when enough of the picture changed, or when the slow re-check timer
falls due, so static violations are still looked at regularly.
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
