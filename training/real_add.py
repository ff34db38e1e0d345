"""Adding labelled pictures to the real set (``patrol real-set add``).

A labeller brings new rows in the manifest's columns (``sha256`` and ``split`` may be left
empty) and a folder of label files ``<id>.txt``, drawn and then checked by eye with
``training.labelcheck``. Every row is checked before anything is written, and one bad row
refuses the whole batch:

- its file is read from where the row says (a repository snapshot, a package, this checkout)
  and must decode as a picture, or hold the named frame of a video; its SHA-256 is computed
  here, and must equal the row's when the row gives one;
- its id is new, its camera, kind and licence are stated, and its label file agrees with its
  kind (a negative has an empty file, a positive at least one box);
- its split follows its scene: a scene already in the set keeps its split, a new scene goes to
  eval when the first hex digit of the SHA-1 of its name is 0-3 (about a quarter), so that no
  scene is both trained on and evaluated on, and nobody chooses where a picture lands.

Then the rows are appended to the manifest (in its own line endings) and the label files copied
beside it. DATA.md's table of origins is generated (``patrol real-set sources``): refresh it
after an addition (a test holds the two together).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import shutil
from dataclasses import asdict, replace
from pathlib import Path
from typing import Iterable

from training.real_set import (COLUMNS, DEFAULT_MIRRORS, IMAGE_SUFFIXES, MANIFEST, RealPicture, RealSetError,
                               check_labels, check_rows, frame_jpeg, labels_of, load_manifest,
                               published_bytes)

EVAL_DIGITS = "0123"  # a new scene whose name hashes to one of these first hex digits is evaluated on
NEEDED = ("id", "repo", "path", "licence", "camera", "scene", "kind")


def split_of_scene(scene: str, known: dict[str, str]) -> str:
    if scene in known:
        return known[scene]
    return "eval" if hashlib.sha1(scene.encode("utf-8")).hexdigest()[0] in EVAL_DIGITS else "train"


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in NEEDED if c not in (reader.fieldnames or ())]
        if missing:
            raise RealSetError(f"{path}: missing columns {missing} (the manifest's columns: {', '.join(COLUMNS)})")
        return [{c: (row.get(c) or "").strip() for c in COLUMNS} for row in reader]


def _decodes(p: RealPicture, data: bytes) -> None:
    import cv2
    import numpy as np

    if p.is_frame:
        frame_jpeg(data, int(p.frame), p.path)  # raises when the video has no such frame
        return
    if p.path.endswith(".gz"):
        data = gzip.decompress(data)
    if Path(p.path.removesuffix(".gz")).suffix.lower() not in IMAGE_SUFFIXES or \
            cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) is None:
        raise RealSetError(f"{p.id}: {p.repo}:{p.path} is not a picture ({', '.join(IMAGE_SUFFIXES)}) "
                           "that decodes; for a video give its frame")


def check_new(rows: list[dict[str, str]], labels: Path, existing: list[RealPicture], manifest: Path = MANIFEST,
              mirrors: Iterable[Path] = DEFAULT_MIRRORS, download: bool = False) -> list[RealPicture]:
    """The rows as pictures with their hash and split filled in, every check passed against the
    ``existing`` pictures of ``manifest``."""
    known = {p.scene: p.split for p in existing}
    ids = {p.id for p in existing}
    new: list[RealPicture] = []
    for n, row in enumerate(rows, 2):
        where = f"row {n} ({row['id'] or 'no id'})"
        empty = [c for c in NEEDED if not row[c]]
        if empty:
            raise RealSetError(f"{where}: {', '.join(empty)} must be given")
        if row["id"] in ids:
            raise RealSetError(f"{where}: id {row['id']!r} is already in {manifest.name}")
        ids.add(row["id"])
        split = split_of_scene(row["scene"], known)
        if row["split"] and row["split"] != split:
            raise RealSetError(f"{where}: split {row['split']!r} given, but scene {row['scene']!r} belongs to "
                               f"{split} ({'its pictures there' if row['scene'] in known else 'by its name'}); "
                               "leave split empty")
        try:
            picture = RealPicture(**{**row, "split": split, "sha256": row["sha256"] or "0" * 64})
            int(picture.frame or 0)
        except ValueError:
            raise RealSetError(f"{where}: frame must be a whole number or empty") from None
        data = published_bytes(picture, mirrors, download)
        digest = hashlib.sha256(data).hexdigest()
        if row["sha256"] and row["sha256"] != digest:
            raise RealSetError(f"{where}: {row['repo']}:{row['path']} has SHA-256 {digest[:12]}…, the row says "
                               f"{row['sha256'][:12]}…")
        picture = replace(picture, sha256=digest)
        _decodes(picture, data)
        new.append(picture)
    check_labels(new, labels)
    check_rows(existing + new, f"{manifest} with the new rows")  # the manifest's own rules over the result
    return new


def add(rows_file: Path, labels: Path, manifest: Path = MANIFEST, mirrors: Iterable[Path] = DEFAULT_MIRRORS,
        download: bool = False) -> dict:
    """Check, then append the rows of ``rows_file`` and copy their label files. Returns counts."""
    existing = load_manifest(manifest)
    new = check_new(read_rows(rows_file), labels, existing, manifest, list(mirrors), download)
    raw = manifest.read_bytes()
    newline = "\r\n" if b"\r\n" in raw else "\n"
    text = io.StringIO()
    csv.DictWriter(text, fieldnames=COLUMNS, lineterminator=newline).writerows(asdict(p) for p in new)
    with manifest.open("a", newline="", encoding="utf-8") as f:
        if raw and not raw.endswith(b"\n"):
            f.write(newline)
        f.write(text.getvalue())
    target = labels_of(manifest)
    target.mkdir(exist_ok=True)
    for p in new:
        shutil.copyfile(labels / f"{p.id}.txt", target / f"{p.id}.txt")
    return {"added": len(new), "train": sum(p.split == "train" for p in new),
            "eval": sum(p.split == "eval" for p in new), "positives": sum(p.kind == "positive" for p in new),
            "new_scenes": len({p.scene for p in new} - {p.scene for p in existing})}
