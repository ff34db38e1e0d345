"""The people's pages: which a role may use, where it lands, and the page that says "not yours".

One table (``PAGES``) drives the tabs in the header, the page a user lands on after
logging in (the first of their pages) and the links of the readable 403 page a
browser gets for a page its role may not use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import Request
from fastapi.responses import RedirectResponse
from fastapi.templating import Jinja2Templates

from api.auth import PageForbidden, allows


@dataclass(frozen=True)
class Page:
    path: str
    label: str
    roles: tuple[str, ...]  # as given to require_page (admin is implied, api/auth.py)
    key: str  # the template's ``active``


PAGES = (
    Page("/", "审核 Review", ("analyst",), "queue"),
    Page("/uploads", "上传 Uploads", ("operator",), "uploads"),
    Page("/sources", "视频源 Sources", ("analyst", "operator"), "sources"),
)


def pages_for(role: str | None) -> list[Page]:
    """The pages a role may open, the landing page first."""
    return [p for p in PAGES if role is not None and allows(p.roles, role)]


def home_for(role: str) -> str | None:
    """Where a user of ``role`` lands: their first page (None for machine roles)."""
    mine = pages_for(role)
    return mine[0].path if mine else None


def nav(user) -> list[Page]:
    """The header's tabs for the logged-in user: only the pages they may open."""
    return pages_for(getattr(user, "role", None))


def install(templates: Jinja2Templates) -> None:
    """Give a template environment the header's tabs (``nav(user)``)."""
    templates.env.globals["nav"] = nav


_templates = Jinja2Templates(directory=str(Path(__file__).resolve().parent / "ui" / "templates"))
install(_templates)


def forbidden_page(request: Request, exc: PageForbidden):
    """The start page ("/") sends each role to its own landing page; any other page
    answers 403 with a page that says why and links to the user's own pages."""
    home = home_for(exc.principal.role)
    if request.url.path == "/" and home and home != "/":
        return RedirectResponse(home, status_code=303)
    return _templates.TemplateResponse(request, "forbidden.html", {
        "user": exc.principal, "needs": exc.needs, "path": request.url.path, "mine": nav(exc.principal),
    }, status_code=403)


def register(app) -> None:
    app.add_exception_handler(PageForbidden, forbidden_page)

