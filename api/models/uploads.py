"""Drone flight uploads over the API: the upload's parts, its site, its state and progress,
and the draft cases found in it."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator

from api.params import Body


class PartIn(Body):
    filename: str = Field(..., description="the file's own name, without folders (kept for display only)")
    size: int = Field(..., ge=1, description="bytes of the whole file")
    sha256: str = Field(..., description="SHA-256 of the whole file, 64 hex digits")


class UploadIn(PartIn):
    srt: PartIn | None = Field(None, description="the DJI .SRT telemetry beside the video, if there is one")
    lat: float | None = Field(None, ge=-90, le=90, description="the site, for a flight without telemetry")
    lon: float | None = Field(None, ge=-180, le=180)
    grid: str | None = Field(None, description="or a grid cell code: the site is the cell's centre")

    @model_validator(mode="after")
    def _both_or_neither(self):
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        return self


class SiteIn(Body):
    lat: float | None = Field(None, ge=-90, le=90)
    lon: float | None = Field(None, ge=-180, le=180)
    grid: str | None = Field(None, description="a grid cell code instead of lat/lon: the cell's centre")

    @model_validator(mode="after")
    def _one_way(self):
        if (self.lat is None) != (self.lon is None):
            raise ValueError("give both lat and lon, or neither")
        if self.lat is None and not self.grid:
            raise ValueError("give lat and lon, or a grid cell code")
        return self


class PartOut(BaseModel):
    filename: str
    size: int
    sha256: str
    offset: int = Field(description="bytes stored so far: where an interrupted upload continues")
    url: str


class Progress(BaseModel):
    percent: float
    frames: int | None = None
    video_s: float | None = None
    duration_s: float | None = None
    worker: str | None = None


class CaseBrief(BaseModel):
    id: int
    case_no: str
    event_type: str
    named: str = Field("", description="the event type and the object, as the city names them (占道经营 · 流动摊位)")
    category: str
    status: str
    first_seen: float
    last_seen: float
    confidence: float
    lat: float | None
    lon: float | None
    grid: str | None
    snapshot_url: str | None


class UploadOut(BaseModel):
    id: str
    owner: str
    state: Literal["uploading", "needs_site", "queued", "processing", "done", "failed", "rejected"]
    kind: str
    video: PartOut
    srt: PartOut | None
    lat: float | None
    lon: float | None
    site_grid: str | None
    codec: str | None
    duration_s: float | None
    progress: Progress
    attempts: int
    error: str | None
    warnings: list[str]
    result: dict[str, Any]
    case_ids: list[int]
    created_at: datetime
    updated_at: datetime
    url: str


class UploadDetail(UploadOut):
    cases: list[CaseBrief]


class UploadList(BaseModel):
    items: list[UploadOut]
    total: int
