"""A full disk is a transient fault: nothing is dead-lettered, /health says so, writes answer 503.

The data folder (evidence and the SQLite database) is a real 8 MiB tmpfs, filled
to the last block; a real case builder reads real events from Redis (the server
and an embedded one). While the disk is full every event stays pending, past the
dead-letter limit; once room returns each is stored exactly once.
"""
from __future__ import annotations

import errno
import os
import subprocess
import threading
import uuid
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from cases import disk
from core.settings import CaseSettings, RetentionSettings, Settings
from core.wiring import Parts
from test_bus import T0, bus, jpeg, make_event, redis_url, wait_for  # noqa: F401  (fixtures)
from workers.bus import DEAD_EVENTS, MAX_DELIVERIES
from workers.case_builder import CaseBuilderService

SIZE = "8m"


@pytest.fixture
def small_disk(tmp_path):
    """An 8 MiB tmpfs mounted as the data folder; skipped (saying why) where mounting is not allowed."""
    mnt = tmp_path / "data"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mnt)],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as err:
        pytest.skip(f"a small file system for the data folder is needed and mount is unavailable: {err}")
    if done.returncode != 0:
        pytest.skip(f"a small file system for the data folder is needed; mounting a tmpfs failed "
                    f"(not root, or no CAP_SYS_ADMIN in this container): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=10)


def fill(folder: Path) -> Path:
    """Write one file until the file system refuses: every block taken."""
    filler = folder / "filler"
    chunk = b"\0" * (64 << 10)
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as err:
            assert err.errno == errno.ENOSPC, err
    for size in (4096, 512, 1):  # and the last partial blocks
        try:
            with open(folder / f"filler-{size}-{uuid.uuid4().hex[:6]}", "wb", buffering=0) as f:
                while True:
                    f.write(b"\0" * size)
        except OSError:
            pass
    assert disk.space(folder).free == 0
    return filler


def test_a_full_disk_keeps_events_pending_says_degraded_and_stores_each_once_room_returns(small_disk, bus):
    disk.FAULTS.succeeded()  # (the process-wide record starts clean)
    settings = Settings(data_dir=small_disk, cases=CaseSettings(grid_file=None),
                        retention=RetentionSettings(min_free_mb=1))
    parts = Parts(settings)
    parts.accounts.add_user("li", "analyst", "a long enough password")
    app = create_app(parts, bus)
    events = [make_event(f"ev-{i}", source=f"cam-{i}", snapshot=jpeg(i)) for i in range(6)]
    ids = {bus.publish_event(e): e.event_id for e in events}
    fill(small_disk)

    service = CaseBuilderService(bus, parts.builder, consumer="builder-full", claim_idle_ms=50, reclaim_every_s=0.05)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), kwargs={"block_ms": 50}, daemon=True)
    runner.start()
    try:
        with TestClient(app) as client:
            wait_for(lambda: service.disk_full > MAX_DELIVERIES
                     and min(bus.deliveries(eid) for eid in ids) > MAX_DELIVERIES, 30,
                     "every event delivered past the dead-letter limit")
            assert bus.r.xlen(DEAD_EVENTS) == 0 and bus.pending_count() == len(events)
            assert service.applied == 0

            r = client.get("/health")
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["status"] == "degraded" and body["free_bytes"] == 0
            assert "no free space on the data folder" in body["disk"]
            assert "evidence write failed" in body["disk"] and "No space left on device" in body["disk"]
            assert str(small_disk) not in r.text  # the public health names no paths

            # logging in writes a session into the database on the full disk
            r = client.post("/api/v1/auth/login", json={"username": "li", "password": "a long enough password"})
            assert r.status_code == 503, r.text
            assert int(r.headers["Retry-After"]) > 0 and "disk is full" in r.json()["detail"]

            for f in small_disk.glob("filler*"):  # room returns
                f.unlink()
            wait_for(lambda: bus.pending_count() == 0, 30, "every event stored once room returned")
            r = client.get("/health")
            assert r.status_code == 200 and r.json()["disk"] == "ok", r.text
            assert client.post("/api/v1/auth/login", json={"username": "li", "password": "a long enough password"}
                               ).status_code == 200
    finally:
        stop.set()
        runner.join(10)
    assert bus.r.xlen(DEAD_EVENTS) == 0
    stored = sorted(e.event_id for c in parts.store.list_cases(limit=100).items for e in parts.store.events(c.id))
    assert stored == sorted(ids.values())  # each once, none lost
    for case in parts.store.list_cases(limit=100).items:
        assert parts.evidence.exists(case.snapshot_key)
    parts.store.close()


def test_disk_full_errors_are_recognised_through_their_wrappers():
    from sqlalchemy.exc import OperationalError
    import sqlite3

    assert disk.is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert disk.is_disk_full(OSError(errno.EDQUOT, "Disk quota exceeded"))
    assert disk.is_disk_full(OSError(errno.EROFS, "Read-only file system"))
    assert not disk.is_disk_full(OSError(errno.ENOENT, "No such file or directory"))
    wrapped = OperationalError("INSERT …", {}, sqlite3.OperationalError("database or disk is full"))
    assert disk.is_disk_full(wrapped)
    assert not disk.is_disk_full(OperationalError("INSERT …", {}, sqlite3.OperationalError("database is locked")))
    assert not disk.is_disk_full(ValueError("no category"))
    assert disk.describe(OSError(errno.ENOSPC, "No space left on device", "/secret/path")) == "No space left on device"
