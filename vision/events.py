"""The third stage's data type: one violation episode on one source."""
from __future__ import annotations

import base64
import json
from dataclasses import asdict, dataclass, field
from enum import StrEnum

EVENT_TYPES = ("street_vending", "illegal_construction", "dust")


class EventState(StrEnum):
    """Where an episode is: each change is published with the same id and a newer revision."""

    OPENED = "opened"
    UPDATED = "updated"
    CLOSED = "closed"


@dataclass(slots=True)
class Event:
    """A violation episode as the rules see it.

    An event is published every time it changes state (``opened``, ``updated``,
    ``closed``) with the same ``event_id`` and a growing ``revision``; consumers
    keep the newest revision, so re-delivery of an older message changes nothing.
    ``bbox`` is in the source video's pixels, at the moment of the best evidence.
    """

    event_id: str
    source_id: str
    event_type: str
    state: str  # an EventState
    start: float
    last_seen: float
    confidence: float
    bbox: tuple[float, float, float, float]
    label: str = ""
    zone: str | None = None
    end: float | None = None
    revision: int = 0
    hits: int = 0
    samples: int = 0
    evidence_ts: float | None = None
    lat: float | None = None
    lon: float | None = None
    place: str | None = None  # how lat/lon were found, or why a moving source's place is unknown
    model_version: str = ""
    trace: list[str] = field(default_factory=list)
    snapshot: bytes | None = None  # JPEG with the box drawn; small
    # Context for the analyst (vision/evidence.py), all small: thumbnails of the view
    # before the first sighting and the latest view, and an MP4 of how it began.
    before: bytes | None = None
    before_ts: float | None = None
    after: bytes | None = None
    after_ts: float | None = None
    clip: bytes | None = None
    # Training material (cases/clean_frames.py, ``patrol export-dataset``): the best
    # sighting's picture with nothing drawn on it, the (width, height) of the pixels
    # ``bbox`` and ``boxes`` are in, and each detection that makes up ``bbox`` as
    # [label, confidence, x1, y1, x2, y2] (``bbox`` is their union).
    frame: bytes | None = None
    frame_size: tuple[int, int] | None = None
    boxes: list = field(default_factory=list)

    def to_message(self) -> dict[str, str]:
        """Flat string fields for a Redis Stream entry (pictures and clip as base64)."""
        body = asdict(self)
        blobs = {name: body.pop(name) for name in BLOBS}
        return {
            "event": json.dumps(body, ensure_ascii=False),
            **{name: base64.b64encode(data).decode() if data else "" for name, data in blobs.items()},
        }

    @classmethod
    def from_message(cls, fields: dict) -> "Event":
        def text(v):
            return v.decode() if isinstance(v, bytes) else v

        fields = {text(k): text(v) for k, v in fields.items()}
        body = json.loads(fields["event"])
        body["bbox"] = tuple(body["bbox"])
        if body.get("frame_size"):
            body["frame_size"] = tuple(body["frame_size"])
        # (a message from before a blob existed simply lacks its field)
        blobs = {name: base64.b64decode(fields[name]) if fields.get(name) else None for name in BLOBS}
        return cls(**body, **blobs)


BLOBS = ("snapshot", "before", "after", "clip", "frame")  # binary fields, sent beside the JSON body
