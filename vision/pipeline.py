"""One patrol step over many sources: gate → detect (batched) → rules → events.

The offline analyser and the live workers both run this; they differ only in
where samples come from and where events go.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from streams.frame import Frame
from vision.detections import Detections
from vision.events import Event
from vision.gate import ChangeGate
from vision.rules import RuleConfig, SourceRules


@dataclass
class SourceState:
    """What the pipeline keeps per source between samples."""

    rules: SourceRules
    gate: ChangeGate | None
    last_detections: Detections = field(default_factory=Detections.empty)
    analysed: int = 0
    gated: int = 0


class Pipeline:
    def __init__(self, detector, rule_configs: list[RuleConfig]):
        self.detector = detector
        self.rule_configs = rule_configs
        self.sources: dict[str, SourceState] = {}

    def add_source(self, source_id: str, zones=(), gate: bool = True, recheck_s: float = 30.0) -> None:
        rules = SourceRules.build(source_id, list(zones), self.rule_configs, self.detector.version)
        self.sources[source_id] = SourceState(rules, ChangeGate(recheck_s) if gate else None)

    def remove_source(self, source_id: str, now: float | None = None) -> list[Event]:
        state = self.sources.pop(source_id, None)
        return state.rules.flush(now) if state else []

    def step(self, frames: list[Frame]) -> list[Event]:
        """Analyse a batch of samples (several sources, or consecutive samples of one) in one detector call."""
        todo: list[int] = []
        for i, f in enumerate(frames):
            st = self.sources[f.source_id]
            if st.gate is None or st.gate.check(f.image, f.ts)[0]:
                todo.append(i)
            else:
                st.gated += 1
        found = dict(zip(todo, self.detector.detect([frames[i].image for i in todo]))) if todo else {}
        events: list[Event] = []
        for i, f in enumerate(frames):
            st = self.sources[f.source_id]
            if i in found:
                st.last_detections = found[i]
                st.analysed += 1
            # a gated sample looks like the last analysed one, so what was there is still there
            events.extend(st.rules.update(f, st.last_detections))
        return events

    def flush(self, now: float | None = None) -> list[Event]:
        return [ev for st in self.sources.values() for ev in st.rules.flush(now)]
