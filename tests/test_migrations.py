"""The case database's migrations: an empty database and one made by the release before
versioned migrations (tests/data/db/, its own dump) reach this release's schema on SQLite and
PostgreSQL, keep their rows, and the store works on them afterwards."""
from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from cases import migrate
from cases.store import DraftCase, Store, make_engine
from db_fixtures import db_url  # noqa: F401  (fixture)

RELEASE_0001 = Path(__file__).parent / "data" / "db"
ROOT = Path(__file__).resolve().parents[1]


def previous_release(url: str) -> None:
    """Replay the previous release's database (tables, triggers, one approved case) into ``url``."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        with sqlite3.connect(parsed.database) as conn:
            conn.executescript((RELEASE_0001 / "release-0001.sqlite.sql").read_text(encoding="utf-8"))
        return
    engine = make_engine(url, 30.0)
    with engine.begin() as conn:
        conn.exec_driver_sql((RELEASE_0001 / "release-0001.postgresql.sql").read_text(encoding="utf-8"))
    engine.dispose()


def assert_matches_this_release(url: str) -> None:
    engine = make_engine(url, 30.0)
    try:
        with engine.connect() as conn:
            assert migrate.differences(conn) == []  # what `alembic check` compares
        assert migrate.current(engine).current
        now = datetime.now(timezone.utc)
        with engine.begin() as conn:  # a row in each log, so that row triggers have something to refuse
            conn.execute(text("INSERT INTO audit_log (at, actor, action, target, detail) VALUES (:at, 't', 't', 't', '{}')"),
                         {"at": now})
            conn.execute(text("INSERT INTO feed_entries (feed, at, payload) VALUES ('cases', :at, '{}')"), {"at": now})
        for table in ("audit_log", "feed_entries"):  # append-only, in the database itself
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(f"DELETE FROM {table}"))
    finally:
        engine.dispose()


def make_and_approve_a_case(store: Store) -> int:
    now = datetime(2026, 12, 1, 2, 0, tzinfo=timezone.utc)
    with store.transaction() as s:
        case = DraftCase(case_no=store.next_case_no(s, now), created_at=now, updated_at=now, status="draft",
                         event_type="dust", major="03", major_name="施工管理", minor="02", minor_name="工地扬尘",
                         description="d", source_id="cam-2", source_kind="fixed", source_ids=["cam-2"], lat=None,
                         lon=None, grid=None, first_seen=1.0, last_seen=2.0, ended=False, confidence=0.7,
                         bbox=[0, 0, 5, 5], label="plume", zone=None, trace=[], model_version="m", hits=1, samples=1)
        s.add(case)
        s.flush()
        case_id = case.id
    assert store.approve(case_id, "analyst1").status == "approved"
    return case_id


def test_an_empty_database_reaches_head_through_the_migrations(db_url):
    engine = make_engine(db_url, 30.0)
    with migrate.locked(engine) as conn:
        migrate.run_migrations(conn)
    engine.dispose()
    assert_matches_this_release(db_url)
    store = Store(db_url)
    try:
        make_and_approve_a_case(store)
    finally:
        store.close()


def test_the_store_creates_a_fresh_database_at_head(db_url):
    Store(db_url).close()
    assert_matches_this_release(db_url)


def test_a_database_of_the_previous_release_is_recognised_stamped_and_upgraded(db_url):
    previous_release(db_url)
    engine = make_engine(db_url, 30.0)
    state = migrate.current(engine)
    assert (state.revision, state.legacy) == (None, "0001")
    assert "patrol db upgrade" in state.describe()

    before, after = migrate.upgrade(engine)
    engine.dispose()
    assert (before.legacy, after.revision) == ("0001", migrate.head())
    assert_matches_this_release(db_url)

    store = Store(db_url, webhooks={"case.approved": ["city"]})
    try:
        old = store.get_case(1)  # the previous release's rows are all there
        assert (old.case_no, old.status, old.reviewer) == ("CP-20261129-0001", "approved", "analyst1")
        with store.reading() as s:
            assert s.scalar(text("SELECT username FROM users")) == "analyst1"
            feed_before = s.scalar(text("SELECT max(seq) FROM feed_entries"))
            assert s.scalar(text("SELECT count(*) FROM webhook_outbox")) == 1
        new_id = make_and_approve_a_case(store)
        assert new_id == 2 and store.get_case(new_id).case_no == "CP-20261201-0001"
        with store.reading() as s:  # the approval's feed entry and delivery follow the old ones
            assert s.scalar(text("SELECT max(seq) FROM feed_entries WHERE case_id = 2")) > feed_before
            assert s.scalar(text("SELECT count(*) FROM webhook_outbox")) == 2
    finally:
        store.close()


def test_on_start_sqlite_upgrades_itself_and_postgresql_asks_for_the_command(db_url):
    previous_release(db_url)
    if db_url.startswith("sqlite"):
        Store(db_url).close()
        assert_matches_this_release(db_url)
        return
    with pytest.raises(migrate.SchemaError, match="run `patrol db upgrade`"):
        Store(db_url)
    engine = make_engine(db_url, 30.0)
    assert migrate.current(engine).revision is None  # nothing was changed
    engine.dispose()


def test_upgrade_sql_writes_the_statements_and_changes_nothing(db_url):
    previous_release(db_url)
    engine = make_engine(db_url, 30.0)
    out = io.StringIO()
    migrate.upgrade_sql(engine, out)
    assert "INSERT INTO alembic_version" in out.getvalue() and "CREATE TABLE evidence_removals" in out.getvalue()
    assert migrate.current(engine).revision is None
    engine.dispose()


def test_a_database_of_a_newer_release_is_refused(db_url):
    Store(db_url).close()
    engine = make_engine(db_url, 30.0)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(migrate.SchemaError, match="newer release"):
        migrate.upgrade(engine)
    engine.dispose()
    with pytest.raises(migrate.SchemaError, match="newer release"):
        Store(db_url)


def patrol_db(url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DATABASE_URL": url, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "patrol.cli", "db", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_patrol_db_current_and_upgrade(db_url):
    previous_release(db_url)
    run = patrol_db(db_url, "current")
    assert run.returncode == 1 and "before versioned migrations" in run.stdout and "patrol db upgrade" in run.stdout
    run = patrol_db(db_url, "upgrade", "--sql")
    assert run.returncode == 0 and "CREATE TABLE evidence_removals" in run.stdout
    run = patrol_db(db_url, "upgrade")
    assert run.returncode == 0, run.stderr
    assert f"upgraded from no revision, tables of 0001 to revision {migrate.head()} (head)" in run.stdout
    run = patrol_db(db_url, "current")
    assert run.returncode == 0 and "(head): up to date" in run.stdout
    assert "nothing to do" in patrol_db(db_url, "upgrade").stdout
    assert_matches_this_release(db_url)
