"""Drone flight uploads: resumable chunked upload, checks, the analysis job, its progress.

The protocol (docs/operations.md, "Drone uploads", for scripted clients):

1. ``POST /api/v1/uploads`` with the video's name, size and SHA-256 (and the SRT's):
   the upload's id and one URL per part.
2. ``PATCH`` (or ``PUT``) each part's URL with chunks, each saying where it starts
   (``Upload-Offset: N`` or ``Content-Range: bytes N-M/T``). A chunk that does not
   start at the part's current size is refused with 409 and the current offset.
3. After an interruption ``HEAD`` (or ``GET``) the part's URL: ``Upload-Offset`` says
   where to continue.
4. ``POST /api/v1/uploads/{id}/finish``: sizes and SHA-256 checked, the video and the
   SRT validated, and the analysis queued (or, without telemetry, it waits for
   ``PUT /api/v1/uploads/{id}/site``).
5. ``GET /api/v1/uploads/{id}``: state, job progress, and the draft cases found.

Operators see and touch only their own uploads; admins see everyone's.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import anyio
import redis
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.templating import Jinja2Templates
from starlette.requests import ClientDisconnect

from api.auth import Principal, require, require_page
from api.models.uploads import CaseBrief, PartOut, Progress, SiteIn, UploadDetail, UploadIn, UploadList, UploadOut
from api.params import Offset, RowId, whole_number
from api.deps import bus as get_bus
from api.deps import parts as get_parts
from api import pages as api_pages
from api.gridmap import grid_map, tiles
from cases.flights import FlightError, FlightView
from cases.grid import GridError
from streams.uploads import PARTS, UploadError, check_sha256, clean_name, validate_srt, validate_video
from workers.uploads import UploadJob, UploadQueue, source_id_of

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])
pages = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "ui" / "templates"))
api_pages.install(templates)

OPERATORS = require("operator", "admin")
FLUSH_BYTES = 1 << 20  # request bytes gathered before one write to disk
STATUS = {"name": 422, "bad": 400, "too_large": 413, "offset": 409, "busy": 423, "integrity": 422, "media": 422,
          "missing": 404, "storage": 507}


def _fail(err: UploadError) -> HTTPException:
    headers = {"Upload-Offset": str(err.offset)} if err.offset is not None else None
    return HTTPException(STATUS.get(err.kind, 400), str(err), headers=headers)


def _offset_conflict(err: UploadError) -> JSONResponse:
    """409 with the offset in the body too, so a client needs no header parsing to resume."""
    return JSONResponse({"detail": str(err), "offset": err.offset}, status_code=409,
                        headers={"Upload-Offset": str(err.offset), "Cache-Control": "no-store"})


def _queue(bus) -> UploadQueue | None:
    return UploadQueue(bus.r) if bus is not None else None


def _own(parts, upload_id: str, who: Principal) -> FlightView:
    """The upload, if it exists and ``who`` may see it; 404 otherwise (no hint that it exists)."""
    flight = parts.flights.get(upload_id) if len(upload_id) == 32 else None
    if flight is None or (who.role != "admin" and flight.owner != who.username):
        raise HTTPException(404, f"no upload {upload_id[:40]!r} of yours")
    return flight


def _site(parts, lat: float | None, lon: float | None, grid: str | None) -> tuple[float, float, str | None]:
    """(lat, lon, grid cell) of a site given as a point or as a cell; 422 when outside the city."""
    cells = parts.grid
    if lat is None:
        if cells is None:
            raise HTTPException(422, "no grid is configured: give the site as lat and lon")
        try:
            lat, lon = cells.cell_center(grid)
        except GridError as err:
            raise HTTPException(422, str(err)) from None
        return lat, lon, grid
    cell = cells.cell_at(lat, lon) if cells is not None else None
    if cells is not None and cell is None:
        raise HTTPException(422, f"the site {lat:.6f}, {lon:.6f} lies outside the city's grid; mark a point inside it")
    if grid and cell != grid:
        raise HTTPException(422, f"the site {lat:.6f}, {lon:.6f} lies in cell {cell}, not {grid}")
    return lat, lon, cell


def _progress(flight: FlightView, live: dict) -> Progress:
    if flight.state == "processing" and live.get("state") == "processing":
        return Progress(percent=float(live.get("percent") or 0.0), frames=live.get("frames"),
                        video_s=live.get("video_s"), duration_s=live.get("duration_s"), worker=live.get("worker"))
    percent = 100.0 if flight.state == "done" else round(100 * flight.progress, 1)
    return Progress(percent=percent, duration_s=flight.duration_s, worker=flight.worker)


def _queue_job(queue: UploadQueue, flight: FlightView, area) -> None:
    """Add the flight's analysis job now if Redis answers; if not, the flight's row says it is
    queued, and the relay of ``patrol serve`` (workers/upload_relay.py) adds it once Redis is back."""
    try:
        queue.enqueue(UploadJob.of(flight, area))
    except (redis.ConnectionError, redis.TimeoutError) as err:
        log.warning("upload %s queued; its job waits for Redis: %s", flight.id, err)


def _out(parts, flight: FlightView, queue: UploadQueue | None) -> dict:
    area = parts.upload_area
    base = f"/api/v1/uploads/{flight.id}"

    def part(name: str, filename, size, sha) -> PartOut:
        try:
            offset = area.offset(flight.id, name)
        except UploadError:
            offset = 0
        return PartOut(filename=filename, size=size, sha256=sha, offset=offset, url=f"{base}/{name}")

    live = {}
    if queue is not None and flight.state == "processing":
        try:
            live = queue.progress(flight.id)
        except Exception:  # progress is a nicety; the row is the truth
            live = {}
    return dict(
        id=flight.id, owner=flight.owner, state=flight.state, kind=flight.kind,
        video=part("video", flight.video_name, flight.video_size, flight.video_sha256),
        srt=part("srt", flight.srt_name, flight.srt_size, flight.srt_sha256) if flight.has_srt else None,
        lat=flight.lat, lon=flight.lon, site_grid=flight.site_grid, codec=flight.codec, duration_s=flight.duration_s,
        progress=_progress(flight, live), attempts=flight.attempts, error=flight.error, warnings=flight.warnings,
        result=flight.result, case_ids=flight.case_ids, created_at=flight.created_at, updated_at=flight.updated_at,
        url=base)


def _cases(parts, flight: FlightView) -> list[CaseBrief]:
    out = []
    for cid in flight.case_ids:
        c = parts.store.get_case(cid)
        if c is None:
            continue
        zh = parts.taxonomy.event_name(c.event_type)[0]
        named = f"{zh} · {parts.taxonomy.object_name(c.label)[0]}" if c.label else zh
        out.append(CaseBrief(id=c.id, case_no=c.case_no, event_type=c.event_type, named=named, status=c.status,
                             category=f"{c.major}/{c.minor} {c.minor_name}", first_seen=c.first_seen,
                             last_seen=c.last_seen, confidence=c.confidence, lat=c.lat, lon=c.lon, grid=c.grid,
                             snapshot_url=f"/api/v1/uploads/{flight.id}/cases/{c.id}/snapshot" if c.snapshot_key
                             else None))
    return out


def _chunk_start(request: Request, total: int) -> tuple[int, int | None]:
    """(offset, Content-Length) of a chunk from ``Upload-Offset`` or ``Content-Range``."""
    raw_length = request.headers.get("content-length")
    length = whole_number(raw_length)
    if raw_length is not None and length is None:
        raise HTTPException(400, "Content-Length must be a whole number of bytes")
    offset = request.headers.get("upload-offset")
    crange = request.headers.get("content-range")
    if offset is not None:
        if whole_number(offset) is None:
            raise HTTPException(400, "Upload-Offset must be a whole number of bytes (where this chunk starts)")
        return whole_number(offset), length
    if crange is not None:
        unit, _, spec = crange.strip().partition(" ")
        first, _, rest = spec.partition("-")
        last, _, whole = rest.partition("/")
        first, last, whole = whole_number(first), whole_number(last), whole_number(whole)
        if unit != "bytes" or None in (first, last, whole):
            raise HTTPException(400, "Content-Range must read 'bytes FIRST-LAST/TOTAL'")
        if whole != total:
            raise HTTPException(409, f"Content-Range says the file has {whole} bytes; the upload declared {total}")
        if last < first or (length is not None and length != last - first + 1):
            raise HTTPException(400, f"Content-Range bytes {first}-{last} do not match the body of {length} bytes")
        return first, last - first + 1 if length is None else length
    raise HTTPException(400, "say where the chunk starts: 'Upload-Offset: N' or 'Content-Range: bytes N-M/TOTAL'")


# ---------------------------------------------------------------------------------- routes


@router.post("", status_code=201, response_model=UploadOut, summary="Start a flight upload (video and optional SRT)",
             responses={413: {"description": "larger than allowed"}, 422: {"description": "name or type refused"}})
def create_upload(body: UploadIn, response: Response, who: Principal = Depends(OPERATORS), parts=Depends(get_parts),
                  bus=Depends(get_bus)):
    area = parts.upload_area
    try:
        name = clean_name(body.filename, "video")
        area.check_size("video", body.size)
        sha = check_sha256(body.sha256)
        srt_name = srt_sha = srt_size = None
        if body.srt is not None:
            srt_name = clean_name(body.srt.filename, "srt")
            srt_size = area.check_size("srt", body.srt.size)
            srt_sha = check_sha256(body.srt.sha256)
    except UploadError as err:
        raise _fail(err) from None
    lat = lon = grid = None
    if body.lat is not None or body.grid:
        lat, lon, grid = _site(parts, body.lat, body.lon, body.grid)
    upload_id = area.new_id()
    area.create(upload_id, ["video"] + (["srt"] if srt_name else []))
    flight = parts.flights.create(id=upload_id, owner=who.username, video_name=name, video_size=body.size,
                                  video_sha256=sha, srt_name=srt_name, srt_size=srt_size, srt_sha256=srt_sha,
                                  lat=lat, lon=lon, site_grid=grid)
    response.headers["Location"] = f"/api/v1/uploads/{upload_id}"
    return _out(parts, flight, None)


@router.get("", response_model=UploadList, summary="Flights uploaded: your own (admins: everyone's)")
def list_uploads(owner: str | None = Query(None, description="admins: only this operator's"),
                 limit: int = Query(50, ge=1, le=500), offset: Offset = 0,
                 who: Principal = Depends(OPERATORS), parts=Depends(get_parts), bus=Depends(get_bus)):
    if who.role != "admin":
        owner = who.username
    page = parts.flights.list(owner=owner, limit=limit, offset=offset)
    queue = _queue(bus)
    return UploadList(items=[_out(parts, f, queue) for f in page.items], total=page.total)


@router.get("/{upload_id}", response_model=UploadDetail, summary="State, job progress and the draft cases found")
def get_upload(upload_id: str, who: Principal = Depends(OPERATORS), parts=Depends(get_parts), bus=Depends(get_bus)):
    flight = _own(parts, upload_id, who)
    return UploadDetail(**_out(parts, flight, _queue(bus)), cases=_cases(parts, flight))


@router.post("/{upload_id}/finish", response_model=UploadOut, status_code=202,
             summary="All bytes sent: check size and SHA-256, validate, queue the analysis",
             responses={409: {"description": "a part is incomplete (offsets in the answer) or already finished"},
                        422: {"description": "hash mismatch, not an H.264/H.265 MP4/MOV, corrupt, or an SRT "
                                             "that does not belong to the video: the upload is rejected"},
                        503: {"description": "no job queue (Redis) to run the analysis"}})
def finish(upload_id: str, who: Principal = Depends(OPERATORS), parts=Depends(get_parts), bus=Depends(get_bus)):
    flight = _own(parts, upload_id, who)
    queue = _queue(bus)
    if queue is None:
        raise HTTPException(503, "this server has no job queue (Redis): uploads cannot be analysed here")
    if flight.state == "queued":  # finished before: make sure its job is there (adding it is idempotent)
        _queue_job(queue, flight, parts.upload_area)
        return _out(parts, flight, queue)
    if flight.state != "uploading":
        raise HTTPException(409, f"upload {flight.id} is {flight.state}; it was finished already")
    area = parts.upload_area
    names = {"video": flight.video_name, "srt": flight.srt_name}
    try:
        for part, size, sha in [("video", flight.video_size, flight.video_sha256)] + (
                [("srt", flight.srt_size, flight.srt_sha256)] if flight.has_srt else []):
            try:
                area.verify(flight.id, part, size, sha)
            except UploadError as err:
                if err.kind == "offset":
                    raise HTTPException(409, f"{names[part]}: {err}", headers={"Upload-Offset": str(err.offset)})
                raise
        info = validate_video(area.path(flight.id, "video"), flight.video_name)
        warnings: list[str] = []
        gps = True
        if flight.has_srt:
            track = validate_srt(area.path(flight.id, "srt"), info.duration_s, flight.srt_name)
            warnings = list(track.warnings)
            gps = any(s.has_fix for s in track)
            if not gps:
                warnings.append(f"{flight.srt_name} has no GPS fix: mark the site of the flight on the map")
    except UploadError as err:
        try:
            parts.flights.reject(flight.id, str(err))  # the bytes stay in the upload area for inspection
        except FlightError as moved:
            raise HTTPException(409, str(moved)) from None
        raise HTTPException(422, f"{err} (upload {flight.id} rejected; its files are kept for inspection)") from None
    try:
        flight = parts.flights.uploaded(flight.id, codec=info.codec, width=info.width, height=info.height,
                                        fps=info.fps, duration_s=info.duration_s, warnings=warnings, gps=gps)
    except FlightError as err:  # finished by a concurrent request
        raise HTTPException(409, str(err)) from None
    if flight.state == "queued":
        _queue_job(queue, flight, area)
    return _out(parts, flight, queue)


@router.put("/{upload_id}/site", response_model=UploadOut,
            summary="The flight's site (no telemetry): a point or a grid cell; queues a waiting analysis")
def set_site(upload_id: str, body: SiteIn, who: Principal = Depends(OPERATORS), parts=Depends(get_parts),
             bus=Depends(get_bus)):
    flight = _own(parts, upload_id, who)
    lat, lon, grid = _site(parts, body.lat, body.lon, body.grid)
    queue = _queue(bus)
    if flight.state == "needs_site" and queue is None:
        raise HTTPException(503, "this server has no job queue (Redis): uploads cannot be analysed here")
    try:
        flight, ready = parts.flights.set_site(flight.id, lat, lon, grid)
    except FlightError as err:
        raise HTTPException(409, str(err)) from None
    if ready:
        _queue_job(queue, flight, parts.upload_area)
    return _out(parts, flight, queue)


@router.head("/{upload_id}/{part}", summary="Where to continue a part: the Upload-Offset header")
@router.get("/{upload_id}/{part}", summary="Where to continue a part: its offset and size")
def part_offset(upload_id: str, part: str, request: Request, who: Principal = Depends(OPERATORS),
                parts=Depends(get_parts)):
    flight = _own(parts, upload_id, who)
    size = _declared(flight, part)
    try:
        offset = parts.upload_area.offset(flight.id, part)
    except UploadError as err:
        raise _fail(err) from None
    headers = {"Upload-Offset": str(offset), "Upload-Length": str(size), "Cache-Control": "no-store"}
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return JSONResponse({"offset": offset, "size": size, "complete": offset == size}, headers=headers)


def _declared(flight: FlightView, part: str) -> int:
    if part == "video":
        return flight.video_size
    if part == "srt" and flight.has_srt:
        return flight.srt_size
    raise HTTPException(404, f"upload {flight.id} has no {part[:20]!r} part" if part in PARTS
                        else f"unknown part {part[:20]!r}; one of {', '.join(PARTS)}")


@router.patch("/{upload_id}/{part}", summary="Send a chunk at its offset (Upload-Offset or Content-Range)",
              responses={409: {"description": "the chunk does not start at the current offset (given in the answer)"},
                         413: {"description": "the chunk is larger than allowed"},
                         423: {"description": "another request is writing this part"}})
@router.put("/{upload_id}/{part}", include_in_schema=False)
async def put_chunk(upload_id: str, part: str, request: Request, who: Principal = Depends(OPERATORS),
                    parts=Depends(get_parts)):
    flight = await run_in_threadpool(_own, parts, upload_id, who)
    total = _declared(flight, part)
    if flight.state != "uploading":
        raise HTTPException(409, f"upload {flight.id} is {flight.state}; its files can no longer change")
    offset, length = _chunk_start(request, total)
    area = parts.upload_area
    try:
        writer = area.chunk(flight.id, part, offset, total, length)
        await run_in_threadpool(writer.__enter__)
    except UploadError as err:
        if err.kind == "offset":
            return _offset_conflict(err)
        raise _fail(err) from None
    failure: BaseException | None = None
    pending = bytearray()
    try:
        async for data in request.stream():
            pending += data
            if len(pending) >= FLUSH_BYTES or writer.written + len(pending) > writer.allowed:
                block, pending = bytes(pending), bytearray()
                await run_in_threadpool(writer.write, block)  # refuses bytes beyond the limit, unwritten
    except BaseException as err:  # noqa: B902 - the writer must learn of every way out
        failure = err
    finally:
        # Shielded: a cancelled request must still store what arrived, close the file and
        # release its lock. A refused chunk is taken back whole; a broken-off one keeps what
        # arrived before the link dropped, which is where the client resumes.
        with anyio.CancelScope(shield=True):
            if pending and not isinstance(failure, UploadError):
                try:
                    await run_in_threadpool(writer.write, bytes(pending))
                except UploadError as err:
                    failure = failure or err
            await run_in_threadpool(writer.__exit__, type(failure) if failure else None, failure, None)
    if isinstance(failure, UploadError):
        raise _fail(failure) from None
    if isinstance(failure, ClientDisconnect):
        return Response(status_code=400)  # nobody reads it; the bytes that arrived are kept
    if failure is not None:
        raise failure
    if length is not None and writer.written != length:
        detail = f"the body had {writer.written} bytes, not the {length} announced; continue from {writer.offset}"
        return JSONResponse({"detail": detail, "offset": writer.offset}, status_code=400,
                            headers={"Upload-Offset": str(writer.offset)})
    return JSONResponse({"offset": writer.offset, "size": total, "complete": writer.offset == total},
                        headers={"Upload-Offset": str(writer.offset), "Cache-Control": "no-store"})


@router.get("/{upload_id}/cases/{case_id}/snapshot", response_class=FileResponse,
            summary="Evidence snapshot of a draft case this flight produced", responses={200: {"content": {"image/jpeg": {}}}})
def case_snapshot(upload_id: str, case_id: RowId, who: Principal = Depends(OPERATORS), parts=Depends(get_parts)):
    flight = _own(parts, upload_id, who)
    case = parts.store.get_case(case_id) if case_id in flight.case_ids else None
    if case is None or source_id_of(flight.id) not in case.source_ids:
        raise HTTPException(404, f"upload {flight.id} produced no case {case_id}")
    if not case.snapshot_key or not parts.evidence.exists(case.snapshot_key):
        raise HTTPException(404, f"case {case.case_no} has no snapshot")
    return FileResponse(parts.evidence.path(case.snapshot_key), media_type="image/jpeg")


@pages.get("/uploads", response_class=HTMLResponse)
def upload_page(request: Request, who: Principal = Depends(require_page("operator", "admin")),
                parts=Depends(get_parts)):
    u = parts.settings.uploads
    return templates.TemplateResponse(request, "upload.html", {
        "user": who, "active": "uploads", "chunk_bytes": min(u.chunk_max_bytes, 8 << 20),
        "max_gib": math.floor(u.max_bytes / (1 << 30) * 10) / 10,
        # the city's own grid is the map; tiles only from a basemap the city serves (ui.map_tiles_url)
        "map": (gmap := grid_map(parts.grid, None, None, None) if parts.grid is not None else None),
        "tiles": tiles(gmap, parts.settings.ui.map_tiles_url) if gmap is not None else [],
    })
