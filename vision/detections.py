"""The second stage's data type: what the detector saw on one frame."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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

    @property
    def centers(self) -> np.ndarray:
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, (self.xyxy[:, 1] + self.xyxy[:, 3]) / 2], axis=1)

    @property
    def bottoms(self) -> np.ndarray:
        """Bottom-centre of each box: where an object stands on the ground plane."""
        return np.stack([(self.xyxy[:, 0] + self.xyxy[:, 2]) / 2, self.xyxy[:, 3]], axis=1)
