"""Evidence from the main stream for sources patrolled on their sub-stream.

A fixed camera with a ``sub_url`` is analysed on the sub-stream; its events'
boxes are in sub-stream pixels and their snapshot is a sub-stream sample. When
such an event is published with new evidence (it opened, or a better sighting
replaced the best one), a short-lived grab of the main stream runs on a small
thread pool (streams/grab.py): the picture at that moment, full size, with the
box scaled to main-stream pixels drawn on it. The event waits for its grab, and
the events of the same source wait behind it, so they still leave in order;
the patrol loop never waits. A main stream that cannot be read within the
timeout leaves the sub-stream picture in place, and the event's trace says so.

An event that closes after a better sub-stream sighting than the one grabbed
(an improvement too small to publish at once) keeps the grabbed evidence: by
then the violation may be gone from the main stream, and a case's picture, box,
label and confidence must belong to one sighting.
"""
from __future__ import annotations

import logging
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, replace
from datetime import datetime

from streams.grab import Grab, grab_frame
from streams.reader import SourceError
from streams.sources import Source
from vision.events import Event, EventState
from vision.evidence import clean_frame, draw_snapshot
from vision.rules.base import caption
from streams.city import CITY_TZ

log = logging.getLogger(__name__)



@dataclass
class _Pending:
    event: Event
    grab: Future | None  # the main-stream grab this event waits for, if it started one
    sub_size: tuple[int, int] | None


@dataclass
class _Evidence:
    """The main-stream evidence of one event's current best sighting."""

    evidence_ts: float | None
    snapshot: bytes | None = None
    bbox: tuple[float, float, float, float] | None = None  # main-stream pixels
    confidence: float = 0.0
    label: str = ""
    note: str = ""
    frame: bytes | None = None  # the same picture, nothing drawn (training material)
    frame_size: tuple[int, int] | None = None  # main-stream pixels
    boxes: list | None = None  # the sighting's detections, scaled to main-stream pixels


def uses_sub_stream(src: Source) -> bool:
    return bool(src.sub_url) and src.sub_url != src.url


class MainStreamEvidence:
    def __init__(self, timeout_s: float = 5.0, transport: str = "tcp", parallel: int = 2, grab=grab_frame,
                 names: dict[str, str] | None = None):
        self.timeout_s = timeout_s
        self.names = names or {}  # the evidence picture's names of event types and labels
        self.transport = transport
        self._grab = grab
        self._pool = ThreadPoolExecutor(parallel, thread_name_prefix="main-grab")
        self._queues: dict[str, deque[_Pending]] = {}
        self._evidence: dict[str, _Evidence] = {}  # event id -> evidence for its newest best sighting
        self.grabs = 0
        self.failures = 0

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._queues.values())

    def add(self, event: Event, src: Source, sub_size: tuple[int, int] | None) -> None:
        """Queue an event of ``src`` for publishing, starting a grab if its evidence is new."""
        queue = self._queues.setdefault(src.id, deque())
        known = self._evidence.get(event.event_id)
        queued = any(p.grab is not None and p.event.event_id == event.event_id
                     and p.event.evidence_ts == event.evidence_ts for p in queue)
        grab = None
        if event.state != EventState.CLOSED and not queued and (known is None or known.evidence_ts != event.evidence_ts):
            grab = self._pool.submit(self._grab, src.url, self.timeout_s, self.transport)
            self.grabs += 1
        queue.append(_Pending(event, grab, sub_size))

    def ready(self) -> list[Event]:
        """Events whose turn has come (their grab, if any, is done), in order per source."""
        out = []
        for sid in list(self._queues):
            queue = self._queues[sid]
            while queue and (queue[0].grab is None or queue[0].grab.done()):
                out.append(self._finish(queue.popleft()))
            if not queue:
                del self._queues[sid]
        return out

    def drain(self, timeout_s: float | None = None) -> list[Event]:
        """Everything queued, waiting at most ``timeout_s`` for grabs in flight (on stop)."""
        futures = [p.grab for q in self._queues.values() for p in q if p.grab is not None]
        if futures:
            wait(futures, timeout=self.timeout_s + 1 if timeout_s is None else timeout_s)
        out = []
        for queue in self._queues.values():
            out.extend(self._finish(p) for p in queue)
        self._queues.clear()
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------------------
    def _finish(self, p: _Pending) -> Event:
        ev = p.event
        if p.grab is not None:
            self._evidence[ev.event_id] = self._from_grab(ev, p)
        found = self._evidence.get(ev.event_id)
        if ev.state == EventState.CLOSED:
            self._evidence.pop(ev.event_id, None)
        if found is None:
            return ev
        trace = [*ev.trace, found.note]
        if found.snapshot is None:  # the main stream failed: the sub-stream's picture stays
            return replace(ev, trace=trace)
        clean = {"frame": found.frame, "frame_size": found.frame_size, "boxes": [list(b) for b in found.boxes or []]}
        if found.evidence_ts != ev.evidence_ts:  # a later sighting, never grabbed: the grabbed one stays
            return replace(ev, snapshot=found.snapshot, bbox=found.bbox, confidence=found.confidence,
                           label=found.label, evidence_ts=found.evidence_ts, trace=trace, **clean)
        return replace(ev, snapshot=found.snapshot, bbox=found.bbox, trace=trace, **clean)

    def _from_grab(self, ev: Event, p: _Pending) -> _Evidence:
        try:
            if not p.grab.done():  # (drain gave up waiting)
                raise SourceError(f"no picture within {self.timeout_s:g} s")
            grab: Grab = p.grab.result()
        except Exception as err:  # a grab's failure costs the main picture, never the event
            self.failures += 1
            log.warning("main-stream evidence of %s: %s", ev.source_id, err)
            return _Evidence(ev.evidence_ts, note=f"evidence picture from the sub-stream: "
                                                  f"the main stream could not be read ({err})")
        w, h = grab.size
        sw, sh = p.sub_size or (w, h)
        sx, sy = w / sw, h / sh
        x1, y1, x2, y2 = ev.bbox
        bbox = (x1 * sx, y1 * sy, x2 * sx, y2 * sy)
        label, raw = caption(ev, self.names)
        snapshot = draw_snapshot(grab.image, bbox, label, fallback=raw)
        boxes = [[lab, c, bx1 * sx, by1 * sy, bx2 * sx, by2 * sy] for lab, c, bx1, by1, bx2, by2 in ev.boxes]
        when = datetime.fromtimestamp(grab.ts, CITY_TZ).strftime("%H:%M:%S")
        note = (f"evidence picture from the main stream ({w}x{h}) at {when}, when the event was reported; "
                f"box scaled from the sub-stream ({sw}x{sh}) sighting")
        return _Evidence(ev.evidence_ts, snapshot=snapshot, bbox=bbox, confidence=ev.confidence, label=ev.label,
                         note=note, frame=clean_frame(grab.image), frame_size=(w, h), boxes=boxes)


def parse_size(text: str | None) -> tuple[int, int] | None:
    """'640x360' -> (640, 360); None for anything else."""
    try:
        w, h = (int(v) for v in (text or "").split("x"))
        return w, h
    except ValueError:
        return None
