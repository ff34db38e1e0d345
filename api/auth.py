"""Access control for every route: who is asking, and may they.

Credentials, in this order:

* ``Authorization: Bearer <token>``: a session token (from ``POST /api/v1/auth/login``)
  or a long-lived API token (``patrol token create``, ``POST /api/v1/tokens``);
* the HttpOnly cookie ``patrol_session`` that the login sets for browsers.

Use ``Depends(require("analyst"))`` on a route (or in ``dependencies=[...]``); it
yields the :class:`Principal`. Not logged in, expired, revoked: 401 with the reason
in ``detail``. Logged in with the wrong role: 403. Pages use ``require_page``,
which sends the browser to ``/login?next=...`` instead of a 401, or
``optional_principal`` to decide themselves.

Roles: ``analyst`` (review), ``operator`` (drone uploads, own flights), ``admin``
(users, tokens, sources; and everything an analyst or an operator may),
``platform`` (the case platform's feed, by API token), ``monitoring`` (``/metrics``,
by API token).
"""
from __future__ import annotations

import threading
from typing import Callable
from urllib.parse import quote, urlsplit

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyCookie, HTTPBearer

from cases.accounts import ROLES, Accounts, Principal, Unauthenticated

__all__ = ["Principal", "require", "require_page", "PageForbidden", "optional_principal", "allows", "accounts", "SESSION_COOKIE",
           "ROLES", "same_origin", "credential_refusal"]

SESSION_COOKIE = "patrol_session"

# The one place that says admin may do whatever an analyst or an operator may.
# (Not platform or monitoring: those are machines' narrow rights, not a person's.)
IMPLIED_BY = {"analyst": ("admin",), "operator": ("admin",)}

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")

# Declared for the OpenAPI document only (a lock on every protected route, and the
# "Authorize" button of /docs); the checking is done below, with reasons in the 401s.
_bearer_doc = HTTPBearer(auto_error=False, scheme_name="bearer",
                         description="a session token from POST /api/v1/auth/login, or an API token")
_cookie_doc = APIKeyCookie(name=SESSION_COOKIE, auto_error=False, scheme_name="sessionCookie",
                           description="set by POST /api/v1/auth/login (browsers)")


def allows(roles: tuple[str, ...] | frozenset[str], role: str) -> bool:
    """True when ``role`` may use a route open to ``roles``."""
    return role in _expand(roles)


def _expand(roles) -> frozenset[str]:
    out = set(roles)
    for r in roles:
        out.update(IMPLIED_BY.get(r, ()))
    return frozenset(out)


_first_use = threading.Lock()


def accounts(request: Request) -> Accounts:
    parts = request.app.state.parts
    if "accounts" not in parts.__dict__:  # built on first use; two requests must not build it twice
        with _first_use:
            return parts.accounts
    return parts.accounts


def _credential(request: Request) -> tuple[str | None, str]:
    """The token the request carries and where it came from ("bearer" or "cookie")."""
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip(), "bearer"
        raise HTTPException(401, "the Authorization header must be 'Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, "cookie") if cookie else (None, "")


def _authenticate(request: Request, *, check_origin: bool = True) -> Principal:
    """The principal, or a 401 that says why not (cached per request)."""
    token, via = _credential(request)
    principal = getattr(request.state, "principal", None)
    if principal is None:
        if token is None:
            raise HTTPException(401, "not logged in: log in at /login, or send 'Authorization: Bearer <token>'",
                                headers={"WWW-Authenticate": "Bearer"})
        try:
            principal = accounts(request).authenticate(token)
        except Unauthenticated as err:
            raise HTTPException(401, str(err), headers={"WWW-Authenticate": "Bearer"}) from None
        request.state.principal = principal
    if check_origin and via == "cookie" and request.method not in SAFE_METHODS:
        same_origin(request)
    return principal


def credential_refusal(request: Request) -> str | None:
    """Why the request's credential does not hold (none, malformed, unknown, ended), or
    None when it does. For api.edge, which asks before the body is read; the principal
    is kept for the route's own role check."""
    try:
        _authenticate(request, check_origin=False)
    except HTTPException as err:
        return str(err.detail)
    return None


def same_origin(request: Request) -> None:
    """A cookie rides along on any request the browser makes, even one a foreign page
    starts. SameSite=Lax stops most; refusing unsafe methods whose Origin (or Referer)
    is another site stops the rest. Bearer tokens need no such check: no browser adds
    them by itself."""
    origin = request.headers.get("origin") or request.headers.get("referer")
    if not origin:
        return  # non-browser clients send neither
    if urlsplit(origin).netloc != request.headers.get("host", ""):
        raise HTTPException(403, f"cross-site request refused (Origin {origin!r}); "
                                 "use the page of this server, or a bearer token")


def require(*roles: str) -> Callable[[Request], Principal]:
    """A dependency that lets through only the given roles (admin where analyst or
    operator is allowed) and yields the Principal."""
    unknown = [r for r in roles if r not in ROLES]
    if not roles or unknown:
        raise ValueError(f"require() needs roles among {', '.join(ROLES)}; got {', '.join(roles) or 'none'}")
    allowed = _expand(roles)
    needs = " or ".join(sorted(allowed))

    def dependency(request: Request, _b=Depends(_bearer_doc), _c=Depends(_cookie_doc)) -> Principal:
        principal = _authenticate(request)
        if principal.role not in allowed:
            raise HTTPException(403, f"forbidden: role {principal.role!r} may not use this; it needs {needs}")
        return principal

    dependency.roles = allowed  # for readers of the app's routes (docs, tests)
    return dependency


def optional_principal(request: Request) -> Principal | None:
    """The principal, or None when the request is not (or no longer) logged in."""
    try:
        return _authenticate(request)
    except HTTPException:
        return None


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/login?next={quote(target, safe='')}"


class PageForbidden(Exception):
    """A logged-in user opened a page their role may not use (answered by api.pages
    with a readable page, not JSON)."""

    def __init__(self, principal: Principal, needs: str):
        super().__init__(f"forbidden: role {principal.role!r} may not use this; it needs {needs}")
        self.principal, self.needs = principal, needs


def require_page(*roles: str) -> Callable[[Request], Principal]:
    """Like ``require`` for HTML pages: a browser that is not logged in is sent to
    ``/login?next=<this page>`` (303) instead of getting a 401, and a role that may not
    use the page gets a readable page (PageForbidden) instead of a JSON 403."""
    check = require(*roles)
    needs = " or ".join(sorted(check.roles))

    def dependency(request: Request) -> Principal:
        principal = optional_principal(request)
        if principal is None:
            raise HTTPException(303, "log in first", headers={"Location": login_url(request)})
        if principal.role not in check.roles:
            raise PageForbidden(principal, needs)
        return principal

    dependency.roles = check.roles
    return dependency


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site only (no open redirect)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
