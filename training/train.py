"""Training data and training runs for the project's own detector.

Everything here is reproducible: a data set is a function of (seed, count,
size), and a training run records its arguments next to the weights. A city's
own data set (``patrol export-dataset``) is checked here before a run starts, so
a mistake in it is one line, not a traceback from deep inside ultralytics.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import yaml

from training.synth import cloud_labels, labelled_image
from vision.classes import CLASSES

# Nothing may be fetched at run time: keep ultralytics from looking for fonts,
# pretrained weights or updates.
os.environ.setdefault("YOLO_OFFLINE", "1")


def trainable_weights(weights: Path) -> Path:
    """The PyTorch weights behind a deployed model: an ONNX file or OpenVINO folder cannot be
    fine-tuned, so `models/patrol-v13_openvino_model` trains from `models/patrol-v13.pt` beside it."""
    weights = Path(weights)
    if weights.suffix == ".pt":
        return weights
    stem = weights.name.removesuffix("_openvino_model") if weights.is_dir() else weights.stem
    pt = weights.parent / f"{stem}.pt"
    return pt if pt.exists() else weights


def _write_one(args) -> int:
    root, split, seed, w, h, recipe, heldout, clouds = args
    sample = labelled_image(seed, w, h, recipe=recipe, heldout=heldout, clouds=clouds)
    name = f"{seed:07d}"
    cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), sample.image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    ih, iw = sample.image.shape[:2]
    lines = [
        f"{c} {(x1 + x2) / 2 / iw:.6f} {(y1 + y2) / 2 / ih:.6f} {(x2 - x1) / iw:.6f} {(y2 - y1) / ih:.6f}"
        for c, x1, y1, x2, y2 in sample.boxes
    ]
    (root / "labels" / split / f"{name}.txt").write_text("\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def generate_dataset(out: str | Path, n_train: int, n_val: int, seed: int = 0, size: tuple[int, int] = (640, 384),
                     workers: int = 2, progress=None, recipe: int = 1, heldout: bool = False,
                     clouds: bool | None = None) -> Path:
    """Render a YOLO-format data set; returns the path of its data.yaml.

    Train and validation images come from disjoint seed ranges, so validation
    pictures are never training pictures. ``heldout`` renders with the scene material
    kept out of training (``synth.labelled_image``): for evaluation only. ``clouds``
    chooses how plumes are labelled (the recipe's own rule when None).
    """
    clouds = cloud_labels(recipe, clouds)
    root = Path(out)
    for split in ("train", "val"):
        shutil.rmtree(root / "images" / split, ignore_errors=True)
        shutil.rmtree(root / "labels" / split, ignore_errors=True)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    jobs = [(root, "train", seed * 1_000_000 + i, *size, recipe, heldout, clouds) for i in range(n_train)]
    jobs += [(root, "val", seed * 1_000_000 + 500_000 + i, *size, recipe, heldout, clouds) for i in range(n_val)]
    done = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(_write_one, jobs, chunksize=16):
            done += 1
            if progress:
                progress(done, len(jobs))
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASSES))}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (root / "recipe.json").write_text(json.dumps({"seed": seed, "n_train": n_train, "n_val": n_val, "size": size,
                                                  "recipe": recipe, "heldout": heldout, "clouds": clouds}))
    return root / "data.yaml"


def train(data_yaml: str | Path, out: str | Path, model: str = "yolo11n.yaml", epochs: int = 30, imgsz: int = 320,
          batch: int = 32, resume: bool = False, name: str = "train", callbacks: dict | None = None,
          **overrides) -> Path:
    """Train (from scratch with a .yaml, or fine-tune from a .pt); returns best.pt.

    ``resume`` continues an interrupted run from its last.pt (check it first with
    ``resume_problem``). ``callbacks`` maps ultralytics callback events to functions.
    """
    from vision.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    out = Path(out).resolve()
    last = out / name / "weights" / "last.pt"
    if resume and last.exists():
        yolo = YOLO(str(last))
        for event, fn in (callbacks or {}).items():
            yolo.add_callback(event, fn)
        yolo.train(resume=True)
    else:
        yolo = YOLO(model)
        for event, fn in (callbacks or {}).items():
            yolo.add_callback(event, fn)
        # From scratch on two CPU cores: a short warm-up and a brisk AdamW rate, or
        # the few epochs the budget allows are spent warming up.
        args = dict(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=2,
                    project=str(out), name=name, exist_ok=True, plots=False, amp=False, seed=0, deterministic=False,
                    fliplr=0.5, mosaic=1.0, close_mosaic=2, warmup_epochs=1, optimizer="AdamW", lr0=0.002,
                    cache="ram", patience=100, verbose=True)
        args.update(overrides)
        yolo.train(**args)
    return out / name / "weights" / "best.pt"


def with_extra_train(data_yaml: str | Path, extra_images: Path, out: Path, repeat: int = 1,
                     negative_repeat: int | None = None, class_repeat: dict[int, int] | None = None) -> Path:
    """A copy of ``data_yaml`` whose training pictures also include ``extra_images`` (a folder of
    a YOLO layout: its labels in the matching ``labels`` folder). Validation is unchanged.

    ``repeat`` > 1 lists each extra picture that many times (in ``<out stem>-extra.txt`` beside
    ``out``), so that a small real set weighs as much in an epoch as a large rendered one.
    ``negative_repeat`` lists the pictures with no box (no-violation streets, facades, skies)
    that many times instead: the false sightings they stand for are what a city's analysts
    pay for, so they may weigh more than the positives. ``class_repeat`` ({class id: N}) lists a
    picture holding a box of that class N times instead (the largest N of its classes, never fewer
    than ``repeat``): a class the model misses, seen on few pictures, gets more of each epoch."""
    data_yaml = Path(data_yaml)
    extra_images = Path(extra_images)
    negative_repeat = repeat if negative_repeat is None else negative_repeat
    class_repeat = dict(class_repeat or {})
    for name, n in (("repeat", repeat), ("negative_repeat", negative_repeat),
                    *((f"class_repeat[{c}]", k) for c, k in class_repeat.items())):
        if n < 1:
            raise DataError(f"{name} must be at least 1, not {n}")
    pictures = pictures_in(extra_images)
    if not pictures:
        raise DataError(f"{extra_images}: no training pictures")
    data = yaml.safe_load(data_yaml.read_text(encoding="utf-8"))
    root = Path(data.get("path") or data_yaml.parent)
    if not root.is_absolute():  # as ultralytics reads it: from the working folder, else beside the file
        root = root.resolve() if root.exists() else (data_yaml.parent / root)
    trains = data["train"] if isinstance(data["train"], list) else [data["train"]]
    extra = str(extra_images.resolve())
    out.parent.mkdir(parents=True, exist_ok=True)
    if repeat > 1 or negative_repeat > 1 or any(n > 1 for n in class_repeat.values()):
        # ultralytics keeps a file listed twice as two samples
        from vision.detector import import_ultralytics

        import_ultralytics()
        from ultralytics.data.utils import img2label_paths  # where ultralytics itself looks for them

        labels = [Path(label) for label in img2label_paths([str(f.resolve()) for f in pictures])]
        times = [negative_repeat if is_negative(label)
                 else max([repeat] + [class_repeat.get(c, 1) for c in label_classes(label)]) for label in labels]
        listing = out.with_name(f"{out.stem}-extra.txt")
        listing.write_text("".join(f"{f.resolve()}\n" for f, n in zip(pictures, times) for _ in range(n)),
                           encoding="utf-8")
        extra = str(listing.resolve())
    data["train"] = [str((root / t).resolve()) for t in trains] + [extra]
    data["val"] = [str((root / v).resolve()) for v in (data["val"] if isinstance(data["val"], list) else [data["val"]])]
    data["path"] = str(root.resolve())
    out.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return out


def class_repeats(specs: list[str], names: list[str]) -> dict[int, tuple[str, int]]:
    """``["stall=6", ...]`` as {class id: (name, 6)}, the classes named as in ``names``."""
    out: dict[int, tuple[str, int]] = {}
    for spec in specs:
        name, _, times = spec.partition("=")
        name = name.strip()
        if name not in names:
            raise DataError(f"--class-repeat {spec}: no class '{name}' (the classes: {', '.join(names)})")
        try:
            n = int(times)
        except ValueError:
            raise DataError(f"--class-repeat {spec}: give CLASS=N with a whole number N, e.g. {name}=4") from None
        if n < 1:
            raise DataError(f"--class-repeat {spec}: N must be at least 1")
        out[names.index(name)] = (name, n)
    return out


# -- checks before a run ---------------------------------------------------------------------

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


def is_negative(label_file: Path) -> bool:
    """A picture with no box: its label file is missing or holds no line."""
    return not label_file.is_file() or not label_file.read_text(encoding="utf-8").strip()


def label_classes(label_file: Path) -> set[int]:
    """The class ids of a YOLO label file's boxes (none when it is missing)."""
    if not label_file.is_file():
        return set()
    return {int(line.split()[0]) for line in label_file.read_text(encoding="utf-8").splitlines() if line.strip()}


def pictures_in(folder: Path) -> list[Path]:
    """The pictures directly in ``folder`` (none when it does not exist), sorted."""
    folder = Path(folder)
    return sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []


class DataError(ValueError):
    """A data set, weights file or run that training cannot start from; the message says why."""


@dataclass(frozen=True)
class DataSet:
    """What a YOLO data.yaml describes, checked."""

    yaml: Path
    names: list[str]
    train_images: int
    val_images: int


def read_data_yaml(path: str | Path) -> DataSet:
    """Read and check a YOLO data.yaml the way ultralytics will use it: class names,
    and train/val image folders (relative to ``path:``, or to the file's folder)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such data set file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a YAML file ({str(err).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a mapping with train, val and names")
    names = data.get("names")
    if isinstance(names, dict):
        try:
            ids = sorted(int(k) for k in names)
        except (TypeError, ValueError):
            raise DataError(f"{path}: names must map class ids 0, 1, ... to names") from None
        if ids != list(range(len(ids))):
            raise DataError(f"{path}: class ids must be 0 to {len(ids) - 1} without gaps, got {ids}")
        names = [names[k] if k in names else names[str(k)] for k in ids]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{path}: names must be a non-empty list (or id: name mapping) of class names")
    if "nc" in data and data["nc"] != len(names):
        raise DataError(f"{path}: nc is {data['nc']} but {len(names)} names are given")
    root = data.get("path")
    if root is None:
        root = path.resolve().parent
    else:
        root = Path(str(root))
        if not root.is_absolute() and not root.exists():
            raise DataError(f"{path}: path '{root}' is relative and not found from here; give an absolute path or "
                            "leave 'path' out (then the folder of data.yaml is used)")
    counts = {}
    for split in ("train", "val"):
        if not data.get(split):
            raise DataError(f"{path}: '{split}' is missing (train and val are both needed)")
        entries = data[split] if isinstance(data[split], list) else [data[split]]
        counts[split] = sum(_count_images(root / str(e), path, split) for e in entries)
        if counts[split] == 0:
            raise DataError(f"{path}: no {split} images in {', '.join(str(root / str(e)) for e in entries)}")
    return DataSet(path, [str(n) for n in names], counts["train"], counts["val"])


def _count_images(where: Path, yaml_path: Path, split: str) -> int:
    if where.is_dir():
        return sum(1 for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if where.is_file() and where.suffix == ".txt":  # a list of image paths
        return sum(1 for line in where.read_text().splitlines() if line.strip())
    raise DataError(f"{yaml_path}: {split} images not found: {where}")


def weights_classes(weights: str | Path) -> list[str]:
    """The class names a weights file detects, in class-id order."""
    weights = Path(weights)
    if not weights.exists():
        raise DataError(f"weights not found: {weights}")
    if weights.is_dir() or weights.suffix == ".onnx":  # an export names them beside itself: no torch needed
        from vision.detector import exported_names

        try:
            names = exported_names(weights)
        except Exception as err:  # a folder without metadata.yaml, a broken file
            raise DataError(f"cannot read weights {weights}: {err}") from None
        return [names[i] for i in sorted(names)]
    from vision.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    try:
        names = YOLO(str(weights), task="detect").names
    except Exception as err:  # ultralytics raises many types for a bad file
        raise DataError(f"cannot read weights {weights}: {err}") from None
    return [names[i] for i in sorted(names)] if isinstance(names, dict) else list(names)


def check_classes(data_names: list[str], model_names: list[str], data_label: str = "the data set",
                  model_label: str = "the starting weights") -> None:
    """Fine-tuning keeps the detector's head only when the classes are the same names in
    the same order; anything else would silently re-learn the head from nothing."""
    if list(data_names) == list(model_names):
        return
    if sorted(data_names) == sorted(model_names):
        first = next(i for i, (a, b) in enumerate(zip(data_names, model_names)) if a != b)
        raise DataError(f"{data_label} has the classes of {model_label} in another order: class {first} is "
                        f"'{data_names[first]}' there but '{model_names[first]}' in the weights "
                        f"(expected order: {', '.join(model_names)})")
    lacks = [n for n in model_names if n not in data_names]
    extra = [n for n in data_names if n not in model_names]
    parts = [f"{data_label} has {len(data_names)} classes, {model_label} {len(model_names)}"]
    if extra:
        parts.append(f"not in the weights: {', '.join(extra)}")
    if lacks:
        parts.append(f"missing from the data set: {', '.join(lacks)}")
    raise DataError("; ".join(parts) + f" (expected, in order: {', '.join(model_names)})")


def resume_problem(last: Path) -> str | None:
    """Why the run whose last.pt this is cannot be resumed, or None if it can."""
    run = last.parent.parent
    if not last.is_file():
        return f"nothing to resume: {last} does not exist (no interrupted run named '{run.name}' in {run.parent})"
    import torch

    try:
        ckpt = torch.load(last, map_location="cpu", weights_only=False)
    except Exception as err:
        return f"cannot read {last}: {err}"
    epoch = ckpt.get("epoch", -1) if isinstance(ckpt, dict) else -1
    if epoch < 0 or ckpt.get("optimizer") is None:  # ultralytics strips both when a run ends
        return (f"run '{run.name}' finished; nothing to resume (start a new run with another --name, "
                f"e.g. --weights {run / 'weights' / 'best.pt'} to continue from its result)")
    return None


def run_metrics(run_dir: Path) -> dict[str, float] | None:
    """The last validation of a run (results.csv): epoch, precision, recall, mAP50, mAP50-95."""
    results = Path(run_dir) / "results.csv"
    if not results.is_file():
        return None
    with results.open() as f:
        rows = [{k.strip(): v.strip() for k, v in row.items() if k} for row in csv.DictReader(f)]
    if not rows:
        return None
    last = rows[-1]
    keys = {"epoch": "epoch", "precision": "metrics/precision(B)", "recall": "metrics/recall(B)",
            "mAP50": "metrics/mAP50(B)", "mAP50-95": "metrics/mAP50-95(B)"}
    try:
        return {k: float(last[v]) for k, v in keys.items() if v in last}
    except ValueError:
        return None
