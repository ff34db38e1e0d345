"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` with a shared secret.

The timestamp is signed together with the body so that a captured request
cannot be replayed later: the receiver refuses timestamps outside its window.
``verify_signature`` uses only the standard library so a consumer can copy it
as it is (docs/platform-interface.md shows it).
"""
from __future__ import annotations

import hashlib
import hmac
import time

SCHEME = "sha256"
TIMESTAMP_HEADER = "X-Patrol-Timestamp"
SIGNATURE_HEADER = "X-Patrol-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``X-Patrol-Signature`` value for ``body`` sent at ``timestamp`` (Unix seconds)."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, str(int(timestamp)).encode() + b"." + body, hashlib.sha256)
    return f"{SCHEME}={mac.hexdigest()}"


def verify_signature(secret: str | bytes, body: bytes, timestamp: str | int, signature: str,
                     tolerance_s: float = 300, now: float | None = None) -> bool:
    """True when ``signature`` is ours for this body and timestamp, and the timestamp
    is within ``tolerance_s`` of now (either way, for clocks that disagree a little).

    ``body`` must be the raw bytes received, before any JSON parsing.
    """
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    now = time.time() if now is None else now
    if abs(now - ts) > tolerance_s:
        return False  # too old (a replay) or from the future
    key = secret.encode() if isinstance(secret, str) else secret
    expected = "sha256=" + hmac.new(key, str(ts).encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature or "")
