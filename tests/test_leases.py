"""Source leases (workers/leases.py) on both Redis backends: the real server and
the embedded one.

Each source is leased to one worker at a time; only the owner renews or
releases; a lease nobody renews expires and is taken by another worker; and
rebalancing gives every live worker its fair share. Workers here are
LeaseManagers in one process, driven round by round (the patrol worker's lease
thread does the same every few seconds); test_failover.py runs real worker
processes.
"""
from __future__ import annotations

import math
import time

import pytest

from test_bus import bus, redis_url, wait_for  # noqa: F401  (fixtures)
from workers.leases import LEASES, LeaseManager, fair_share

SOURCES = [f"cam-{i:02d}" for i in range(10)]


def managers(bus, *names: str, ttl_s: float = 30) -> list[LeaseManager]:
    return [LeaseManager(bus.r, name, ttl_s=ttl_s) for name in names]


def rounds(workers: list[LeaseManager], live: list[str] | None = None, n: int = 3) -> None:
    """Every worker rebalances in turn, ``n`` times over (as their lease threads would)."""
    live = live if live is not None else [w.worker_id for w in workers]
    for _ in range(n):
        for w in workers:
            w.rebalance(SOURCES, live)


def assert_shared(workers: list[LeaseManager], bus) -> dict[str, set[str]]:
    """Every source held by exactly one worker, as it believes and as Redis says, and
    nobody above the fair share."""
    held = {w.worker_id: w.held() for w in workers}
    for a in held:
        for b in held:
            assert a == b or not held[a] & held[b], f"{a} and {b} both hold {held[a] & held[b]}"
    assert set().union(*held.values()) == set(SOURCES), "some source is held by nobody"
    owners = workers[0].owners(SOURCES)
    assert owners == {s: w for w, ids in held.items() for s in ids}
    share = math.ceil(len(SOURCES) / len(workers))
    assert all(len(ids) <= share for ids in held.values()), {w: len(ids) for w, ids in held.items()}
    return held


def test_fair_share():
    assert fair_share(10, 1) == 10 and fair_share(10, 2) == 5 and fair_share(10, 3) == 4
    assert fair_share(10, 20) == 1 and fair_share(0, 3) == 0 and fair_share(254, 0) == 254


def test_a_source_is_leased_to_one_worker_only(bus):
    a, b = managers(bus, "worker-a", "worker-b")
    assert a.acquire("cam-1")
    assert not b.acquire("cam-1")
    assert not a.acquire("cam-1")  # not re-entrant either: holding is renewing
    assert a.owner("cam-1") == "worker-a" and bus.r.get(LEASES + "cam-1") == b"worker-a"
    assert 29_000 < bus.r.pttl(LEASES + "cam-1") <= 30_000
    assert a.held() == {"cam-1"} and b.held() == set()


def test_only_the_owner_renews_or_releases(bus):
    a, b = managers(bus, "worker-a", "worker-b", ttl_s=5)
    assert a.acquire("cam-1")
    bus.r.pexpire(LEASES + "cam-1", 1000)  # time passes
    assert not b.renew("cam-1") and not b.release("cam-1")
    assert a.owner("cam-1") == "worker-a" and bus.r.pttl(LEASES + "cam-1") <= 1000  # untouched
    assert a.renew("cam-1")
    assert bus.r.pttl(LEASES + "cam-1") > 4000
    assert a.release("cam-1")
    assert a.owner("cam-1") is None and a.held() == set()
    assert not a.release("cam-1") and not a.renew("cam-1")  # gone is gone
    assert b.acquire("cam-1") and b.owner("cam-1") == "worker-b"


def test_an_unrenewed_lease_expires_and_another_worker_takes_it(bus):
    a, b = managers(bus, "worker-a", "worker-b", ttl_s=0.6)
    assert a.acquire("cam-1") and a.acquire("cam-2")
    assert not b.acquire("cam-1")
    time.sleep(0.3)
    assert a.renew_all() == [] and a.held() == {"cam-1", "cam-2"}  # cam-1 and cam-2 renewed
    # worker-a stops renewing (it died, or lost Redis): first it stops counting the
    # leases as its own (0.12 s ahead of their expiry), then Redis lets them go
    wait_for(lambda: not a.held(), 1.0, "worker-a to stop counting its leases")
    assert a.lapsed() == ["cam-1", "cam-2"]
    wait_for(lambda: b.acquire("cam-1"), 1.0, "cam-1 to expire and be taken")
    assert a.owner("cam-1") == "worker-b"
    assert not a.renew("cam-1") and not a.release("cam-1")  # the old owner can do nothing to it now
    assert b.owner("cam-1") == "worker-b"


def test_renewing_reports_leases_found_lost(bus):
    a, b = managers(bus, "worker-a", "worker-b")
    a.acquire("cam-1")
    a.acquire("cam-2")
    bus.r.delete(LEASES + "cam-2")  # expired while worker-a was paused, and
    assert b.acquire("cam-2")  # taken by worker-b
    assert a.renew_all() == ["cam-2"]
    assert a.lost == ["cam-2"] and a.held() == {"cam-1"}
    assert a.owner("cam-2") == "worker-b"


@pytest.mark.parametrize("n_workers", [2, 3])
def test_workers_share_the_sources_fairly(bus, n_workers):
    workers = managers(bus, *[f"worker-{c}" for c in "abc"[:n_workers]])
    rounds(workers)
    held = assert_shared(workers, bus)
    if n_workers == 2:
        assert sorted(len(ids) for ids in held.values()) == [5, 5]
    else:  # share ceil(10/3) = 4: 4 + 4 + 2 or 4 + 3 + 3
        assert sorted(len(ids) for ids in held.values()) in ([2, 4, 4], [3, 3, 4])
    # Once shared, rebalancing again moves nothing.
    for w in workers:
        assert w.rebalance(SOURCES, [x.worker_id for x in workers]) == ([], [])
    assert {w.worker_id: w.held() for w in workers} == held


def test_workers_prefer_different_sources(bus):
    a, b, a_again = managers(bus, "worker-a", "worker-b", "worker-a")
    assert sorted(SOURCES, key=a.rank) != sorted(SOURCES, key=b.rank)
    assert sorted(SOURCES, key=a.rank) == sorted(SOURCES, key=a_again.rank)  # the same in every process


def test_a_joining_worker_gets_its_share(bus):
    a, b, c = managers(bus, "worker-a", "worker-b", "worker-c")
    acquired, released = a.rebalance(SOURCES, ["worker-a"])
    assert sorted(acquired) == SOURCES and released == [] and a.held() == set(SOURCES)

    # worker-b's heartbeat appears: worker-a gives back its least preferred half...
    given = []
    assert b.rebalance(SOURCES, ["worker-a", "worker-b"]) == ([], [])  # nothing free yet
    acquired, released = a.rebalance(SOURCES, ["worker-a", "worker-b"],
                                     before_release=lambda ids: given.extend((s, a.owner(s)) for s in ids))
    assert acquired == [] and len(released) == 5
    assert released == sorted(SOURCES, key=a.rank)[5:]
    # ...told about first, while it still owns them (its readers stop before anyone can take over)
    assert given == [(s, "worker-a") for s in released]
    acquired, _ = b.rebalance(SOURCES, ["worker-a", "worker-b"])
    assert sorted(acquired) == sorted(released)
    assert_shared([a, b], bus)

    # and a third worker joining is given its share the same way
    rounds([a, b, c])
    held = assert_shared([a, b, c], bus)
    assert min(len(ids) for ids in held.values()) >= 2


def test_the_sources_of_a_departed_worker_are_taken(bus):
    a, b, c = managers(bus, "worker-a", "worker-b", "worker-c", ttl_s=0.8)
    rounds([a, b, c])
    assert_shared([a, b, c], bus)
    # worker-c dies: it renews nothing more, and its heartbeat goes with its leases
    orphans = c.held()
    assert orphans
    a.rebalance(SOURCES, ["worker-a", "worker-b"])  # before they expire, nothing is taken from it
    assert not a.held() & orphans

    def taken():
        for w in (a, b):
            w.rebalance(SOURCES, ["worker-a", "worker-b"])
        return a.held() | b.held() == set(SOURCES)

    wait_for(taken, 3, "the departed worker's sources to be taken", every_s=0.2)
    assert_shared([a, b], bus)
    assert sorted(len(w.held()) for w in (a, b)) == [5, 5]


def test_sources_no_longer_listed_are_released(bus):
    a, = managers(bus, "worker-a")
    a.rebalance(SOURCES, ["worker-a"])
    acquired, released = a.rebalance(SOURCES[:4], ["worker-a"])
    assert acquired == [] and sorted(released) == SOURCES[4:]
    assert a.held() == set(SOURCES[:4])
    assert all(v is None for v in a.owners(SOURCES[4:]).values())
