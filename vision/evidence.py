"""Evidence an analyst can read at a glance: the sample with the box and label drawn."""
from __future__ import annotations

import cv2
import numpy as np

RED = (40, 40, 230)


def draw_snapshot(image: np.ndarray, box: tuple[float, float, float, float], label: str, quality: int = 85) -> bytes:
    """JPEG of ``image`` with ``box`` (image pixels) outlined and labelled."""
    img = image.copy()
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    thick = max(2, w // 320)
    cv2.rectangle(img, (x1, y1), (x2, y2), RED, thick)
    scale = max(0.45, w / 1400)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + 4)
    cv2.rectangle(img, (x1, ty - th - base), (min(w - 1, x1 + tw + 6), ty + base // 2), RED, -1)
    cv2.putText(img, label, (x1 + 3, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the evidence snapshot")
    return buf.tobytes()
