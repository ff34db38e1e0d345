"""A full disk: recognising it, remembering it, and how much room is left.

A write that fails because the file system is full (or over quota, or mounted
read-only) is not the fault of what was being written: the same write succeeds
once there is room again. Callers use ``is_disk_full`` to treat such a failure
like a store outage (retry, never dead-letter; 503 with Retry-After), and
``FAULTS`` to remember the last one for ``/health`` until a write succeeds again.
"""
from __future__ import annotations

import errno
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# ENOSPC: no space; EDQUOT: the user's quota; EROFS: remounted read-only (often after errors)
DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
# SQLite's SQLITE_FULL, and PostgreSQL's class 53 "insufficient resources" as psycopg2 words them
DISK_FULL_TEXT = ("database or disk is full", "no space left on device", "could not extend file", "disk quota exceeded")
DISK_FULL_SQLSTATES = frozenset({"53100"})  # disk_full
RETRY_AFTER_S = 30  # what a refused write tells the client to wait


def is_disk_full(err: BaseException | None) -> bool:
    """Whether ``err`` (or what caused it) is a write refused for want of room."""
    seen = 0
    while err is not None and seen < 8:
        if isinstance(err, OSError) and err.errno in DISK_ERRNOS:
            return True
        if getattr(err, "pgcode", None) in DISK_FULL_SQLSTATES:
            return True
        text = str(err).lower()
        if any(t in text for t in DISK_FULL_TEXT):
            return True
        # SQLAlchemy keeps the driver's exception in .orig; plain chaining in __cause__
        err = getattr(err, "orig", None) or err.__cause__ or err.__context__
        seen += 1
    return False


def describe(err: BaseException) -> str:
    """A short reason without paths or SQL (it is shown on the public /health)."""
    while err is not None:
        if isinstance(err, OSError) and err.errno is not None:
            return os.strerror(err.errno)
        orig = getattr(err, "orig", None)
        if orig is None:
            break
        err = orig
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:120]


@dataclass(frozen=True)
class WriteFault:
    at: float  # Unix seconds
    what: str  # which write: "evidence", "database", "request"
    reason: str


class WriteFaults:
    """The last write refused for want of room, until a write succeeds after it."""

    def __init__(self):
        self._lock = threading.Lock()
        self._last: WriteFault | None = None

    def failed(self, what: str, err: BaseException) -> None:
        with self._lock:
            self._last = WriteFault(time.time(), what, describe(err))

    def succeeded(self) -> None:
        with self._lock:
            self._last = None

    def current(self) -> WriteFault | None:
        with self._lock:
            return self._last


FAULTS = WriteFaults()  # per process: the builder and the API of `patrol serve` share it


@dataclass(frozen=True)
class Space:
    free: int  # bytes an unprivileged writer may still use
    total: int

    @property
    def used_fraction(self) -> float:
        return 1.0 - self.free / self.total if self.total else 1.0


def space(path: str | Path) -> Space:
    """Free and total bytes of the file system that holds ``path`` (its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    st = os.statvfs(p)
    return Space(free=st.f_bavail * st.f_frsize, total=st.f_blocks * st.f_frsize)


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
