"""Evidence an analyst can read at a glance: the sample with the box and label drawn,
the views before and after, and a short clip of how it began; and the same sample
clean, with nothing drawn, to train the next model on."""
from __future__ import annotations

import functools
import os
import tempfile
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

RED = (40, 40, 230)


# Fonts that draw Chinese, where Debian and the usual distributions put them (fonts-noto-cjk,
# fonts-wqy-microhei, fonts-droid-fallback); without one the caption falls back to English.
CJK_FONTS = ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
             "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
             "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf")


@functools.lru_cache(maxsize=8)
def _cjk_font(size: int):
    from PIL import ImageFont

    for path in CJK_FONTS:
        if os.path.exists(path):
            try:
                return ImageFont.truetype(path, size)
            except OSError:
                continue
    return None


def draw_snapshot(image: np.ndarray, box: tuple[float, float, float, float], label: str, quality: int = 85,
                  fallback: str | None = None) -> bytes:
    """JPEG of ``image`` with ``box`` (image pixels) outlined and labelled. A label in
    Chinese needs a CJK font; where none is installed ``fallback`` (ASCII) is written."""
    img = image.copy()
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    thick = max(2, w // 320)
    cv2.rectangle(img, (x1, y1), (x2, y2), RED, thick)
    if not label.isascii():
        font = _cjk_font(max(14, round(w / 60)))
        if font is not None:
            img = _caption_cjk(img, (x1, y1, x2, y2), label, font)
            return _jpeg(img, quality)
        label = fallback or label.encode("ascii", "replace").decode()
    scale = max(0.45, w / 1400)
    (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    ty = y1 - 4 if y1 - th - base - 4 >= 0 else min(h - 1, y2 + th + 4)
    cv2.rectangle(img, (x1, ty - th - base), (min(w - 1, x1 + tw + 6), ty + base // 2), RED, -1)
    cv2.putText(img, label, (x1 + 3, ty - base // 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return _jpeg(img, quality)


def _caption_cjk(img: np.ndarray, box: tuple[int, int, int, int], label: str, font) -> np.ndarray:
    """The caption drawn with PIL (OpenCV's fonts have no Chinese), above the box or below it."""
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    x1, y1, _, y2 = box
    left, top, right, bottom = font.getbbox(label)
    tw, th = right - left, bottom - top
    pad = max(2, th // 6)
    ty = y1 - th - 2 * pad if y1 - th - 2 * pad >= 0 else min(h - th - 2 * pad, y2 + 1)
    pil = Image.fromarray(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))
    draw = ImageDraw.Draw(pil)
    draw.rectangle((x1, ty, min(w - 1, x1 + tw + 2 * pad), ty + th + 2 * pad), fill=(RED[2], RED[1], RED[0]))
    draw.text((x1 + pad - left, ty + pad - top), label, font=font, fill=(255, 255, 255))
    return cv2.cvtColor(np.asarray(pil), cv2.COLOR_RGB2BGR)


def _jpeg(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the evidence snapshot")
    return buf.tobytes()


FRAME_MAX_SIDE = 640  # the detector works at 256-640 px: more would only cost bytes on Redis and disk


def clean_frame(image: np.ndarray, max_side: int = FRAME_MAX_SIDE, quality: int = 85) -> bytes:
    """JPEG of ``image`` with nothing drawn on it (longest side at most ``max_side``):
    the training picture of an analyst's decision. A box or caption burnt into it
    would teach the next model the drawing."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        image = cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the evidence frame")
    return buf.tobytes()


# -- before / after views and the short clip ---------------------------------------------
# Samples are kept as small captioned JPEGs: they travel on Redis with the event, and a
# source's ring of them costs tens of kilobytes, not megabytes of raw pixels.

THUMB_MAX_SIDE = 320
CLIP_FPS = 2.0  # samples are seconds apart: two a second plays a minute of patrol in a few seconds


def thumbnail(image: np.ndarray, caption: str = "", max_side: int = THUMB_MAX_SIDE, quality: int = 75) -> bytes:
    """A small JPEG of ``image`` (longest side ``max_side``, both sides even so
    that it can become a video frame), with ``caption`` written in the corner."""
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    tw, th = max(2, int(w * scale) // 2 * 2), max(2, int(h * scale) // 2 * 2)
    small = cv2.resize(image, (tw, th), interpolation=cv2.INTER_AREA) if (tw, th) != (w, h) else image.copy()
    if caption:
        (cw, ch), base = cv2.getTextSize(caption, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
        cv2.rectangle(small, (0, th - ch - base - 6), (cw + 8, th), (0, 0, 0), -1)
        cv2.putText(small, caption, (4, th - base - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode a thumbnail")
    return buf.tobytes()


def make_clip(jpegs: list[bytes], fps: float = CLIP_FPS, crf: int = 32) -> bytes:
    """An H.264 MP4 (yuv420p, moov first, so a browser plays it at once) of JPEG
    frames of one size, each shown for ``1/fps`` s.

    It is encoded on the worker's detection loop, so cheaply: x264's superfast preset on
    one thread (a dozen 320 px frames; more threads would only cost their start-up) at
    crf 32 is as small as veryfast at crf 30 in under half the time."""
    if not jpegs:
        raise ValueError("a clip needs at least one frame")
    images = [cv2.imdecode(np.frombuffer(j, np.uint8), cv2.IMREAD_COLOR) for j in jpegs]
    if any(img is None for img in images):
        raise ValueError("a clip frame is not a decodable JPEG")
    h, w = images[0].shape[:2]
    if any(img.shape[:2] != (h, w) for img in images) or w % 2 or h % 2:
        raise ValueError("clip frames must share one even-sided size")
    # The MP4 muxer needs a seekable file to put the index first; a temp file is the
    # simplest one PyAV accepts for that.
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix="patrol-clip-")
    os.close(fd)
    try:
        with av.open(tmp, "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1000))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            stream.codec_context.thread_count = 1
            stream.options = {"crf": str(crf), "preset": "superfast"}
            for img in images:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
            out.mux(stream.encode())
        return Path(tmp).read_bytes()
    finally:
        Path(tmp).unlink(missing_ok=True)


@dataclass(frozen=True, slots=True)
class Sample:
    """One analysed sample of a source, kept small for evidence."""

    ts: float
    jpeg: bytes


class RecentSamples:
    """The newest ``size`` samples of one source as captioned thumbnails.

    Shared by every rule of the source, so each sample is shrunk and encoded
    once. ``caption`` turns a sample's time into the text burnt into it.
    """

    def __init__(self, size: int = 4, caption=lambda ts: f"{ts:.1f} s"):
        self._ring: deque[Sample] = deque(maxlen=size)
        self._caption = caption

    def add(self, ts: float, image: np.ndarray) -> Sample:
        sample = Sample(ts, thumbnail(image, self._caption(ts)))
        self._ring.append(sample)
        return sample

    def newest(self) -> Sample | None:
        return self._ring[-1] if self._ring else None

    def before(self, ts: float) -> Sample | None:
        """The newest sample taken before ``ts``."""
        return next((s for s in reversed(self._ring) if s.ts < ts), None)
