"""The Redis hand-off between case builders, on both Redis backends.

A builder killed between storing a case and acknowledging its entry must lose
nothing and duplicate nothing: its pending entries are claimed by the next
builder and applied again, which the case builder makes harmless. An entry that
cannot be stored stays pending, is retried, and is finally parked in the
dead-letter stream, never dropped.
"""
from __future__ import annotations

import queue
import random
import signal
import sqlite3
import subprocess
import sys
import threading
from collections import defaultdict
from pathlib import Path

import pytest

from cases.builder import CaseBuilder
from cases.store import Store
from core.settings import Settings
from core.wiring import Parts
from test_bus import T0, bus, jpeg, make_event, redis_url, wait_for  # noqa: F401  (fixtures)
from vision.events import Event
from workers.bus import DEAD_EVENTS, EVENTS, MAX_DELIVERIES
from workers.case_builder import CaseBuilderService

BUILDER_PROC = Path(__file__).with_name("builder_proc.py")
REPO = Path(__file__).resolve().parents[1]
REVISIONS = 4  # every event is published as revisions 1..4, the last one closing it

# Ten events that make eight cases: (source, event type, zone) -> the event ids of
# one case. ev-02 and ev-06 reappear on the same camera and zone within the
# cooldown, so they continue the cases of ev-01 and ev-05. The events carry no
# location, so cases of different cameras can never merge.
CASES = {
    ("cam-1", "street_vending", "pavement-a"): ["ev-01", "ev-02"],
    ("cam-1", "street_vending", "pavement-b"): ["ev-03"],
    ("cam-1", "dust", None): ["ev-04"],
    ("cam-2", "illegal_construction", None): ["ev-05", "ev-06"],
    ("cam-2", "dust", None): ["ev-07"],
    ("cam-3", "street_vending", "pavement-a"): ["ev-08"],
    ("cam-3", "illegal_construction", None): ["ev-09"],
    ("drone-1", "dust", None): ["ev-10"],
}
EVENT_IDS = sorted(e for ids in CASES.values() for e in ids)
HOLD_AFTER = 12  # the first builder is killed holding the 12th entry it stored


def messages() -> list[Event]:
    """Every revision of every event, in a shuffled order (seeded) in which older
    revisions sometimes arrive after newer ones, as re-deliveries do."""
    out = []
    for (source, event_type, zone), ids in CASES.items():
        for n, event_id in enumerate(ids):
            for rev in range(1, REVISIONS + 1):
                out.append(make_event(event_id, source, event_type, rev=rev, zone=zone, start=T0 + 60 * n,
                                      state="closed" if rev == REVISIONS else "updated" if rev > 1 else "opened",
                                      conf=0.4 + 0.1 * rev, snapshot=jpeg(rev)))
    random.Random(7).shuffle(out)
    return out


class BuilderProcess:
    """tests/builder_proc.py running as its own process, its stdout read line by line."""

    def __init__(self, tmp_path: Path, redis_url: str, consumer: str, *args: str):
        self.stderr_path = tmp_path / f"{consumer}.stderr"
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        argv = [sys.executable, str(BUILDER_PROC), "--redis-url", redis_url, "--db", str(tmp_path / "cases.db"),
                "--evidence", str(tmp_path / "evidence"), "--consumer", consumer, *args]
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put("")  # EOF

    def wait_line(self, prefix: str, timeout_s: float = 60) -> str:
        def next_match():
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                return None
            if line == "":
                pytest.fail(f"builder exited ({self.proc.wait()}) before printing {prefix!r}:\n{self.stderr()}")
            self.seen.append(line)
            return line if line.startswith(prefix) else None

        return wait_for(next_match, timeout_s, f"builder printing {prefix!r}", every_s=0)

    def stderr(self) -> str:
        return self.stderr_path.read_text()[-3000:]

    def stop(self, sig=signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            pytest.fail(f"builder ignored {sig.name}:\n{self.stderr()}")
        finally:
            self.drain()

    def drain(self) -> list[str]:
        while True:
            try:
                line = self.lines.get(timeout=2)
            except queue.Empty:
                return self.seen
            if line == "":
                return self.seen
            self.seen.append(line)


def all_delivered_and_acked(bus) -> bool:
    [group] = bus.r.xinfo_groups(EVENTS)
    last = bus.r.xrevrange(EVENTS, count=1)[0][0]
    return group["pending"] == 0 and group["last-delivered-id"] == last


def test_a_builder_killed_mid_way_loses_and_duplicates_nothing(bus, redis_url, tmp_path):
    sent = messages()
    assert len(sent) == 40 and any(  # the data really has stale revisions arriving late
        later.event_id == earlier.event_id and later.revision < earlier.revision
        for i, earlier in enumerate(sent) for later in sent[i + 1:])
    for ev in sent:
        bus.publish_event(ev)

    first = BuilderProcess(tmp_path, redis_url, "builder-1", "--delay-s", "0.05", "--hold-after", str(HOLD_AFTER))
    held = first.wait_line("holding ").split()[1:]  # [event_id, "r<rev>"]
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    # It stored the entries in stream order, and the one it died holding is the
    # first sighting of its event: applying it again would join its case twice
    # if the case builder were not idempotent.
    assert held == [sent[HOLD_AFTER - 1].event_id, f"r{sent[HOLD_AFTER - 1].revision}"]
    assert held[0] not in {e.event_id for e in sent[:HOLD_AFTER - 1]}

    # Killed mid-way: it read all 40, acknowledged the 11 before the held one, and
    # the held one is stored but still pending.
    assert bus.pending_count() == 40 - (HOLD_AFTER - 1)
    store = Store(str(tmp_path / "cases.db"))
    stored = {e.event_id: e.revision for c in store.list_cases(limit=100).items for e in store.events(c.id)}
    assert stored[held[0]] >= int(held[1][1:])
    assert len(stored) < len(EVENT_IDS) or min(stored.values()) < REVISIONS  # not everything was applied

    second = BuilderProcess(tmp_path, redis_url, "builder-2")
    try:
        wait_for(lambda: all_delivered_and_acked(bus), 60, "every entry delivered and acknowledged")
    finally:
        assert second.stop() == 0, second.stderr()
    # The held entry was claimed from the dead builder and applied a second time.
    assert f"applied {held[0]} {held[1]}" in second.seen

    cases = store.list_cases(limit=100)
    assert cases.total == len(CASES)  # one case per violation: none opened twice by the re-applied entries
    found = {}
    for case in cases.items:
        events = store.events(case.id)
        found[(case.source_id, case.event_type, case.zone)] = sorted(e.event_id for e in events)
        assert case.status == "draft" and case.ended  # the closing revision reached the case
        assert [(e.revision, e.state) for e in events] == [(REVISIONS, "closed")] * len(events)
    assert found == CASES
    assert bus.pending_count() == 0
    assert bus.r.xlen(DEAD_EVENTS) == 0
    store.close()


@pytest.mark.parametrize("failure", ["unknown event type"])
def test_an_event_that_cannot_be_stored_stays_pending_and_is_dead_lettered(bus, tmp_path, failure):
    store = Store(str(tmp_path / "cases.db"), busy_timeout_s=0.1)
    builder = CaseBuilder(store, Parts(Settings(data_dir=tmp_path)).taxonomy)
    if failure == "unknown event type":  # a poison message: no retry can help it
        bad = [make_event("ev-bad", event_type="graffiti")]
        good = [make_event("ev-good")]
        reason = "TaxonomyError: event type 'graffiti' has no category mapping"
        locker = None
    else:  # another writer holds the SQLite file past the builder's busy timeout
        bad = [make_event("ev-1"), make_event("ev-2", source="cam-2")]
        good = []
        reason = "database is locked"
        locker = sqlite3.connect(tmp_path / "cases.db", isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")
    ids = {bus.publish_event(ev): ev for ev in bad + good}
    bad_ids = [eid for eid, ev in ids.items() if ev in bad]

    service = CaseBuilderService(bus, builder, consumer="builder-a", claim_idle_ms=50, reclaim_every_s=0.05)
    bus.ensure_group()
    assert service.process(bus.read_events("builder-a", block_ms=500)) == len(good)
    # The first failure neither acknowledges nor parks the entry: it is retried later.
    assert bus.pending_count() == len(bad) and bus.r.xlen(DEAD_EVENTS) == 0
    assert [bus.deliveries(eid) for eid in bad_ids] == [1] * len(bad)

    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), kwargs={"block_ms": 50}, daemon=True)
    runner.start()
    try:
        wait_for(lambda: bus.r.xlen(DEAD_EVENTS) == len(bad), 30, "failing entries dead-lettered")
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    if locker is not None:
        locker.execute("ROLLBACK")
        locker.close()

    assert service.failed == MAX_DELIVERIES * len(bad)  # each tried exactly MAX_DELIVERIES times
    assert bus.pending_count() == 0
    dead = {d[b"entry"].decode(): d for _, d in bus.r.xrange(DEAD_EVENTS)}
    assert sorted(dead) == sorted(bad_ids)
    for eid, body in dead.items():
        assert reason in body[b"reason"].decode()
        assert Event.from_message(body) == ids[eid]  # the whole event kept, to replay once fixed
    stored = defaultdict(list)
    for case in store.list_cases(limit=100).items:
        stored[case.source_id] += [e.event_id for e in store.events(case.id)]
    assert dict(stored) == ({"cam-1": ["ev-good"]} if good else {})
    store.close()


def test_a_store_outage_never_dead_letters_and_the_events_land_once_it_is_back(bus, tmp_path):
    """A locked or unreachable database is not the event's fault: retried, never parked."""
    store = Store(str(tmp_path / "cases.db"), busy_timeout_s=0.1)
    builder = CaseBuilder(store, Parts(Settings(data_dir=tmp_path)).taxonomy)
    locker = sqlite3.connect(tmp_path / "cases.db", isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the file past the builder's busy timeout
    events = [make_event("ev-1"), make_event("ev-2", source="cam-2")]
    for ev in events:
        bus.publish_event(ev)
    service = CaseBuilderService(bus, builder, consumer="builder-a", claim_idle_ms=50, reclaim_every_s=0.05)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), kwargs={"block_ms": 50}, daemon=True)
    runner.start()
    try:
        wait_for(lambda: service.store_outages > MAX_DELIVERIES + 1, 30, "retries beyond the dead-letter limit")
        assert bus.r.xlen(DEAD_EVENTS) == 0 and bus.pending_count() == len(events)
        locker.execute("ROLLBACK")
        locker.close()
        wait_for(lambda: bus.pending_count() == 0, 30, "events stored once the database is free")
    finally:
        stop.set()
        runner.join(10)
    assert bus.r.xlen(DEAD_EVENTS) == 0
    stored = sorted(e.event_id for c in store.list_cases(limit=10).items for e in store.events(c.id))
    assert stored == ["ev-1", "ev-2"]
    store.close()
