"""Queued flights become analysis jobs, whatever Redis was doing when they were finished.

The flight's row is the durable record (an outbox, as webhook deliveries have): a flight
in state ``queued`` must have a job on the Redis Stream. ``finish`` tries to add it at
once; this loop adds any that are missing, so a flight finished while Redis was down, or
whose job a restarted Redis lost, is analysed once Redis is back, without the client
sending anything again. Adding is idempotent (workers/uploads.py ``UploadQueue.enqueue``).
"""
from __future__ import annotations

import logging
import threading

import redis
from sqlalchemy.exc import DBAPIError

from cases.flights import FlightStore
from streams.uploads import UploadArea
from workers.throttle import Throttled
from workers.uploads import UploadJob, UploadQueue

log = logging.getLogger(__name__)


class UploadJobRelay:
    def __init__(self, flights: FlightStore, area: UploadArea, queue: UploadQueue, every_s: float = 2.0):
        self.flights = flights
        self.area = area
        self.queue = queue
        self.every_s = every_s
        self.relayed = 0
        self.quiet = Throttled(log)

    def relay(self) -> int:
        """Add the job of every queued flight that has none; how many were added."""
        added = 0
        for flight in self.flights.list(state="queued", limit=500).items:
            if self.queue.enqueue(UploadJob.of(flight, self.area)) is not None:
                log.info("upload %s: its analysis job is queued", flight.id)
                added += 1
        self.relayed += added
        return added

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            try:
                self.relay()
                self.quiet.clear("relay")
            except (redis.ConnectionError, redis.TimeoutError) as err:
                self.quiet.warning("relay", "Redis unavailable: queued uploads wait for their jobs: %s", err)
            except DBAPIError as err:
                self.quiet.warning("relay-db", "store unavailable: %s", str(err).splitlines()[0])
