"""Draft cases: list, filter, read, review (approve, reject, reclassify), evidence."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse

from api.auth import Principal, require
from api.deps import parts as get_parts
from api.models.cases import CaseDetail, CaseList, CaseOut, EvidenceRemovedOut
from api.models.review import Approval, Reclassification, Rejection
from api.params import Moment, Offset, RowId
from cases import place_history, retention
from cases.store import CaseError, CaseNotFound, CasePage, DraftCaseView
from cases.taxonomy import TaxonomyError
from core.wiring import Parts

router = APIRouter(prefix="/api/v1", tags=["cases"])
analyst = require("analyst")  # and admin (api/auth.py)


def _outs(parts: Parts, cases: list[DraftCaseView]) -> list[CaseOut]:
    handling = place_history.handling_of(parts.store, parts.handling, cases)
    removed = retention.removals_of(parts.store, [c.id for c in cases])
    return [CaseOut(**c.model_dump(), snapshot_url=f"/api/v1/cases/{c.id}/snapshot" if c.snapshot_key else None,
                    handling=handling[c.id].as_dict(), evidence_removed=EvidenceRemovedOut.of(removed.get(c.id)))
            for c in cases]


def _out(parts: Parts, case: DraftCaseView) -> CaseOut:
    return _outs(parts, [case])[0]


def gone(parts: Parts, case_id: int, case_no: str) -> None:
    """An evidence file that retention removed: 410 saying when and why (else the caller's 404)."""
    r = retention.removal_of(parts.store, case_id)
    if r is not None:
        raise HTTPException(410, f"the evidence of case {case_no} was removed on {r.removed_at:%Y-%m-%d %H:%M} UTC: "
                                 f"{r.why}")


def _case_or_404(parts: Parts, case_id: int) -> DraftCaseView:
    case = parts.store.get_case(case_id)
    if case is None:
        raise HTTPException(404, f"no case with id {case_id}")
    return case


def _review(parts: Parts, fn):
    try:
        return _out(parts, fn())
    except CaseNotFound as err:
        raise HTTPException(404, str(err)) from None
    except CaseError as err:
        raise HTTPException(409, str(err)) from None


@router.get("/cases", response_model=CaseList, summary="List draft cases, filtered and paged")
def list_cases(
    status: Literal["draft", "approved", "rejected"] | None = None,
    event_type: str | None = None,
    source_id: str | None = None,
    grid: str | None = Query(None, description="cell code, or a street (9 digits) / community (12) prefix"),
    since: Moment | None = None,
    until: Moment | None = None,
    order: Literal["newest", "confidence"] = "newest",
    limit: int = Query(50, ge=1, le=500),
    offset: Offset = 0,
    parts: Parts = Depends(get_parts),
    _: Principal = Depends(analyst),
):
    page: CasePage = parts.store.list_cases(status=status, event_type=event_type, source_id=source_id, grid=grid,
                                            since=since, until=until, order=order, limit=limit, offset=offset)
    return CaseList(items=_outs(parts, page.items), total=page.total, limit=page.limit, offset=page.offset)


@router.get("/cases/{case_id}", response_model=CaseDetail, summary="One draft case with its review history")
def get_case(case_id: RowId, parts: Parts = Depends(get_parts), _: Principal = Depends(analyst)):
    case = _case_or_404(parts, case_id)
    return CaseDetail(**_out(parts, case).model_dump(), actions=parts.store.actions(case_id))


@router.post("/cases/{case_id}/approve", response_model=CaseOut,
             summary="Approve a draft: it becomes a case, handled the 721 way (default: the hint)")
def approve(case_id: RowId, body: Approval | None = None, parts: Parts = Depends(get_parts),
            principal: Principal = Depends(analyst)):
    body = body or Approval()
    actor = body.acting(principal)
    return _review(parts, lambda: place_history.approve(parts.store, parts.handling, case_id, actor, body.handling))


@router.post("/cases/{case_id}/reject", response_model=CaseOut, summary="Reject a draft, with a reason")
def reject(case_id: RowId, body: Rejection, parts: Parts = Depends(get_parts), principal: Principal = Depends(analyst)):
    actor = body.acting(principal)
    return _review(parts, lambda: parts.store.reject(case_id, actor, body.reason, body.note))


@router.post("/cases/{case_id}/reclassify", response_model=CaseOut, summary="Change a draft's event type or category")
def reclassify(case_id: RowId, body: Reclassification, parts: Parts = Depends(get_parts),
               principal: Principal = Depends(analyst)):
    actor = body.acting(principal)
    taxonomy = parts.taxonomy
    if body.event_type is not None and body.event_type not in taxonomy.event_types():
        raise HTTPException(422, f"unknown event type {body.event_type!r}; one of {', '.join(taxonomy.event_types())}")
    if body.major is not None:
        try:
            taxonomy.category(body.major, body.minor)
        except TaxonomyError as err:
            raise HTTPException(422, str(err)) from None
    return _review(parts, lambda: parts.store.reclassify(case_id, actor, event_type=body.event_type, major=body.major,
                                                  minor=body.minor, taxonomy=parts.taxonomy))


@router.get("/cases/{case_id}/snapshot", response_class=FileResponse, summary="Evidence snapshot (JPEG, box drawn)",
            responses={200: {"content": {"image/jpeg": {}}},
                       410: {"description": "removed by evidence retention (when and why in detail)"}})
def snapshot(case_id: RowId, parts: Parts = Depends(get_parts), _: Principal = Depends(analyst)):
    case = _case_or_404(parts, case_id)
    if case.snapshot_key and not parts.evidence.exists(case.snapshot_key):
        gone(parts, case.id, case.case_no)
    if not case.snapshot_key or not parts.evidence.exists(case.snapshot_key):
        raise HTTPException(404, f"case {case.case_no} has no snapshot")
    return FileResponse(parts.evidence.path(case.snapshot_key), media_type="image/jpeg")


@router.get("/categories", summary="The city's event categories (for reclassification)")
def categories(parts: Parts = Depends(get_parts), _: Principal = Depends(analyst)):
    return [{"major": c.major, "major_name": c.major_name, "minor": c.minor, "minor_name": c.minor_name}
            for c in parts.taxonomy.categories()]
