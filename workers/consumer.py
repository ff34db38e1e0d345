"""The loop every Redis Stream consumer of City Patrol runs (case builder, upload workers).

Read new entries; every so often claim the entries a consumer that fell silent left pending
(it died or hung, so another takes its work over); ride out a Redis that goes away, and one
that comes back empty (its consumer group is made again).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

import redis

log = logging.getLogger(__name__)

Entries = list  # [(entry id, fields)] as redis-py returns them


def consume(
    stop: threading.Event,
    *,
    what: str,
    ensure_group: Callable[[], None],
    claim_stale: Callable[[], Entries],
    read: Callable[[int], Entries],
    process: Callable[[Entries], object],
    reclaim_every_s: float,
    on_claimed: Callable[[Entries], None] | None = None,
    block_ms: int = 1000,
) -> None:
    """Consume until ``stop`` is set. ``what`` names the consumer in log lines."""
    next_claim = 0.0
    while not stop.is_set():
        try:
            if time.monotonic() >= next_claim:
                ensure_group()
                claimed = claim_stale()
                next_claim = time.monotonic() + reclaim_every_s
                if claimed:
                    if on_claimed is not None:
                        on_claimed(claimed)
                    process(claimed)
            process(read(block_ms))
        except (redis.ConnectionError, redis.TimeoutError, OSError, ValueError) as err:
            if stop.is_set():  # shutting down: the connection was closed under a blocking read
                return
            if not isinstance(err, (redis.ConnectionError, redis.TimeoutError)):
                raise
            log.warning("%s lost Redis (%s); retrying", what, err)
            stop.wait(1.0)
            next_claim = 0.0
        except redis.ResponseError as err:
            if "NOGROUP" in str(err):  # Redis restarted without its data
                next_claim = 0.0
                continue
            raise
