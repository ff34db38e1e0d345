"""The detector: ultralytics weights (.pt, .onnx or an OpenVINO folder) over batches.

Exported models (OpenVINO folder, .onnx) run on CPU without torch; .pt weights and GPU devices
need ultralytics, which comes with the training extra (``pip install '.[train]'``).

Samples from many sources go through one call, so the model's fixed per-call
cost is shared. Boxes come back in each sample's own pixels as ``Detections``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import sys
from pathlib import Path

import numpy as np

from vision.detections import Detections

os.environ.setdefault("YOLO_OFFLINE", "1")  # never fetch anything at run time

MODELS = Path(__file__).resolve().parents[1] / "models"
DEFAULT_MODEL = "patrol-v13"  # its card: models/README.md; the .pt and .onnx sit beside the default export
DEFAULT_WEIGHTS = MODELS / f"{DEFAULT_MODEL}_openvino_model"  # the fastest runtime that keeps the accuracy


class DetectorError(RuntimeError):
    pass


def import_ultralytics():
    """Import ultralytics with its log on stderr. It logs to whatever ``sys.stdout`` is when it
    is first imported (on a fresh machine: that it creates its settings file), and stdout belongs
    to our commands: `patrol … --json` prints one JSON document there. Every import of
    ultralytics in the project goes through here first."""
    if "ultralytics" not in sys.modules:
        with contextlib.redirect_stdout(sys.stderr):
            import ultralytics  # noqa: F401  (binds its log handler to stderr, once per process)
    return sys.modules["ultralytics"]


def model_version(path: str | Path) -> str:
    """Name plus a short content hash: two different files never share a version."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        h.update(f.read_bytes())
    return f"{path.stem}-{h.hexdigest()[:8]}"


class Detector:
    """``.pt`` weights run through ultralytics; an exported model (OpenVINO folder, ``.onnx``)
    runs through ``vision.runtime``, which gives the same boxes at a fraction of the Python
    per batch (see there why that matters on a busy worker)."""

    def __init__(self, weights: str | Path = DEFAULT_WEIGHTS, imgsz: int = 320, conf: float = 0.25,
                 iou: float = 0.5, device: str = "cpu", max_batch: int = 16, threads: int = 0,
                 confirm_imgsz: int = 0, confirm_conf: float | None = None):
        weights = Path(weights)
        if not weights.exists():
            raise DetectorError(f"model weights not found: {weights}")
        self.weights = weights
        self.imgsz, self.conf, self.iou, self.device, self.max_batch = imgsz, conf, iou, device, max_batch
        self.confirm_imgsz = confirm_imgsz  # 0: one look
        # With two looks, how sure the first must be of a box to look again: a thing far off is
        # faint at the first size and clear at the second, which alone decides its confidence.
        self.confirm_conf = conf if confirm_conf is None else min(conf, confirm_conf)
        self.version = model_version(weights)
        self.model = self.runtime = None
        if device == "cpu" and (weights.is_dir() or weights.suffix == ".onnx"):
            from vision.runtime import RuntimeModel

            try:
                self.runtime = RuntimeModel(weights, imgsz, threads)
                names = exported_names(weights)
            except Exception as err:  # the runtimes raise many types for a bad file
                raise DetectorError(f"cannot load model {weights}: {err}") from err
            if not self.runtime.dynamic:  # batches of letterboxed rectangles, and the second look, need it
                raise DetectorError(f"model {weights} was exported for one input size; export it with "
                                    "dynamic=True (as the committed exports are), or point model.weights at its .pt")
        else:
            names = self._load_ultralytics(weights)
        self.names = [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)

    def _load_ultralytics(self, weights: Path):
        import logging

        try:
            import_ultralytics()
            from ultralytics import YOLO
            from ultralytics.utils import LOGGER
        except ModuleNotFoundError as err:  # the lean install runs exported models on the CPU only
            raise DetectorError(f"cannot load model {weights}: {_ultralytics_needed(weights, self.device)}") from err

        # ultralytics tells which runtime it loads on every model load ("Loading … for OpenVINO
        # inference"): noise in a worker's log, so only its warnings are kept
        LOGGER.setLevel(logging.WARNING)
        try:
            self.model = YOLO(str(weights), task="detect")
        except Exception as err:  # ultralytics raises many types for a bad file
            raise DetectorError(f"cannot load model {weights}: {err}") from err
        return self.model.names

    @property
    def looks(self) -> str:
        """How it looks at a picture, for reports: "320 px", "320 px from 0.20, confirmed at 416 px"."""
        if not self.confirm_imgsz:
            return f"{self.imgsz} px"
        floor = f" from {self.confirm_conf:.2f}" if self.confirm_conf < self.conf else ""
        return f"{self.imgsz} px{floor}, confirmed at {self.confirm_imgsz} px"

    def detect(self, images: list[np.ndarray]) -> list[Detections]:
        """Detections for each BGR image, in that image's pixels.

        With ``confirm_imgsz`` an image on which the first look finds anything is looked at
        again at that size, and only what both looks find is kept, with the second look's
        confidence (``Detections.confirmed_by``). A real thing is seen at both sizes; much of
        what a detector makes up from a window grid or a parasol's stripes is seen at one only.
        Images with nothing on them, most of a patrol's samples, cost one look. The first look
        keeps boxes down to ``confirm_conf``; what survives has passed ``conf`` at the second."""
        if not self.confirm_imgsz:
            return self._detect(images, self.imgsz, self.conf)
        found = self._detect(images, self.imgsz, self.confirm_conf)
        todo = [i for i, dets in enumerate(found) if len(dets)]
        again = self._detect([images[i] for i in todo], self.confirm_imgsz, self.conf)
        for i, second in zip(todo, again):
            found[i] = found[i].confirmed_by(second)
        return found

    def _detect(self, images: list[np.ndarray], imgsz: int, conf: float) -> list[Detections]:
        out: list[Detections] = []
        for i in range(0, len(images), self.max_batch):
            chunk = images[i : i + self.max_batch]
            if self.runtime is not None:
                for xyxy, score, cls in self.runtime.predict(chunk, conf, self.iou, imgsz):
                    out.append(Detections(xyxy, score, cls, [self.names[c] for c in cls]))
                continue
            results = self.model.predict(chunk, imgsz=imgsz, conf=conf, iou=self.iou, device=self.device,
                                         verbose=False, batch=len(chunk))
            for r in results:
                b = r.boxes
                cls = b.cls.cpu().numpy().astype(np.int32)
                out.append(Detections(b.xyxy.cpu().numpy().astype(np.float32), b.conf.cpu().numpy().astype(np.float32),
                                      cls, [self.names[c] for c in cls]))
        return out


def _ultralytics_needed(weights: Path, device: str) -> str:
    if weights.is_dir() or weights.suffix == ".onnx":
        what = f"running it on device '{device}' needs ultralytics"
        instead = "or set model.device to cpu"
    else:
        what = f"{weights.suffix or 'these'} weights need ultralytics"
        instead = f"or point model.weights at an exported model such as {DEFAULT_WEIGHTS}"
    return f"{what}, which comes with the training extra: pip install '.[train]'; {instead}"


def exported_names(weights: Path) -> dict[int, str]:
    """Class names ultralytics wrote beside an export: metadata.yaml in an OpenVINO folder,
    the ``names`` metadata entry of an ONNX file."""
    import ast

    if weights.is_dir():
        import yaml

        meta = yaml.safe_load((weights / "metadata.yaml").read_text(encoding="utf-8"))
        names = meta["names"]
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(weights), providers=["CPUExecutionProvider"])
        names = ast.literal_eval(session.get_modelmeta().custom_metadata_map["names"])
    return {int(k): str(v) for k, v in names.items()}
