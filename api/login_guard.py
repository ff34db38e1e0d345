"""Logins that a flood cannot turn against the service.

A password check is scrypt: about 0.3 s of a core and 32 MiB, by design. Eighty
at once, from anyone, would take every thread and over a gigabyte. So:

* at most ``auth.login_concurrency`` checks run at once, on threads of their own; up
  to ``auth.login_queue`` more wait in the event loop (holding no thread), and beyond
  that a login is answered 429 "busy" at once. Other requests keep their threads;
* per client address, at most ``auth.login_attempts_per_address`` attempts in
  ``auth.login_window_s`` (a login that succeeds is not counted); per user name, at
  most ``auth.login_failures_per_name`` failures. Over either: 429 with ``Retry-After``.
  An unknown name is throttled like a known one, so the answers do not tell them apart.
  A 429 comes after a pause of ``REFUSAL_PAUSE_S``, so that a client ignoring
  ``Retry-After`` cannot make refusals a flood of their own.

The tables are bounded (``MAX_KEYS`` names and addresses each), so invented names
cannot grow them without end.
"""
from __future__ import annotations

import asyncio
import math
import threading
import time
import weakref
from collections import OrderedDict, deque
from typing import Callable, TypeVar

import anyio
import anyio.to_thread

from core.settings import AuthSettings

MAX_KEYS = 10_000
REFUSAL_PAUSE_S = 1.0  # a 429 is answered after this pause (in the event loop, no thread held)
T = TypeVar("T")


class LoginRefused(Exception):
    """429: throttled (``retry_after`` from the window) or busy (every check taken)."""

    def __init__(self, message: str, retry_after: float):
        super().__init__(message)
        self.retry_after = max(1, math.ceil(retry_after))


class Window:
    """Events per key in a sliding window, at most ``limit`` kept per key."""

    def __init__(self, limit: int, window_s: float, max_keys: int = MAX_KEYS):
        self.limit, self.window_s, self.max_keys = limit, window_s, max_keys
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _live(self, key: str, now: float) -> deque[float] | None:
        events = self._events.get(key)
        if events is None:
            return None
        while events and events[0] <= now - self.window_s:
            events.popleft()
        if not events:
            del self._events[key]
            return None
        return events

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may have another event (0: now)."""
        events = self._live(key, now)
        if events is None or len(events) < self.limit:
            return 0.0
        return events[0] + self.window_s - now

    def add(self, key: str, now: float) -> None:
        events = self._live(key, now)
        if events is None:
            if len(self._events) >= self.max_keys:
                self._events.popitem(last=False)  # the key least recently added to
            events = self._events[key] = deque(maxlen=self.limit)
        events.append(now)
        self._events.move_to_end(key)

    def take_back(self, key: str, stamp: float) -> None:
        events = self._events.get(key)
        if events is not None and stamp in events:
            events.remove(stamp)

    def __len__(self) -> int:
        return len(self._events)


class LoginGuard:
    def __init__(self, settings: AuthSettings, clock: Callable[[], float] = time.monotonic):
        self.concurrency, self.queue = settings.login_concurrency, settings.login_queue
        self.by_address = Window(settings.login_attempts_per_address, settings.login_window_s)
        self.by_name = Window(settings.login_failures_per_name, settings.login_window_s)
        self.clock = clock
        self._lock = threading.Lock()
        self._in_flight = 0
        self._limiters: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def admit(self, name: str, address: str) -> "Attempt":
        """An attempt for ``name`` from ``address``; LoginRefused when either is throttled."""
        name = _name_key(name)
        with self._lock:
            now = self.clock()
            wait = max(self.by_address.wait(address, now), self.by_name.wait(name, now))
            if wait > 0:
                raise LoginRefused("too many login attempts; try again later", wait)
            self.by_address.add(address, now)
            return Attempt(self, name, address, now)

    async def check(self, fn: Callable[[], T]) -> T:
        """Run the password check ``fn`` on a thread of its own, when one of the
        ``concurrency`` slots is free; LoginRefused when too many wait already."""
        with self._lock:
            if self._in_flight >= self.concurrency + self.queue:
                raise LoginRefused("too many logins at once; try again in a moment", 2)
            self._in_flight += 1
        try:
            return await anyio.to_thread.run_sync(fn, limiter=self._limiter())
        finally:
            with self._lock:
                self._in_flight -= 1

    def _limiter(self) -> anyio.CapacityLimiter:
        # one per event loop (a test may run the app on several in turn); in service, one
        loop = asyncio.get_running_loop()
        limiter = self._limiters.get(loop)
        if limiter is None:
            limiter = self._limiters[loop] = anyio.CapacityLimiter(self.concurrency)
        return limiter


class Attempt:
    def __init__(self, guard: LoginGuard, name: str, address: str, stamp: float):
        self.guard, self.name, self.address, self.stamp = guard, name, address, stamp

    def succeeded(self) -> None:
        with self.guard._lock:
            self.guard.by_address.take_back(self.address, self.stamp)

    def failed(self) -> None:
        with self.guard._lock:
            self.guard.by_name.add(self.name, self.guard.clock())


def _name_key(name: str) -> str:
    return (name or "").strip().lower()[:64]
