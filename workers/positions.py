"""A worker's view of where its moving sources are: the ``patrol:positions`` stream read
into one track per source.

Every worker reads the whole stream (no consumer group: each needs every position of the
sources it may come to hold), starting a few minutes back so a worker that takes over a
source knows where it has just been. A Redis outage keeps the tracks it has; samples are
then placed by them until their fixes grow too old, and say so.
"""
from __future__ import annotations

import logging
import time

import redis

from streams.positions import KEEP_S, MAX_SPEED_MPS, Fix, FixTrack, Located
from workers.bus import Bus, fix_from_fields
from workers.throttle import Throttled

log = logging.getLogger(__name__)

READ_COUNT = 5000  # entries per read; a worker that fell behind catches up in a few reads
POLL_EVERY_S = 0.25  # senders report every second or so: a patrol step need not ask Redis each time


class PositionFeed:
    def __init__(self, bus: Bus, kinds: dict[str, str], max_age_s: float = 10.0, keep_s: float = KEEP_S):
        self.bus = bus
        self.kinds = kinds  # source id -> kind, of the moving sources this worker may place
        self.max_age_s = max_age_s
        self.keep_s = keep_s
        self.tracks: dict[str, FixTrack] = {}
        self.flagged: dict[str, Fix] = {}  # source id -> its newest fix judged a jump
        self.last_id = f"{int((time.time() - keep_s) * 1000)}-0"
        self.read = 0
        self.quiet = Throttled(log)
        self._polled = -1e18

    def poll(self, force: bool = False) -> int:
        """Take in what arrived since the last poll (at most every POLL_EVERY_S unless ``force``);
        returns how many positions."""
        now = time.monotonic()
        if not self.kinds or (not force and now - self._polled < POLL_EVERY_S):
            return 0  # no moving source to place, or asked a moment ago
        self._polled = now
        taken = 0
        try:
            while True:
                entries = self.bus.read_positions(self.last_id, READ_COUNT)
                for entry_id, fields in entries:
                    self.last_id = entry_id
                    try:
                        source_id, fix = fix_from_fields(fields)
                    except (KeyError, ValueError) as err:
                        log.warning("position %s unreadable, skipped: %s", entry_id, err)
                        continue
                    self.add(source_id, fix)
                    taken += 1
                if len(entries) < READ_COUNT:
                    break
        except (redis.ConnectionError, redis.TimeoutError) as err:
            self.quiet.warning("positions", "positions unavailable (Redis): %s; placing by the fixes already read", err)
        self.read += taken
        return taken

    def add(self, source_id: str, fix: Fix) -> Fix | None:
        kind = self.kinds.get(source_id)
        if kind is None:  # not a moving source of this registry
            return None
        track = self.tracks.get(source_id)
        if track is None:
            track = self.tracks[source_id] = FixTrack(self.max_age_s, MAX_SPEED_MPS.get(kind, 42.0), self.keep_s)
        fix = track.add(fix)
        if fix.suspect:
            self.flagged[source_id] = fix
            log.info("position of %s flagged: %s", source_id, fix.suspect)
        return fix

    def at(self, source_id: str, t: float) -> Located:
        track = self.tracks.get(source_id)
        if track is None:
            return Located(None, "position unknown: no position reported yet")
        return track.at(t)

    def last_fix(self, source_id: str, now: float | None = None) -> dict | None:
        """The newest fix of a source for its reported state (the sources page's map)."""
        track = self.tracks.get(source_id)
        fix = track.newest if track is not None else None
        if fix is None:
            return None
        now = time.time() if now is None else now
        return {"lat": round(fix.lat, 7), "lon": round(fix.lon, 7), "t": fix.t, "age_s": round(now - fix.t, 1),
                "heading": fix.heading, "suspect": fix.suspect is not None, "reason": fix.suspect}
