"""Running an exported detector (OpenVINO folder or ONNX file) without ultralytics' predictor.

A worker's detection loop shares the interpreter with a reader thread per source. Ultralytics'
predictor runs pre- and post-processing as dozens of small torch calls per image, and each
call gives up the GIL and must wait to get it back while readers hold it: on a busy worker a
16-image batch took five times its idle time. Here a batch is one letterbox pass in OpenCV, one
call into the runtime (which releases the GIL for the whole forward pass) and one NMS, the same
arithmetic as ultralytics' ``LetterBox``, ``non_max_suppression`` and ``scale_boxes`` so that the
boxes agree with its predictor (``tests/test_runtime.py`` checks them against it).
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from vision.detections import box_iou

PAD_VALUE = 114  # ultralytics' letterbox grey
MAX_WH = 7680.0  # class offset for NMS in one call: boxes of different classes never overlap
MAX_NMS = 30000  # candidates kept before NMS, highest confidence first (as ultralytics)
MAX_DET = 300


class RuntimeModel:
    """One compiled model: ``forward(batch NCHW float32) -> (N, 4 + classes, anchors)``."""

    def __init__(self, weights: Path, imgsz: int, threads: int = 0):
        self.weights, self.imgsz = Path(weights), imgsz
        # dynamic: the export takes any input size (ultralytics' export with dynamic=True), so one
        # compiled model serves a second look at another size
        if self.weights.is_dir():
            self.runtime, (self._forward, self.dynamic) = "openvino", _openvino(self.weights, threads)
        elif self.weights.suffix == ".onnx":
            self.runtime, (self._forward, self.dynamic) = "onnxruntime", _onnx(self.weights, threads)
        else:
            raise ValueError(f"{weights}: not an OpenVINO folder or an .onnx file")

    def predict(self, images: list[np.ndarray], conf: float, iou: float,
                imgsz: int | None = None) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(xyxy in each image's pixels, confidence, class id) per BGR image, at ``imgsz``
        (default: the model's own; the exported network takes any stride-multiple size).

        Images are letterboxed to the smallest stride-multiple rectangle that holds them (as
        ultralytics' predictor does for a batch of one shape), and run in one batch per
        rectangle: a 16:9 sample costs a 256x160 forward pass, not 256x256."""
        out: list = [None] * len(images)
        groups: dict[tuple[int, int], list[int]] = {}
        boxed = [letterbox(img, imgsz or self.imgsz) for img in images]
        for i, (canvas, _) in enumerate(boxed):
            groups.setdefault(canvas.shape[:2], []).append(i)
        for members in groups.values():
            raw = self._forward(to_batch([boxed[i][0] for i in members]))
            for row, i in enumerate(members):
                out[i] = scale_back(*nms(raw[row], conf, iou), *boxed[i][1])
        return out


def _openvino(folder: Path, threads: int):
    import openvino as ov

    xml = next(iter(sorted(folder.glob("*.xml"))), None)
    if xml is None:
        raise ValueError(f"{folder}: no OpenVINO model (.xml) in it")
    # No pinning: a worker runs a reader thread per source beside the inference threads, and
    # inference threads held to fixed cores wait for readers there instead of moving to a free
    # one (at 90 sources: 20 ms instead of 24 ms per image, 5 % more samples analysed).
    # The precision is OpenVINO's own choice on purpose: on CPUs with bfloat16 units (AVX512-BF16,
    # AMX) it computes in bf16: a third less time per image than FP32 on an AMD EPYC, for about
    # 0.01 less `dust` box mAP50 (measured in docs/model-history.md).
    config = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = ov.Core().compile_model(str(xml), "CPU", config)
    request = compiled.create_infer_request()

    def forward(batch: np.ndarray) -> np.ndarray:
        return request.infer({0: batch})[compiled.output(0)]

    return forward, compiled.input(0).get_partial_shape().is_dynamic


def _onnx(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: batch})[0]

    return forward, not all(isinstance(d, int) for d in session.get_inputs()[0].shape[2:])


def letterbox(img: np.ndarray, size: int, stride: int = 32) -> tuple[np.ndarray, tuple]:
    """The image scaled to fit ``size`` and centred on grey up to the next stride multiple,
    and (gain, pad_x, pad_y, width, height) to map boxes back (ultralytics' LetterBox, auto)."""
    h, w = img.shape[:2]
    gain = min(size / h, size / w)
    new_w, new_h = max(round(w * gain), 1), max(round(h * gain), 1)
    dw, dh = (size - new_w) % stride / 2, (size - new_h) % stride / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    if (new_w, new_h) != (w, h):
        img = cv2.resize(img, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(PAD_VALUE,) * 3)
    return canvas, (gain, left, top, w, h)


def to_batch(canvases: list[np.ndarray]) -> np.ndarray:
    """BGR HWC pictures of one size to the model's RGB NCHW float input in 0..1."""
    batch = np.stack(canvases)[..., ::-1].transpose(0, 3, 1, 2)
    return np.ascontiguousarray(batch, dtype=np.float32) / np.float32(255.0)


def nms(pred: np.ndarray, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's raw head output (4 + classes, anchors) to kept (xyxy, confidence, class)."""
    scores = pred[4:]
    cls = scores.argmax(0)
    best = scores[cls, np.arange(scores.shape[1])]
    keep = best > conf
    if not keep.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32)
    xywh, best, cls = pred[:4, keep].T, best[keep], cls[keep]
    order = np.argsort(-best, kind="stable")[:MAX_NMS]
    xywh, best, cls = xywh[order], best[order], cls[order]
    xyxy = np.concatenate([xywh[:, :2] - xywh[:, 2:] / 2, xywh[:, :2] + xywh[:, 2:] / 2], axis=1)
    kept = _nms(xyxy + cls[:, None] * MAX_WH, best, iou)[:MAX_DET]
    return xyxy[kept].astype(np.float32), best[kept].astype(np.float32), cls[kept].astype(np.int32)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS over boxes sorted by falling score (torchvision's rule: drop IoU > iou)."""
    alive = np.ones(len(boxes), bool)
    kept = []
    for i in range(len(boxes)):
        if not alive[i]:
            continue
        kept.append(i)
        rest = np.nonzero(alive[i + 1 :])[0] + i + 1
        if not len(rest):
            break
        alive[rest[box_iou(boxes[i], boxes[rest])[0] > iou]] = False
    return np.array(kept, np.int64)


def scale_back(xyxy, confidence, cls, gain, left, top, w, h):
    """Boxes from the letterboxed picture to the image's own pixels, clipped to it."""
    if len(xyxy):
        xyxy = (xyxy - np.array([left, top, left, top], np.float32)) / gain
        xyxy = np.clip(xyxy, 0, np.array([w, h, w, h], np.float32)).astype(np.float32)
    return xyxy, confidence, cls
