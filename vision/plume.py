"""Dust beyond boxes: an image measure of how much a region looks like a plume.

A plume has no crisp edges, so a box score alone is a weak witness: the detector can be
sure of a sharp-edged heap of goods and unsure of a real, thin cloud. Dust changes the
picture in ways a box does not capture, and this module measures three of them, each
inside the box against a ring of the picture around it:

- **haze**: dust scatters light, lifting the darkest channel of every pixel (the "dark
  channel" that haze-removal work uses); a plume lifts it inside the box, not outside;
- **contrast loss**: what lies behind a plume loses its edges, so the gradient energy in
  the box falls below that of its surroundings;
- **dust colour**: site and road dust is a low-saturation ochre/grey-brown, where steam
  and fog are neutral white.

The score (0..1) is a weighted sum; :func:`supports_dust` combines it with the box score,
so that a confident box over a region with no haze is doubted and a hesitant box over a
region that clearly is a plume is believed.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

WEIGHTS = {"haze": 0.30, "contrast_loss": 0.20, "colour": 0.50}
# Judgement: a box at the rule's confidence needs at least VETO of plume measure (what no
# plume can lack); a box of only RESCUE_CONF is believed when the measure is STRONG.
# Measured on 600 held-out rendered pictures (`python -m training.plume_calibration`): VETO keeps
# 87 % of true plume boxes and half of the boxes of other things; STRONG is reached by 14 %
# of true plumes and 5.5 % of other boxes, most of them sand piles, which share the colour
# (they only matter where the detector also calls them dust, above RESCUE_CONF).
VETO = 0.04
RESCUE_CONF = 0.2
STRONG = 0.5


@dataclass(frozen=True)
class PlumeMeasure:
    score: float
    haze: float
    contrast_loss: float
    colour: float

    def describe(self) -> str:
        return (f"plume measure {self.score:.2f} (haze {self.haze:.2f}, contrast loss {self.contrast_loss:.2f}, "
                f"dust colour {self.colour:.2f})")


def _ring(shape, box, grow: float = 0.5):
    """Masks of the box and of a ring around it (the box grown by ``grow`` on each side)."""
    h, w = shape[:2]
    x1, y1, x2, y2 = [int(round(v)) for v in box]
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    bw, bh = x2 - x1, y2 - y1
    gx, gy = int(bw * grow) + 4, int(bh * grow) + 4
    inner = np.zeros((h, w), bool)
    inner[y1:y2, x1:x2] = True
    outer = np.zeros((h, w), bool)
    outer[max(0, y1 - gy):min(h, y2 + gy), max(0, x1 - gx):min(w, x2 + gx)] = True
    return inner, outer & ~inner


def measure(image: np.ndarray, box) -> PlumeMeasure:
    """How plume-like the region ``box`` (x1, y1, x2, y2 in the image's pixels) is."""
    h, w = image.shape[:2]
    # work at a fixed small size: the measure is about regions, not pixels, and costs ~1 ms
    scale = min(1.0, 320.0 / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, int(w * scale)), max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        box = [v * scale for v in box]
    inner, ring = _ring(image.shape, box)
    if inner.sum() < 16:
        return PlumeMeasure(0.0, 0.0, 0.0, 0.0)
    if ring.sum() < 16:  # the box is the whole picture: compare with the picture's own edges
        ring = ~inner if (~inner).sum() >= 16 else inner

    dark = cv2.erode(image.min(axis=2), np.ones((5, 5), np.uint8)).astype(np.float32)
    haze = float(np.clip((dark[inner].mean() - dark[ring].mean()) / 50.0, 0, 1))

    # edges of what lies behind, not sensor noise: a plume hides structure, it does not smooth grain
    gray = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32), (0, 0), 1.5)
    grad = np.abs(cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)) + np.abs(cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3))
    g_in, g_ring = float(grad[inner].mean()), float(grad[ring].mean())
    contrast_loss = float(np.clip(1.0 - g_in / (g_ring + 1e-3), 0, 1)) if g_ring > 2.0 else 0.0

    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    hue, sat, val = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    dusty = (hue >= 5) & (hue <= 30) & (sat >= 18) & (sat <= 130) & (val >= 70)
    # beige walls and pavements are dust-coloured too: what counts is a plume bringing
    # that colour into its box, more of it than around it
    colour = float(np.clip((dusty[inner].mean() - dusty[ring].mean()) / 0.4, 0, 1))

    score = WEIGHTS["haze"] * haze + WEIGHTS["contrast_loss"] * contrast_loss + WEIGHTS["colour"] * colour
    return PlumeMeasure(round(score, 3), round(haze, 3), round(contrast_loss, 3), round(colour, 3))


def supports_dust(confidence: float, plume: PlumeMeasure, min_confidence: float) -> bool:
    """Whether a `dust` box with this score and this measure is evidence of a plume."""
    if confidence >= min_confidence:
        return plume.score >= VETO
    return confidence >= RESCUE_CONF and plume.score >= STRONG
