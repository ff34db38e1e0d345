"""One patrol step over many sources: gate → detect (batched) → rules → events.

The offline analyser and the live workers both run this; they differ only in
where samples come from and where events go.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from streams.frame import Frame
from vision.detections import Detections
from vision.events import Event
from vision.gate import ChangeGate, MovingGate
from vision.rules import RuleConfig, SourceRules


@dataclass
class SourceState:
    """What the pipeline keeps per source between samples."""

    rules: SourceRules
    gate: ChangeGate | MovingGate | None
    last_detections: Detections = field(default_factory=Detections.empty)
    analysed: int = 0
    gated: int = 0


class Pipeline:
    def __init__(self, detector, rule_configs: list[RuleConfig]):
        self.detector = detector
        self.rule_configs = rule_configs
        self.sources: dict[str, SourceState] = {}
        self.last_detect_ms = 0.0  # the latest detector call alone, and how many images it took
        self.last_batch = 0

    def add_source(self, source_id: str, zones=(), gate: bool = True, recheck_s: float = 30.0,
                   moving: bool = False) -> None:
        """``moving``: the camera moves (vehicle, drone, phone), so its gate lines
        samples up before comparing them."""
        rules = SourceRules.build(source_id, list(zones), self.rule_configs, self.detector.version, moving=moving)
        kind = MovingGate if moving else ChangeGate
        self.sources[source_id] = SourceState(rules, kind(recheck_s) if gate else None)

    def remove_source(self, source_id: str, now: float | None = None, cause: str = "stopped") -> list[Event]:
        """Stop analysing a source and end its open events (``cause``: "video_ended" or
        "stopped", for their traces)."""
        state = self.sources.pop(source_id, None)
        return state.rules.flush(now, cause) if state else []

    def step(self, frames: list[Frame]) -> list[Event]:
        """Analyse a batch of samples (several sources, or consecutive samples of one) in one detector call."""
        todo: list[int] = []
        for i, f in enumerate(frames):
            st = self.sources[f.source_id]
            if st.gate is None or st.gate.check(f.image, f.ts)[0]:
                todo.append(i)
            else:
                st.gated += 1
        found = {}
        if todo:
            started = time.perf_counter()
            found = dict(zip(todo, self.detector.detect([frames[i].image for i in todo])))
            self.last_detect_ms, self.last_batch = (time.perf_counter() - started) * 1000, len(todo)
        events: list[Event] = []
        for i, f in enumerate(frames):
            st = self.sources[f.source_id]
            if i in found:
                st.last_detections = found[i]
                st.analysed += 1
                dets = found[i]
            elif isinstance(st.gate, MovingGate):
                # what was there is still there, where the camera's move has carried it
                dets = _carried(st.last_detections, *st.gate.shift_px(f.size), *f.size)
            else:
                # a gated sample looks like the last analysed one, so what was there is still there
                dets = st.last_detections
            events.extend(st.rules.update(f, dets))
        return events

    def flush(self, now: float | None = None, cause: str = "stopped") -> list[Event]:
        return [ev for st in self.sources.values() for ev in st.rules.flush(now, cause)]


def _carried(dets: Detections, dx: float, dy: float, w: int, h: int) -> Detections:
    """``dets`` moved by the view's shift, clipped to the picture; boxes now out of view are gone."""
    if not len(dets) or (dx == 0 and dy == 0):
        return dets
    xyxy = dets.xyxy + np.array([dx, dy, dx, dy], np.float32)
    xyxy = np.clip(xyxy, 0, np.array([w, h, w, h], np.float32))
    visible = (xyxy[:, 2] - xyxy[:, 0] >= 2) & (xyxy[:, 3] - xyxy[:, 1] >= 2)
    out = Detections(xyxy, dets.confidence, dets.class_id, dets.labels)
    return out[visible]
