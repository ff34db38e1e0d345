"""Label boxes that follow what a camera would actually see (a recipe's ``visible_labels``).

Labelling every pasted object by its own opacity gets two kinds of label wrong: an
object hidden behind a nearer one keeps its whole box, and a thin plume is boxed
wherever it is a quarter opaque, even where its colour matches the picture under it
(a dust-coloured cat, a tan wall) and nothing can be seen. The detector is then taught
to find the invisible, and held-out figures count it as missing what no person would
mark. Here a box is the visible part of its object:

- an opaque object's pixels stop counting where a later (nearer) sprite covers them
  at least half-opaquely; a label whose visible part falls under ``min_visible`` of
  what it had when pasted is dropped;
- a plume's pixels count where it is at least ``dust_alpha`` opaque *and* changes
  the picture by at least ``dust_step`` grey levels (smoothed, and scaled by the
  scene's lighting contrast: the same plume is fainter at night and in haze); a
  plume whose visible part is under ``dust_body`` of its extent is a faint veil, not
  a reportable cloud, and is left unlabelled (a thin veil over a dark coat changes
  many grey levels, but no analyst would call it dust);
- with ``clouds`` (a recipe's ``cloud_labels``, and ``patrol eval``'s held-out pictures)
  plumes that overlap or touch are one cloud with one box around their visible parts,
  and a plume does not hide another: no one can tell where one of two merged puffs
  ends, so a box around the cloud is the only target a detector can hit;
- a box whose short side is under ``min_side`` pixels is dropped, and objects that
  would be smaller than ``min_place`` are not placed at all, so nothing visible is
  left unlabelled because of its size. These sizes define the model's range: at the
  detector's 256-px input a 640-px picture shrinks 2.5 times.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

# How much a scene's lighting scales the difference a plume makes (``synth.lighting``).
LIGHTING_CONTRAST = {"day": 1.0, "dusk": 0.65, "night": 0.4, "haze": 0.7, "rain": 0.6}


def blend(dst: np.ndarray, sprite: tuple[np.ndarray, np.ndarray], x: int, y: int):
    """Alpha-blend ``sprite`` into ``dst`` with its top-left at (x, y). Returns the region
    it landed on (x0, y0, x1, y1), the sprite's alpha there, and the region before and
    after (float32), or None when the sprite lies wholly outside the picture."""
    img, alpha = sprite
    h, w = alpha.shape
    H, W = dst.shape[:2]
    x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if x1 <= x0 or y1 <= y0:
        return None
    sa = alpha[y0 - y:y1 - y, x0 - x:x1 - x]
    before = dst[y0:y1, x0:x1].astype(np.float32)
    after = before * (1 - sa[..., None]) + img[y0 - y:y1 - y, x0 - x:x1 - x].astype(np.float32) * sa[..., None]
    dst[y0:y1, x0:x1] = after.astype(np.uint8)
    return (x0, y0, x1, y1), sa, before, after


def mask_box(mask: np.ndarray, x0: int = 0, y0: int = 0) -> tuple[int, int, int, int] | None:
    """The tight box (x1, y1, x2, y2) around a mask's True pixels, offset by where the mask
    lies in the picture; None when it has none."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    return int(x0 + xs.min()), int(y0 + ys.min()), int(x0 + xs.max() + 1), int(y0 + ys.max() + 1)


def visible_dust(sa: np.ndarray, before: np.ndarray, after: np.ndarray, extent: tuple[int, int], contrast: float = 1.0,
                 step: float = 20.0, min_alpha: float = 0.3, body: float = 0.12) -> np.ndarray:
    """The pixels where a pasted plume can be seen (see the module docstring): at least
    ``min_alpha`` opaque and changing the picture by ``step`` grey levels after lighting;
    all False when they cover less than ``body`` of the plume's extent (h, w). The
    training labels and the held-out clips' ground truth both use this one rule."""
    h, w = extent
    change = np.abs(after - before).max(axis=2) * contrast
    change = cv2.GaussianBlur(change, (0, 0), max(1.0, min(h, w) / 30))
    visible = (change >= step) & (sa >= min_alpha)
    if visible.sum() < body * h * w:
        visible[:] = False
    return visible


@dataclass
class _Seen:
    cls: int
    mask: np.ndarray  # bool, whole picture: pixels where the object can still be seen
    pixels: int  # visible pixels when it was pasted
    reach: np.ndarray | None = None  # a plume's: where it is at least ``dust_alpha`` opaque


class VisibleLabels:
    """Pastes sprites into one picture and keeps each labelled object's visible pixels."""

    def __init__(self, contrast: float = 1.0, dust_step: float = 20.0, dust_alpha: float = 0.3,
                 dust_body: float = 0.12, min_side: int = 16, min_place: int = 20, min_visible: float = 0.35,
                 dust_class: int | None = None, clouds: bool = False):
        self.contrast = contrast
        self.clouds = clouds
        self.dust_step = dust_step
        self.dust_alpha = dust_alpha
        self.dust_body = dust_body
        self.min_side = min_side
        self.min_place = min_place
        self.min_visible = min_visible
        self.dust_class = dust_class
        self._seen: list[_Seen] = []

    def too_small(self, width: int, height: int) -> bool:
        """Whether a labelled object of this size should not be placed at all."""
        return min(width, height) < self.min_place

    def paste(self, dst: np.ndarray, sprite: tuple[np.ndarray, np.ndarray], x: int, y: int, cls: int | None) -> None:
        """Alpha-blend ``sprite`` with its top-left at (x, y); ``cls`` None is an unlabelled look-alike."""
        blended = blend(dst, sprite, x, y)
        if blended is None:
            return
        (x0, y0, x1, y1), sa, before, after = blended
        h, w = sprite[1].shape
        H, W = dst.shape[:2]
        covers = sa > 0.5
        plume = cls is not None and cls == self.dust_class
        for seen in self._seen:
            if not (self.clouds and plume and seen.reach is not None):  # with clouds, a plume hides no plume
                seen.mask[y0:y1, x0:x1] &= ~covers
        if cls is None:
            return
        reach = None
        if plume:
            visible = visible_dust(sa, before, after, (h, w), self.contrast, self.dust_step, self.dust_alpha, self.dust_body)
            reach = np.zeros((H, W), bool)
            reach[y0:y1, x0:x1] = sa >= self.dust_alpha
        else:
            visible = covers
        mask = np.zeros((H, W), bool)
        mask[y0:y1, x0:x1] = visible
        self._seen.append(_Seen(cls, mask, int(visible.sum()), reach))

    def boxes(self) -> list[tuple[int, int, int, int, int]]:
        """(class, x1, y1, x2, y2) of every object still visible enough, in paste order (a
        cloud of merged plumes where its first plume was pasted)."""
        kept = [seen for seen in self._seen
                if seen.mask.any() and seen.mask.sum() >= self.min_visible * seen.pixels]
        if self.clouds:
            kept = self._merge_clouds(kept)
        out = []
        for seen in kept:
            ys, xs = np.nonzero(seen.mask)
            box = (int(xs.min()), int(ys.min()), int(xs.max() + 1), int(ys.max() + 1))
            if min(box[2] - box[0], box[3] - box[1]) < self.min_side:
                continue
            out.append((seen.cls, *box))
        return out

    def _merge_clouds(self, kept: list[_Seen], touch: int = 3) -> list[_Seen]:
        """Join visible plumes whose extents (``reach``) overlap or come within ``touch``
        pixels of each other, transitively; each cloud takes the place of its first plume.
        Extents, not visible parts: where two plumes overlap, the later one changes the
        picture little (dust over dust), so their visible parts can leave a gap between them."""
        kernel = np.ones((2 * touch + 1, 2 * touch + 1), np.uint8)
        plumes = [i for i, seen in enumerate(kept) if seen.cls == self.dust_class]
        grown = {i: cv2.dilate(kept[i].reach.astype(np.uint8), kernel).astype(bool) for i in plumes}
        first = {i: i for i in plumes}  # union-find; a cloud's root is its earliest plume

        def root(i: int) -> int:
            while first[i] != i:
                i = first[i]
            return i

        for n, a in enumerate(plumes):
            for b in plumes[n + 1:]:
                if (grown[a] & kept[b].reach).any():
                    ra, rb = root(a), root(b)
                    first[max(ra, rb)] = min(ra, rb)
        out = []
        for i, seen in enumerate(kept):
            if seen.cls != self.dust_class:
                out.append(seen)
            elif root(i) == i:
                mask = np.logical_or.reduce([kept[j].mask for j in plumes if root(j) == i])
                out.append(_Seen(seen.cls, mask, int(mask.sum())))
        return out
