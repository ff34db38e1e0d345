"""Position intake: where the city's vehicles, phones and the live drone are.

``POST /api/v1/positions`` takes a JSON batch, or a GB/T 28181 ``MobilePosition``
notification as XML, from senders holding a ``telemetry`` token. Good reports go onto the
``patrol:positions`` stream that workers place their samples by; the answer says which
were refused and why, and which were flagged as jumps.
"""
from __future__ import annotations

import json
import threading
import time

import redis
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from api.auth import require
from api.deps import bus as get_bus, parts as get_parts, registry as get_registry
from core.wiring import Parts
from streams.position_reports import CityArea, Intake, PositionBatch, PositionIn, parse_mobile_position
from streams.positions import MAX_SPEED_MPS, Fix, FixTrack

router = APIRouter(prefix="/api/v1", tags=["positions"])
XML_TYPES = ("application/xml", "text/xml", "application/manscdp+xml")
MAX_BODY = 1 << 20  # a batch of 1,000 positions is about 200 kB

_intake_lock = threading.Lock()  # jump checks read and write each source's newest fix


def _intake(request: Request, parts: Parts, registry) -> Intake:
    app = request.app.state
    intake = getattr(app, "position_intake", None)
    if intake is None:
        if registry is None:
            raise HTTPException(503, "no source registry loaded: positions cannot be matched to sources")
        cfg = parts.settings.positions
        bounds = parts.grid.bounds if parts.grid is not None else None
        area = CityArea.around(bounds, registry, cfg.max_distance_km)
        intake = app.position_intake = Intake(registry, area, cfg.future_s, cfg.max_age_h * 3600)
    return intake


@router.post("/positions", status_code=202, summary="Report positions of moving sources (telemetry token)",
             openapi_extra={"requestBody": {"content": {
                 "application/json": {"schema": PositionBatch.model_json_schema()},
                 "application/xml": {"schema": {"type": "string", "description": "GB/T 28181 MobilePosition"}}}}})
async def post_positions(request: Request, parts: Parts = Depends(get_parts), bus=Depends(get_bus),
                         registry=Depends(get_registry), _=Depends(require("telemetry"))):
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(413, f"a position batch may be at most {MAX_BODY >> 10} KiB; send smaller batches")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    crs = request.query_params.get("crs", "wgs84")
    try:
        if kind in XML_TYPES:
            batch = PositionBatch(crs=crs, positions=[PositionIn(**p) for p in parse_mobile_position(body)])
        else:
            raw = json.loads(body or b"null")
            batch = PositionBatch.model_validate({"positions": raw} if isinstance(raw, list) else raw)
    except ValidationError as err:
        raise HTTPException(422, [_short(e) for e in err.errors()[:20]]) from None
    except (ValueError, TypeError) as err:  # not JSON, not a MobilePosition
        raise HTTPException(400, f"cannot read the positions: {str(err)[:300]}") from None
    if bus is None:
        raise HTTPException(503, "Redis is not configured: positions cannot reach the workers", headers={"Retry-After": "10"})
    intake = _intake(request, parts, registry)
    checked = intake.check(batch.positions, time.time(), batch.crs)
    try:
        with _intake_lock:
            accepted = _judge_jumps(bus, intake, checked.accepted)
            bus.publish_positions(accepted, maxlen=parts.settings.positions.stream_max)
    except (redis.ConnectionError, redis.TimeoutError) as err:
        raise HTTPException(503, f"Redis unavailable, positions not taken: {err}", headers={"Retry-After": "5"}) from None
    checked.accepted = accepted
    answer = {"accepted": len(accepted), "flagged": checked.flagged, "rejected": checked.rejected}
    return JSONResponse(answer, status_code=422 if checked.rejected else 202)


def _judge_jumps(bus, intake: Intake, fixes: list[tuple[str, Fix]]) -> list[tuple[str, Fix]]:
    """Flag reports that jump faster than their source moves, against each source's newest fix."""
    if not fixes:
        return []
    ids = sorted({sid for sid, _ in fixes})
    known = bus.last_fixes(ids)
    tracks: dict[str, FixTrack] = {}
    for sid in ids:
        track = tracks[sid] = FixTrack(max_speed_mps=MAX_SPEED_MPS.get(intake.source(sid).kind, 42.0))
        last = known.get(sid, {})
        if last.get("trusted"):
            track.add(Fix(**last["trusted"]))
        if last.get("pending"):
            track.add(Fix(**last["pending"]))
    out = [(sid, tracks[sid].add(fix)) for sid, fix in fixes]
    bus.set_last_fixes({sid: t.memory() for sid, t in tracks.items()})
    return out


def _short(err: dict) -> dict:
    """A validation error without the input echoed back (a sender's batch can be large)."""
    return {"loc": list(err.get("loc", ())), "msg": err.get("msg", "")}
