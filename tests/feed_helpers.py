"""Real parts for the platform-interface tests (feed, webhooks, audit): a case
store on the test's database, draft cases made by the real CaseBuilder from
hand-made events with real JPEG snapshots, and an app with real logins."""
from __future__ import annotations

import uuid

import numpy as np

from core.settings import CaseSettings, Settings
from core.wiring import Parts
from vision.events import Event
from vision.evidence import draw_snapshot

PUBLIC_URL = "https://patrol.example.gov.cn"
T0 = 1_764_000_000.0  # Unix seconds, as live sources report them
SECRET = "s3cret-shared-with-the-platform"


def make_parts(db_url, tmp_path, **settings) -> Parts:
    """Parts over ``db_url``; no grid polygons, so fixed cameras take their configured cell."""
    values = dict(data_dir=tmp_path / "data", cases=CaseSettings(grid_file=None), api={"public_url": PUBLIC_URL})
    values.update(settings)
    return Parts(Settings(**values), db_url=db_url)


def make_event(source_id="fixed-east-gate", event_type="street_vending", *, start: float, label="stall",
               confidence=0.8, lat=30.5931, lon=114.3054, event_id=None, revision=1, state="opened",
               snapshot=True) -> Event:
    picture = np.random.default_rng(int(start) % 1000).integers(0, 255, (180, 320, 3), dtype=np.uint8)
    return Event(
        event_id=event_id or uuid.uuid4().hex, source_id=source_id, event_type=event_type, state=state,
        start=start, last_seen=start + 30, confidence=confidence, bbox=(10.0, 20.0, 110.0, 140.0), label=label,
        revision=revision, hits=3, samples=5, lat=lat, lon=lon, model_version="patrol-test",
        trace=[f"{label} seen in 3 of the last 5 samples"],
        snapshot=draw_snapshot(picture, (10, 20, 110, 140), f"{event_type} {confidence:.2f}") if snapshot else None,
    )


def make_drafts(parts: Parts, n: int, kind: str = "fixed", source_id: str = "fixed-east-gate") -> list[int]:
    """``n`` separate draft cases (an hour apart, far beyond the cooldown); their ids."""
    ids = []
    for i in range(n):
        case = parts.builder.apply(make_event(source_id, start=T0 + i * 3600), kind, "42011700200818")
        ids.append(case.id)
    return ids
