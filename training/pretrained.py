"""A pretrained start for the detector: the backbone and neck of the COCO-trained YOLOv5n.

The weights file is Ultralytics' YOLOv5 v6.1 release ``yolov5n.pt`` (COCO, 80 classes; AGPL-3.0,
as ultralytics itself). It is not in this repository; ``patrol train --pretrained FILE`` reads it
from wherever it was put and checks its SHA-256 (models/README.md says where it comes from).

It is read without YOLOv5's code: a restricted unpickler resolves only torch's and a few
standard classes and turns YOLOv5's own (``models.*``, ``utils.*``) into inert stubs, so the
checkpoint's tensors are collected and nothing of it runs. ultralytics' ``yolov5n.yaml`` has
YOLOv5 v6's backbone and neck layer for layer (``model.0`` .. ``model.23``, same names and
shapes); those tensors are copied, and the detection head, which differs (anchor-free) and has
our 8 classes, starts fresh.
"""
from __future__ import annotations

import hashlib
import pickle
import types
from datetime import datetime, timezone
from pathlib import Path

YOLOV5N_COCO_SHA256 = "4f180cf23ba0717ada0badd6c685026d73d48f184d00fc159c2641284b2ac0a3"
ARCH = "yolov5n.yaml"

_ALLOWED = {("collections", "OrderedDict"), ("copyreg", "_reconstructor"), ("builtins", "object"),
            ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "slice"),
            ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class PretrainedError(ValueError):
    """A weights file that cannot give the start it was asked for; the message says why."""


class _Stub:
    """Stands in for a class of the checkpoint's own code: keeps its pickled state, runs nothing."""

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        if isinstance(state, tuple) and len(state) == 2:
            state = {**(state[0] or {}), **(state[1] or {})}
        self.__dict__.update(state if isinstance(state, dict) else {"_state": state})


class _Unpickler(pickle.Unpickler):
    _stubs: dict = {}

    def find_class(self, module, name):
        torch_class = (module == "torch" or module.startswith("torch.")) and not module.startswith(
            ("torch.hub", "torch.serialization", "torch.jit"))
        if (module, name) in _ALLOWED or torch_class:
            return super().find_class(module, name)
        return self._stubs.setdefault((module, name), type(name, (_Stub,), {"__module__": f"stub.{module}"}))


def _tensors(obj, prefix: str = "", out: dict | None = None) -> dict:
    """The parameters and buffers of a pickled module tree whose classes are stubs."""
    import torch

    out = {} if out is None else out
    d = getattr(obj, "__dict__", {})
    for key in ("_parameters", "_buffers"):
        for k, v in (d.get(key) or {}).items():
            if isinstance(v, torch.Tensor):
                out[prefix + k] = v.detach()
    for k, v in (d.get("_modules") or {}).items():
        if v is not None:
            _tensors(v, f"{prefix}{k}.", out)
    return out


def read_yolov5(path: Path) -> tuple[dict, dict]:
    """(tensors by name, what the checkpoint says of itself: names, date, epoch)."""
    import torch

    unpickler = types.SimpleNamespace(Unpickler=_Unpickler, load=pickle.load, __name__="patrol_stub_pickle")
    try:
        ck = torch.load(str(path), map_location="cpu", pickle_module=unpickler, weights_only=False)
    except Exception as err:  # noqa: BLE001 (any unreadable file: say so in one line)
        raise PretrainedError(f"{path}: not a readable PyTorch checkpoint ({err})") from None
    model = ck.get("ema") or ck.get("model") if isinstance(ck, dict) else None
    if model is None:
        raise PretrainedError(f"{path}: holds no model")
    meta = getattr(model, "__dict__", {})
    return _tensors(model), {"names": meta.get("names"), "date": ck.get("date"), "epoch": ck.get("epoch")}


def start_weights(source: Path, names: dict[int, str], out: Path, check_hash: bool = True) -> dict:
    """Write ``out``: an ultralytics checkpoint of ``yolov5n.yaml`` with our classes, its backbone
    and neck copied from ``source``. Returns what was copied, to be printed and recorded."""
    import torch
    from vision.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import __version__
    from ultralytics.nn.tasks import DetectionModel

    source = Path(source)
    if not source.is_file():
        raise PretrainedError(f"{source}: no such weights file")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    if check_hash and digest != YOLOV5N_COCO_SHA256:
        raise PretrainedError(f"{source}: SHA-256 {digest[:12]}… is not YOLOv5 v6.1's COCO yolov5n.pt "
                              f"({YOLOV5N_COCO_SHA256[:12]}…)")
    tensors, meta = read_yolov5(source)
    torch.manual_seed(0)  # the fresh head is the same every time
    model = DetectionModel(ARCH, nc=len(names), verbose=False)
    model.names = dict(names)
    target = model.state_dict()
    copied = [k for k, v in tensors.items() if k in target and target[k].shape == v.shape]
    if not copied:
        raise PretrainedError(f"{source}: no tensor matches {ARCH}")
    for k in copied:
        target[k].copy_(tensors[k].to(target[k].dtype))
    params = dict(model.named_parameters())
    stats = {"source": str(source), "sha256": digest, "source_date": meta["date"],
             "source_classes": len(meta["names"] or []), "tensors_copied": len(copied),
             "tensors_target": len(target), "params_copied": sum(params[k].numel() for k in copied if k in params),
             "params_target": sum(p.numel() for p in model.parameters())}
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"date": datetime.now(timezone.utc).isoformat(), "version": __version__, "epoch": -1,
                "best_fitness": None, "model": model.half(), "ema": None, "updates": None, "optimizer": None,
                "train_args": {"model": ARCH, "task": "detect"}, "pretrained_from": stats,
                "license": "AGPL-3.0 (backbone and neck from Ultralytics YOLOv5 v6.1 COCO yolov5n.pt)"}, out)
    return stats
