"""A real webhook receiver for tests: ``http.server`` on a free port that records
each request and checks its signature with ``cases.signing.verify_signature``."""
from __future__ import annotations

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from cases.signing import verify_signature
from feed_helpers import SECRET


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Receiver:
    """The platform's end: records each request, checks its signature, answers with
    the next status of ``answers`` (200 when none are left)."""

    def __init__(self, port: int | None = None, secret: str = SECRET):
        self.port = port or free_port()
        self.secret = secret
        self.requests: list[dict] = []
        self.answers: list[tuple[int, dict]] = []
        self.server = None
        self.got = threading.Condition()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/patrol/hook"

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers = {k: v for k, v in self.headers.items()}
                valid = verify_signature(receiver.secret, body, headers.get("X-Patrol-Timestamp"),
                                         headers.get("X-Patrol-Signature"))
                status, extra = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver.got:
                    receiver.requests.append({"headers": headers, "body": body, "valid": valid, "path": self.path,
                                              "answered": status})
                    receiver.got.notify_all()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict]:
        with self.got:
            assert self.got.wait_for(lambda: len(self.requests) >= n, timeout), \
                f"receiver got {len(self.requests)} request(s), expected {n}"
            return list(self.requests)
