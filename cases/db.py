"""What every table of the case domain shares: the declarative base, aware UTC
datetimes, and the lock that keeps append-only logs in commit order.

Split out of ``store.py`` so the logs beside the case store (``feed.py``,
``outbox.py``, ``audit.py``) can define their tables on the same metadata and the
store can write them in its own transactions without a circular import. Every
table module is gathered in ``schema.py``; ``migrate.py`` prepares a database.
"""
from __future__ import annotations

import zlib
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import JSON, DateTime, TypeDecorator, func, select
from sqlalchemy.orm import DeclarativeBase, Session


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[str]: JSON, list[float]: JSON}


APPEND_LOCK = "patrol.append-only-logs"


def take_append_lock(session: Session) -> None:
    """Hold, until this transaction ends, the right to append to a cursor-paged log.

    Readers page the feed and the audit log by an autoincrement id ("everything
    after the last id I saw"). That is only safe if ids become visible in id order.
    On PostgreSQL they need not: transaction A draws id 7, B draws id 8 and commits
    first, a reader sees 8, moves its cursor past it, and never sees 7 once A
    commits. So every appender takes this transaction-scoped advisory lock *before*
    drawing its id and keeps it until commit: the next appender can only draw a
    larger id after this one is visible. The alternatives were worse: a "settle
    window" (serve only rows older than N seconds) is a guess about transaction
    length, and ordering by transaction id (xid8 < snapshot xmin) stalls every feed
    while any unrelated long transaction is open in the cluster.

    The lock is held only from the append to the commit, and it must be the last
    lock a transaction takes (append after your row locks) so it can never be part
    of a lock cycle. SQLite needs nothing: a write transaction there starts with
    BEGIN IMMEDIATE, so writers are already serialised up to their commit.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(zlib.crc32(APPEND_LOCK.encode()))))


def forbid_changes(conn, table: str) -> None:
    """Make ``table`` append-only in the database itself, not just by having no
    update/delete API: a trigger refuses UPDATE and DELETE (and, on PostgreSQL,
    TRUNCATE), so not even a hand-typed statement can rewrite history.

    Runs on ``conn`` inside the caller's transaction (schema preparation holds the
    DDL lock there); every statement is idempotent."""
    message = f"{table} is append-only"
    if conn.dialect.name == "sqlite":
        for op in ("UPDATE", "DELETE"):
            conn.exec_driver_sql(
                f"CREATE TRIGGER IF NOT EXISTS {table}_no_{op.lower()} BEFORE {op} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    elif conn.dialect.name == "postgresql":
        conn.exec_driver_sql(
            f"CREATE OR REPLACE FUNCTION {table}_refuse() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$")
        conn.exec_driver_sql(
            f"CREATE OR REPLACE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {table}_refuse()")
        conn.exec_driver_sql(
            f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION {table}_refuse()")
