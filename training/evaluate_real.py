"""Evaluation on real pictures only (``patrol eval --real``): the set of
``training/real/manifest.csv``, brought here by ``patrol real-set fetch``.

Three figures, each on the chosen split (``eval`` by default: scenes never trained on):
- AP50 per class, where the split holds real boxes of that class;
- recall per event type on real positives: a picture counts as found when the rules accept a
  detection of that event type (its labels, its confidence, the plume check for dust) that
  overlaps one of the picture's labelled boxes of that type;
- the share of real no-violation pictures on which the rules accept any detection at all.

A picture is judged alone, as one sample. On a live source an event needs k sightings in n
samples, so a picture that is a sighting here is a false alarm waiting for its k-1 others: the
figure is an upper bound of what a source's stream would raise.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import replace
from pathlib import Path
from typing import Callable

import cv2

from core.wiring import Parts
from streams.frame import Frame
from training.real_set import MANIFEST, RealPicture, label_rows, labels_of, load_manifest
from vision.classes import CLASSES
from vision.detections import box_iou, centre_inside
from vision.rules import EventRule

# A detection answers a labelled box when they overlap at least this much (IoU), or when the
# detection's centre lies in the box: a real plume or hoarding has no one right extent.
MATCH_IOU = 0.1


def event_type_of(class_id: int, rules) -> str | None:
    name = CLASSES[class_id]
    return next((r.event_type for r in rules if name in r.labels), None)


def _answered(dets: list, truths: list) -> bool:
    """Whether any accepted detection answers any labelled box (all pairs at once)."""
    if not dets or not truths:
        return False
    return bool(((box_iou(dets, truths) >= MATCH_IOU) | centre_inside(dets, truths)).any())


# The operating curve: every rule's confidence floor moved by the same amount. It shows what a
# deployment buys and pays by raising or lowering `rules.<type>.min_confidence`, and compares two
# models at the same rate of false sightings. It is reported, never used to choose the defaults
# (that would tune them on the eval scenes). Below the detector's own `model.conf` nothing is seen.
FLOOR_SHIFTS = (-0.10, -0.05, 0.0, 0.05, 0.10, 0.15)


def shifted_rules(rules, shift: float) -> dict[str, EventRule]:
    return {r.event_type: EventRule(replace(r, min_confidence=round(r.min_confidence + shift, 4)), [], "real")
            for r in rules}


def _verdict(frame: Frame, dets, truths: dict[str, list], rules_by_type: dict[str, EventRule]) -> tuple[list, list]:
    raised, found = [], []
    for et, rule in rules_by_type.items():
        accepted = [box for group in rule.relevant(frame, dets).values() for box in group.xyxy.tolist()]
        if accepted:
            raised.append(et)
        if _answered(accepted, truths.get(et, [])):
            found.append(et)
    return sorted(raised), sorted(found)


def judge_picture(parts: Parts, image, rows, rules_by_type: dict[str, EventRule],
                  shifted: dict[float, dict[str, EventRule]] | None = None) -> dict:
    """The event types the rules accept on this picture, and which labelled event types were
    answered by an accepted detection on one of their boxes; with ``shifted`` (floor shift ->
    rules), the same under each of those rule sets (``at_shift``), from the same detections."""
    h, w = image.shape[:2]
    dets = parts.detector.detect([image])[0]
    frame = Frame(source_id="real", ts=0.0, image=image)
    truths: dict[str, list] = defaultdict(list)
    for c, cx, cy, bw, bh in rows:
        et = event_type_of(c, parts.rules)
        if et:
            truths[et].append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
    raised, found = _verdict(frame, dets, truths, rules_by_type)
    verdict = {"raised": raised, "truth": sorted(truths), "found": found,
               "detections": [[lab, round(float(c), 3), *[round(float(v), 1) for v in box]]
                              for lab, c, box in zip(dets.labels, dets.confidence, dets.xyxy)]}
    if shifted:
        verdict["at_shift"] = {str(k): dict(zip(("raised", "found"), _verdict(frame, dets, truths, rules)))
                               for k, rules in shifted.items()}
    return verdict


def _group(p: RealPicture) -> str:
    """Smoke plumes are dust's nearest real material, not dust, and a sandstorm filling the view
    is weather, not a site's plume: both are counted apart."""
    notes = p.notes.lower()
    return next((g for g in ("smoke", "sandstorm") if g in notes), "real")


def evaluate_real(parts: Parts, dataset: Path, split: str = "eval", manifest: Path = MANIFEST,
                  progress: Callable[[int, int], None] | None = None, boxes: bool = True,
                  out: Path | None = None) -> dict:
    """The real-set figures on ``split`` (``all``: both), from pictures under ``dataset``
    (``patrol real-set fetch``'s folder)."""
    from training.evaluate import evaluate_boxes

    labels = labels_of(manifest)
    pictures = [p for p in load_manifest(manifest) if split in ("all", p.split)]
    if not pictures:
        raise FileNotFoundError(f"the manifest has no pictures in split {split!r}")
    rules_by_type = {r.event_type: EventRule(r, [], "real") for r in parts.rules}
    shifted = {k: shifted_rules(parts.rules, k) for k in FLOOR_SHIFTS if k != 0.0}
    recall: dict[str, dict] = defaultdict(lambda: {"positives": 0, "found": 0})
    negatives: dict[str, dict] = defaultdict(lambda: {"pictures": 0, "with_event": 0})
    curve = {k: {"positives": defaultdict(int), "found": defaultdict(int), "negatives": 0, "with_event": 0}
             for k in FLOOR_SHIFTS}
    per_picture, missing = [], []
    for i, p in enumerate(pictures):
        path = dataset / "images" / p.split / f"{p.id}{p.suffix}"
        image = cv2.imread(str(path))
        if image is None:
            missing.append(p.id)
            continue
        rows = label_rows(p.id, labels)
        verdict = judge_picture(parts, image, rows, rules_by_type, shifted)
        at_shift = {k: verdict["at_shift"][str(k)] if k else verdict for k in FLOOR_SHIFTS}
        if p.kind == "negative":
            for key in ("all", p.camera):
                negatives[key]["pictures"] += 1
                negatives[key]["with_event"] += bool(verdict["raised"])
            for k, v in at_shift.items():
                curve[k]["negatives"] += 1
                curve[k]["with_event"] += bool(v["raised"])
        else:
            for et in verdict["truth"]:
                name = f"{et} ({_group(p)})" if et == "dust" and _group(p) != "real" else et
                for key in (name, f"{name}/{p.camera}"):
                    recall[key]["positives"] += 1
                    recall[key]["found"] += et in verdict["found"]
                if name == et:  # the curve follows the event types proper (no smoke, no sandstorms)
                    for k, v in at_shift.items():
                        curve[k]["positives"][et] += 1
                        curve[k]["found"][et] += et in v["found"]
        per_picture.append({"id": p.id, "kind": p.kind, "camera": p.camera, "scene": p.scene, **verdict,
                            "labels": [list(r) for r in rows]})
        if progress:
            progress(i + 1, len(pictures))
    if missing:
        raise FileNotFoundError(f"{len(missing)} pictures of the manifest are not in {dataset} (first: {missing[0]}); "
                                "run `patrol real-set fetch` first")
    for v in recall.values():
        v["recall"] = round(v["found"] / v["positives"], 4) if v["positives"] else None
    for v in negatives.values():
        v["share"] = round(v["with_event"] / v["pictures"], 4) if v["pictures"] else None
    result = {"split": split, "pictures": len(per_picture), "scenes": len({p.scene for p in pictures}),
              "recall": dict(sorted(recall.items())), "no_violation": dict(sorted(negatives.items())),
              "operating_curve": [_curve_point(k, c) for k, c in curve.items()],
              "per_picture": per_picture}
    if boxes and split != "all" and any(p.kind == "positive" for p in pictures):
        val = dataset / f"data-{split}.yaml"
        val.write_text((dataset / "data.yaml").read_text().replace("val: images/eval", f"val: images/{split}"))
        result["boxes"] = evaluate_boxes(parts.settings.model.weights, val, parts.settings.model.imgsz, out)
    return result


def _curve_point(shift: float, c: dict) -> dict:
    return {"floor_shift": shift,
            "no_violation": {"pictures": c["negatives"], "with_event": c["with_event"],
                             "share": round(c["with_event"] / c["negatives"], 4) if c["negatives"] else None},
            "recall": {et: {"positives": n, "found": c["found"][et], "recall": round(c["found"][et] / n, 4)}
                       for et, n in sorted(c["positives"].items())}}


def real_report_lines(r: dict) -> list[str]:
    lines = [f"## Real pictures (split `{r['split']}`: {r['pictures']} pictures, {r['scenes']} scenes)", ""]
    if "boxes" in r:
        b = r["boxes"]
        lines += [f"AP50 on real boxes: {b['map50']:.3f} over the classes that have boxes here", "",
                  "| class | AP50 | AP50-95 |", "| --- | --- | --- |"]
        lines += [f"| {c} | {v['map50']:.3f} | {v['map50_95']:.3f} |" for c, v in b["per_class"].items()]
    lines += ["", "Recall per event type on real positives (the rules accept a detection on a labelled box):", "",
              "| event type | positives | found | recall |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['positives']} | {v['found']} | {v['recall']} |" for k, v in r["recall"].items()]
    lines += ["", "Real no-violation pictures on which the rules accept any detection (each a false sighting):", "",
              "| camera | pictures | with an event | share |", "| --- | --- | --- | --- |"]
    lines += [f"| {k} | {v['pictures']} | {v['with_event']} | {v['share']} |" for k, v in r["no_violation"].items()]
    if r.get("operating_curve"):
        types = sorted({et for point in r["operating_curve"] for et in point["recall"]})
        lines += ["", "Every rule's confidence floor moved by the same amount (`rules.<type>.min_confidence`; "
                  "nothing below the detector's `model.conf` is seen):", "",
                  "| floor shift | no-violation pictures with a sighting | " + " | ".join(types) + " |",
                  "| --- | --- |" + " --- |" * len(types)]
        for point in r["operating_curve"]:
            nv = point["no_violation"]
            cells = [f"{point['recall'][et]['found']}/{point['recall'][et]['positives']}" if et in point["recall"]
                     else "-" for et in types]
            lines.append(f"| {point['floor_shift']:+.2f} | {nv['with_event']}/{nv['pictures']} ({nv['share']:.1%}) | "
                         + " | ".join(cells) + " |")
    return lines


def shareable(licence: str) -> bool:
    """Whether a picture may be shown in the project's own documents: public domain (CC0) or
    CC BY without a non-commercial or share-alike term. Most of the real set is for research
    only or states nothing; those pictures are measured on, never published by the project."""
    return licence.upper().startswith(("CC0", "CC BY 4.0"))  # "CC BY-NC …", "CC BY-SA …" do not match


def failure_sheets(result: dict, dataset: Path, out: Path, count: int = 12,
                   only: set[str] | None = None) -> list[Path]:
    """Contact sheets of what went wrong, so a person sees it: no-violation pictures with a
    sighting (``false-sightings/``) and positives whose type was not found (``misses/``);
    labels in white, the model's boxes in colour with label and confidence. ``only``: the
    picture ids that may be drawn (e.g. the shareable ones, for the model card)."""
    from training.labelcheck import contact_sheets

    drawable = [r for r in result["per_picture"] if only is None or r["id"] in only]
    groups = {"false-sightings": [r for r in drawable if r["kind"] == "negative" and r["raised"]],
              "misses": [r for r in drawable if r["kind"] == "positive" and set(r["truth"]) - set(r["found"])]}
    written = []
    for name, rows in groups.items():
        tiles = []
        for r in rows[:count]:
            path = _picture(dataset, r["id"])
            image = cv2.imread(str(path)) if path else None
            if image is None:
                continue
            h, w = image.shape[:2]
            thick = max(1, round(max(h, w) / 500))
            for c, cx, cy, bw, bh in r.get("labels", []):
                cv2.rectangle(image, (int((cx - bw / 2) * w), int((cy - bh / 2) * h)),
                              (int((cx + bw / 2) * w), int((cy + bh / 2) * h)), (255, 255, 255), thick)
            for lab, conf, *box in r["detections"]:
                x1, y1, x2, y2 = (int(v) for v in box)
                cv2.rectangle(image, (x1, y1), (x2, y2), (0, 0, 255), thick + 1)
                cv2.putText(image, f"{lab} {conf:.2f}", (x1 + 2, max(12, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.4 * (thick + 1), (0, 0, 255), thick)
            tiles.append((r["id"], image))
        if tiles:
            folder = out / name
            folder.mkdir(parents=True, exist_ok=True)
            written += contact_sheets(tiles, folder, count)
    return written


def _picture(dataset: Path, picture_id: str) -> Path | None:
    for split in ("eval", "train"):
        found = list((dataset / "images" / split).glob(f"{picture_id}.*"))
        if found:
            return found[0]
    return None
