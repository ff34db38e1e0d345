"""Floods at the HTTP face, over a real socket: they hurt no one.

* 80 clients logging in with invented names, as fast as they can for a few seconds, at
  the real scrypt cost: an analyst's ``GET /api/v1/cases`` stays under a second, the
  process grows by less than ``FLOOD_RSS_BOUND``, and the audit log gets a few rows,
  not one per attempt;
* a 200 MB body without credentials is refused (401 before it is read; 413 when its
  Content-Length says so), and an analyst's 200 MB body is cut off at the limit: the
  process does not grow by anything worth the name.

The figures are printed (pytest -s) and recorded in docs/benchmarks.md, "Hostile input".
"""
from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select as sql_select
from sqlalchemy.orm import Session

from api.app import create_app
from auth_helpers import make_user, session_token
from cases.audit import AuditEntry
from core.settings import Settings
from core.wiring import Parts
from test_upload_api import live_server
from webhook_receiver import free_port

FLOOD_CLIENTS = 80
FLOOD_S = 4.0
FLOOD_RSS_BOUND = 128 << 20  # two scrypt checks at once (32 MiB each), their threads, and slack
BODY_RSS_BOUND = 24 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
HERE = Path(__file__).resolve().parent


def rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


@contextmanager
def peak_rss(pid: int | str = "self"):
    """Samples a process's resident size every 10 ms; yields a dict with the peak."""
    seen = {"peak": rss(pid)}
    done = threading.Event()

    def sample():
        while not done.is_set():
            seen["peak"] = max(seen["peak"], rss(pid))
            time.sleep(0.01)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    try:
        yield seen
    finally:
        done.set()
        t.join()


@pytest.fixture
def parts(tmp_path):
    p = Parts(Settings(data_dir=tmp_path / "data"), db_url=f"sqlite:///{tmp_path / 'cases.db'}")
    yield p
    p.store.close()


@contextmanager
def server_process(tmp_path, **env):
    """The API in a process of its own (tests/api_server_proc.py) over the test's database;
    yields (base URL, pid)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(HERE / "api_server_proc.py"), "--data-dir", str(tmp_path / "data"),
                             "--db", f"sqlite:///{tmp_path / 'cases.db'}", "--port", str(port)],
                            stdout=subprocess.PIPE, text=True, cwd=HERE.parent,
                            env={**os.environ, "PYTHONPATH": str(HERE.parent), **env})
    try:
        assert proc.stdout.readline().strip() == "ready", "the API process did not start"
        yield f"http://127.0.0.1:{port}", proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


def _audit_rows(parts, prefix: str) -> int:
    with Session(parts.store.engine) as s:
        return s.scalar(sql_select(func.count()).select_from(AuditEntry).where(AuditEntry.action.startswith(prefix)))


def test_a_login_flood_of_invented_names_leaves_analysts_and_memory_alone(parts, tmp_path):
    make_user(parts, "analyst.wang", "analyst")
    analyst = {"Authorization": f"Bearer {session_token(parts, 'analyst.wang')}"}
    # the address throttle is opened wide so that the flood meets the concurrency gate,
    # the part that bounds time and memory when a flood comes from many addresses
    with server_process(tmp_path, PATROL_AUTH__LOGIN_ATTEMPTS_PER_ADDRESS="1000000") as (base, pid):
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.get("/api/v1/cases", headers=analyst).status_code == 200
            assert c.post("/api/v1/auth/login", json={"username": "warm", "password": "up-up-up"}).status_code == 401
        answers: dict[int, int] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def attacker(n: int):
            with httpx.Client(base_url=base, timeout=30) as c:
                i = 0
                while not stop.is_set():
                    r = c.post("/api/v1/auth/login", json={"username": f"ghost-{n}-{i}", "password": "guess-guess"})
                    with lock:
                        answers[r.status_code] = answers.get(r.status_code, 0) + 1
                    i += 1

        latencies = []
        before = rss(pid)
        with peak_rss(pid) as memory:
            threads = [threading.Thread(target=attacker, args=(n,), daemon=True) for n in range(FLOOD_CLIENTS)]
            for t in threads:
                t.start()
            with httpx.Client(base_url=base, timeout=30) as c:
                end = time.monotonic() + FLOOD_S
                while time.monotonic() < end:
                    t0 = time.perf_counter()
                    r = c.get("/api/v1/cases", headers=analyst)
                    latencies.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                    time.sleep(0.1)
            stop.set()
            for t in threads:
                t.join(30)
        growth = memory["peak"] - before
    attempts = sum(answers.values())
    print(f"\nlogin flood: {FLOOD_CLIENTS} clients for {FLOOD_S:.0f} s, {attempts} attempts {answers}; analyst GET "
          f"/api/v1/cases max {max(latencies) * 1000:.0f} ms, median {sorted(latencies)[len(latencies) // 2] * 1000:.0f}"
          f" ms over {len(latencies)}; server RSS {before >> 20} MiB, peak +{growth >> 20} MiB")
    assert set(answers) <= {401, 429}, answers
    assert answers.get(429, 0) > answers.get(401, 0), "the gate let most of the flood through to scrypt"
    assert max(latencies) < 1.0, f"an analyst waited {max(latencies):.2f} s during the flood"
    assert growth < FLOOD_RSS_BOUND, f"the server grew by {growth >> 20} MiB during the flood"
    # invented names do not each add an audit row: the first is recorded, the rest are
    # counted (in one row a minute, written when the minute ends: not yet here)
    assert _audit_rows(parts, "auth.login_failed") <= 2, _audit_rows(parts, "auth.login_failed")


def _stream(base: str, path: str, headers: dict[str, str], total: int, chunked: bool) -> tuple[int, int, str]:
    """Send ``total`` bytes of body (chunked, or with Content-Length) until the server
    answers; (status, bytes sent, body of the answer)."""
    host, port = urlsplit(base).hostname, urlsplit(base).port
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total}"
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    block = b"x" * (64 << 10)
    piece = (f"{len(block):x}\r\n".encode() + block + b"\r\n") if chunked else block
    sent = 0
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{head}{framing}\r\n\r\n"
                  .encode())
        try:
            while sent < total and not select.select([s], [], [], 0)[0]:
                s.sendall(piece)
                sent += len(block)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            while b"\r\n\r\n" not in answer or len(answer.split(b"\r\n\r\n", 1)[1]) < 20:
                got = s.recv(65536)
                if not got:
                    break
                answer += got
        except (ConnectionResetError, socket.timeout):
            pass
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else 0
    return status, sent, answer.split(b"\r\n\r\n", 1)[-1].decode(errors="replace")


def test_a_200_mb_body_is_refused_without_the_process_growing(parts):
    make_user(parts, "analyst.wang", "analyst")
    analyst = {"Authorization": f"Bearer {session_token(parts, 'analyst.wang')}"}
    app = create_app(parts)
    total = 200 << 20
    with live_server(app) as base:
        _stream(base, "/api/v1/cases/1/approve", {}, 1 << 20, chunked=True)  # warm the server's paths up
        before = rss()
        with peak_rss() as memory:
            anonymous = _stream(base, "/api/v1/cases/1/approve", {}, total, chunked=True)
            announced = _stream(base, "/api/v1/cases/1/approve", {}, total, chunked=False)
            logged_in = _stream(base, "/api/v1/cases/1/approve", analyst, total, chunked=True)
        growth = memory["peak"] - before
    print(f"\n200 MB bodies: anonymous chunked {anonymous[:2]}, anonymous with Content-Length {announced[:2]}, "
          f"analyst chunked {logged_in[:2]} (status, bytes sent before the answer); RSS peak +{growth >> 20} MiB")
    assert anonymous[0] == 401 and "not logged in" in anonymous[2], anonymous
    assert announced[0] == 413 and "at most 1 MiB" in announced[2], announced
    assert logged_in[0] == 413 and "at most 1 MiB" in logged_in[2], logged_in
    for status, sent, _ in (anonymous, announced, logged_in):
        assert sent < 64 << 20, f"the client sent {sent >> 20} MiB before the server answered"
    assert growth < BODY_RSS_BOUND, f"the process grew by {growth >> 20} MiB"
