"""What the review console needs beyond the case routes: every piece of a case's
evidence, merging two drafts, moving a draft, the grid cell at a point, and a
stream that tells open consoles when cases change.

The stream is server-sent events over the store, not over Redis: whichever
process or machine built or reviewed a case, the database is where it shows, so
a console learns of it without the builder knowing consoles exist.
"""
from __future__ import annotations

import asyncio
import json
import math
import time

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from api.auth import Principal, require
from api.deps import parts as get_parts
from api.models.cases import CaseEvidence, CaseOut, EvidenceItem, EvidenceRemovedOut
from api.models.review import Location, Merge
from api.params import RowId
from api.routers.cases import _case_or_404, _review, gone
from cases import evidence_index, retention
from core.wiring import Parts

router = APIRouter(prefix="/api/v1", tags=["cases"])
analyst = require("analyst")

STREAM_POLL_S = 2.0  # how often a stream looks for changes in the store
STREAM_HEARTBEAT_S = 15.0  # a comment line, so proxies and the browser know the stream is alive
STREAM_MAX_S = 600.0  # then the stream ends and the browser reconnects (it does so by itself)


def _item(case_id: int, e: evidence_index.EvidenceView, removed: frozenset[str] = frozenset()) -> EvidenceItem:
    return EvidenceItem(kind=e.kind, url=f"/api/v1/cases/{case_id}/evidence/{e.id}", media_type=e.media_type,
                        ts=e.ts, source_id=e.source_id, removed=e.key in removed)


@router.get("/cases/stream", summary="Server-sent events: which cases were opened or changed",
            response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "`event: cases` with `data: [{id, case_no, status, event_type, "
                                            "updated_at}]` whenever cases change; a comment line every 15 s"}})
async def stream(request: Request, parts: Parts = Depends(get_parts), _: Principal = Depends(analyst)):
    store = parts.store
    newest = await run_in_threadpool(store.changed_since, None, 1)
    mark = newest[-1].updated_at if newest else None

    # Set when the server shuts down (patrol/cli.py): an open stream would otherwise hold
    # the shutdown until it ends by itself.
    stopping = getattr(request.app.state, "stopping", None)

    async def events():
        nonlocal mark
        yield "retry: 3000\n\n"
        started = last_sent = time.monotonic()
        while time.monotonic() - started < STREAM_MAX_S and not (stopping is not None and stopping.is_set()):
            changed = await run_in_threadpool(store.changed_since, mark)
            if changed:
                mark = changed[-1].updated_at
                data = [{"id": c.id, "case_no": c.case_no, "status": c.status, "event_type": c.event_type,
                         "updated_at": c.updated_at.isoformat()} for c in changed]
                yield f"event: cases\ndata: {json.dumps(data)}\n\n"
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= STREAM_HEARTBEAT_S:
                yield ": alive\n\n"
                last_sent = time.monotonic()
            if await request.is_disconnected():
                return
            await asyncio.sleep(STREAM_POLL_S)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/cases/{case_id}/evidence", response_model=CaseEvidence,
            summary="Every piece of a case's evidence: snapshot, view before, latest view, clip")
def evidence(case_id: RowId, parts: Parts = Depends(get_parts), _: Principal = Depends(analyst)):
    case = _case_or_404(parts, case_id)
    items = parts.store.evidence(case_id)
    chosen = evidence_index.pick(items)
    removal = retention.removal_of(parts.store, case_id)
    # an item is removed when retention took its file (a shared file another case keeps stays)
    removed = frozenset(k for k in (removal.keys if removal else ()) if not parts.evidence.exists(k))
    snapshot = None
    if case.snapshot_key:
        snapshot = EvidenceItem(kind="snapshot", url=f"/api/v1/cases/{case_id}/snapshot", media_type="image/jpeg",
                                source_id=case.source_id, removed=case.snapshot_key in removed)
    return CaseEvidence(snapshot=snapshot, items=[_item(case_id, e, removed) for e in items],
                        evidence_removed=EvidenceRemovedOut.of(removal),
                        **{kind: _item(case_id, e, removed) for kind, e in chosen.items()})


@router.get("/cases/{case_id}/evidence/{item_id}", response_class=FileResponse,
            summary="One evidence file (JPEG or MP4)",
            responses={200: {"content": {"image/jpeg": {}, "video/mp4": {}}}})
def evidence_file(case_id: RowId, item_id: RowId, parts: Parts = Depends(get_parts), _: Principal = Depends(analyst)):
    item = next((e for e in parts.store.evidence(case_id) if e.id == item_id), None)
    if item is None:
        raise HTTPException(404, f"case {case_id} has no evidence item {item_id}")
    if not parts.evidence.exists(item.key):
        gone(parts, case_id, f"{case_id}")
        raise HTTPException(404, f"evidence file of item {item_id} is missing from the evidence store")
    # content-addressed: a key's bytes never change, so the browser may keep them
    return FileResponse(parts.evidence.path(item.key), media_type=item.media_type,
                        headers={"Cache-Control": "private, max-age=86400, immutable"})


@router.post("/cases/{case_id}/merge", response_model=CaseOut,
             summary="Merge another draft into this one (the other is rejected as a duplicate)")
def merge(case_id: RowId, body: Merge, parts: Parts = Depends(get_parts), principal: Principal = Depends(analyst)):
    actor = body.acting(principal)
    if body.other_id == case_id:
        raise HTTPException(422, "a case cannot be merged into itself: give another draft's id as other_id")
    return _review(parts, lambda: parts.store.merge(case_id, body.other_id, actor))


@router.post("/cases/{case_id}/location", response_model=CaseOut,
             summary="Move a draft to where the violation is; its grid cell follows")
def relocate(case_id: RowId, body: Location, parts: Parts = Depends(get_parts), principal: Principal = Depends(analyst)):
    actor = body.acting(principal)
    grid = parts.grid
    if grid is not None and grid.cell_at(body.lat, body.lon) is None:  # bad input, not a conflict: 422
        raise HTTPException(422, f"{body.lat:.6f}, {body.lon:.6f} lies in none of the city's {len(grid)} grid cells; "
                                 "choose a place inside the city")
    return _review(parts, lambda: parts.store.relocate(case_id, actor, body.lat, body.lon, grid))


@router.get("/grid/at", summary="The unit-grid cell (单元网格) at a WGS84 point")
def grid_at(lat: float = Query(..., ge=-90, le=90), lon: float = Query(..., ge=-180, le=180),
            parts: Parts = Depends(get_parts), _: Principal = Depends(analyst)):
    if not (math.isfinite(lat) and math.isfinite(lon)):
        raise HTTPException(422, "lat and lon must be finite numbers")
    if parts.grid is None:
        raise HTTPException(404, "no grid is configured (cases.grid_file)")
    return {"lat": lat, "lon": lon, "grid": parts.grid.cell_at(lat, lon)}
