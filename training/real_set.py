"""The real picture set: a manifest of where every picture comes from, our own labels, and
the step that brings the pictures here and checks them.

The pictures themselves are not in this repository: they belong to public repositories and
packages under their own licences. ``training/real/manifest.csv`` names each one exactly
(repository, commit, path, video frame, SHA-256 of the file as published); the labels in
``training/real/labels/<id>.txt`` are the project's own, drawn by eye (YOLO rows; an empty
file means "looked at: no violation"). ``fetch`` rebuilds the set under ``data/real`` as a
YOLO data set split by scene, from local repository snapshots or, with ``download=True``,
from GitHub at the recorded commit, and refuses any file whose hash differs. A file whose
format training cannot read (a GIF published as ``.jpg``) is written as its first frame,
re-encoded; the hash is the published file's.

Origins:
- ``owner/name``: a public GitHub repository; ``path`` inside it, at ``commit``.
- ``debian:PACKAGE``: a file installed by a Debian package; ``path`` is absolute.
- ``pypi:PACKAGE``: a file shipped inside an installed Python package; ``path`` is relative to it.
- ``file:``: a file of this checkout (``path`` relative to its root), for tests.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import shutil
import subprocess
import urllib.request
from collections import Counter
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterable

HERE = Path(__file__).resolve().parent / "real"
MANIFEST = HERE / "manifest.csv"
LABELS = HERE / "labels"
DEFAULT_MIRRORS = (Path("/work/.mirror"),)
SPLITS = ("train", "eval")
CAMERAS = ("fixed", "vehicle", "drone", "mobile", "photo")
KINDS = ("positive", "negative")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class RealSetError(Exception):
    """A manifest, label or picture that is not as recorded; the message says which and why."""


@dataclass(frozen=True)
class RealPicture:
    id: str
    repo: str
    commit: str
    path: str
    frame: str  # decoded frame index for a video, "" for a picture
    sha256: str  # of the file as published (the whole video for a frame)
    licence: str
    camera: str
    city: str
    scene: str  # pictures of one place or sequence share it: train and eval never share one
    kind: str
    split: str
    notes: str = ""

    @property
    def is_frame(self) -> bool:
        return self.frame != ""

    @property
    def suffix(self) -> str:
        if self.is_frame:
            return ".jpg"
        suffix = Path(self.path.removesuffix(".gz")).suffix.lower()
        return suffix if suffix in IMAGE_SUFFIXES else ".jpg"


COLUMNS = [f.name for f in fields(RealPicture)]


def load_manifest(path: Path = MANIFEST) -> list[RealPicture]:
    """Every row, checked: known camera kind, kind and split, unique ids, one split per scene."""
    if not path.exists():
        raise RealSetError(f"{path}: no manifest")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = set(COLUMNS) - set(reader.fieldnames or ()) - {"notes"}
        if missing:
            raise RealSetError(f"{path}: missing columns {sorted(missing)}")
        rows = [RealPicture(**{c: (row.get(c) or "").strip() for c in COLUMNS}) for row in reader]
    check_rows(rows, str(path))
    return rows


def check_rows(rows: list[RealPicture], source: str) -> None:
    """The manifest's rules over its rows in order (the first row is line 2 of ``source``)."""
    seen: set[str] = set()
    scene_split: dict[str, str] = {}
    for n, r in enumerate(rows, 2):
        where = f"{source}:{n} ({r.id})"
        if not r.id or "/" in r.id or r.id in seen:
            raise RealSetError(f"{where}: id empty, with '/', or repeated")
        seen.add(r.id)
        if r.camera not in CAMERAS or r.kind not in KINDS or r.split not in SPLITS:
            raise RealSetError(f"{where}: camera must be one of {CAMERAS}, kind {KINDS}, split {SPLITS}")
        if len(r.sha256) != 64:
            raise RealSetError(f"{where}: sha256 must be 64 hex digits")
        if scene_split.setdefault(r.scene, r.split) != r.split:
            raise RealSetError(f"{where}: scene {r.scene!r} is in both splits; a scene is trained on or "
                               "evaluated on, never both")


def labels_of(manifest: Path) -> Path:
    """The label folder of a manifest: ``labels/`` beside it."""
    return manifest.parent / "labels"


def label_rows(picture_id: str, labels: Path = LABELS) -> list[tuple[int, float, float, float, float]]:
    from training.labelcheck import read_labels

    path = labels / f"{picture_id}.txt"
    if not path.exists():
        raise RealSetError(f"{path}: no label file (an empty file means: no violation)")
    return read_labels(path)


def check_labels(pictures: Iterable[RealPicture], labels: Path = LABELS) -> None:
    """A negative has no boxes, a positive at least one; every label file parses."""
    for p in pictures:
        rows = label_rows(p.id, labels)
        if (p.kind == "negative") == bool(rows):
            raise RealSetError(f"{p.id}: kind {p.kind} but {len(rows)} boxes in its label file")


def _from_mirror(p: RealPicture, mirrors: Iterable[Path]) -> bytes | None:
    for mirror in mirrors:
        base = mirror / p.repo.replace("/", "+") / "repo"
        for git_dir in (base, base / ".git"):  # a bare snapshot, or one with its .git folder
            if not (git_dir / "HEAD").exists():
                continue
            for rev in (p.commit, "HEAD"):  # a later snapshot still holds the file if unchanged
                done = subprocess.run(["git", "--git-dir", str(git_dir), "show", f"{rev}:{p.path}"],
                                      capture_output=True)
                if done.returncode == 0:
                    return done.stdout
    return None


def _download(p: RealPicture) -> bytes:
    url = f"https://raw.githubusercontent.com/{p.repo}/{p.commit}/{p.path}"
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a fixed https host)
        return response.read()


def published_bytes(p: RealPicture, mirrors: Iterable[Path] = DEFAULT_MIRRORS, download: bool = False) -> bytes:
    """The file where the row says it was published, not yet checked against the row's hash."""
    origin, _, name = p.repo.partition(":")
    if origin in ("debian", "pypi", "file"):
        path = _local_file(origin, name, p.path)
        if path is None or not path.is_file():
            how = {"debian": f"apt-get install {name}", "pypi": f"pip install {name}", "file": "a file of the checkout"}
            raise RealSetError(f"{p.id}: {p.path} is not here ({how[origin]})")
        return path.read_bytes()
    data = _from_mirror(p, mirrors)
    if data is None:
        if not download:
            raise RealSetError(f"{p.id}: {p.repo}:{p.path} is not in the snapshots in {', '.join(map(str, mirrors))}; "
                               "fetch its repository's snapshot there, or pass --download")
        data = _download(p)
    return data


def original_bytes(p: RealPicture, mirrors: Iterable[Path] = DEFAULT_MIRRORS, download: bool = False) -> bytes:
    """The file as published, hash checked."""
    data = published_bytes(p, mirrors, download)
    digest = hashlib.sha256(data).hexdigest()
    if digest != p.sha256:
        raise RealSetError(f"{p.id}: {p.repo}:{p.path} has SHA-256 {digest[:12]}…, the manifest says "
                           f"{p.sha256[:12]}…; refusing a file that is not the one labelled")
    return data


def _local_file(origin: str, package: str, path: str) -> Path | None:
    if origin == "debian":
        return Path(path)
    if origin == "file":
        return Path(__file__).resolve().parent.parent / path
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0]) / path


def frame_jpeg(video: bytes, index: int, name: str) -> bytes:
    import av
    import cv2

    if name.endswith(".gz"):
        video = gzip.decompress(video)
    with av.open(io.BytesIO(video)) as container:
        for n, frame in enumerate(container.decode(video=0)):
            if n == index:
                ok, jpg = cv2.imencode(".jpg", frame.to_ndarray(format="bgr24"), [cv2.IMWRITE_JPEG_QUALITY, 90])
                return jpg.tobytes()
    raise RealSetError(f"{name}: has no frame {index}")


# The formats ultralytics trains on, by the file's first bytes (not its name): a GIF published
# as `.jpg` is read by OpenCV but left out of training as "corrupt".
TRAINABLE_MAGIC = (b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"BM", b"II*\x00", b"MM\x00*")


def is_trainable(head: bytes) -> bool:
    """Whether a file starting with ``head`` (12 bytes are enough) is in a format training reads."""
    return head.startswith(TRAINABLE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP")


def trainable(data: bytes, suffix: str, name: str) -> bytes:
    """``data`` as is when training can read it, else its first frame re-encoded as ``suffix`` says."""
    import cv2
    import numpy as np

    if is_trainable(data):
        return data
    frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if frame is None:
        raise RealSetError(f"{name}: not a picture that can be read")
    ok, encoded = cv2.imencode(".jpg" if suffix in (".jpg", ".jpeg") else suffix, frame,
                               [cv2.IMWRITE_JPEG_QUALITY, 95])
    if not ok:
        raise RealSetError(f"{name}: could not be re-encoded as {suffix}")
    return encoded.tobytes()


def _head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(12)


def fetch(out: Path, manifest: Path = MANIFEST, mirrors: Iterable[Path] = DEFAULT_MIRRORS,
          download: bool = False, progress: Callable[[int, int], None] | None = None) -> dict:
    """Write the set as a YOLO data set: ``out/images/<split>/<id>``, ``out/labels/<split>/<id>.txt``
    and ``out/data.yaml``. A picture already there is kept; labels are copied afresh. Returns counts
    and, per picture that could not be had, why."""
    from training.labelcheck import CLASSES

    pictures = load_manifest(manifest)
    labels = labels_of(manifest)
    check_labels(pictures, labels)
    mirrors = list(mirrors)
    failed = []
    for i, p in enumerate(pictures):
        image = out / "images" / p.split / f"{p.id}{p.suffix}"
        label = out / "labels" / p.split / f"{p.id}.txt"
        if not image.exists() or not is_trainable(_head(image)):  # (one written before GIFs were re-encoded)
            try:
                data = original_bytes(p, mirrors, download)
                if p.is_frame:
                    data = frame_jpeg(data, int(p.frame), p.path)
                elif p.path.endswith(".gz"):
                    data = gzip.decompress(data)
                data = trainable(data, p.suffix, f"{p.id}: {p.path}")
            except RealSetError as err:
                failed.append(str(err))
                continue
            image.parent.mkdir(parents=True, exist_ok=True)
            image.write_bytes(data)
        label.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(labels / f"{p.id}.txt", label)
        if progress:
            progress(i + 1, len(pictures))
    # A picture whose scene moved to the other split, or that left the manifest, must not stay
    # behind where the validator would still count it.
    wanted = {(p.split, p.id) for p in pictures}
    stale = [f for folder in ("images", "labels") for split in SPLITS for f in (out / folder / split).glob("*")
             if (split, f.stem) not in wanted]
    for f in stale:
        f.unlink()
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(CLASSES))
    out.mkdir(parents=True, exist_ok=True)  # (none of the pictures may have been had)
    (out / "data.yaml").write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/eval\nnames:\n{names}\n")
    return {"pictures": len(pictures), "written": len(pictures) - len(failed), "failed": failed, "removed": len(stale)}


def summary(pictures: list[RealPicture], labels: Path = LABELS) -> dict:
    """Counts a manifest page needs: pictures per split/kind/camera, boxes per class."""
    from training.labelcheck import CLASSES

    out: dict = {"pictures": len(pictures), "by_split_kind": Counter(), "by_camera": Counter(),
                 "boxes": Counter(), "scenes": len({p.scene for p in pictures})}
    for p in pictures:
        out["by_split_kind"][f"{p.split}/{p.kind}"] += 1
        out["by_camera"][p.camera] += 1
        for c, *_ in label_rows(p.id, labels):
            out["boxes"][CLASSES[c]] += 1
    return {k: dict(v) if isinstance(v, Counter) else v for k, v in out.items()}


def sources_table(pictures: list[RealPicture]) -> list[str]:
    """DATA.md's table of origins as Markdown rows: one per origin, most pictures first."""
    by_origin: dict[str, list[RealPicture]] = {}
    for p in pictures:
        by_origin.setdefault(p.repo, []).append(p)
    lines = ["| origin | commit | pictures (train / eval) | with a violation | cameras | where | licence |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for repo, ps in sorted(by_origin.items(), key=lambda kv: (-len(kv[1]), kv[0].lower())):
        splits = Counter(p.split for p in ps)
        cameras = ", ".join(f"{c} {n}" for c, n in Counter(p.camera for p in ps).most_common())
        cities = Counter(p.city for p in ps if p.city)
        where = "; ".join(c for c, _ in cities.most_common(3)) + ("; …" if len(cities) > 3 else "") or "unknown"
        licences = "; ".join(dict.fromkeys(p.licence for p in ps if p.licence)) or "none stated"
        commits = ", ".join(f"`{c[:10]}`" for c in dict.fromkeys(p.commit for p in ps))
        positives = sum(p.kind == "positive" for p in ps)
        lines.append(f"| `{repo}` | {commits} | {len(ps)} ({splits['train']} / {splits['eval']}) | {positives} "
                     f"| {cameras} | {where} | {licences} |")
    return lines
