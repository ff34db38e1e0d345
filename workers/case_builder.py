"""The case builder service: events from the stream become draft cases in the store.

An entry is acknowledged only after its case is stored. A builder killed in
between leaves the entry pending; the next builder (or this one restarted)
claims it and applies it again, which the case builder makes harmless (events
are idempotent by id and revision).
"""
from __future__ import annotations

import logging
import os
import socket
import threading

from sqlalchemy.exc import DBAPIError

from cases.builder import CaseBuilder
from cases.disk import FAULTS, is_disk_full
from streams.sources import Registry
from vision.events import Event
from workers.bus import MAX_DELIVERIES, Bus
from workers.consumer import consume

log = logging.getLogger(__name__)


def consumer_name(prefix: str = "builder") -> str:
    return f"{prefix}-{socket.gethostname()}-{os.getpid()}"


class CaseBuilderService:
    def __init__(self, bus: Bus, builder: CaseBuilder, registry: Registry | None = None, consumer: str | None = None,
                 claim_idle_ms: int = 30_000, reclaim_every_s: float = 10.0):
        self.bus = bus
        self.builder = builder
        self.registry = registry
        self.consumer = consumer or consumer_name()
        self.claim_idle_ms = claim_idle_ms
        self.reclaim_every_s = reclaim_every_s
        self.applied = 0
        self.failed = 0
        self.store_outages = 0
        self.disk_full = 0  # of the store outages, those for want of room

    def _source(self, source_id: str):
        if self.registry is None:
            return None
        try:
            return self.registry.get(source_id)
        except KeyError:
            return None

    def handle(self, event: Event) -> None:
        src = self._source(event.source_id)
        kind = src.kind if src else "fixed"
        if event.lat is None and src is not None and src.lat is not None and not src.moves:
            event.lat, event.lon = src.lat, src.lon  # a fixed camera's place is the event's place
        self.builder.apply(event, kind, src.grid if src else None)

    def process(self, entries) -> int:
        done = 0
        for entry_id, fields in entries:
            try:
                self.handle(Event.from_message(fields))
            except Exception as err:
                if isinstance(err, DBAPIError) or is_disk_full(err):
                    # The store is unreachable or busy, or the disk is full (evidence files or
                    # the database): not the entry's fault, so it is never dead-lettered. It
                    # stays pending and is claimed again once the store or the room is back.
                    self.failed += 1
                    self.store_outages += 1
                    if is_disk_full(err):
                        self.disk_full += 1
                        FAULTS.failed("evidence" if isinstance(err, OSError) else "database", err)
                    log.warning("store unavailable, event %s stays pending: %s", entry_id, str(err).splitlines()[0])
                    break
                # keep the entry pending; it is retried or dead-lettered
                self.failed += 1
                tries = self.bus.deliveries(entry_id)
                log.warning("event %s not applied (attempt %d): %s", entry_id, tries, err)
                if tries >= MAX_DELIVERIES:
                    self.bus.dead_letter(entry_id, fields, f"{type(err).__name__}: {err}")
                continue
            FAULTS.succeeded()
            self.bus.ack(entry_id)
            self.applied += 1
            done += 1
        return done

    def run(self, stop: threading.Event, block_ms: int = 1000) -> None:
        """Consume until ``stop`` is set; survives Redis restarts by reconnecting."""
        consume(stop, what="case builder", ensure_group=self.bus.ensure_group,
                claim_stale=lambda: self.bus.claim_stale(self.consumer, self.claim_idle_ms),
                read=lambda ms: self.bus.read_events(self.consumer, block_ms=ms), process=self.process,
                reclaim_every_s=self.reclaim_every_s, block_ms=block_ms)
