"""The API alone in a process of its own, for tests that measure it from outside
(tests/test_hostile_load.py: its resident memory, under a flood from the test's threads).

    python tests/api_server_proc.py --data-dir DIR --db URL --port PORT

Settings come from the environment as usual (``PATROL_AUTH__LOGIN_QUEUE=...``). Prints
``ready`` once it accepts connections; SIGTERM stops it.
"""
from __future__ import annotations

import argparse
import threading

import uvicorn

from api.app import create_app
from core.settings import Settings
from core.wiring import Parts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--db", required=True)
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    parts = Parts(Settings(data_dir=args.data_dir), db_url=args.db)
    parts.accounts  # built (one hash at the real cost) before the first request
    app = create_app(parts)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))

    def announce():
        while not server.started:
            threading.Event().wait(0.02)
        print("ready", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
