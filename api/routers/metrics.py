"""Prometheus metrics: the state every worker reports to Redis, as gauges and counters.

Workers write their sources' and their own state to Redis; this endpoint renders
what is there at scrape time (a custom collector), so any API node can be
scraped and no worker needs an HTTP port of its own. ``GET /api/v1/workers`` is
the same worker state as JSON.
"""
from __future__ import annotations

import time

import redis
from fastapi import APIRouter, Depends, Response
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.auth import require
from api.deps import bus as get_bus, parts as get_parts
from cases import disk, retention

# Source names, worker names and case counts are operational detail: for admins and for a
# scraper with a `monitoring` API token (which can read nothing else).
router = APIRouter(tags=["health"], dependencies=[Depends(require("admin", "monitoring"))])

STATES = ("connecting", "live", "stalled", "down")


class _Snapshot:
    def __init__(self, bus, parts):
        self.bus, self.parts = bus, parts

    def collect(self):
        # Redis away: what workers report is unknown (and said so by patrol_redis_up 0); the
        # cases, from the database, are still known
        redis_up = GaugeMetricFamily("patrol_redis_up", "1 when Redis answered this scrape; 0: the sources' and "
                                     "workers' state below is unknown, not zero")
        try:
            sources = self.bus.source_states() if self.bus is not None else {}
            workers = self.bus.workers() if self.bus is not None else {}
            pending_events = self.bus.pending_count() if self.bus is not None else None
            redis_up.add_metric([], 1.0 if self.bus is not None else 0.0)
        except (redis.ConnectionError, redis.TimeoutError):
            sources, workers, pending_events = {}, {}, None
            redis_up.add_metric([], 0.0)
        yield redis_up
        state = GaugeMetricFamily("patrol_source_state", "1 for the source's current state", labels=["source", "kind", "state"])
        up = GaugeMetricFamily("patrol_source_samples_per_second", "samples taken per second", labels=["source"])
        lag = GaugeMetricFamily("patrol_source_lag_seconds",
                                "how long the newest analysed sample waited from being read to being analysed",
                                labels=["source"])
        lagging = GaugeMetricFamily("patrol_source_lagging",
                                    "1 while samples are analysed more than two intervals after being read",
                                    labels=["source"])
        age = GaugeMetricFamily("patrol_source_sample_age_seconds", "age of the reader's newest sample",
                                labels=["source"])
        error = GaugeMetricFamily("patrol_source_error_info", "1 with the source's last error as a label",
                                  labels=["source", "error"])
        counters = {
            name: CounterMetricFamily(f"patrol_source_{name}", help_, labels=["source"])
            for name, help_ in (("samples", "samples taken from the stream"),
                                ("dropped", "samples overwritten before the detector took them"),
                                ("reconnects", "reconnections after a failure"),
                                ("analysed", "samples that went through the detector"),
                                ("gated", "samples skipped by the change gate"))
        }
        for sid, st in sources.items():
            for s in STATES:
                state.add_metric([sid, str(st.get("kind", "")), s], 1.0 if st.get("state") == s else 0.0)
            up.add_metric([sid], float(st.get("samples_per_s") or 0.0))
            if st.get("lag_s") is not None:
                lag.add_metric([sid], float(st["lag_s"]))
            lagging.add_metric([sid], 1.0 if st.get("lagging") else 0.0)
            if st.get("age_s") is not None:
                age.add_metric([sid], float(st["age_s"]))
            if st.get("last_error"):
                error.add_metric([sid, str(st["last_error"])[:200]], 1.0)
            for name, fam in counters.items():
                fam.add_metric([sid], float(st.get(name) or 0))
        yield from (state, up, lag, lagging, age, error, *counters.values())

        gauges = {
            key: GaugeMetricFamily(f"patrol_worker_{name}", help_, labels=["worker"])
            for key, name, help_ in (
                ("sources", "sources", "sources the worker patrols"),
                ("detect_batch", "batch_size", "samples in the last detector call"),
                ("infer_ms", "inference_milliseconds", "time of the last detector call"),
                ("step_ms", "step_milliseconds", "time of the last patrol step (gate, detector, rules)"),
                ("cpu_percent", "cpu_percent", "CPU used by the worker process, percent of one core"),
                ("rss_bytes", "memory_bytes", "resident memory of the worker process"),
            )
        }
        events = CounterMetricFamily("patrol_worker_events", "events published", labels=["worker"])
        for wid, w in workers.items():
            for key, fam in gauges.items():
                fam.add_metric([wid], float(w.get(key) or 0))
            events.add_metric([wid], float(w.get("events", 0)))
        yield from (*gauges.values(), events)

        if pending_events is not None:
            pending = GaugeMetricFamily("patrol_events_pending", "events read by a case builder, not yet stored")
            pending.add_metric([], float(pending_events))
            yield pending
        cases = GaugeMetricFamily("patrol_cases", "draft cases by status", labels=["status"])
        for status in ("draft", "approved", "rejected"):
            cases.add_metric([status], float(self.parts.store.list_cases(status=status, limit=1).total))
        yield cases
        yield from _evidence(self.parts)


def _evidence(parts):
    """Room for evidence: the folder's use against its quota (from this process's last
    retention run), the warning, the data folder's free space, and removals by reason."""
    usage = retention.LAST_USAGE
    if usage is not None:
        size = GaugeMetricFamily("patrol_evidence_bytes", "bytes in the evidence folder at the last retention run")
        size.add_metric([], float(usage.bytes))
        yield size
        if usage.quota_bytes is not None:
            quota = GaugeMetricFamily("patrol_evidence_quota_bytes", "the evidence quota (retention.quota_gb)")
            quota.add_metric([], float(usage.quota_bytes))
            ratio = GaugeMetricFamily("patrol_evidence_quota_ratio", "evidence bytes / quota")
            ratio.add_metric([], usage.bytes / usage.quota_bytes)
            yield quota
            yield ratio
        warn = GaugeMetricFamily("patrol_evidence_quota_warning",
                                 "1 from retention.warn_percent of the quota on (or approved evidence alone fills it)")
        warn.add_metric([], 1.0 if usage.warning else 0.0)
        yield warn
    try:
        room = disk.space(parts.evidence.root)
        free = GaugeMetricFamily("patrol_data_free_bytes", "free bytes on the data folder's file system")
        free.add_metric([], float(room.free))
        yield free
    except OSError:
        pass
    removed = CounterMetricFamily("patrol_evidence_removed_cases", "cases whose evidence retention removed",
                                  labels=["reason"])
    counts = retention.removed_counts(parts.store)
    for reason in retention.REASONS:
        removed.add_metric([reason], float(counts.get(reason, 0)))
    yield removed


@router.get("/metrics", summary="Prometheus metrics of sources, workers and cases",
            response_class=Response, responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(bus=Depends(get_bus), parts=Depends(get_parts)):
    registry = CollectorRegistry()
    registry.register(_Snapshot(bus, parts))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/workers", summary="Every live worker: its sources, batch, inference time, CPU and memory")
def list_workers(bus=Depends(get_bus)):
    """What each worker last said of itself in its heartbeat (a worker whose
    heartbeat expired is gone and not listed), with how many seconds ago."""
    if bus is None:
        return {"items": [], "total": None, "known": False, "detail": "no Redis configured: workers are not known here"}
    try:
        workers = bus.workers()
    except (redis.ConnectionError, redis.TimeoutError) as err:
        return {"items": [], "total": None, "known": False,
                "detail": f"Redis unavailable ({type(err).__name__}): which workers run is unknown until it is back"}
    now = time.time()
    items = [{"id": wid, **info, "age_s": round(now - info["reported_at"], 1)} for wid, info in sorted(workers.items())]
    return {"items": items, "total": len(items), "known": True}
