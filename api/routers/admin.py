"""Administration: users and API tokens (admin only). Every change is in the audit log."""
from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException, Request

from api.auth import Principal, accounts, require
from api.models.accounts import NewTokenIn, NewTokenOut, NewUser
from api.params import RowId
from cases.accounts import AccountError, AccountNotFound, TokenView, UserView

router = APIRouter(prefix="/api/v1", tags=["admin"])
admin = require("admin")


def _account_errors(fn):
    try:
        return fn()
    except AccountNotFound as err:
        raise HTTPException(404, str(err)) from None
    except AccountError as err:
        raise HTTPException(409 if "already exists" in str(err) or "last active admin" in str(err) else 422,
                            str(err)) from None


@router.get("/users", response_model=list[UserView], summary="Every user (admin)")
def list_users(request: Request, _: Principal = Depends(admin)):
    return accounts(request).users()


@router.post("/users", response_model=UserView, status_code=201, summary="Add a user (admin)")
def add_user(body: NewUser, request: Request, principal: Principal = Depends(admin)):
    return _account_errors(lambda: accounts(request).add_user(body.username, body.role, body.password,
                                                              by=principal.username))


@router.post("/users/{name}/disable", response_model=UserView, summary="Disable a user; their sessions end (admin)")
def disable_user(name: str, request: Request, principal: Principal = Depends(admin)):
    return _account_errors(lambda: accounts(request).disable_user(name, by=principal.username))


@router.get("/tokens", response_model=list[TokenView], summary="Every API token, without the secrets (admin)")
def list_tokens(request: Request, _: Principal = Depends(admin)):
    return accounts(request).tokens()


@router.post("/tokens", response_model=NewTokenOut, status_code=201,
             summary="Create an API token for the case platform or monitoring; the token is shown once (admin)")
def create_token(body: NewTokenIn, request: Request, principal: Principal = Depends(admin)):
    made = _account_errors(lambda: accounts(request).create_token(body.name, body.role, days=body.days,
                                                                  by=principal.username))
    return NewTokenOut(**made.info.model_dump(), token=made.token)


@router.delete("/tokens/{token_id}", response_model=TokenView, summary="Revoke an API token at once (admin)")
def revoke_token(token_id: RowId, request: Request, principal: Principal = Depends(admin)):
    return _account_errors(lambda: accounts(request).revoke_token(token_id, by=principal.username))
