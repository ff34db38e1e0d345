"""The second stage's data type: what the detector saw on one frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def box_iou(a, b) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b`` (xyxy, any
    sequence of 4-tuples): an array of shape (len(a), len(b)). Boxes with no area give 0."""
    a, b = (np.asarray(x) for x in (a, b))
    kind = np.result_type(a.dtype, b.dtype, np.float32)
    a, b = a.astype(kind, copy=False).reshape(-1, 4)[:, None, :], b.astype(kind, copy=False).reshape(-1, 4)[None]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1]) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def centre_inside(a, b) -> np.ndarray:
    """Whether the centre of every box in ``a`` lies in every box in ``b`` (xyxy, edges
    included): a bool array of shape (len(a), len(b)). A plume or a hoarding has no one right
    extent, so two boxes on it may barely overlap while one still holds the other's middle."""
    a, b = np.asarray(a, dtype=float).reshape(-1, 4), np.asarray(b, dtype=float).reshape(-1, 4)
    cx, cy = ((a[:, 0] + a[:, 2]) / 2)[:, None], ((a[:, 1] + a[:, 3]) / 2)[:, None]
    b = b[None]
    return (b[..., 0] <= cx) & (cx <= b[..., 2]) & (b[..., 1] <= cy) & (cy <= b[..., 3])


@dataclass(slots=True)
class Detections:
    """Boxes on one frame, in that frame's pixels (columns aligned by index).

    Modelled on supervision's ``sv.Detections``: one array per attribute, so
    filters are boolean masks and cost nothing per box.
    """

    xyxy: np.ndarray  # (N, 4) float32
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32
    labels: list[str]

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), [])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, mask) -> "Detections":
        idx = np.arange(len(self))[mask]
        return Detections(self.xyxy[idx], self.confidence[idx], self.class_id[idx], [self.labels[i] for i in idx])

    def with_labels(self, wanted: set[str] | frozenset[str]) -> "Detections":
        return self[np.array([label in wanted for label in self.labels], dtype=bool)]

    def confirmed_by(self, other: "Detections", min_iou: float = 0.3) -> "Detections":
        """The boxes that ``other`` (the same picture seen again) also found: a box of the
        same class overlapping by ``min_iou`` or holding this box's centre. Each keeps its own
        box and takes the best confidence ``other`` gave it."""
        if not len(self) or not len(other):
            return self[np.zeros(len(self), bool)]
        near = (box_iou(self.xyxy, other.xyxy) >= min_iou) | centre_inside(self.xyxy, other.xyxy)
        match = (self.class_id[:, None] == other.class_id[None, :]) & near
        kept = match.any(axis=1)
        out = self[kept]
        out.confidence = np.where(match[kept], other.confidence[None, :], 0).max(axis=1).astype(np.float32)
        return out

    @property
    def centers(self) -> np.ndarray:
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2], axis=1)

    @property
    def bottoms(self) -> np.ndarray:
        """Bottom-centre of each box: where an object stands on the ground plane."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)
