"""The case API's response models: a draft case as the API shows it, its 721 handling with
the place's history, its evidence, and what retention removed."""
from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from cases.store import DraftCaseView, ReviewActionView

if TYPE_CHECKING:
    from cases.retention import RemovalView


# The city's 721 handling (config/handling.yaml): which one a case gets, and which its approval chose.
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
    def of(cls, r: RemovalView | None) -> "EvidenceRemovedOut | None":
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


class EvidenceItem(BaseModel):
    kind: str = Field(description="snapshot, before, after or clip")
    url: str
    media_type: str
    ts: float | None = Field(None, description="the sample's time (Unix s for live sources, s into the file for uploads)")
    source_id: str | None = None
    removed: bool = Field(False, description="its file was removed by evidence retention (see evidence_removed)")


class CaseEvidence(BaseModel):
    snapshot: EvidenceItem | None = Field(None, description="the best sighting, box and label drawn")
    before: EvidenceItem | None = Field(None, description="the view before the first sighting")
    after: EvidenceItem | None = Field(None, description="the latest view (after it ended, for an ended event)")
    clip: EvidenceItem | None = Field(None, description="H.264 MP4: the view before, then the first sightings")
    items: list[EvidenceItem] = Field(description="every before/after/clip of every event of the case")
    evidence_removed: EvidenceRemovedOut | None = Field(None, description="when and why retention removed its files")
