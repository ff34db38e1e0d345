"""Whether a sighting is of something standing in the world, and staying there.

A detector judges one picture; a violation is a thing at a place. Two kinds of sighting
look right in one picture and are wrong across several:

- **Moving with the camera.** On a vehicle, a drone or a phone the view slides past the
  world. A box that stays at the same place in the picture while the view moves on is on
  the lens or the windscreen, or it is something travelling with the camera (the vehicle's
  own bonnet, a van alongside): never a stall, a shed or a plume.
- **Passing through.** Vending is a stall that stays put. A cart, a tricycle or a van that
  crosses a fixed camera's view is seen in several samples, each time somewhere else.

Each presence is anchored at the boxes of its first sighting. ``ViewMotion`` follows how the
source's view has moved since (phase correlation between consecutive samples, as the moving
change gate does, plus how much of the picture changed), so ``PlaceCheck`` knows where a
thing standing still in the world would be now. A later sighting counts when one of its
boxes is there; the others are refused with a reason the rule trace shows.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streams.frame import Frame, GeoPoint
from streams.geo import metres
from vision.detections import box_iou
from vision.gate import _gray  # the moving gate's grey copy: the same view, measured the same way

MIN_RESPONSE = 0.1  # phase-correlation peak below which a shift is not trusted
VIEW_CHANGED = 18.0  # mean grey-level difference outside the boxes: the view has moved on
SAME_PLACE_IOU = 0.5  # a box this close to where it was in the picture has not moved in it
TRAVELLED_M = 50.0  # the camera moved this far (telemetry): even a thing 100 m ahead has grown or slid in the picture
STAYED_IOU = 0.25  # a box this close to where a still object would be now is that object


@dataclass(frozen=True)
class ViewState:
    """The view at one sample: accumulated shift since the source's first sample (as
    fractions of the picture), how often the shift could not be measured so far, the grey
    copy, and whether the camera moves at all."""

    offset: tuple[float, float]
    breaks: int
    gray: np.ndarray | None  # only for a moving camera
    moving: bool
    geo: GeoPoint | None = None  # the camera's position, where telemetry gives one


class ViewMotion:
    """Follows one source's view from sample to sample. A fixed camera's view does not move,
    so for it nothing is measured."""

    def __init__(self, moving: bool):
        self.moving = moving
        self._gray: np.ndarray | None = None
        self._window: np.ndarray | None = None
        self._offset = (0.0, 0.0)
        self._breaks = 0
        self.state: ViewState | None = None

    def update(self, frame: Frame) -> ViewState:
        gray = _gray(frame.image) if self.moving else None
        if self.moving:
            if self._gray is None or self._gray.shape != gray.shape:
                self._window = cv2.createHanningWindow(gray.shape[::-1], cv2.CV_32F)
                if self._gray is not None:
                    self._breaks += 1
            else:
                (dx, dy), response = cv2.phaseCorrelate(self._gray.copy(), gray.copy(), self._window)
                if response >= MIN_RESPONSE:
                    h, w = gray.shape
                    self._offset = (self._offset[0] + dx / w, self._offset[1] + dy / h)
                else:
                    self._breaks += 1  # motion blur, a turn, a new scene: the chain of shifts is cut
        self._gray = gray
        self.state = ViewState(self._offset, self._breaks, gray, self.moving, frame.geo)
        return self.state


def _outside_change(a: np.ndarray, b: np.ndarray, boxes) -> float:
    """Mean grey difference between two views, away from the given boxes (fractions)."""
    h, w = a.shape
    mask = np.ones((h, w), bool)
    for x1, y1, x2, y2 in boxes:
        mask[max(0, int(y1 * h) - 2):int(np.ceil(y2 * h)) + 2, max(0, int(x1 * w) - 2):int(np.ceil(x2 * w)) + 2] = False
    if mask.sum() < 0.1 * mask.size:
        return 0.0  # the boxes fill the view: nothing to compare the view by
    return float(np.abs(a - b)[mask].mean())


@dataclass
class Anchor:
    """Where a presence was first seen: its boxes (fractions of the picture) and the view then."""

    boxes: list[tuple[float, float, float, float]]
    view: ViewState


LENS, PASSING = "on the lens", "passing through"  # the kinds of refusal


@dataclass(frozen=True)
class Verdict:
    keep: np.ndarray  # bool per detection: counts as a sighting of the anchored thing
    refusals: list[tuple[str, str]]  # (kind, reason in words) per refused detection


class PlaceCheck:
    """Judges the detections of one rule's presence against its anchor.

    ``stationary``: the rule's objects must stay at one place in the world (vending). Every
    rule refuses, on a moving camera, what stays fixed in the picture while the view moves on.
    """

    def __init__(self, stationary: bool):
        self.stationary = stationary

    def judge(self, anchor: Anchor | None, view: ViewState, boxes: list) -> Verdict:
        keep = np.ones(len(boxes), bool)
        refusals: list[tuple[str, str]] = []
        if anchor is None or not boxes:
            return Verdict(keep, refusals)
        dx, dy = view.offset[0] - anchor.view.offset[0], view.offset[1] - anchor.view.offset[1]
        aligned = view.moving and view.breaks == anchor.view.breaks  # a continuous chain of measured shifts
        predicted = [(x1 + dx, y1 + dy, x2 + dx, y2 + dy) for x1, y1, x2, y2 in anchor.boxes] if aligned \
            else list(anchor.boxes)
        # Can a still thing and a thing fixed in the picture be told apart by the measured shift?
        tellable = aligned and bool((box_iou(anchor.boxes, predicted).diagonal() < SAME_PLACE_IOU).all())
        changed = _outside_change(anchor.view.gray, view.gray, list(anchor.boxes) + list(boxes)) \
            if view.moving and view.gray.shape == anchor.view.gray.shape else 0.0
        travelled = _metres(anchor.view.geo, view.geo) if view.moving else 0.0
        for i, box in enumerate(boxes):
            in_picture = box_iou([box], anchor.boxes).max()
            in_world = box_iou([box], predicted).max()
            if view.moving and in_picture >= SAME_PLACE_IOU and (
                    (tellable and in_picture > in_world) or (not tellable and changed >= VIEW_CHANGED)
                    or travelled >= TRAVELLED_M):
                moved = (f"the camera travelled {travelled:.0f} m" if travelled >= TRAVELLED_M
                         else f"the view shifted {abs(dx):.0%} across, {abs(dy):.0%} down" if tellable
                         else f"the view changed by {changed:.0f} grey levels")
                keep[i] = False
                refusals.append((LENS, f"stayed at the same place in the picture while {moved}: on the lens or "
                                       "windscreen, or travelling with the camera"))
            elif self.stationary and (tellable or not view.moving) and in_world < STAYED_IOU:
                keep[i] = False
                refusals.append((PASSING, "moved across the picture since first seen "
                                          f"({_centre_shift(box, predicted):.0%} of its width): passing through, "
                                          "not staying put"))
        return Verdict(keep, refusals)


def _metres(a: GeoPoint | None, b: GeoPoint | None) -> float:
    """Ground distance between two fixes; 0 when either is missing."""
    return 0.0 if a is None or b is None else metres(a, b)


def _centre_shift(box, anchors) -> float:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    best = min(anchors, key=lambda a: abs((a[0] + a[2]) / 2 - cx) + abs((a[1] + a[3]) / 2 - cy))
    width = max(1e-6, best[2] - best[0])
    return float(np.hypot((best[0] + best[2]) / 2 - cx, (best[1] + best[3]) / 2 - cy) / width)
