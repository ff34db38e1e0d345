"""Video sources from the registry, joined with the live state their workers report."""
from __future__ import annotations

import time

from fastapi import APIRouter, Depends, HTTPException

from api.auth import require
from api.deps import bus as get_bus, registry as get_registry

# analysts see which camera a case came from and whether it is live; operators pick
# the drone source of an upload; admin (implied) manages them
router = APIRouter(prefix="/api/v1", tags=["sources"], dependencies=[Depends(require("analyst", "operator"))])

STALE_AFTER_S = 15.0  # a state older than this means no worker is reporting the source


def _states(bus) -> dict:
    if bus is None:
        return {}
    try:
        return bus.source_states()
    except Exception:  # Redis away: the registry is still worth showing
        return {}


def _row(src, live: dict | None) -> dict:
    row = {"id": src.id, "kind": src.kind, "name": src.name, "grid": src.grid, "lat": src.lat, "lon": src.lon,
           "interval_s": src.policy.interval_s, "zones": [z.name for z in src.zones], "state": "unassigned"}
    if live:
        row.update({k: v for k, v in live.items() if k not in row or k == "state"})
        if time.time() - live.get("reported_at", 0) > STALE_AFTER_S:
            row["state"] = "unreported"
    return row


@router.get("/sources", summary="Every source with its live state")
def list_sources(bus=Depends(get_bus), registry=Depends(get_registry)):
    states = _states(bus)
    sources = list(registry) if registry is not None else []
    return {"items": [_row(s, states.get(s.id)) for s in sources], "total": len(sources)}


@router.get("/sources/{source_id}", summary="One source with its live state")
def get_source(source_id: str, bus=Depends(get_bus), registry=Depends(get_registry)):
    try:
        src = registry.get(source_id)
    except (KeyError, AttributeError):
        raise HTTPException(404, f"no source {source_id!r}") from None
    return _row(src, _states(bus).get(source_id))
