"""Draft cases: list, filter, read, review (approve, reject, reclassify), evidence."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field, StringConstraints, model_validator

from api.auth import Principal, require
from api.deps import parts as get_parts
from api.params import Body, Moment, Offset, RowId
from cases import place_history, retention
from cases.store import CaseError, CaseNotFound, CasePage, DraftCaseView, ReviewActionView
from cases.taxonomy import TaxonomyError
from core.wiring import Parts

router = APIRouter(prefix="/api/v1", tags=["cases"])
analyst = require("analyst")  # and admin (api/auth.py)


Handling = Literal["service", "management", "enforcement"]


class PastCaseOut(BaseModel):
    case_id: int
    case_no: str
    seen_at: str | None = Field(description="first seen, ISO 8601 in China time (+08:00)")
    status: Literal["draft", "approved", "rejected"]
    handling: Handling | None = Field(description="the handling its approval chose")
    handling_zh: str | None
    review_reason: str | None = Field(description="why it was rejected")
    distance_m: float | None = Field(description="from this case; null when either has no position")
    same_cell: bool
    counted: bool = Field(description="an occurrence (approved); rejected ones and drafts are listed, not counted")


class HandlingOut(BaseModel):
    """The city's 721 handling for the case (config/handling.yaml), computed when read."""

    hint: Handling = Field(description="suggested: service (劝导), management (责令整改) or enforcement (立案)")
    hint_zh: str
    reason: str = Field(description="why, in words")
    history_count: int = Field(description="earlier occurrences at the place in the window")
    chosen: Handling | None = Field(description="what the approval chose; null for a draft or rejected case")
    chosen_zh: str | None
    window_days: float
    radius_m: float
    history: list[PastCaseOut] = Field(description="earlier cases of the type at the place, newest first")


class EvidenceRemovedOut(BaseModel):
    removed_at: datetime = Field(description="when its evidence files were removed (UTC)")
    reason: Literal["rejected_age", "draft_age", "approved_age", "quota"]
    why: str = Field(description="the reason in words")
    files: int = Field(description="files removed")
    shared: int = Field(description="files kept because another case still refers to them")

    @classmethod
    def of(cls, r: retention.RemovalView | None) -> "EvidenceRemovedOut | None":
        return None if r is None else cls(removed_at=r.removed_at, reason=r.reason, why=r.why, files=r.files,
                                          shared=r.shared)


class CaseOut(DraftCaseView):
    snapshot_url: str | None = None
    handling: HandlingOut | None = None
    evidence_removed: EvidenceRemovedOut | None = Field(
        None, description="set when retention removed the case's evidence files (docs/operations.md)")


class CaseDetail(CaseOut):
    actions: list[ReviewActionView]


class CaseList(BaseModel):
    items: list[CaseOut]
    total: int
    limit: int
    offset: int


# Bad input is answered 422 here, before the store: the store's CaseError means 409,
# a conflict with the case's state (already reviewed), and the two must not mix.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class Actor(Body):
    # The audit trail records the logged-in user, never a name the client types. A client
    # may still send its user's name (older clients did); any other name is refused, so
    # a client never believes it recorded someone the trail does not show.
    actor: Name | None = Field(None, description="optional; if given it must be the logged-in user's name")

    def acting(self, principal: Principal) -> str:
        if self.actor is not None and self.actor != principal.username:
            raise HTTPException(422, f"actor {self.actor!r} is not the logged-in user {principal.username!r}: "
                                     "the audit trail records who is logged in; leave actor out")
        return principal.username


class Approval(Actor):
    handling: Handling | None = Field(None, description="the 721 handling; default: the case's hint")


class Rejection(Actor):
    reason: Literal["false_alarm", "duplicate", "permitted", "other"]
    note: str | None = Field(None, max_length=500)

    @model_validator(mode="after")
    def _other_needs_a_note(self):
        if self.reason == "other" and not (self.note or "").strip():
            raise ValueError("reason 'other' needs a note saying why")
        return self


class Reclassification(Actor):
    event_type: str | None = None
    major: str | None = None
    minor: str | None = None

    @model_validator(mode="after")
    def _something_to_change_to(self):
        if (self.major is None) != (self.minor is None):
            raise ValueError("give both major and minor, or neither")
        if self.event_type is None and self.major is None:
            raise ValueError("nothing to reclassify to: give an event_type, or major and minor")
        return self


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
