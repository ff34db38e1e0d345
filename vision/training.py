"""Training data and training runs for the project's own detector.

Everything here is reproducible: a data set is a function of (seed, count,
size), and a training run records its arguments next to the weights.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import yaml

from vision.synth import CLASSES, labelled_image

# Nothing may be fetched at run time: keep ultralytics from looking for fonts,
# pretrained weights or updates.
os.environ.setdefault("YOLO_OFFLINE", "1")


def _write_one(args) -> int:
    root, split, seed, w, h, recipe = args
    sample = labelled_image(seed, w, h, recipe=recipe)
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
                     workers: int = 2, progress=None, recipe: int = 1) -> Path:
    """Render a YOLO-format data set; returns the path of its data.yaml.

    Train and validation images come from disjoint seed ranges, so validation
    pictures are never training pictures.
    """
    root = Path(out)
    for split in ("train", "val"):
        shutil.rmtree(root / "images" / split, ignore_errors=True)
        shutil.rmtree(root / "labels" / split, ignore_errors=True)
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
    jobs = [(root, "train", seed * 1_000_000 + i, *size, recipe) for i in range(n_train)]
    jobs += [(root, "val", seed * 1_000_000 + 500_000 + i, *size, recipe) for i in range(n_val)]
    done = 0
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(_write_one, jobs, chunksize=16):
            done += 1
            if progress:
                progress(done, len(jobs))
    data = {"path": str(root.resolve()), "train": "images/train", "val": "images/val", "names": dict(enumerate(CLASSES))}
    (root / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    (root / "recipe.json").write_text(json.dumps({"seed": seed, "n_train": n_train, "n_val": n_val, "size": size,
                                                  "recipe": recipe}))
    return root / "data.yaml"


def train(data_yaml: str | Path, out: str | Path, model: str = "yolo11n.yaml", epochs: int = 30, imgsz: int = 320,
          batch: int = 32, resume: bool = False, name: str = "train", **overrides) -> Path:
    """Train (from scratch with a .yaml, or fine-tune from a .pt); returns best.pt.

    ``resume`` continues an interrupted run from its last.pt.
    """
    from ultralytics import YOLO

    out = Path(out).resolve()
    last = out / name / "weights" / "last.pt"
    if resume and last.exists():
        yolo = YOLO(str(last))
        yolo.train(resume=True)
    else:
        yolo = YOLO(model)
        # From scratch on two CPU cores: a short warm-up and a brisk AdamW rate, or
        # the few epochs the budget allows are spent warming up.
        args = dict(data=str(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch, device="cpu", workers=2,
                    project=str(out), name=name, exist_ok=True, plots=False, amp=False, seed=0, deterministic=False,
                    fliplr=0.5, mosaic=1.0, close_mosaic=2, warmup_epochs=1, optimizer="AdamW", lr0=0.002,
                    cache="ram", patience=100, verbose=True)
        args.update(overrides)
        yolo.train(**args)
    return out / name / "weights" / "best.pt"
