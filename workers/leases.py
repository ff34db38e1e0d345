"""Source leases: each source is patrolled by exactly one worker at a time.

A lease is one Redis key per source (``patrol:lease:<source id>`` holding the
owner's worker id) with a TTL. A worker takes a free source with ``SET NX PX``,
keeps it by renewing the TTL while it is healthy, and gives it back with a
delete; renewing and deleting are compare-and-act Lua scripts, so a worker can
never extend or delete a lease that has meanwhile passed to another worker.

A worker that dies (SIGKILL, power cut, network gone) stops renewing: its
leases expire within the TTL and the others take its sources on their next
rebalance. The worker itself may not know it is cut off, so every lease also
carries a *local* deadline: the TTL counted from the moment the last successful
renewal was *sent* (the server's expiry is no earlier than that). A lease whose
local deadline has passed (less a safety margin) is no longer reported as held,
so its reader is stopped before Redis can hand the source to someone else.

Sharing is by fair share: with N sources and W live workers each worker aims at
``ceil(N / W)`` leases. It gives back leases above its share (so a worker that
joins finds free sources), and takes free ones up to its share. Each worker
walks the sources in its own order (rendezvous hashing on worker id + source
id), so workers do not all race for the same sources, and the assignment stays
stable when nothing changes.
"""
from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from typing import Callable, Iterable

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

log = logging.getLogger(__name__)

LEASES = "patrol:lease:"  # + source id -> worker id, with a TTL

# KEYS[1] the lease, ARGV[1] the worker id, ARGV[2] the TTL in ms.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
# KEYS[1] the lease, ARGV[1] the worker id.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


def fair_share(n_sources: int, n_workers: int) -> int:
    """Leases one worker aims at: every source gets a worker, no worker more than its part."""
    if n_sources <= 0:
        return 0
    return math.ceil(n_sources / max(1, n_workers))


class LeaseManager:
    """The leases one worker holds, in Redis and as it last knew them.

    Thread-safe: a worker's lease thread renews and rebalances while its patrol
    loop asks `held()` which sources to read.
    """

    def __init__(self, redis_client: redis.Redis, worker_id: str, ttl_s: float = 10, prefix: str = LEASES,
                 margin_s: float | None = None):
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.r = redis_client
        self.worker_id = worker_id
        self.ttl_s = float(ttl_s)
        self.ttl_ms = max(1, int(self.ttl_s * 1000))
        self.prefix = prefix
        # A lease counts as held only until this long before its local deadline: time
        # for the worker to notice and stop the reader (renewing every ttl/5 or more
        # often, at least three renewals in a row must have failed first).
        self.margin_s = self.ttl_s / 5 if margin_s is None else margin_s
        self._renew = self.r.register_script(_RENEW)
        self._release = self.r.register_script(_RELEASE)
        self._lock = threading.Lock()
        self._deadline: dict[str, float] = {}  # source id -> monotonic time the lease surely lasts until
        self.lost: list[str] = []  # leases found gone (expired or taken) by the last renew/rebalance

    @classmethod
    def connect(cls, url: str, worker_id: str, ttl_s: float = 10, prefix: str = LEASES) -> "LeaseManager":
        """A manager on a client of its own, with timeouts well inside the TTL and no
        retry loop, so a Redis that went away cannot hold the lease thread past a deadline."""
        timeout = max(0.5, min(2.0, ttl_s / 5))
        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                      retry=Retry(NoBackoff(), 1))
        return cls(client, worker_id, ttl_s=ttl_s, prefix=prefix)

    # ------------------------------------------------------------------ one lease

    def key(self, source_id: str) -> str:
        return self.prefix + source_id

    def _granted(self, source_id: str, sent_at: float) -> None:
        with self._lock:
            self._deadline[source_id] = sent_at + self.ttl_s

    def _forget(self, source_id: str) -> None:
        with self._lock:
            self._deadline.pop(source_id, None)

    def acquire(self, source_id: str) -> bool:
        """Take the source if nobody holds it."""
        sent = time.monotonic()
        if self.r.set(self.key(source_id), self.worker_id, nx=True, px=self.ttl_ms):
            self._granted(source_id, sent)
            return True
        return False

    def renew(self, source_id: str) -> bool:
        """Extend the lease if this worker still owns it; False (and forgotten) if not."""
        sent = time.monotonic()
        if self._renew(keys=[self.key(source_id)], args=[self.worker_id, self.ttl_ms]):
            self._granted(source_id, sent)
            return True
        self._forget(source_id)
        return False

    def release(self, source_id: str) -> bool:
        """Give the source back, only if this worker owns it."""
        self._forget(source_id)
        return bool(self._release(keys=[self.key(source_id)], args=[self.worker_id]))

    def owner(self, source_id: str) -> str | None:
        v = self.r.get(self.key(source_id))
        return v.decode() if v is not None else None

    def owners(self, source_ids: Iterable[str]) -> dict[str, str | None]:
        ids = list(source_ids)
        if not ids:
            return {}
        values = self.r.mget([self.key(s) for s in ids])
        return {s: (v.decode() if v is not None else None) for s, v in zip(ids, values)}

    # ------------------------------------------------------------------ all of them

    def held(self, now: float | None = None) -> set[str]:
        """Sources this worker may patrol now: leased, and surely not yet expired."""
        now = time.monotonic() if now is None else now
        with self._lock:
            return {s for s, d in self._deadline.items() if now < d - self.margin_s}

    def holds(self, source_id: str, now: float | None = None) -> bool:
        """Whether this one source is in `held()`."""
        now = time.monotonic() if now is None else now
        with self._lock:
            d = self._deadline.get(source_id)
        return d is not None and now < d - self.margin_s

    def deadlines(self) -> dict[str, float]:
        """Source id -> monotonic time before which its lease surely has not expired in Redis."""
        with self._lock:
            return dict(self._deadline)

    def lapsed(self, now: float | None = None) -> list[str]:
        """Leases whose local deadline passed without a successful renewal; they are
        forgotten (another worker may hold them soon)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            gone = sorted(s for s, d in self._deadline.items() if now >= d - self.margin_s)
            for s in gone:
                del self._deadline[s]
        return gone

    def renew_all(self) -> list[str]:
        """Renew every lease held in one round trip; returns (and forgets) those lost."""
        with self._lock:
            ids = sorted(self._deadline)
        if not ids:
            self.lost = []
            return []
        sent = time.monotonic()
        pipe = self.r.pipeline(transaction=False)
        for s in ids:
            self._renew(keys=[self.key(s)], args=[self.worker_id, self.ttl_ms], client=pipe)
        lost = []
        for s, ok in zip(ids, pipe.execute()):
            if ok:
                self._granted(s, sent)
            else:
                self._forget(s)
                lost.append(s)
        if lost:
            log.warning("%s lost lease(s) on %s", self.worker_id, ", ".join(lost))
        self.lost = lost
        return lost

    def release_all(self) -> list[str]:
        with self._lock:
            ids = sorted(self._deadline)
            self._deadline.clear()
        if ids:
            pipe = self.r.pipeline(transaction=False)
            for s in ids:
                self._release(keys=[self.key(s)], args=[self.worker_id], client=pipe)
            pipe.execute()
        return ids

    def rank(self, source_id: str) -> bytes:
        """This worker's preference for a source (lower first): the same on every
        machine and every run, and different for every worker."""
        return hashlib.blake2b(f"{self.worker_id}\0{source_id}".encode(), digest_size=8).digest()

    def rebalance(self, all_source_ids: Iterable[str], live_workers: Iterable[str],
                  before_release: Callable[[list[str]], None] | None = None) -> tuple[list[str], list[str]]:
        """Renew, then move towards this worker's fair share of ``all_source_ids``.

        ``live_workers`` are the workers sharing them (this one is counted even if
        absent). Gives back the leases above the share (least preferred first) and
        those of sources no longer listed, calling ``before_release`` with them
        first so their readers stop before anyone else can take them; then takes
        free sources, most preferred first, up to the share. Returns
        ``(acquired, released)``; leases found lost while renewing are in ``lost``.
        """
        universe = list(dict.fromkeys(all_source_ids))
        listed = set(universe)
        live = set(live_workers) | {self.worker_id}
        share = fair_share(len(universe), len(live))

        lost = self.renew_all()
        with self._lock:
            mine = set(self._deadline)
        ordered = sorted(universe, key=self.rank)
        kept = [s for s in ordered if s in mine]
        give_back = sorted(s for s in mine if s not in listed) + kept[share:]
        if give_back:
            if before_release is not None:
                before_release(list(give_back))
            pipe = self.r.pipeline(transaction=False)
            for s in give_back:
                self._forget(s)
                self._release(keys=[self.key(s)], args=[self.worker_id], client=pipe)
            pipe.execute()
        self.lost = lost

        acquired: list[str] = []
        room = share - min(len(kept), share)
        if room > 0:
            owners = self.owners(s for s in ordered if s not in mine)
            free = [s for s in ordered if s in owners and owners[s] is None]
            while room > 0 and free:  # another worker may win some of them: try the next ones
                batch, free = free[:room], free[room:]
                sent = time.monotonic()
                pipe = self.r.pipeline(transaction=False)
                for s in batch:
                    pipe.set(self.key(s), self.worker_id, nx=True, px=self.ttl_ms)
                for s, ok in zip(batch, pipe.execute()):
                    if ok:
                        self._granted(s, sent)
                        acquired.append(s)
                        room -= 1
        if acquired or give_back:
            log.info("%s leases: +%d -%d (share %d of %d sources, %d worker(s))", self.worker_id, len(acquired),
                     len(give_back), share, len(universe), len(live))
        return acquired, give_back
