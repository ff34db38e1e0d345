"""Accounts over the API: logging in, changing a password, users and API tokens."""
from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from api.params import Body
from cases.accounts import MAX_TOKEN_DAYS, TokenView


class Credentials(Body):
    username: str = Field(..., min_length=1, max_length=64)
    password: str = Field(..., min_length=1, max_length=1024)


class UserOut(BaseModel):
    username: str
    role: str


class LoginOut(BaseModel):
    token: str = Field(description="the session token: send as 'Authorization: Bearer <token>' (browsers get the cookie)")
    expires_at: datetime
    user: UserOut


class PasswordChange(Body):
    current_password: str = Field(..., min_length=1, max_length=1024)
    new_password: str = Field(..., min_length=1, max_length=1024)


class NewUser(Body):
    username: str = Field(..., min_length=1, max_length=64)
    role: Literal["analyst", "operator", "admin"]
    password: str = Field(..., min_length=1, max_length=1024)


class NewTokenIn(Body):
    name: str = Field(..., min_length=1, max_length=64, description="what uses it, e.g. city-platform, prometheus")
    role: Literal["platform", "monitoring", "telemetry"] = "platform"
    days: float | None = Field(None, gt=0, le=MAX_TOKEN_DAYS,
                               description="valid for this many days (at most 100 years); none: until revoked")


class NewTokenOut(TokenView):
    token: str = Field(description="the token itself: shown now and never again (only its hash is kept)")
