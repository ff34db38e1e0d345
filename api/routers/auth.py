"""Logging in and out: the session API, and the login page browsers are sent to."""
from __future__ import annotations

from pathlib import Path

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.auth import SESSION_COOKIE, Principal, accounts, optional_principal, require, safe_next, same_origin
from api.models.accounts import Credentials, LoginOut, PasswordChange, UserOut
from api.login_guard import REFUSAL_PAUSE_S, LoginGuard, LoginRefused
from cases.accounts import AccountError, ROLES, USER_ROLES, Unauthenticated, utcnow

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
pages = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).resolve().parents[1] / "ui" / "templates"))


@router.post("/login", response_model=LoginOut, summary="Log in: a session cookie and a bearer token",
             responses={401: {"description": "wrong username or password, or the account is disabled"},
                        429: {"description": "too many attempts (for this name, or from this address), or too "
                                             "many logins at once: try again after Retry-After seconds"}})
async def login(body: Credentials, request: Request, response: Response):
    guard = login_guard(request)
    address = request.client.host if request.client else "?"
    try:
        attempt = guard.admit(body.username, address)
    except LoginRefused as err:
        raise await _too_many(err) from None
    try:
        session = await guard.check(lambda: accounts(request).login(body.username, body.password, address=address))
    except LoginRefused as err:  # busy: the attempt was not made
        attempt.succeeded()
        raise await _too_many(err) from None
    except Unauthenticated as err:
        attempt.failed()
        raise HTTPException(401, str(err)) from None
    attempt.succeeded()
    response.set_cookie(SESSION_COOKIE, session.token, max_age=int((session.expires_at - utcnow()).total_seconds()),
                        httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/")
    return LoginOut(token=session.token, expires_at=session.expires_at,
                    user=UserOut(username=session.user.username, role=session.user.role))


def login_guard(request: Request) -> LoginGuard:
    state = request.app.state
    if getattr(state, "login_guard", None) is None:
        state.login_guard = LoginGuard(state.parts.settings.auth)
    return state.login_guard


async def _too_many(err: LoginRefused) -> HTTPException:
    # Answered after a pause that holds no thread: a client that ignores Retry-After and
    # asks again at once cannot turn refusals into a flood of its own.
    await anyio.sleep(REFUSAL_PAUSE_S)
    return HTTPException(429, str(err), headers={"Retry-After": str(err.retry_after)})


@router.post("/logout", status_code=204, summary="End this session (cookie or bearer); harmless when not logged in",
             responses={403: {"description": "a cookie sent from another site's page (cross-site request)"}})
def logout(request: Request):
    header = request.headers.get("authorization", "")
    bearer = header[7:].strip() if header.lower().startswith("bearer ") else None
    token = bearer or request.cookies.get(SESSION_COOKIE)
    if token and not bearer:
        same_origin(request)  # a foreign page must not end the analyst's session
    if token:
        accounts(request).logout(token)  # an API token is not a session: it is revoked, not logged out
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@router.get("/me", response_model=UserOut, summary="Who is logged in")
def me(principal: Principal = Depends(require(*ROLES))):
    return UserOut(username=principal.username, role=principal.role)


@router.post("/password", status_code=204, summary="Change your own password (every session of yours ends)")
def change_password(body: PasswordChange, request: Request, principal: Principal = Depends(require(*USER_ROLES))):
    try:
        accounts(request).change_password(principal.username, body.current_password, body.new_password)
    except Unauthenticated as err:
        raise HTTPException(403, str(err)) from None
    except AccountError as err:
        raise HTTPException(422, str(err)) from None
    response = Response(status_code=204)
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax")
    return response


@pages.get("/login", response_class=HTMLResponse)
def login_page(request: Request, next: str | None = None):
    who = optional_principal(request)
    return templates.TemplateResponse(request, "login.html", {"next": safe_next(next), "who": who})
