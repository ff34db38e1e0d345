"""Evaluation on held-out data: box mAP per class, and event-level precision, recall
and time to first detection on videos with ground truth.

Held-out means rendered from other seeds (and, for videos, other scenes) than the
training set. An event counts as found when a case of the same type overlaps it in
time; every other case is a false one, including a second case for the same event.
"""
from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, get_args

import numpy as np

from core.analyze import analyze_video, side_files
from core.wiring import Parts
from streams.sources import SourceKind
from vision.classes import CLASS_ID, CLASSES
from vision.detections import box_iou

DUST = CLASS_ID["dust"]

HELDOUT_IMAGE_SEED = 7  # the training stages use other seeds (models/README.md); patrol train refuses this one
HELDOUT_VIDEO_SEED = 90_000
HELDOUT_VIDEOS = 48  # patrol eval's default --videos


@dataclass
class EventScore:
    truths: int = 0
    found: int = 0
    cases: int = 0
    false_cases: int = 0
    ttfd: list[float] = field(default_factory=list)

    def add(self, other: "EventScore") -> None:
        self.truths += other.truths
        self.found += other.found
        self.cases += other.cases
        self.false_cases += other.false_cases
        self.ttfd += other.ttfd

    def as_dict(self) -> dict:
        ttfd = sorted(self.ttfd)
        return {
            "ground_truth_events": self.truths, "found": self.found, "cases": self.cases,
            "false_cases": self.false_cases,
            "recall": round(self.found / self.truths, 4) if self.truths else None,
            "precision": round((self.cases - self.false_cases) / self.cases, 4) if self.cases else None,
            "time_to_first_detection_s": {
                "median": round(ttfd[len(ttfd) // 2], 1) if ttfd else None,
                "max": round(ttfd[-1], 1) if ttfd else None,
            },
        }


def video_set_folder(seed: int, kind: str | None, count: int) -> str:
    """The work folder of a set of clips: ``videos`` for the held-out set, else one per
    seed and kind. Another set is for developing rules and models; it may not share seeds
    with the held-out clips, or the held-out check would no longer be held out."""
    if seed == HELDOUT_VIDEO_SEED and kind is None:
        return "videos"
    if seed < HELDOUT_VIDEO_SEED + HELDOUT_VIDEOS and HELDOUT_VIDEO_SEED < seed + count:
        raise ValueError(f"clip seeds {seed}-{seed + count - 1} overlap the held-out clips "
                         f"({HELDOUT_VIDEO_SEED}-{HELDOUT_VIDEO_SEED + HELDOUT_VIDEOS - 1}); choose others")
    return f"videos-{kind or 'any'}-{seed}"


def make_heldout_videos(out: Path, count: int, seed: int = HELDOUT_VIDEO_SEED, seconds: float = 40.0,
                        progress: Callable[[int, int], None] | None = None, kind: str | None = None) -> list[str]:
    """Render ``count`` clips from ``seed`` on (``kind``: only that kind of source) into
    ``out``, kept: a clip already there is not rendered again. Returns their names."""
    from training.synth_video import random_clip, render

    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        clip = random_clip(seed + i, kind=kind, seconds=seconds)
        if not (out / f"{clip.name}.json").exists():
            render(clip, out)
        names.append(clip.name)
        if progress:
            progress(i + 1, count)
    return names


def score_video(truth: dict, cases: list, opened_at: dict[int, float]) -> dict[str, EventScore]:
    """Match cases to ground-truth events of one video, per event type."""
    scores: dict[str, EventScore] = {}
    used: set[int] = set()
    for ev in truth["events"]:
        s = scores.setdefault(ev["event_type"], EventScore())
        s.truths += 1
        hits = [c for c in cases if c.event_type == ev["event_type"] and c.first_seen <= ev["end"]
                and c.last_seen >= ev["start"] and c.id not in used]
        if hits:
            first = min(hits, key=lambda c: opened_at.get(c.id, c.first_seen))
            used.add(first.id)
            s.found += 1
            s.ttfd.append(max(0.0, opened_at.get(first.id, first.first_seen) - ev["start"]))
    for c in cases:
        s = scores.setdefault(c.event_type, EventScore())
        s.cases += 1
        if c.id not in used:
            s.false_cases += 1
    return scores


def read_truth(video: Path) -> dict:
    """The ground truth beside a clip (X.json for X.mp4): the kind of camera that filmed it and
    its events. A missing or unknown kind is an error, not a fixed camera: the rules differ by kind."""
    path = video.with_suffix(".json")
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: not a readable ground truth ({err})") from None
    kinds = get_args(SourceKind)
    if not isinstance(truth, dict) or truth.get("source_kind") not in kinds or not isinstance(truth.get("events"), list):
        raise ValueError(f"{path}: a ground truth needs source_kind (one of {', '.join(kinds)}) and a list of events")
    return truth


def evaluate_videos(parts: Parts, folder: Path, progress: Callable[[int, int], None] | None = None,
                    out: Path | None = None, only: list[str] | None = None) -> dict:
    """Analyse every clip with ground truth in ``folder`` (``only``: the clips of these names,
    where a folder holds more than was asked for); with ``out``, each case's evidence
    snapshot (the box as the analyst sees it) is kept under ``out/cases``."""
    videos = sorted(p for p in folder.glob("*.mp4") if p.with_suffix(".json").exists()
                    and (only is None or p.stem in only))
    if not videos:
        raise FileNotFoundError(f"{folder}: no videos with ground truth (X.mp4 + X.json)")
    total: dict[str, EventScore] = {}
    per_video = []
    with tempfile.TemporaryDirectory(prefix="patrol-eval-") as tmp:
        for i, video in enumerate(videos):
            truth = read_truth(video)
            run_parts = parts.fork(f"sqlite:///{Path(tmp) / f'{i}.db'}", Path(tmp) / "evidence")
            result = analyze_video(run_parts, video, kind=truth["source_kind"], **side_files(video))
            scores = score_video(truth, result.cases, result.opened_at)
            for et, s in scores.items():
                total.setdefault(et, EventScore()).add(s)
            per_video.append({"video": video.name, "truth": [e["event_type"] for e in truth["events"]],
                              "cases": [(c.event_type, round(c.first_seen, 1), round(c.last_seen, 1)) for c in result.cases],
                              "found": sum(s.found for s in scores.values()),
                              "false_cases": sum(s.false_cases for s in scores.values()),
                              "snapshots": _keep_snapshots(result.cases, Path(tmp) / "evidence", video.stem, out)})
            if progress:
                progress(i + 1, len(videos))
    overall = EventScore()
    for s in total.values():
        overall.add(s)
    return {"videos": len(videos), "overall": overall.as_dict(),
            "per_event_type": {k: v.as_dict() for k, v in sorted(total.items())}, "per_video": per_video}


def evaluate_photos(parts: Parts, photos: list[tuple[str, np.ndarray]]) -> dict:
    """Whole real pictures without a violation (``training.photos.heldout_photos``): every
    event the model reports on one is a false alarm on ordinary footage, which rendered
    held-out data cannot show."""
    from vision.rules import image_events

    rows = []
    for name, image in photos:
        dets = parts.detector.detect([image])[0]
        rows.append({"photo": name, "events": image_events(image, dets, parts.rules),
                     "detections": [[lab, round(float(c), 3)] for lab, c in zip(dets.labels, dets.confidence)]})
    return {"photos": len(rows), "with_event": sum(bool(r["events"]) for r in rows), "per_photo": rows}


def _keep_snapshots(cases: list, evidence: Path, stem: str, out: Path | None) -> list[str]:
    if out is None:
        return []
    kept = []
    (out / "cases").mkdir(parents=True, exist_ok=True)
    for n, case in enumerate(cases):
        src = evidence / case.snapshot_key if case.snapshot_key else None
        if src is not None and src.is_file():
            name = f"cases/{stem}-{n}-{case.event_type}.jpg"
            shutil.copyfile(src, out / name)
            kept.append(name)
    return kept


def example_frames(weights: Path, images: Path, imgsz: int, conf: float, path: Path, count: int = 12) -> Path:
    """A contact sheet of held-out pictures: ground truth in thin white, the model's boxes
    in colour with label and confidence, so a person sees what the numbers mean."""
    import cv2
    import numpy as np
    from vision.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO

    files = sorted(images.glob("*.jpg"))[:count]
    if not files:
        raise FileNotFoundError(f"{images}: no pictures")
    model = YOLO(str(weights), task="detect")
    tiles = []
    for f in files:
        img = cv2.imread(str(f))
        h, w = img.shape[:2]
        label_file = f.parent.parent.parent / "labels" / f.parent.name / f"{f.stem}.txt"
        for line in (label_file.read_text().split("\n") if label_file.exists() else []):
            if line.strip():
                _, cx, cy, bw, bh = map(float, line.split())
                cv2.rectangle(img, (int((cx - bw / 2) * w), int((cy - bh / 2) * h)),
                              (int((cx + bw / 2) * w), int((cy + bh / 2) * h)), (255, 255, 255), 1)
        r = model.predict(img, imgsz=imgsz, conf=conf, device="cpu", verbose=False)[0]
        for (x1, y1, x2, y2), c, p in zip(r.boxes.xyxy.tolist(), r.boxes.cls.tolist(), r.boxes.conf.tolist()):
            colour = tuple(int(v) for v in np.random.default_rng(int(c) + 5).integers(60, 256, 3))
            cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), colour, 2)
            cv2.putText(img, f"{CLASSES[int(c)]} {p:.2f}", (int(x1), max(12, int(y1) - 3)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.45, colour, 1, cv2.LINE_AA)
        tiles.append(cv2.resize(img, (384, 230) if w >= h else (230, 384)))
    cell = np.zeros((384, 384, 3), np.uint8)
    cells = []
    for t in tiles:
        c = cell.copy()
        c[:t.shape[0], :t.shape[1]] = t
        cells.append(c)
    while len(cells) % 4:
        cells.append(cell.copy())
    sheet = np.vstack([np.hstack(cells[i:i + 4]) for i in range(0, len(cells), 4)])
    cv2.imwrite(str(path), sheet, [cv2.IMWRITE_JPEG_QUALITY, 85])
    return path


def evaluate_boxes(weights: Path, data_yaml: Path, imgsz: int, out: Path | None = None) -> dict:
    """Box mAP50 and mAP50-95 per class with ultralytics' validator; PR curve to ``out``."""
    import logging
    import sys

    from vision.detector import import_ultralytics

    import_ultralytics()
    from ultralytics import YOLO
    from ultralytics.utils import LOGGER

    # the validator's chatter goes to stderr: stdout carries results; the streams are put back
    # afterwards, so no logger keeps a stream that its caller may close
    handlers = [h for h in LOGGER.handlers if isinstance(h, logging.StreamHandler)]
    before = [h.setStream(sys.stderr) for h in handlers]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # and so do its progress bars
            metrics = YOLO(str(weights)).val(data=str(data_yaml), imgsz=imgsz, batch=16, device="cpu", plots=False,
                                             verbose=False, workers=2, project=str(out or tempfile.gettempdir()),
                                             name="val", exist_ok=True)
    finally:
        for h, stream in zip(handlers, before):
            if stream is not None:  # None: it was stderr already
                h.setStream(stream)
    box = metrics.box
    names = metrics.names
    per_class = {}
    for i, cls in enumerate(box.ap_class_index):
        per_class[names[int(cls)]] = {"map50": round(float(box.ap50[i]), 4), "map50_95": round(float(box.ap[i]), 4)}
    if out is not None:
        _plot_pr(box.px, box.prec_values, box.ap_class_index, names, box.ap50, out / "pr_curve.png")
    return {"map50": round(float(box.map50), 4), "map50_95": round(float(box.map), 4), "per_class": per_class}


# A plume counts as found by a `dust` box of at least this IoU and confidence; a `dust` box
# this confident that overlaps no plume that well is a false one.
PLUME_IOU, PLUME_FOUND_CONF, PLUME_FALSE_CONF = 0.5, 0.1, 0.25


def _dust_labels(label_file: Path, width: int, height: int, dust: int) -> list[list[float]]:
    boxes = []
    for line in label_file.read_text().split("\n") if label_file.exists() else []:
        if line.strip() and int(line.split()[0]) == dust:
            cx, cy, w, h = map(float, line.split()[1:])
            boxes.append([(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height])
    return boxes


def plumes_by_view(weights: Path, dataset: Path, imgsz: int, recipe: int) -> dict:
    """The `dust` boxes on held-out pictures split by what is behind the plume: a real
    photograph (the held-out ones) or a rendered view: the class's mAP hides where it fails."""
    import cv2

    from training.synth import PHOTO_VIEWS, view_of
    from vision.detector import Detector

    # NMS at ultralytics' own IoU (0.7), as for the box metrics, not the patrol's 0.5
    detector = Detector(weights, imgsz=imgsz, conf=PLUME_FOUND_CONF, iou=0.7)
    out = {g: {"plumes": 0, "found": 0, "false_boxes": 0, "pictures": 0} for g in ("photograph", "rendered")}
    for path in sorted((dataset / "images" / "val").glob("*.jpg")):
        group = out["photograph" if view_of(int(path.stem), recipe) in PHOTO_VIEWS else "rendered"]
        image = cv2.imread(str(path))
        truth = _dust_labels(dataset / "labels" / "val" / f"{path.stem}.txt", image.shape[1], image.shape[0], DUST)
        dets = detector.detect([image])[0]
        boxes = [(float(c), b.tolist()) for c, k, b in zip(dets.confidence, dets.class_id, dets.xyxy) if k == DUST]
        group["pictures"] += 1
        group["plumes"] += len(truth)
        overlap = box_iou(truth, [b for _, b in boxes])  # plume by box
        group["found"] += int((overlap >= PLUME_IOU).any(axis=1).sum())
        group["false_boxes"] += sum(c >= PLUME_FALSE_CONF and not (overlap[:, j] >= PLUME_IOU).any()
                                    for j, (c, _) in enumerate(boxes))
    return out


def _plot_pr(px, prec, class_index, names, ap50, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for row, cls, ap in zip(prec, class_index, ap50):
        ax.plot(px, row, linewidth=1.2, label=f"{names[int(cls)]} {ap:.3f}")
    ax.set_xlabel("Recall")
    ax.set_ylabel("Precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall at IoU 0.5, held-out images")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(result: dict, out: Path) -> Path:
    looks = f" at {result['looks']}" if result.get("looks") else ""
    lines = ["# Evaluation report", "", f"Model: `{result['model']}`{looks}", ""]
    if "boxes" in result:
        b = result["boxes"]
        lines += ["## Boxes (held-out images)", "", f"mAP50 {b['map50']:.3f}, mAP50-95 {b['map50_95']:.3f}", "",
                  "| class | mAP50 | mAP50-95 |", "| --- | --- | --- |"]
        lines += [f"| {c} | {v['map50']:.3f} | {v['map50_95']:.3f} |" for c, v in b["per_class"].items()]
        if b.get("plume_labels"):
            lines += ["", "Plumes are labelled " + ("one box per cloud (plumes that overlap or touch are one)."
                                                    if b["plume_labels"] == "cloud" else "one box per plume "
                                                    "(`--plume-labels each`).")]
        if b.get("dust_by_view"):
            lines += ["", f"`dust` by what lies behind the plume (found: a box of IoU ≥ {PLUME_IOU} at confidence "
                          f"≥ {PLUME_FOUND_CONF}; false: a box at ≥ {PLUME_FALSE_CONF} on no plume):", "",
                      "| background | pictures | plumes | found | false boxes |", "| --- | --- | --- | --- | --- |"]
            lines += [f"| {g} | {v['pictures']} | {v['plumes']} | {v['found']} | {v['false_boxes']} |"
                      for g, v in b["dust_by_view"].items()]
        lines += ["", "![PR curve](pr_curve.png)", ""]
        if b.get("examples"):
            lines += ["Example held-out pictures (ground truth thin white, the model's boxes in colour):", "",
                      f"![examples]({b['examples']})", ""]
    if "events" in result:
        e = result["events"]
        lines += ["## Events (held-out videos)", "", f"{e['videos']} videos.", "",
                  "| event type | truth | found | recall | cases | false | precision | TTFD median s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- |"]
        for name, v in [("all", e["overall"]), *e["per_event_type"].items()]:
            lines.append(f"| {name} | {v['ground_truth_events']} | {v['found']} | {v['recall']} | {v['cases']} | "
                         f"{v['false_cases']} | {v['precision']} | {v['time_to_first_detection_s']['median']} |")
        lines += ["", "| video | ground truth | cases (type, first s, last s) | found | false | snapshots |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for v in e["per_video"]:
            shots = " ".join(f"[{Path(s).stem}]({s})" for s in v.get("snapshots", []))
            lines.append(f"| {v['video']} | {', '.join(v['truth']) or 'none'} | "
                         f"{'; '.join(f'{t} {a}-{b}' for t, a, b in v['cases']) or 'none'} | {v['found']} | "
                         f"{v['false_cases']} | {shots} |")
    if "photos" in result:
        p = result["photos"]
        lines += ["", "## Held-out real pictures (no violation in them)", "",
                  f"{p['with_event']} of {p['photos']} with an event (each one a false alarm)."]
        if p.get("not_installed"):
            lines += ["", f"Not installed here, so not checked: {', '.join(p['not_installed'])} "
                          "(`apt-get install opencv-doc` adds the Debian package's pictures)."]
        lines += ["", "| photo | events | detections |", "| --- | --- | --- |"]
        lines += [f"| {r['photo']} | {', '.join(r['events']) or 'none'} | "
                  f"{', '.join(f'{lab} {c:.2f}' for lab, c in r['detections']) or 'none'} |" for r in p["per_photo"]]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


__all__ = ["CLASSES", "evaluate_boxes", "evaluate_photos", "evaluate_videos", "example_frames", "make_heldout_videos",
           "plumes_by_view", "score_video", "write_report"]
