"""The detector: ultralytics weights (.pt, .onnx or an OpenVINO folder) over batches.

Samples from many sources go through one call, so the model's fixed per-call
cost is shared. Boxes come back in each sample's own pixels as ``Detections``.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from vision.detections import Detections

os.environ.setdefault("YOLO_OFFLINE", "1")  # never fetch anything at run time

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "patrol-v2_openvino_model"


class DetectorError(RuntimeError):
    pass


def model_version(path: str | Path) -> str:
    """Name plus a short content hash: two different files never share a version."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return f"{path.stem}-{h.hexdigest()[:8]}"


class Detector:
    def __init__(self, weights: str | Path = DEFAULT_WEIGHTS, imgsz: int = 256, conf: float = 0.25,
                 iou: float = 0.5, device: str = "cpu", max_batch: int = 16):
        weights = Path(weights)
        if not weights.exists():
            raise DetectorError(f"model weights not found: {weights}")
        import logging

        from ultralytics import YOLO
        from ultralytics.utils import LOGGER

        # ultralytics tells on stdout which runtime it loads ("Loading … for OpenVINO inference"):
        # stdout belongs to our commands (`patrol detect --json` prints one JSON line per image)
        LOGGER.setLevel(logging.WARNING)
        try:
            self.model = YOLO(str(weights), task="detect")
        except Exception as err:  # ultralytics raises many types for a bad file
            raise DetectorError(f"cannot load model {weights}: {err}") from err
        self.weights = weights
        self.imgsz, self.conf, self.iou, self.device, self.max_batch = imgsz, conf, iou, device, max_batch
        self.version = model_version(weights)
        names = self.model.names
        self.names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections for each BGR image, in that image's pixels."""
        out: list[Detections] = []
        for i in range(0, len(images), self.max_batch):
            chunk = images[i : i + self.max_batch]
            results = self.model.predict(chunk, imgsz=self.imgsz, conf=self.conf, iou=self.iou, device=self.device,
                                         verbose=False, batch=len(chunk))
            for r in results:
                b = r.boxes
                cls = b.cls.cpu().numpy().astype(np.int32)
                out.append(Detections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                                      cls, [self.names[c] for c in cls]))
        return out
