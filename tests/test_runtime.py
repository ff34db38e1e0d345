"""vision.runtime: an exported model run without ultralytics' predictor gives ultralytics' boxes."""
from __future__ import annotations

import numpy as np
import pytest

from tests.test_detector import MODEL, ONNX, OPENVINO, frame_at, needs_model
from vision.classes import CLASSES
from vision.detector import Detector, exported_names
from vision.runtime import letterbox, nms, to_batch


def _pictures() -> list[list[np.ndarray]]:
    """Batches of one shape each: landscape camera samples, and the same cut to a phone's portrait."""
    landscape = [frame_at(clip, t).image for clip, t in
                 (("fixed_illegal_construction", 20), ("fixed_street_vending", 15), ("fixed_no_violation", 10),
                  ("fixed_dust", 12), ("fixed_street_vending", 25))]
    h, w = landscape[0].shape[:2]
    portrait = [np.ascontiguousarray(img[:, (w - h * 9 // 16) // 2:][:, : h * 9 // 16]) for img in landscape]
    return [landscape, portrait]


@needs_model
@pytest.mark.parametrize("export", [OPENVINO, ONNX], ids=["openvino", "onnx"])
def test_the_runtime_finds_what_ultralytics_predictor_finds_with_the_same_export(export):
    from ultralytics import YOLO

    ours = Detector(export)
    assert ours.runtime is not None and ours.model is None
    theirs = YOLO(str(export), task="detect")
    found = 0
    for batch in _pictures():
        expected = theirs.predict(batch, imgsz=ours.imgsz, conf=0.25, iou=0.5, verbose=False, batch=len(batch))
        for got, want in zip(ours.detect(batch), expected):
            b = want.boxes
            assert got.labels == [theirs.names[int(c)] for c in b.cls]
            assert np.allclose(got.confidence, b.conf.numpy(), atol=1e-4)
            assert np.allclose(got.xyxy, b.xyxy.numpy(), atol=1.5)  # rounding of the letterbox pad
            found += len(got)
    assert found >= 5  # the pictures hold violations: the comparison is not of empty lists


@needs_model
def test_a_mixed_batch_runs_each_shape_at_its_own_rectangle():
    landscape, portrait = _pictures()
    det = Detector(OPENVINO)
    alone = det.detect(landscape[:2]) + det.detect(portrait[:2])
    mixed = det.detect([landscape[0], portrait[0], landscape[1], portrait[1]])
    for a, b in zip(alone, [mixed[0], mixed[2], mixed[1], mixed[3]]):
        assert a.labels == b.labels and np.allclose(a.xyxy, b.xyxy, atol=1e-3)


def test_letterbox_keeps_the_aspect_and_pads_to_the_stride():
    canvas, (gain, left, top, w, h) = letterbox(np.zeros((720, 1280, 3), np.uint8), 256)
    assert canvas.shape == (160, 256, 3) and (w, h) == (1280, 720) and gain == pytest.approx(0.2)
    assert (left, top) == (0, 8) and (canvas[:8] == 114).all() and (canvas[8:152] == 0).all()
    batch = to_batch([canvas, canvas])
    assert batch.shape == (2, 3, 160, 256) and batch.dtype == np.float32 and batch.max() <= 1.0


def test_nms_keeps_the_best_of_overlapping_boxes_of_one_class_only():
    # head output: cx, cy, w, h, then one score per class, one column per anchor
    anchors = np.array([
        [50, 50, 20, 20, 0.9, 0.0],   # kept
        [51, 50, 20, 20, 0.8, 0.0],   # same class, overlaps the first: dropped
        [51, 50, 20, 20, 0.0, 0.7],   # other class at the same place: kept
        [150, 150, 20, 20, 0.6, 0.0],  # same class, elsewhere: kept
        [10, 10, 5, 5, 0.1, 0.0],     # under the confidence threshold
    ], np.float32).T
    xyxy, conf, cls = nms(anchors, conf=0.25, iou=0.5)
    assert conf.tolist() == pytest.approx([0.9, 0.7, 0.6]) and cls.tolist() == [0, 1, 0]
    assert xyxy[0].tolist() == [40, 40, 60, 60]


@needs_model
def test_exports_carry_the_class_names():
    assert list(exported_names(OPENVINO).values()) == list(CLASSES) == list(exported_names(ONNX).values())
    assert MODEL.exists()
