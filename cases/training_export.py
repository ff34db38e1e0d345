"""Reviewed draft cases → a YOLO data set, so analysts' decisions train the next model.

What each decision teaches (the reasons are the review console's):

* **approved** — a positive: the case's clean evidence picture (clean_frames.py,
  never the snapshot with the box drawn), labelled with the detections that made
  up the case's box, each as its class. A case reclassified to another event type
  keeps its box when its label is one of the new type's classes, or when the new
  type has only one class (reclassified to dust: the box is the plume); otherwise
  which class the boxed thing is was never recorded, and the case is skipped.
* **rejected, false_alarm** — a hard negative: the same kind of picture with an
  empty label file ("nothing to find here"). Only as clean as the analyst's
  decision: a picture may hold other true violations the case did not box.
* **rejected, duplicate** — skipped: the detector was right, the case was a copy.
* **rejected, permitted** — skipped: a permitted structure is still a structure;
  the zone rules, not the detector, decide what is permitted, and as a negative it
  would teach the model to miss sheds.
* **rejected, other** — skipped: the note says why, but not what the model got wrong.
* **draft** — skipped, unless asked for (then a positive marked unreviewed).

Pictures are grouped by content: two cases on one sample give one image whose
labels are all their positive boxes. Each picture goes wholly to train or to val
by a seeded hash of its content key, so a case is never in both, and a case keeps
its split when the data set is exported again with more cases (unless a split
lacked a picture with boxes and one was moved to it: see ``_split``).
"""
from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import yaml
from sqlalchemy.orm import Session

from . import clean_frames
from .clean_frames import CleanFrameView
from .evidence_store import EvidenceStore
from .store import DraftCaseView, Store

WRITES = ("images", "labels", "data.yaml", "manifest.json", "README.md")  # what --force may replace
BOX_TOLERANCE_PX = 1.0  # the recorded detections must make up the case's box to within this


class ExportError(ValueError):
    """Nothing sensible to export, or nowhere to put it; the message says which."""


@dataclass
class CaseEntry:
    """One case's part in the data set."""

    case: DraftCaseView
    use: str  # positive | negative | skipped
    why: str
    labels: list[tuple[int, float, float, float, float]] = field(default_factory=list)  # class, cx, cy, w, h
    frame: CleanFrameView | None = None
    image: str | None = None
    split: str | None = None


@dataclass
class ExportResult:
    out: Path
    data_yaml: Path
    entries: list[CaseEntry]
    images: dict[str, int]  # split -> pictures

    def count(self, use: str) -> int:
        return sum(1 for e in self.entries if e.use == use)


def export_dataset(store: Store, evidence: EvidenceStore, out: str | Path, class_names: list[str],
                   event_labels: dict[str, frozenset[str]], *, since: datetime | None = None,
                   until: datetime | None = None, val_fraction: float = 0.1, seed: int = 0,
                   include_drafts: bool = False, force: bool = False, weights_name: str = "",
                   progress: Callable[[str, int, int], None] | None = None) -> ExportResult:
    """Write the reviewed cases opened in [since, until) as a YOLO data set under ``out``.

    ``class_names`` are the model's classes in id order (they become data.yaml's
    names); ``event_labels`` the detector labels each event type's rule counts.
    """
    if not 0 < val_fraction < 1:
        raise ExportError(f"--val-fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    out = Path(out)
    _prepare(out, force)
    statuses = ["approved", "rejected"] + (["draft"] if include_drafts else [])
    cases = [c for status in statuses for c in _all(store, status, since, until)]
    if not cases:
        drafts = store.list_cases(status="draft", since=since, until=until, limit=1).total
        raise ExportError(f"no reviewed cases{_period(since, until)}"
                          + (f" ({drafts} drafts are waiting for review)" if drafts else ""))
    cases.sort(key=lambda c: c.case_no)
    with Session(store.engine) as s:
        twins = clean_frames.of_snapshots(s, [c.snapshot_key for c in cases if c.snapshot_key])
    class_ids = {n: i for i, n in enumerate(class_names)}
    entries = [_decide(c, twins.get(c.snapshot_key or ""), class_ids, event_labels) for c in cases]

    groups: dict[str, list[CaseEntry]] = {}
    for e in entries:
        if e.use != "skipped":
            groups.setdefault(e.frame.frame_key, []).append(e)
    # Every picture is read and decoded once before anything is written: a missing or
    # broken evidence file costs its cases, not the export.
    keys = list(groups)
    for done, key in enumerate(keys, 1):
        problem = _unreadable(evidence, key)
        if problem:
            for e in groups.pop(key):
                e.use, e.why, e.labels = "skipped", problem, []
        if progress:
            progress("checking evidence", done, len(keys))
    if len(groups) < 2:
        raise ExportError(f"only {len(groups)} usable picture(s) among {len(cases)} reviewed cases"
                          f"{_period(since, until)}; a data set needs at least 2 (training and validation)"
                          + _skip_summary(entries))

    splits = _split(list(groups), val_fraction, seed,
                    {k for k, members in groups.items() if any(e.use == "positive" for e in members)})
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    images = {"train": 0, "val": 0}
    for done, (key, members) in enumerate(groups.items(), 1):
        split, name = splits[key], members[0].case.case_no  # (members are in case-number order)
        shutil.copyfile(evidence.path(key), out / "images" / split / f"{name}.jpg")
        lines = sorted({line for e in members if e.use == "positive" for line in e.labels})
        (out / "labels" / split / f"{name}.txt").write_text(
            "".join(f"{c} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n" for c, cx, cy, w, h in lines))
        for e in members:
            e.image, e.split = f"images/{split}/{name}.jpg", split
        images[split] += 1
        if progress:
            progress("writing", done, len(groups))

    data_yaml = out / "data.yaml"
    data_yaml.write_text("# YOLO data set written by `patrol export-dataset` from the analysts' reviewed cases;\n"
                         "# paths are relative to this file's folder. See README.md and manifest.json.\n"
                         + yaml.safe_dump({"train": "images/train", "val": "images/val",
                                           "names": dict(enumerate(class_names))}, sort_keys=False, allow_unicode=True))
    options = {"since": since.isoformat() if since else None, "until": until.isoformat() if until else None,
               "val_fraction": val_fraction, "seed": seed, "include_drafts": include_drafts}
    result = ExportResult(out, data_yaml, entries, images)
    (out / "manifest.json").write_text(json.dumps(_manifest(result, class_names, weights_name, options),
                                                  ensure_ascii=False, indent=1))
    (out / "README.md").write_text(_readme(result, class_names, weights_name, options))
    return result


# -- deciding --------------------------------------------------------------------------------


def _decide(case: DraftCaseView, frame: CleanFrameView | None, class_ids: dict[str, int],
            event_labels: dict[str, frozenset[str]]) -> CaseEntry:
    entry = CaseEntry(case, "skipped", "", frame=frame)
    if case.status == "rejected":
        reason = case.review_reason
        if reason == "duplicate":
            entry.why = "duplicate of another case: the detector was right, the case was a copy"
        elif reason == "permitted":
            entry.why = ("permitted: a permitted structure is still a structure (the zone rules decide "
                         "permission, not the detector); neither a positive nor a negative")
        elif reason != "false_alarm":
            entry.why = f"rejected for another reason ({case.review_note or reason}): not a verdict on the detector"
        if entry.why:
            return entry
    if not case.snapshot_key:
        entry.why = "no evidence picture"
        return entry
    if frame is None:
        entry.why = ("no clean evidence frame (stored before clean frames were kept); "
                     "its snapshot has the box drawn on it")
        return entry
    if case.status == "rejected":  # a false alarm
        entry.use, entry.why = "negative", "false alarm: an empty label file (nothing to find here)"
        return entry
    labels, why = _labels(case, frame, class_ids, event_labels)
    if labels is None:
        entry.why = why
        return entry
    entry.use, entry.labels = "positive", labels
    entry.why = ("approved" if case.status == "approved" else "draft, not reviewed (--include-drafts)") + (
        f"; {why}" if why else "")
    return entry


def _labels(case: DraftCaseView, frame: CleanFrameView, class_ids: dict[str, int],
            event_labels: dict[str, frozenset[str]]):
    """YOLO label rows of a positive case, or (None, why not)."""
    boxes = frame.boxes or [[case.label, case.confidence, *case.bbox]]
    union = [min(b[2] for b in boxes), min(b[3] for b in boxes), max(b[4] for b in boxes), max(b[5] for b in boxes)]
    if any(abs(a - b) > BOX_TOLERANCE_PX for a, b in zip(union, case.bbox)):
        return None, f"its evidence record's boxes {_fmt(union)} do not make up its box {_fmt(case.bbox)}"
    fits = event_labels.get(case.event_type, frozenset())
    rows, notes = [], []
    for label, _conf, x1, y1, x2, y2 in boxes:
        name = label
        if name not in fits:
            if len(fits) != 1:
                return None, (f"reviewed as {case.event_type}, but its detection '{label}' is not one of that type's "
                              f"classes ({', '.join(sorted(fits)) or 'none'}) and which one it is was not recorded")
            name = next(iter(fits))
            notes.append(f"'{label}' labelled {name}, the only class of {case.event_type}")
        if name not in class_ids:
            return None, f"class '{name}' is not one of the model's classes"
        w, h = frame.width, frame.height
        x1, x2 = sorted((min(max(x1, 0.0), w), min(max(x2, 0.0), w)))
        y1, y2 = sorted((min(max(y1, 0.0), h), min(max(y2, 0.0), h)))
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue  # outside the picture
        rows.append((class_ids[name], (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
    if not rows:
        return None, "its box lies outside the picture"
    return rows, "; ".join(notes)


def _unreadable(evidence: EvidenceStore, key: str) -> str | None:
    try:
        data = evidence.get(key)
    except FileNotFoundError:
        return f"evidence file missing: {key}"
    if cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
        return f"evidence file is not a readable picture: {key}"
    return None


def _split(keys: list[str], val_fraction: float, seed: int, positive: set[str]) -> dict[str, str]:
    """Seeded and stable: a picture's split depends only on it and the seed. Each split
    gets at least one picture, and one with boxes when there are two such (validation
    of negatives alone measures nothing; training on them alone teaches nothing)."""
    score = {k: int(hashlib.sha256(f"{seed}:{k}".encode()).hexdigest()[:13], 16) / 16 ** 13 for k in keys}
    splits = {k: "val" if score[k] < val_fraction else "train" for k in keys}

    def ensure(split: str, pool: list[str], pick) -> None:
        if pool and not any(splits[k] == split for k in pool):
            splits[pick(pool, key=score.get)] = split

    with_boxes = [k for k in keys if k in positive]
    if len(with_boxes) >= 2:
        ensure("val", with_boxes, min)
        ensure("train", with_boxes, max)
    ensure("val", keys, min)
    ensure("train", keys, max)
    return splits


# -- reading and writing ---------------------------------------------------------------------


def _all(store: Store, status: str, since, until) -> list[DraftCaseView]:
    """Every case of a status, paged. Reviewed statuses only grow, so a review
    during the paging shifts a page by one (a repeat, dropped), never past a case."""
    seen: dict[int, DraftCaseView] = {}
    offset = 0
    while True:
        page = store.list_cases(status=status, since=since, until=until, limit=500, offset=offset)
        for c in page.items:
            seen.setdefault(c.id, c)
        offset += len(page.items)
        if not page.items or offset >= page.total:
            return list(seen.values())


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ExportError(f"{out} is not empty; choose an empty folder, or --force to replace a previous "
                              f"export there ({', '.join(WRITES)})")
        for name in WRITES:
            target = out / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _manifest(result: ExportResult, class_names, weights_name, options) -> dict:
    versions: dict[str, int] = {}
    for e in result.entries:
        if e.use != "skipped":
            versions[e.case.model_version or "unknown"] = versions.get(e.case.model_version or "unknown", 0) + 1
    return {
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "classes": list(class_names),
        "class_names_from": weights_name,
        "options": options,
        "counts": {"cases": len(result.entries), "positive": result.count("positive"),
                   "negative": result.count("negative"), "skipped": result.count("skipped"),
                   "images": result.images},
        "model_versions": versions,  # of the detections the exported cases came from
        "cases": [{
            "case_no": e.case.case_no, "status": e.case.status, "review_reason": e.case.review_reason,
            "review_note": e.case.review_note, "reviewer": e.case.reviewer,
            "reviewed_at": e.case.reviewed_at.isoformat() if e.case.reviewed_at else None,
            "event_type": e.case.event_type, "label": e.case.label, "confidence": round(e.case.confidence, 4),
            "model_version": e.case.model_version, "source_id": e.case.source_id,
            "use": e.use, "why": e.why, "image": e.image, "split": e.split,
            "labels": [[c, round(cx, 6), round(cy, 6), round(w, 6), round(h, 6)] for c, cx, cy, w, h in e.labels],
            # which evidence was used: the clean frame (training picture) and the snapshot the analyst judged
            "evidence": {"frame": e.frame.frame_key if e.frame else None, "snapshot": e.case.snapshot_key},
        } for e in result.entries],
    }


def _readme(result: ExportResult, class_names, weights_name, options) -> str:
    skipped: dict[str, int] = {}
    for e in result.entries:
        if e.use == "skipped":
            head = e.why.split(":")[0].split(" (")[0]
            skipped[head] = skipped.get(head, 0) + 1
    period = _period(_parse(options["since"]), _parse(options["until"])) or " (all dates)"
    lines = [
        "# City Patrol training data from reviewed cases", "",
        f"Written by `patrol export-dataset` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC from the cases "
        f"opened{period}.", "",
        f"* {result.count('positive')} positives (approved cases: the clean evidence picture, each detection that "
        "made up the case's box as its class)",
        f"* {result.count('negative')} hard negatives (cases rejected as false alarms: the picture with an empty "
        "label file)",
        f"* {result.count('skipped')} skipped" + (": " + ", ".join(f"{n} {k}" for k, n in sorted(skipped.items()))
                                                   if skipped else ""),
        f"* {result.images['train']} training and {result.images['val']} validation pictures; each picture (and so "
        f"each case) is in one split only (seed {options['seed']}, val fraction {options['val_fraction']})", "",
        f"Classes (from {weights_name or 'the model'}): " + ", ".join(f"{i} {n}" for i, n in enumerate(class_names)),
        "",
        "A negative is only as clean as the analyst's decision: the case's box was a false alarm, but the picture "
        "may hold other true violations that no case boxed, and the model is taught that they are background. "
        "Likewise a positive's label file lists only its cases' boxes. Every case, its decision and the evidence "
        "used are in `manifest.json`.", "",
        "Fine-tune the current model on it:", "",
        "```", f"patrol train --data {result.data_yaml} --name city-{datetime.now():%Y%m%d}", "```", "",
    ]
    return "\n".join(lines)


def _skip_summary(entries: list[CaseEntry]) -> str:
    reasons: dict[str, int] = {}
    for e in entries:
        if e.use == "skipped":
            head = e.why.split(":")[0].split(" (")[0]
            reasons[head] = reasons.get(head, 0) + 1
    return "; skipped: " + ", ".join(f"{n} {k}" for k, n in sorted(reasons.items())) if reasons else ""


def _period(since: datetime | None, until: datetime | None) -> str:
    if since and until:
        return f" from {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M}"
    if since:
        return f" since {since:%Y-%m-%d %H:%M}"
    if until:
        return f" before {until:%Y-%m-%d %H:%M}"
    return ""


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _fmt(box) -> str:
    return "(" + ", ".join(f"{v:.0f}" for v in box) + ")"
