"""The case database's schema in one place: every table module, so ``METADATA`` is whole.

Tables are defined beside the code that owns them (the store, its logs, accounts,
flights, retention); importing this module is what puts all of them on the
metadata, for creating a database and for comparing one with the migrations.
"""
from __future__ import annotations

from sqlalchemy.engine import Connection

from . import accounts, audit, clean_frames, evidence_index, feed, flights, outbox, retention, store  # noqa: F401
from .db import Base, forbid_changes

METADATA = Base.metadata
APPEND_ONLY = (audit.AuditEntry.__tablename__, feed.FeedEntry.__tablename__)  # refused UPDATE/DELETE by triggers


def create(conn: Connection) -> None:
    """Create every table and the append-only triggers on an empty database (in ``conn``'s transaction)."""
    METADATA.create_all(conn)
    for table in APPEND_ONLY:
        forbid_changes(conn, table)
