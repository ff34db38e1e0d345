"""Log lines that repeat while something stays broken, at most once per interval.

A worker cut off from Redis fails every step, several times a second; one line every
half minute, with how many were held back, says the same without flooding the log.
"""
from __future__ import annotations

import logging
import threading
import time


class Throttled:
    def __init__(self, logger: logging.Logger, every_s: float = 30.0):
        self.logger = logger
        self.every_s = every_s
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._held: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args) -> bool:
        """Log ``msg`` under ``key`` unless it was logged less than ``every_s`` ago; True if logged."""
        now = time.monotonic()
        with self._lock:
            if now - self._last.get(key, -1e18) < self.every_s:
                self._held[key] = self._held.get(key, 0) + 1
                return False
            held = self._held.pop(key, 0)
            self._last[key] = now
        suffix = f" ({held} more like it in the last {self.every_s:.0f} s)" if held else ""
        self.logger.warning(msg + suffix, *args)
        return True

    def clear(self, key: str) -> None:
        """The trouble is over: the next occurrence is logged at once."""
        with self._lock:
            self._last.pop(key, None)
            self._held.pop(key, None)
