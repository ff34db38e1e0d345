"""A minimal review page: the newest draft cases with their evidence (the full
keyboard-driven console comes later)."""
from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.auth import require_page
from api.deps import parts as get_parts

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "ui" / "templates"))

EVENT_NAMES = {"street_vending": "Street vending 占道经营", "illegal_construction": "Illegal construction 私搭乱建",
               "dust": "Dust 扬尘"}


@router.get("/", response_class=HTMLResponse)
def index(request: Request, status: str | None = "draft", event_type: str | None = None, parts=Depends(get_parts),
          _=Depends(require_page("analyst"))):  # not logged in: to /login and back
    status = status or None
    event_type = event_type or None
    page = parts.store.list_cases(status=status, event_type=event_type, limit=100)
    return templates.TemplateResponse(request, "cases.html", {
        "cases": page.items, "total": page.total, "status": status or "", "event_type": event_type or "",
        "event_names": EVENT_NAMES,
    })
