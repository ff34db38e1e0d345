"""An upload worker process for tests/test_upload_jobs.py: the real UploadWorker over a
Redis URL and an SQLite case store, with a knob to freeze it mid-job.

    python tests/upload_worker_proc.py --redis-url URL --db PATH --data-dir DIR --consumer NAME
        [--hold-at FRACTION] [--claim-idle-ms MS]

With ``--hold-at F`` it prints ``holding <upload id> <fraction>`` once the job is
at least that far along (its first draft cases already stored) and then hangs,
still refreshing its claim on the job: alive, the job is its own. The test
SIGKILLs it there, the moment a crash costs most. SIGTERM stops it cleanly.
"""
from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from core.analyze import analyze_video
from core.settings import Settings
from core.wiring import Parts
from workers.bus import Bus
from workers.uploads import UploadQueue, UploadWorker


class HoldingWorker(UploadWorker):
    def __init__(self, *args, hold_at: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.hold_at = hold_at

    def on_progress(self, upload_id: str, fraction: float) -> None:
        print(f"progress {upload_id} {fraction:.3f}", flush=True)
        if self.hold_at is not None and fraction >= self.hold_at:
            print(f"holding {upload_id} {fraction:.3f}", flush=True)
            while True:
                time.sleep(60)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--db", required=True, help="SQLite file of the case store")
    ap.add_argument("--data-dir", required=True, help="data dir: uploads/ and evidence/ under it")
    ap.add_argument("--consumer", required=True)
    ap.add_argument("--hold-at", type=float, help="hang once the job is this far along (0..1)")
    ap.add_argument("--claim-idle-ms", type=int, default=1500)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format=f"{args.consumer} %(levelname)s %(name)s: %(message)s")

    parts = Parts(Settings(data_dir=args.data_dir), db_url=f"sqlite:///{args.db}")
    worker = HoldingWorker(UploadQueue(Bus.connect(args.redis_url).r), parts, analyze_video, consumer=args.consumer,
                           claim_idle_ms=args.claim_idle_ms, hold_at=args.hold_at)
    parts.detector  # loaded before "ready", so the test's clock does not count it
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    worker.run(stop, block_ms=200)
    print(f"stopped after {worker.done} job(s)", flush=True)


if __name__ == "__main__":
    main()
