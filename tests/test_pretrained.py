"""The pretrained start: a YOLOv5-format checkpoint read without YOLOv5's code, its backbone
and neck copied into our 8-class model.

YOLOv5's COCO ``yolov5n.pt`` is not in this repository (nor reachable from CI), so the test
writes a checkpoint of the same form itself: a module tree pickled under YOLOv5's own class
paths (``models.yolo.Model``, ``models.common.C3`` ...) from a throw-away ``models`` package
that is gone again before loading, holding the tensors of ultralytics' yolov5n with 80
classes. Loading must not need that package, and every backbone/neck tensor must arrive.
"""
from __future__ import annotations

import sys
import types

import pytest
import torch

from training.pretrained import PretrainedError, read_yolov5, start_weights
from vision.classes import CLASSES


def _fake_yolov5_checkpoint(path) -> dict:
    from ultralytics.nn.tasks import DetectionModel

    src = DetectionModel("yolov5n.yaml", nc=80, verbose=False)
    tensors = {k: v.clone() for k, v in src.state_dict().items()}
    pkg = types.ModuleType("models")
    pkg.__path__ = []
    common, yolo = types.ModuleType("models.common"), types.ModuleType("models.yolo")
    sys.modules.update({"models": pkg, "models.common": common, "models.yolo": yolo})
    try:
        def rename(module, namespace):
            name = type(module).__name__
            if not hasattr(namespace, name):
                setattr(namespace, name, type(name, (torch.nn.Module,), {"__module__": namespace.__name__}))
            module.__class__ = getattr(namespace, name)
        for m in src.modules():
            if type(m).__module__.startswith("ultralytics"):
                rename(m, yolo if m is src else common)
        src.names = {i: f"coco-{i}" for i in range(80)}
        torch.save({"model": src.half(), "epoch": -1, "date": "2022-02-08T18:24:20"}, path)
    finally:
        for name in ("models", "models.common", "models.yolo"):
            sys.modules.pop(name, None)
    return tensors


def test_a_yolov5_checkpoint_is_read_without_its_code(tmp_path):
    source = tmp_path / "yolov5n.pt"
    tensors = _fake_yolov5_checkpoint(source)
    assert "models" not in sys.modules
    read, meta = read_yolov5(source)
    assert set(read) == set(tensors)
    assert meta["epoch"] == -1 and len(meta["names"]) == 80


def test_backbone_and_neck_are_copied_and_the_head_starts_fresh(tmp_path):
    from ultralytics import YOLO

    source = tmp_path / "yolov5n.pt"
    tensors = _fake_yolov5_checkpoint(source)
    stats = start_weights(source, dict(enumerate(CLASSES)), tmp_path / "start.pt", check_hash=False)
    model = YOLO(str(tmp_path / "start.pt")).model
    assert model.names == dict(enumerate(CLASSES))
    got = model.state_dict()
    backbone = [k for k in tensors if int(k.split(".")[1]) < 24]
    assert backbone and all(torch.equal(got[k].float(), tensors[k].half().float()) for k in backbone)
    # the class branch of the head has 8 outputs, not COCO's 80: it cannot be copied
    assert stats["tensors_copied"] < stats["tensors_target"]
    assert stats["params_copied"] > 0.6 * stats["params_target"]


def test_another_file_is_refused_by_its_hash(tmp_path):
    source = tmp_path / "yolov5n.pt"
    _fake_yolov5_checkpoint(source)
    with pytest.raises(PretrainedError, match="is not YOLOv5 v6.1's COCO yolov5n.pt"):
        start_weights(source, dict(enumerate(CLASSES)), tmp_path / "start.pt")


def test_a_file_that_is_not_a_checkpoint_says_so(tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="not a readable PyTorch checkpoint"):
        read_yolov5(junk)
