"""The case platform's feeds: confirmed cases and raw events, paged by cursor,
and the evidence of a confirmed case (docs/platform-interface.md)."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import Principal, require
from api.deps import parts as get_parts
from api.routers.cases import gone
from cases import feed
from cases.cursor import CursorError
from cases.platform import CaseFeedPage, EventFeedPage, case_page, event_page
from cases.store import DraftCase
from core.wiring import Parts

router = APIRouter(prefix="/api/v1", tags=["platform"])
platform = require("platform", "admin")

CURSOR = Query(None, max_length=200, description="next_cursor of the previous page; leave out to start at the "
                                                 "beginning of the feed")
LIMIT = Query(100, ge=1, le=feed.MAX_LIMIT, description="entries per page")
BAD_CURSOR = {400: {"description": "a cursor this feed did not issue",
                    "content": {"application/json": {"example": {"detail": "cursor is not one this API issued "
                                                                           "(expected the next_cursor of an "
                                                                           "earlier page)"}}}}}

RESUME = """Pages are in the order the approvals committed; each case appears exactly once.
Keep the `next_cursor` of the last page you processed (also across your restarts and ours);
asking again with it returns only what came after. An empty page still returns a
`next_cursor` to poll with; `has_more` says whether to ask again at once."""


def _page(fn):
    try:
        return fn()
    except CursorError as err:
        raise HTTPException(400, str(err)) from None


@router.get("/feed", response_model=CaseFeedPage, responses=BAD_CURSOR, description=RESUME,
            summary="Confirmed cases, in approval order, from a cursor")
def case_feed(cursor: str | None = CURSOR, limit: int = LIMIT, parts: Parts = Depends(get_parts),
              _: Principal = Depends(platform)):
    with Session(parts.store.engine) as s:
        return _page(lambda: case_page(s, cursor, limit, parts.settings.api.base_url))


@router.get("/feed/events", response_model=EventFeedPage, responses=BAD_CURSOR,
            summary="Raw events (every stored revision), in the order stored, from a cursor",
            description="What the detectors and rules found, before any review: each revision of an event "
                        "once. Same cursor rules as the case feed; a cursor of one feed is refused by the other.")
def event_feed(cursor: str | None = CURSOR, limit: int = LIMIT, parts: Parts = Depends(get_parts),
               _: Principal = Depends(platform)):
    with Session(parts.store.engine) as s:
        return _page(lambda: event_page(s, cursor, limit))


@router.get("/feed/cases/{case_no}/snapshot", response_class=FileResponse,
            summary="Evidence snapshot of a confirmed case (JPEG, box drawn)",
            responses={200: {"content": {"image/jpeg": {}}}, 404: {"description": "no such confirmed case, "
                                                                                   "or no snapshot"},
                       410: {"description": "removed by evidence retention after its legal period"}})
def case_snapshot(case_no: str, parts: Parts = Depends(get_parts), _: Principal = Depends(platform)):
    # Only what the feed has published: a draft's evidence is not the platform's to see.
    with Session(parts.store.engine) as s:
        case = s.scalar(select(DraftCase).where(DraftCase.case_no == case_no))
        published = case is not None and feed.case_entry(s, case.id) is not None
    if not published:
        raise HTTPException(404, f"no confirmed case {case_no}")
    if case.snapshot_key and not parts.evidence.exists(case.snapshot_key):
        gone(parts, case.id, case_no)  # its legal period ended: 410 with when (docs/operations.md)
    if not case.snapshot_key or not parts.evidence.exists(case.snapshot_key):
        raise HTTPException(404, f"case {case_no} has no snapshot")
    return FileResponse(parts.evidence.path(case.snapshot_key), media_type="image/jpeg")
