"""Failed logins with user names that do not exist, in a bounded number of audit rows.

A wrong password for a real user is one audit row each (the login throttle bounds how
many a name can have). A name nobody has is different: anyone can invent millions, and
one row each would fill the audit log. So per window (a minute by default) the first
such failure is recorded at once, as before, and the rest are counted; when the window
ends one ``auth.login_failed_unknown`` row says how many there were, with a sample of
the names and client addresses. At most two rows a window, whatever the flood.
"""
from __future__ import annotations

import threading
from datetime import datetime, timezone
from typing import Callable

Record = Callable[[str, str, str, dict], None]  # (actor, action, target, detail): one audit row
SAMPLE = 20  # names and addresses kept per window, each cut to 64 characters


class UnknownNameFailures:
    def __init__(self, record: Record, window_s: float = 60.0):
        self.record = record
        self.window_s = window_s
        self._lock = threading.Lock()
        self._open_since: datetime | None = None
        self._count = 0
        self._names: set[str] = set()
        self._addresses: set[str] = set()
        self._timer: threading.Timer | None = None

    def note(self, name: str, address: str | None) -> None:
        """One failed login with the unknown ``name`` from ``address``."""
        name, address = name[:64] or "?", (address or "?")[:64]
        with self._lock:
            first = self._open_since is None
            if first:
                self._open_since = datetime.now(timezone.utc)
                self._timer = threading.Timer(self.window_s, self.flush)
                self._timer.daemon = True
                self._timer.start()
            else:
                self._count += 1
                if len(self._names) < SAMPLE:
                    self._names.add(name)
                if len(self._addresses) < SAMPLE:
                    self._addresses.add(address)
        if first:
            self.record(name, "auth.login_failed", f"user:{name}",
                        {"why": "wrong username or password", "address": address,
                         "note": f"further unknown names within {self.window_s:g} s are counted in one "
                                 "auth.login_failed_unknown entry"})

    def flush(self) -> None:
        """Close the window: one row for what was counted in it (none if nothing was)."""
        with self._lock:
            since, count = self._open_since, self._count
            names, addresses = sorted(self._names), sorted(self._addresses)
            if self._timer is not None and self._timer is not threading.current_thread():
                self._timer.cancel()
            self._open_since, self._count, self._timer = None, 0, None
            self._names, self._addresses = set(), set()
        if since is None or count == 0:
            return
        self.record("system:auth", "auth.login_failed_unknown", "user:?",
                    {"count": count, "since": since.isoformat(), "until": datetime.now(timezone.utc).isoformat(),
                     "names_sample": names, "addresses_sample": addresses})
