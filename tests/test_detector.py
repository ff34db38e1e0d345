"""The detector: the committed default weights, batches across sources, ONNX export parity."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streams.reader import iter_file_samples
from vision.classes import CLASSES
from vision.detections import box_iou, centre_inside
from vision.detector import DEFAULT_MODEL, DEFAULT_WEIGHTS, MODELS, Detector, DetectorError, model_version

ROOT = Path(__file__).resolve().parents[1]
MODEL = MODELS / f"{DEFAULT_MODEL}.pt"  # the trained weights; the runtimes' exports sit beside them
ONNX = MODELS / f"{DEFAULT_MODEL}.onnx"
OPENVINO = DEFAULT_WEIGHTS  # the default (fastest at the same accuracy)
needs_model = pytest.mark.skipif(not MODEL.exists(), reason="default model not in models/")


def frame_at(clip: str, t: float):
    for f in iter_file_samples(ROOT / "sample_videos" / f"{clip}.mp4", 1.0):
        if f.ts >= t:
            return f
    raise AssertionError(f"{clip} has no frame at {t} s")


def test_missing_and_corrupt_weights_are_clear_errors(tmp_path):
    with pytest.raises(DetectorError, match="not found"):
        Detector(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="cannot load model"):
        Detector(junk)


def test_model_version_changes_with_the_file(tmp_path):
    a, b = tmp_path / "m.pt", tmp_path / "n" / "m.pt"
    b.parent.mkdir()
    a.write_bytes(b"one")
    b.write_bytes(b"two")
    assert model_version(a) != model_version(b) and model_version(a).startswith("m-")


@needs_model
def test_one_batch_of_several_sources_finds_each_sources_violation():
    det = Detector(MODEL)
    assert det.names == list(CLASSES)
    frames = [frame_at("fixed_illegal_construction", 20), frame_at("fixed_street_vending", 15),
              frame_at("fixed_no_violation", 10)]
    shed, stall, quiet = det.detect([f.image for f in frames])
    assert {"steel_shed", "scaffold"} & set(shed.labels)
    assert {"stall", "umbrella"} & set(stall.labels)
    confident = [label for label, c in zip(quiet.labels, quiet.confidence) if c > 0.5]
    assert not confident, f"confident detections on a street with no violation: {confident}"
    h, w = frames[0].image.shape[:2]
    assert (shed.xyxy >= -1).all() and (shed.xyxy[:, 2] <= w + 1).all() and (shed.xyxy[:, 3] <= h + 1).all()


@needs_model
@pytest.mark.parametrize("export", [ONNX, OPENVINO], ids=["onnx", "openvino"])
def test_the_committed_exports_detect_what_the_pytorch_weights_detect(export):
    # the exports in models/ must be of these weights: same best box, label and score
    image = frame_at("fixed_illegal_construction", 20).image
    a = Detector(MODEL).detect([image])[0]
    b = Detector(export).detect([image])[0]
    assert len(a) and len(b)
    best_a, best_b = a.xyxy[np.argmax(a.confidence)], b.xyxy[np.argmax(b.confidence)]
    assert a.labels[int(np.argmax(a.confidence))] == b.labels[int(np.argmax(b.confidence))]
    assert box_iou([best_a], [best_b])[0, 0] > 0.9
    assert abs(float(a.confidence.max()) - float(b.confidence.max())) < 0.05  # FP16 OpenVINO weights included


@needs_model
def test_the_default_weights_are_the_openvino_export():
    from core.settings import Settings
    from vision.detector import DEFAULT_WEIGHTS

    assert Settings().model.weights == DEFAULT_WEIGHTS == OPENVINO
    assert Detector(OPENVINO, max_batch=8).detect([frame_at("fixed_street_vending", 15).image] * 3)  # batches too


def _dets(rows):
    from vision.classes import CLASS_ID
    from vision.detections import Detections

    return Detections(np.array([r[2:] for r in rows], np.float32).reshape(-1, 4), np.array([r[1] for r in rows], np.float32),
                      np.array([CLASS_ID[r[0]] for r in rows], np.int32), [r[0] for r in rows])


def test_box_iou_pairs_every_box_with_every_box():
    a = [(0, 0, 10, 10), (5, 5, 15, 15), (3, 3, 3, 9)]  # the last has no area
    b = np.array([(0, 0, 10, 10), (10, 0, 20, 10), (0, 5, 10, 15)], np.float32)
    iou = box_iou(a, b)
    assert iou.shape == (3, 3)
    # identical, touching only along an edge, half covered (50 of 150)
    assert iou[0].tolist() == pytest.approx([1.0, 0.0, 1 / 3])
    assert iou[1].tolist() == pytest.approx([25 / 175, 25 / 175, 50 / 150])
    assert iou[2].tolist() == [0.0, 0.0, 0.0]
    assert box_iou(a, np.zeros((0, 4))).shape == (3, 0)
    assert box_iou(b, b).dtype == np.float32  # the runtime's float32 boxes stay float32


def test_centre_inside_pairs_every_centre_with_every_box():
    a = [(0, 0, 10, 10), (8, 8, 12, 12), (0, 0, 40, 2)]  # centres (5, 5), (10, 10), (20, 1)
    b = [(4, 4, 6, 6), (10, 10, 30, 30), (0, 0, 100, 1)]
    inside = centre_inside(a, b)
    assert inside.shape == (3, 3) and inside.dtype == bool
    assert inside.tolist() == [[True, False, False],   # a small box in the middle still holds it
                               [False, True, False],   # a centre on a corner counts
                               [False, False, True]]   # (20, 1) on the bottom edge of a flat strip
    assert centre_inside(a, np.zeros((0, 4))).shape == (3, 0)


def test_a_box_is_confirmed_only_by_the_same_class_at_the_same_place():
    first = _dets([("scaffold", 0.6, 100, 100, 200, 300),   # seen again, a little larger: kept
                   ("umbrella", 0.5, 400, 50, 460, 90),     # seen again as goods: not the same thing
                   ("dust", 0.4, 10, 10, 60, 60),           # not seen again
                   ("stall", 0.7, 300, 300, 340, 340)])     # inside a much larger stall box: kept
    second = _dets([("scaffold", 0.3, 90, 95, 215, 320), ("scaffold", 0.8, 600, 100, 700, 300),
                    ("goods", 0.9, 400, 50, 460, 90), ("stall", 0.45, 250, 250, 500, 500)])
    kept = first.confirmed_by(second)
    assert kept.labels == ["scaffold", "stall"]
    assert kept.confidence.tolist() == pytest.approx([0.3, 0.45])  # the second look's, not the first's
    assert kept.xyxy.tolist() == [[100, 100, 200, 300], [300, 300, 340, 340]]  # the first look's boxes
    assert not len(first.confirmed_by(_dets([])))


@needs_model
def test_the_second_look_keeps_what_both_input_sizes_find():
    frames = [frame_at("fixed_illegal_construction", 20), frame_at("fixed_no_violation", 10)]
    images = [f.image for f in frames]
    one = Detector(OPENVINO).detect(images)
    at_416 = Detector(OPENVINO, imgsz=416).detect(images)
    two = Detector(OPENVINO, confirm_imgsz=416).detect(images)
    assert {"steel_shed", "scaffold"} & set(two[0].labels)  # a real shed is seen at both sizes
    for first, second, both in zip(one, at_416, two):
        expected = first.confirmed_by(second)
        assert both.labels == expected.labels and np.allclose(both.confidence, expected.confidence)
        assert len(both) <= len(first)


@needs_model
def test_the_first_look_hands_faint_boxes_to_the_second():
    # a stall far down the street: faint at 320 px (about 0.2), clear at 416 px (about 0.5)
    image = frame_at("vehicle_street_vending", 31).image
    faint = Detector(OPENVINO, conf=0.15).detect([image])[0]
    assert "stall" in faint[faint.confidence < 0.25].labels
    strict = Detector(OPENVINO, confirm_imgsz=416, confirm_conf=0.25).detect([image])[0]
    loose = Detector(OPENVINO, confirm_imgsz=416, confirm_conf=0.15).detect([image])[0]
    assert "stall" not in strict.labels and "stall" in loose.labels
    expected = faint.confirmed_by(Detector(OPENVINO, imgsz=416).detect([image])[0])
    assert loose.labels == expected.labels and np.allclose(loose.confidence, expected.confidence)
    assert loose.confidence.min() >= 0.25  # what is kept passed the detector's floor at the second look
    # the floor below the detector's own only matters with two looks
    one = Detector(OPENVINO, confirm_conf=0.15)
    assert one.detect([image])[0].confidence.min() >= 0.25 and one.looks == "320 px"
    assert Detector(OPENVINO, confirm_imgsz=416, confirm_conf=0.15).looks == "320 px from 0.15, confirmed at 416 px"
    # a batch larger than the runtime's takes several calls, each with the floor of its look
    many = Detector(OPENVINO, max_batch=2, confirm_imgsz=416, confirm_conf=0.15).detect([image] * 5)
    assert all(d.labels == loose.labels and np.allclose(d.confidence, loose.confidence) for d in many)


@needs_model
def test_a_model_exported_for_one_input_size_is_refused_with_the_way_out(tmp_path):
    # the runtime batches letterboxed rectangles and takes a second look at another size: it
    # needs an export with a dynamic shape, and says so when loading rather than failing mid-patrol
    import shutil

    from vision.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    weights = tmp_path / "fixed-size.pt"
    shutil.copyfile(MODEL, weights)
    static = Path(YOLO(str(weights)).export(format="onnx", imgsz=320, dynamic=False, simplify=False))
    with pytest.raises(DetectorError, match="one input size; export it with dynamic=True"):
        Detector(static, confirm_imgsz=0)
    assert Detector(ONNX).runtime.dynamic and Detector(OPENVINO).runtime.dynamic
