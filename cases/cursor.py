"""Opaque cursors over append-only logs (the case feed, the event feed, the audit log).

A cursor names a position in one log: "everything after entry N". It is opaque
to consumers (base64url text) so the encoding can change without breaking them,
and it names its log so that a cursor of one feed given to another is refused
instead of silently skipping entries.
"""
from __future__ import annotations

import base64
import binascii
import re

VERSION = "v1"
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")
_POSITION = re.compile(r"[0-9]{1,19}")  # ASCII digits that fit an SQL BIGINT
MAX_POSITION = 2**63 - 1


class CursorError(ValueError):
    """A cursor this log did not issue: malformed, from another log, or tampered with."""


def encode(log: str, position: int) -> str:
    raw = f"{VERSION}:{log}:{int(position)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, log: str) -> int:
    """The position after which to continue in ``log``; ``CursorError`` says why not."""
    if not _TOKEN.fullmatch(token or ""):
        raise CursorError("cursor is not one this API issued (expected the next_cursor of an earlier page)")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise CursorError("cursor is not one this API issued (expected the next_cursor of an earlier page)") from None
    parts = raw.split(":")
    if len(parts) != 3 or parts[0] != VERSION or not _POSITION.fullmatch(parts[2]) or int(parts[2]) > MAX_POSITION:
        raise CursorError("cursor is not one this API issued (expected the next_cursor of an earlier page)")
    if parts[1] != log:
        raise CursorError(f"this cursor belongs to the {parts[1]!r} log, not to {log!r}")
    return int(parts[2])
