"""The case platform's view of a confirmed case and of a raw event, in its field names.

The city's case platform (数字城管案件平台) names things its own way: case number,
案件来源 (source type), major/minor category code and name, unit-grid code, time
found. These models are the one place that translation happens; the feed, the
webhooks and their OpenAPI documentation all use them. Times are ISO 8601 in
China time (+08:00), the platform's clock.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from streams.frame import is_wall_clock

from . import cursor, feed
from .handling import HANDLING_NAMES_ZH, HANDLINGS
from .store import CHINA_TZ, DraftCase, DraftCaseView, approvals
from .taxonomy import SOURCE_KIND_NAMES

CRS = "WGS84"  # CGCS2000 agrees to about a metre

CASE_EXAMPLE: dict[str, Any] = {
    "seq": 31, "case_no": "CP-20261129-0007", "source_type": "视频监控", "source_kind": "fixed",
    "source_id": "fixed-east-gate", "source_ids": ["fixed-east-gate"], "event_type": "street_vending",
    "major_code": "05", "major_name": "街面秩序", "minor_code": "01", "minor_name": "无照经营游商",
    "description": "视频监控 fixed-east-gate（East Gate pavement）发现疑似占道经营",
    "address": "东门街 12 号", "lat": 30.5931, "lon": 114.3054, "crs": "WGS84", "grid_code": "42011700200818",
    "found_at": "2026-11-29T10:58:20+08:00", "approved_at": "2026-11-29T11:12:45+08:00",
    "approved_by": "analyst.wang", "confidence": 0.91, "model_version": "patrol-v1",
    "handling": {"handling": "management", "handling_zh": "管理（责令整改）", "hint": "management",
                 "hint_zh": "管理（责令整改）", "history_count": 2},
    "evidence": {"snapshot_url": "https://patrol.example.gov.cn/api/v1/feed/cases/CP-20261129-0007/snapshot",
                 "clip_url": None},
}

EVENT_EXAMPLE: dict[str, Any] = {
    "seq": 118, "event_id": "fixed-site-7:dust:1764400700.0", "revision": 3, "state": "updated",
    "event_type": "dust", "label": "dust", "source_type": "视频监控", "source_kind": "fixed",
    "source_id": "fixed-site-7", "start": 1764400700.0, "last_seen": 1764400760.0, "end": None,
    "found_at": "2026-11-29T15:18:20+08:00", "confidence": 0.66, "bbox": [412.0, 80.0, 980.0, 530.0],
    "lat": 30.5902, "lon": 114.2987, "crs": "WGS84", "zone": None, "hits": 5, "samples": 7,
    "model_version": "patrol-v1", "case_id": 12, "case_no": "CP-20261129-0012",
}


def source_type(kind: str) -> str:
    """案件来源 as the platform names it (视频监控, 车载视频, 无人机, 移动巡查, 上传视频)."""
    return SOURCE_KIND_NAMES.get(kind, (kind, kind))[0]


def local_time(value: datetime | float | None) -> str | None:
    """ISO 8601 in China time; a float is Unix seconds. Seconds into an uploaded
    file are no time of day, so they give None."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        if not is_wall_clock(value):
            return None
        value = datetime.fromtimestamp(value, timezone.utc)
    return value.astimezone(CHINA_TZ).isoformat(timespec="seconds")


class Evidence(BaseModel):
    snapshot_url: str | None = Field(None, description="JPEG with the detection box drawn (absolute URL)")
    clip_url: str | None = Field(None, description="short video clip around the detection (absolute URL); "
                                                   "null: this version keeps snapshots only")


class Handling(BaseModel):
    """The city's 721 handling of a case, as decided when it was approved."""

    model_config = ConfigDict(frozen=True)

    handling: Literal["service", "management", "enforcement"] = Field(
        description="what the analyst chose: service (服务, 劝导 guidance), management (管理, 责令整改 an order "
                    "to rectify) or enforcement (执法, 立案 a penalty case)")
    handling_zh: str
    hint: Literal["service", "management", "enforcement"] = Field(
        description="what the place's history suggested (the city's rules); may differ from handling")
    hint_zh: str
    history_count: int = Field(description="earlier confirmed cases of the type at the place in the rules' window")


def handling(details: dict[str, Any] | None) -> Handling | None:
    """The handling an approval recorded (``Store.approve``); None for one approved without it."""
    d = details or {}
    if d.get("handling") not in HANDLINGS or d.get("hint") not in HANDLINGS:
        return None
    return Handling(handling=d["handling"], handling_zh=HANDLING_NAMES_ZH[d["handling"]], hint=d["hint"],
                    hint_zh=HANDLING_NAMES_ZH[d["hint"]], history_count=int(d.get("history_count") or 0))


class PlatformCase(BaseModel):
    """A confirmed case (an analyst approved it), as the case platform takes it."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [CASE_EXAMPLE]})

    seq: int = Field(description="position in the case feed; increases in the order approvals committed")
    case_no: str = Field(description="案件编号: stable, unique id of the case (use it to deduplicate)")
    source_type: str = Field(description="案件来源: 视频监控, 车载视频, 无人机, 移动巡查 or 上传视频")
    source_kind: Literal["fixed", "vehicle", "drone", "mobile", "upload"] | str = Field(
        description="the product's kind of source behind source_type")
    source_id: str = Field(description="the camera, vehicle, drone or officer device that first saw it")
    source_ids: list[str] = Field(description="every source that saw it, first one first")
    event_type: str = Field(description="street_vending, illegal_construction or dust")
    major_code: str = Field(description="大类编码 (the city's codes file)")
    major_name: str = Field(description="大类名称")
    minor_code: str = Field(description="小类编码")
    minor_name: str = Field(description="小类名称")
    description: str = Field(description="问题描述")
    address: str | None = Field(description="地址, when known")
    lat: float | None = Field(description="latitude in crs")
    lon: float | None = Field(description="longitude in crs")
    crs: Literal["WGS84"] = Field(CRS, description="coordinate reference system of lat/lon")
    grid_code: str | None = Field(description="单元网格编码: 14 digits, 6 county + 3 street + 3 community + 2 cell")
    found_at: str | None = Field(description="发现时间, ISO 8601 +08:00: first sighting (uploaded footage "
                                             "without a clock: when the draft was made)")
    approved_at: str = Field(description="when the analyst approved it, ISO 8601 +08:00")
    approved_by: str = Field(description="the analyst who approved it")
    confidence: float = Field(description="the detector's best confidence, 0–1")
    model_version: str = Field(description="detector model that found it")
    handling: Handling | None = Field(None, description="the 721 handling (服务 / 管理 / 执法) chosen at approval, "
                                                        "with the hint and the place's history count; null for "
                                                        "cases approved before handlings were recorded")
    evidence: Evidence


class PlatformEvent(BaseModel):
    """One revision of a raw event (what the rules found on one source), before any review."""

    model_config = ConfigDict(frozen=True, json_schema_extra={"examples": [EVENT_EXAMPLE]})

    seq: int = Field(description="position in the event feed")
    event_id: str = Field(description="stable id of the event; with revision, unique per feed entry")
    revision: int = Field(description="grows each time the event changes; the newest revision is the truth")
    state: str = Field(description="opened, updated or closed")
    event_type: str
    label: str = Field(description="the detector label of the best evidence")
    source_type: str = Field(description="案件来源 of the source")
    source_kind: str
    source_id: str
    start: float = Field(description="first sighting: Unix seconds (live), or seconds into the file (uploads)")
    last_seen: float
    end: float | None
    found_at: str | None = Field(description="start as ISO 8601 +08:00; None for seconds into a file")
    confidence: float
    bbox: list[float] = Field(description="x1, y1, x2, y2 in the source video's pixels")
    lat: float | None
    lon: float | None
    crs: Literal["WGS84"] = CRS
    zone: str | None
    hits: int
    samples: int
    model_version: str
    case_id: int | None = Field(description="the draft case it went into")
    case_no: str | None


def platform_case(case: DraftCaseView, seq: int, public_url: str, approval: dict[str, Any] | None = None) -> PlatformCase:
    """``approval``: the approve action's details (``Store.approval``), which hold the handling."""
    if case.status != "approved" or case.reviewed_at is None or not case.reviewer:
        raise ValueError(f"case {case.case_no} is {case.status}, not approved: the platform takes confirmed cases only")
    base = public_url.rstrip("/")
    found = local_time(case.first_seen) or local_time(case.created_at)
    return PlatformCase(
        seq=seq, case_no=case.case_no, source_type=source_type(case.source_kind), source_kind=case.source_kind,
        source_id=case.source_id, source_ids=list(case.source_ids), event_type=case.event_type,
        major_code=case.major, major_name=case.major_name, minor_code=case.minor, minor_name=case.minor_name,
        description=case.description, address=case.address, lat=case.lat, lon=case.lon, grid_code=case.grid,
        found_at=found, approved_at=local_time(case.reviewed_at), approved_by=case.reviewer,
        confidence=round(case.confidence, 4), model_version=case.model_version, handling=handling(approval),
        # the feed's own evidence route: a platform token may fetch what it was sent, and no draft's
        evidence=Evidence(snapshot_url=f"{base}/api/v1/feed/cases/{case.case_no}/snapshot"
                          if case.snapshot_key else None, clip_url=None),
    )



class CaseFeedPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"items": [CASE_EXAMPLE], "next_cursor": "djE6Y2FzZXM6MzE", "has_more": False}]})

    items: list[PlatformCase]
    next_cursor: str = Field(description="pass as cursor for the next page; returned also when items is empty, "
                                         "so a consumer can keep polling with it")
    has_more: bool = Field(description="true when more entries follow right now (ask again at once)")


class EventFeedPage(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"items": [EVENT_EXAMPLE], "next_cursor": "djE6ZXZlbnRzOjExOA", "has_more": True}]})

    items: list[PlatformEvent]
    next_cursor: str = Field(description="pass as cursor for the next page (also when items is empty)")
    has_more: bool = Field(description="true when more entries follow right now")


def case_page(session: Session, after: str | None, limit: int, public_url: str) -> CaseFeedPage:
    """Approved cases after the cursor, in the order their approvals committed."""
    rows, more, position = feed.entries(session, feed.CASES, after, limit)
    ids = [r.case_id for r in rows]
    cases = {c.id: c for c in session.scalars(select(DraftCase).where(DraftCase.id.in_(ids)))} if ids else {}
    approved = approvals(session, ids)
    items = [platform_case(DraftCaseView.model_validate(cases[r.case_id]), r.seq, public_url, approved.get(r.case_id))
             for r in rows]
    return CaseFeedPage(items=items, next_cursor=cursor.encode(feed.CASES, rows[-1].seq if rows else position),
                        has_more=more)


def platform_event(seq: int, payload: dict[str, Any]) -> PlatformEvent:
    return PlatformEvent(seq=seq, source_type=source_type(payload["source_kind"]),
                         found_at=local_time(payload["start"]), **payload)


def event_page(session: Session, after: str | None, limit: int) -> EventFeedPage:
    """Raw event revisions after the cursor, in the order they were stored."""
    rows, more, position = feed.entries(session, feed.EVENTS, after, limit)
    return EventFeedPage(items=[platform_event(r.seq, r.payload) for r in rows],
                         next_cursor=cursor.encode(feed.EVENTS, rows[-1].seq if rows else position), has_more=more)
