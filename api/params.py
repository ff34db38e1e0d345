"""Bounded request values shared by the routes, so hostile input is a 4xx, never a 500.

A database row id or an offset past 2^63 - 1 cannot be bound as an SQL integer, and a
date of year 1 or 9999 overflows when moved between time zones: both are refused here,
with a readable 422, before they reach the store.
"""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

MAX_SQL_INT = 2**63 - 1  # the largest value an SQL BIGINT (and SQLite's INTEGER) holds
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)  # no case, event or log entry is older
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)
_DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII only: str.isdigit() also takes '²' and '٣'

RowId = Annotated[int, Path(ge=1, le=MAX_SQL_INT, description="a row id (1 to 2^63 - 1)")]
Offset = Annotated[int, Query(ge=0, le=MAX_SQL_INT, description="entries to skip")]


def whole_number(text: str | None) -> int | None:
    """A non-negative integer written in ASCII digits that fits an SQL BIGINT; None otherwise."""
    if text is None or not _DIGITS.fullmatch(text.strip()):
        return None
    value = int(text.strip())
    return value if value <= MAX_SQL_INT else None


def in_range(value: datetime | None) -> datetime | None:
    """A date and time the store can compare with (1970 to 2200); ValueError otherwise."""
    if value is None:
        return None
    aware = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not EARLIEST <= aware < LATEST:
        raise ValueError(f"must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


Moment = Annotated[datetime, AfterValidator(in_range)]


class Body(BaseModel):
    """A JSON request body: numbers must be finite (JSON ``NaN``/``Infinity`` refused)."""

    model_config = ConfigDict(allow_inf_nan=False)


SqlInt = Annotated[int, Field(ge=1, le=MAX_SQL_INT)]
