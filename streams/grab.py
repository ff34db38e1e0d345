"""One full-size picture from a stream, now: the main-stream evidence grab.

A fixed camera is patrolled on its sub-stream (640x360 costs a sixth of 1080p to
decode), but an analyst judges a case by its picture, which should be the main
stream's. So when an event is published, the worker opens the main stream for a
moment: it skips to the next key frame, decodes that one picture at full size
and closes, all within a deadline. Nothing is kept open between events.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import av
import numpy as np

from streams.reader import SourceError, open_container, redact, video_stream


@dataclass(frozen=True, slots=True)
class Grab:
    image: np.ndarray  # BGR, the stream's own size
    ts: float  # wall clock when the picture was decoded

    @property
    def size(self) -> tuple[int, int]:
        h, w = self.image.shape[:2]
        return w, h


def grab_frame(url: str, timeout_s: float = 5.0, transport: str = "tcp") -> Grab:
    """The first key frame of ``url`` from now, decoded at full size.

    Raises `SourceError` (one line, password redacted) when the stream cannot be
    opened, ends, or brings no decodable key frame within ``timeout_s`` in all.
    A file gives its first key frame.
    """
    deadline = time.monotonic() + timeout_s
    # Each read may take the whole deadline, and the loop stops at the deadline.
    container = open_container(url, timeout_s, transport=transport, read_timeout_s=timeout_s)
    try:
        stream = video_stream(container, url)
        ctx = stream.codec_context
        for packet in container.demux(stream):
            if time.monotonic() > deadline:
                break
            if packet.size == 0 or not packet.is_keyframe:
                continue  # only a key frame decodes on its own: the others are never sent
            try:
                # A decoder with reorder delay holds a lone key frame back: drain it.
                frames = list(ctx.decode(packet)) or list(ctx.decode(None))
            except av.FFmpegError:
                frames = []  # a damaged key frame: wait for the next one
            if frames:
                return Grab(frames[0].to_ndarray(format="bgr24"), time.time())
            ctx.flush_buffers()
    except av.ExitError:  # PyAV's read timeout
        pass
    except (av.FFmpegError, OSError) as err:
        raise SourceError(f"{redact(url)}: {getattr(err, 'strerror', None) or err}") from None
    finally:
        container.close()
    raise SourceError(f"{redact(url)}: no key frame within {timeout_s:g} s")
