"""Draw every label back over its picture, so that each box is checked by eye.

    python -m training.labelcheck IMAGES LABELS --out DIR [--sheet 12]

For each picture with a YOLO label file of the same stem, writes DIR/<stem>.jpg with its
boxes drawn (class name on each), and contact sheets DIR/sheet-NNN.jpg of --sheet pictures
each, so that a whole set can be looked over a page at a time. A label file that is empty
means "looked at: nothing to box"; its picture gets a green "no violation" tag.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from vision.classes import CLASSES
COLOURS = [(0, 200, 255), (255, 0, 200), (0, 255, 0), (255, 128, 0), (0, 128, 255), (255, 255, 0), (128, 0, 255), (200, 200, 200)]
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def read_labels(path: Path) -> list[tuple[int, float, float, float, float]]:
    """YOLO rows (class, cx, cy, w, h; fractions of the picture). A malformed row is an error."""
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 5:
            raise ValueError(f"{path}:{n}: expected 'class cx cy w h', got {line!r}")
        c, *xywh = parts
        c = int(c)
        if not 0 <= c < len(CLASSES):
            raise ValueError(f"{path}:{n}: class {c} is not one of 0..{len(CLASSES) - 1}")
        vals = [float(v) for v in xywh]
        if not all(0.0 <= v <= 1.0 for v in vals):
            raise ValueError(f"{path}:{n}: coordinates must be fractions in [0, 1]: {line!r}")
        rows.append((c, *vals))
    return rows


def draw(image: np.ndarray, rows) -> np.ndarray:
    out = image.copy()
    h, w = out.shape[:2]
    thick = max(2, round(max(h, w) / 400))
    for c, cx, cy, bw, bh in rows:
        x1, y1 = int((cx - bw / 2) * w), int((cy - bh / 2) * h)
        x2, y2 = int((cx + bw / 2) * w), int((cy + bh / 2) * h)
        cv2.rectangle(out, (x1, y1), (x2, y2), COLOURS[c], thick)
        cv2.putText(out, CLASSES[c], (x1 + 3, max(y1 - 5, 14)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick, COLOURS[c], thick)
    if not rows:
        cv2.putText(out, "no violation", (8, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (0, 255, 0), 2)
    return out


def contact_sheets(tiles: list[tuple[str, np.ndarray]], out: Path, per_sheet: int, tile_w: int = 480) -> list[Path]:
    cols = 3 if per_sheet <= 9 else 4
    paths = []
    for start in range(0, len(tiles), per_sheet):
        chunk = tiles[start:start + per_sheet]
        cells = []
        for name, img in chunk:
            h, w = img.shape[:2]
            t = cv2.resize(img, (tile_w, max(1, round(h * tile_w / w))))
            t = cv2.copyMakeBorder(t, 0, 22, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
            cv2.putText(t, name[:60], (4, t.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
            cells.append(t)
        cell_h = max(c.shape[0] for c in cells)
        cells = [cv2.copyMakeBorder(c, 0, cell_h - c.shape[0], 0, 4, cv2.BORDER_CONSTANT) for c in cells]
        while len(cells) % cols:
            cells.append(np.zeros_like(cells[0]))
        rows = [np.hstack(cells[i:i + cols]) for i in range(0, len(cells), cols)]
        path = out / f"sheet-{start // per_sheet:03d}.jpg"
        cv2.imwrite(str(path), np.vstack(rows), [cv2.IMWRITE_JPEG_QUALITY, 85])
        paths.append(path)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("labels", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sheet", type=int, default=12, help="pictures per contact sheet (0: none)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    tiles, unlabelled = [], []
    for img_path in sorted(p for p in args.images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        label_path = args.labels / f"{img_path.stem}.txt"
        if not label_path.exists():
            unlabelled.append(img_path.name)
            continue
        image = cv2.imread(str(img_path))
        if image is None:
            print(f"cannot read {img_path}", file=sys.stderr)
            return 2
        drawn = draw(image, read_labels(label_path))
        cv2.imwrite(str(args.out / f"{img_path.stem}.jpg"), drawn, [cv2.IMWRITE_JPEG_QUALITY, 90])
        tiles.append((img_path.stem, drawn))
    sheets = contact_sheets(tiles, args.out, args.sheet) if args.sheet else []
    print(f"{len(tiles)} pictures drawn, {len(sheets)} contact sheets in {args.out}; {len(unlabelled)} without a label file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
