"""A case builder process for tests/test_handoff.py: the real CaseBuilderService
over a Redis URL, storing into an SQLite file, with knobs to make it slow.

    python tests/builder_proc.py --redis-url URL --db PATH --evidence DIR --consumer NAME
        [--delay-s S] [--hold-after N] [--claim-idle-ms MS] [--reclaim-every-s S]

After storing each event it prints ``applied <event_id> r<revision>`` and then
sleeps ``--delay-s`` before the entry is acknowledged. With ``--hold-after N`` it
prints ``holding <event_id> r<revision>`` after the Nth stored event and never
acknowledges it: the moment a crash costs most (the case committed, the entry
still pending), held open for the test to SIGKILL the process in. SIGTERM stops
it cleanly.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from core.settings import Settings
from core.wiring import Parts
from workers.bus import Bus
from workers.case_builder import CaseBuilderService


class PacedService(CaseBuilderService):
    def __init__(self, *args, delay_s: float = 0.0, hold_after: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s
        self.hold_after = hold_after
        self.stored = 0

    def handle(self, event) -> None:
        super().handle(event)  # committed to the database from here on
        self.stored += 1
        print(f"applied {event.event_id} r{event.revision}", flush=True)
        if self.stored == self.hold_after:
            print(f"holding {event.event_id} r{event.revision}", flush=True)
            while True:
                time.sleep(60)
        time.sleep(self.delay_s)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--db", required=True, help="SQLite file of the case store")
    ap.add_argument("--evidence", required=True, help="evidence directory")
    ap.add_argument("--consumer", required=True)
    ap.add_argument("--delay-s", type=float, default=0.0, help="pause after storing each event, before its ack")
    ap.add_argument("--hold-after", type=int, default=0, help="after this many stored events, hang before the ack")
    ap.add_argument("--claim-idle-ms", type=int, default=500)
    ap.add_argument("--reclaim-every-s", type=float, default=0.5)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"{args.consumer} %(levelname)s %(name)s: %(message)s")

    parts = Parts(Settings(data_dir=args.evidence), db_url=f"sqlite:///{args.db}", evidence_dir=args.evidence)
    service = PacedService(Bus.connect(args.redis_url), parts.builder, consumer=args.consumer,
                           claim_idle_ms=args.claim_idle_ms, reclaim_every_s=args.reclaim_every_s,
                           delay_s=args.delay_s, hold_after=args.hold_after)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    service.run(stop, block_ms=200)
    print(f"stopped after {service.applied} acknowledged", flush=True)


if __name__ == "__main__":
    main()
