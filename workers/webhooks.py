"""The webhook delivery loop: posts queued approvals to the case platform, signed,
retried with capped exponential backoff and jitter, until delivered or dead.

It runs as a thread of ``patrol serve`` and ``patrol demo`` (``--no-deliver``
to leave it to another process); any number of loops over the same database
share the work safely, because a delivery is claimed for a lease before it is
posted (``cases/outbox.py``). What it sends:

    POST <url>
    Content-Type: application/json; charset=utf-8
    X-Patrol-Timestamp: <Unix seconds>
    X-Patrol-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>
    Idempotency-Key: <the delivery's key, the same on every attempt>

    {"id": <idempotency key>, "event": "case.approved", "created_at": ..., "data": <PlatformCase>}

Any 2xx is delivered; anything else (an error status, a redirect, a refused or
timed-out connection) is a failed attempt, retried later. The body is rebuilt
from the approved case on each attempt; an approved case never changes, so
every attempt carries the same body (only the timestamp and signature differ).
"""
from __future__ import annotations

import http.client
import json
import logging
import random
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import DBAPIError

from cases import outbox
from cases.platform import local_time, platform_case
from cases.signing import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from cases.store import Store, utcnow

log = logging.getLogger(__name__)

USER_AGENT = "CityPatrol-Webhooks/1"


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    secret: str
    timeout_s: float = 10.0


@dataclass(frozen=True)
class Backoff:
    """Wait ``base_s * 2**(attempt-1)``, at most ``max_s``, times a random 0.5–1
    (so receivers that come back are not hit by every sender at once)."""

    base_s: float = 5.0
    max_s: float = 3600.0
    max_attempts: int = 12

    def delay_s(self, attempts: int, rng: random.Random) -> float:
        capped = min(self.max_s, self.base_s * 2 ** max(0, attempts - 1))
        return capped * (0.5 + rng.random() / 2)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would re-send (or, for 302/303, drop) the signed body to some other
    # place; the platform must give the real URL instead. It counts as a failure.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class WebhookDelivery:
    def __init__(self, store: Store, endpoints: list[Endpoint], public_url: str, backoff: Backoff = Backoff(),
                 *, poll_s: float = 2.0, batch: int = 20, rng: random.Random | None = None):
        self.store = store
        self.endpoints = {e.name: e for e in endpoints}
        self.public_url = public_url
        self.backoff = backoff
        self.poll_s = poll_s
        self.batch = batch
        self.rng = rng or random.Random()
        # long enough that a post still running is never claimed by another loop
        self.lease_s = max((e.timeout_s for e in endpoints), default=10.0) + 30.0
        self.delivered = 0
        self.failed = 0

    def run(self, stop: threading.Event) -> None:
        """Deliver until ``stop`` is set; a database outage is waited out, not fatal."""
        while not stop.is_set():
            try:
                done = self.deliver_due()
            except DBAPIError as err:
                log.warning("webhook outbox unavailable, retrying: %s", str(err).splitlines()[0])
                done = 0
            if not done:
                stop.wait(self.poll_s)

    def deliver_due(self, now: datetime | None = None) -> int:
        """Attempt every due delivery once; returns how many were attempted."""
        due = outbox.claim(self.store, self.endpoints, limit=self.batch, lease_s=self.lease_s, now=now)
        for delivery in due:
            self.attempt(delivery)
        return len(due)

    def body(self, delivery: outbox.Delivery) -> bytes:
        case = self.store.get_case(delivery.case_id)
        if case is None:
            raise LookupError(f"case {delivery.case_no} (id {delivery.case_id}) is not in the store")
        message = {"id": delivery.idempotency_key, "event": delivery.event,
                   "created_at": local_time(delivery.created_at),
                   "data": platform_case(case, delivery.feed_seq, self.public_url,
                                         self.store.approval(case.id)).model_dump(mode="json")}
        return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()

    def attempt(self, delivery: outbox.Delivery) -> outbox.Delivery:
        endpoint = self.endpoints[delivery.endpoint]
        started = time.monotonic()
        try:
            status, error, retry_after = self._post(endpoint, delivery.idempotency_key, self.body(delivery))
        except (LookupError, ValueError) as err:  # nothing to send: retrying cannot help
            status, error, retry_after = None, f"cannot build the message: {err}", None
            return self._record_failure(delivery, endpoint, status, error, retry_after, give_up=True)
        if status is not None and 200 <= status < 300:
            self.delivered += 1
            return outbox.delivered(self.store, delivery.id, status, time.monotonic() - started)
        return self._record_failure(delivery, endpoint, status, error, retry_after)

    def _record_failure(self, delivery, endpoint, status, error, retry_after, give_up=False) -> outbox.Delivery:
        self.failed += 1
        attempts = delivery.attempts + 1
        if give_up or attempts >= self.backoff.max_attempts:
            log.warning("webhook %s: giving up on %s after %d attempt(s): %s", endpoint.name, delivery.case_no,
                        attempts, error)
            return outbox.failed(self.store, delivery.id, error, status, None)
        wait = self.backoff.delay_s(attempts, self.rng)
        if retry_after is not None:  # the receiver said when; never sooner, never past the cap
            wait = min(self.backoff.max_s, max(wait, retry_after))
        log.info("webhook %s: %s not delivered (attempt %d): %s; next try in %.0f s", endpoint.name,
                 delivery.case_no, attempts, error, wait)
        return outbox.failed(self.store, delivery.id, error, status, utcnow() + timedelta(seconds=wait))

    def _post(self, endpoint: Endpoint, key: str, body: bytes) -> tuple[int | None, str | None, float | None]:
        """(HTTP status or None, error text or None, Retry-After seconds or None)."""
        timestamp = int(time.time())
        request = urllib.request.Request(endpoint.url, data=body, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(endpoint.secret, body, timestamp),
            IDEMPOTENCY_HEADER: key})
        try:
            with _OPENER.open(request, timeout=endpoint.timeout_s) as response:
                return response.status, None, None
        except urllib.error.HTTPError as err:
            return err.code, f"HTTP {err.code} {err.reason}", _retry_after(err.headers.get("Retry-After"))
        except urllib.error.URLError as err:
            return None, f"cannot reach {endpoint.url}: {err.reason}", None
        except (OSError, http.client.HTTPException) as err:  # timeouts, resets, malformed answers
            return None, f"{type(err).__name__}: {err}", None


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None  # the HTTP-date form: use our own backoff
