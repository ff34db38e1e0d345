"""The analysts' review console and the source status page.

Server-rendered: the page, the queue and a case's detail are Jinja templates; the
console's script (``ui/static/console.js``) fetches the queue and detail fragments
from here, sends review actions to the JSON API, handles the keys, and listens to
``/api/v1/cases/stream`` for new drafts. No front-end build.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.templating import Jinja2Templates

from api import pages
from api.auth import Principal, require, require_page
from api.deps import bus as get_bus, parts as get_parts, registry as get_registry
from api.gridmap import camera, grid_map, tiles
from api.params import RowId, in_range
from api.routers.sources import list_sources
from cases import evidence_index, place_history, retention
from cases.handling import HANDLING_NAMES_ZH, HANDLINGS
from cases.store import ORDERS, REJECT_REASONS, STATUSES
from core.wiring import Parts
from streams.city import CITY_TZ
from streams.frame import is_wall_clock

router = APIRouter(include_in_schema=False)
UI = Path(__file__).resolve().parents[1] / "ui"
templates = Jinja2Templates(directory=str(UI / "templates"))
pages.install(templates)
STATIC = re.compile(r"[a-z0-9_-]+\.(js|css)")
QUEUE_LIMIT = 100

REASON_NAMES = {"false_alarm": "误报 False alarm", "duplicate": "重复 Duplicate", "permitted": "已审批 Permitted",
                "other": "其他 Other"}
STATUS_NAMES = {"draft": "草稿 Draft", "approved": "已确认 Approved", "rejected": "已驳回 Rejected"}
KIND_NAMES = {"fixed": "视频监控 fixed camera", "vehicle": "巡查车 patrol vehicle", "drone": "无人机 drone",
              "mobile": "移动巡查 body camera / phone"}


def _when(ts: float | None) -> str:
    """A sample or event time: China time for live sources, seconds into the file for uploads."""
    if ts is None:
        return "—"
    if is_wall_clock(ts):
        return datetime.fromtimestamp(ts, CITY_TZ).strftime("%Y-%m-%d %H:%M:%S")
    return f"{ts:.1f} s into the video"


def _local(dt: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    return dt.astimezone(CITY_TZ).strftime(fmt) if dt else "—"


templates.env.filters["when"] = _when
templates.env.filters["local"] = _local
templates.env.globals.update(reason_names=REASON_NAMES, status_names=STATUS_NAMES,
                             kind_names=KIND_NAMES, handlings=HANDLINGS, handling_names=HANDLING_NAMES_ZH)


class QueueFilter:
    """The queue's filters, from the query string (the same names as ``GET /api/v1/cases``).

    ``since``/``until`` come from ``datetime-local`` inputs: wall time in the city."""

    def __init__(self, status: str | None = "draft", event_type: str | None = None, source_id: str | None = None,
                 grid: str | None = None, since: str | None = None, until: str | None = None, order: str = "newest"):
        self.status = status if status in STATUSES else None
        self.event_type = event_type or None
        self.source_id = source_id or None
        self.grid = (grid or "").strip() or None
        if self.grid is not None and not self.grid.isdigit():
            raise HTTPException(422, f"grid must be digits (a cell code or a street/community prefix), got {grid!r}")
        self.since, self.until = _local_time(since, "since"), _local_time(until, "until")
        self.order = order if order in ORDERS else "newest"

    def query(self) -> dict:
        return {"status": self.status, "event_type": self.event_type, "source_id": self.source_id, "grid": self.grid,
                "since": self.since, "until": self.until, "order": self.order}

    def form(self) -> dict:
        """What the filter inputs show."""
        return {**self.query(), "status": self.status or "",
                "since": self.since.astimezone(CITY_TZ).strftime("%Y-%m-%dT%H:%M") if self.since else "",
                "until": self.until.astimezone(CITY_TZ).strftime("%Y-%m-%dT%H:%M") if self.until else ""}


def _local_time(value: str | None, name: str) -> datetime | None:
    if not value:
        return None
    try:
        dt = datetime.fromisoformat(value)
        return in_range(dt if dt.tzinfo else dt.replace(tzinfo=CITY_TZ))
    except ValueError:
        raise HTTPException(422, f"{name} must be a date and time like 2026-11-29T08:30 between 1970 and 2200, "
                                 f"got {value[:40]!r}") from None


def _queue(parts: Parts, flt: QueueFilter) -> dict:
    page = parts.store.list_cases(**flt.query(), limit=QUEUE_LIMIT)
    return {"cases": page.items, "total": page.total, "filter": flt.form(), **_names(parts)}


def _names(parts: Parts) -> dict:
    """The city's names (config/categories.yaml) of event types and of what the detector
    saw: ``event_names[type]`` "私搭乱建 Illegal construction", ``object_name(label)``
    "彩钢棚 steel shed"."""
    taxonomy = parts.taxonomy
    events = {t: f"{zh} {en[:1].upper()}{en[1:]}" for t in taxonomy.event_types()
              for zh, en in [taxonomy.event_name(t)]}

    def object_name(label: str | None) -> str:
        zh, en = taxonomy.object_name(label)
        return zh if zh == en else f"{zh} {en}"

    return {"event_names": events, "object_name": object_name}


def _camera(gmap, registry, source_id: str):
    """Where the case's camera stands and which way it looks, for a camera that stays put;
    a moving one's place at the time is not the registry's."""
    if gmap is None or registry is None:
        return None
    try:
        src = registry.get(source_id)
    except KeyError:
        return None
    if src.moves or src.lat is None or src.lon is None:
        return None
    return camera(gmap, src.lat, src.lon, src.heading, src.hfov_deg, src.view_offset_m)


def _source_names(registry) -> dict[str, str]:
    return {s.id: s.name or s.id for s in registry} if registry is not None else {}


@router.get("/", response_class=HTMLResponse)
def console(request: Request, flt: QueueFilter = Depends(), parts: Parts = Depends(get_parts),
            registry=Depends(get_registry), principal: Principal = Depends(require_page("analyst"))):
    taxonomy = parts.taxonomy
    return templates.TemplateResponse(request, "console.html", {
        **_queue(parts, flt), "user": principal, "sources": _source_names(registry),
        "event_types": taxonomy.event_types(), "categories": taxonomy.categories(), "reasons": REJECT_REASONS,
        "statuses": STATUSES, "storage_warning": _storage_warning(),
    })


def _storage_warning() -> str | None:
    """The evidence quota warning of this process's last retention run (cases/retention.py)."""
    usage = retention.LAST_USAGE
    return usage.warning if usage is not None else None


@router.get("/ui/queue", response_class=HTMLResponse)
def queue(request: Request, flt: QueueFilter = Depends(), parts: Parts = Depends(get_parts),
          registry=Depends(get_registry), _: Principal = Depends(require("analyst"))):
    return templates.TemplateResponse(request, "_queue.html", {**_queue(parts, flt),
                                                               "sources": _source_names(registry)})


@router.get("/ui/cases/{case_id}", response_class=HTMLResponse)
def case_detail(request: Request, case_id: RowId, parts: Parts = Depends(get_parts), registry=Depends(get_registry),
                _: Principal = Depends(require("analyst"))):
    case = parts.store.get_case(case_id)
    if case is None:
        raise HTTPException(404, f"no case with id {case_id}")
    items = parts.store.evidence(case_id)
    views = {kind: {"url": f"/api/v1/cases/{case_id}/evidence/{e.id}", "ts": e.ts, "source_id": e.source_id}
             for kind, e in evidence_index.pick(items).items()}
    gmap = grid_map(parts.grid, case.lat, case.lon, case.grid) if parts.grid is not None else None
    handling = place_history.handling_of(parts.store, parts.handling, [case])[case_id].as_dict()
    return templates.TemplateResponse(request, "_case.html", {
        **_names(parts), "case": case, "views": views, "handling": handling,
        "clips": sum(e.kind == "clip" for e in items), "map": gmap,
        "camera": _camera(gmap, registry, case.source_id), "tiles": tiles(gmap, parts.settings.ui.map_tiles_url)
        if gmap is not None else [],
        "actions": parts.store.actions(case_id), "events": parts.store.events(case_id),
        "removal": retention.removal_of(parts.store, case_id),
        "sources": _source_names(registry),
    })


@router.get("/sources", response_class=HTMLResponse)
def sources_page(request: Request, bus=Depends(get_bus), registry=Depends(get_registry), parts: Parts = Depends(get_parts),
                 principal: Principal = Depends(require_page("analyst", "operator"))):
    return templates.TemplateResponse(request, "sources.html", {**_sources(bus, registry, parts), "user": principal})


@router.get("/ui/sources", response_class=HTMLResponse)
def sources_table(request: Request, bus=Depends(get_bus), registry=Depends(get_registry),
                  parts: Parts = Depends(get_parts), _: Principal = Depends(require("analyst", "operator"))):
    return templates.TemplateResponse(request, "_sources.html", _sources(bus, registry, parts))


FIX_STALE_S = 60.0  # a moving source's last fix older than this is shown greyed


def _sources(bus, registry, parts: Parts | None = None) -> dict:
    rows = list_sources(bus=bus, registry=registry)["items"]
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["state"]] = counts.get(r["state"], 0) + 1
    fixes = {r["id"]: f for r in rows if (f := _fix(r.get("fix"))) is not None}
    gmap = grid_map(parts.grid, None, None, None) if parts is not None and parts.grid is not None else None
    markers = []
    if gmap is not None:
        width = float(gmap.view_box.split()[2])
        for sid, f in fixes.items():
            x, y = gmap.project(f["lat"], f["lon"])
            markers.append({"id": sid, "x": round(x, 1), "y": round(y, 1), "r": round(width / 160, 1), **f})
    return {"rows": rows, "counts": dict(sorted(counts.items())), "redis": bus is not None,
            "now": _local(datetime.now(timezone.utc)), "fixes": fixes, "map": gmap, "markers": markers,
            "tiles": tiles(gmap, parts.settings.ui.map_tiles_url) if gmap is not None and markers else []}


def _fix(fix) -> dict | None:
    """A moving source's last fix as the page shows it: where, how old ("12 s ago"), greyed
    when older than FIX_STALE_S, and whether the intake flagged it as suspect."""
    if not isinstance(fix, dict) or fix.get("lat") is None or fix.get("lon") is None:
        return None
    age = fix.get("age_s")
    if age is None and fix.get("t") is not None:
        age = max(0.0, datetime.now(timezone.utc).timestamp() - float(fix["t"]))
    return {"lat": float(fix["lat"]), "lon": float(fix["lon"]), "age_s": age, "ago": _ago(age),
            "stale": age is None or age > FIX_STALE_S, "suspect": bool(fix.get("suspect")),
            "at": _when(float(fix["t"])) if fix.get("t") is not None else "—"}


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "age unknown"
    if seconds < 90:
        return f"{seconds:.0f} s ago"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds / 3600:.1f} h ago"


@router.get("/ui/static/{name}")
def static(name: str):
    if not STATIC.fullmatch(name) or not (UI / "static" / name).is_file():
        raise HTTPException(404, f"no static file {name!r}")
    media = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(UI / "static" / name, media_type=media, headers={"Cache-Control": "no-cache"})
