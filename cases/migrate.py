"""Bringing a case database to this release's schema (Alembic, configured here: no alembic.ini).

- An empty database is created at the newest revision (``schema.create``) and stamped.
- One at the newest revision is used as it is.
- One behind (or one made before migrations existed, without an ``alembic_version``
  table: recognised by its tables, stamped, then upgraded) is upgraded by
  ``patrol db upgrade``. On SQLite, the single-machine install, the store does that
  itself at start; on PostgreSQL the start stops and says to run it, so a shared
  database changes only when its operator decides (after a backup).

Everything happens in one transaction under a lock, so processes starting together
never race: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's advisory lock ``patrol.ddl``.
"""
from __future__ import annotations

import functools
import logging
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Iterator

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.util import CommandError
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection, Engine

from . import schema

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
UPGRADE_HINT = "back it up, then run `patrol db upgrade`"

# What a database made before migrations existed holds, newest revision first: the
# tables each revision has added up to then. Such a database is stamped with the
# newest revision whose tables it all has.
LEGACY_TABLES = (
    ("0002", frozenset({"evidence_removals"})),
    ("0001", frozenset({"draft_cases", "case_events", "review_actions", "audit_log", "feed_entries",
                        "webhook_outbox", "clean_frames", "case_evidence", "users", "login_sessions",
                        "api_tokens", "flights"})),
)


class SchemaError(RuntimeError):
    """The database's schema is not this release's and cannot be used as it is."""


@dataclass(frozen=True)
class State:
    revision: str | None  # from alembic_version; None when it has none
    head: str
    legacy: str | None  # no alembic_version but tables: the revision its tables match (None: not even the first's)
    empty: bool  # no tables at all

    @property
    def current(self) -> bool:
        return self.revision == self.head

    @property
    def label(self) -> str:
        return self.revision or f"no revision, tables of {self.legacy or 'an incomplete 0001'}"

    def describe(self) -> str:
        if self.empty:
            return f"empty; `patrol db upgrade` (or the first start) creates it at revision {self.head}"
        if self.revision is None:
            match = f"its tables are those of revision {self.legacy}" if self.legacy else \
                "some tables of revision 0001 are missing (the upgrade creates them)"
            return f"from before versioned migrations ({match}); {UPGRADE_HINT}, which stamps and upgrades it"
        if self.current:
            return f"at revision {self.revision} (head): up to date"
        return f"at revision {self.revision}, this release needs {self.head}; {UPGRADE_HINT}"


def config(connection: Connection | None = None, *, url=None, output: IO[str] | None = None) -> Config:
    """Alembic's configuration for the case database, made in code."""
    cfg = Config(output_buffer=output)
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    cfg.attributes["url"] = url
    return cfg


@functools.cache
def scripts() -> ScriptDirectory:
    return ScriptDirectory.from_config(config())


def head() -> str:
    return scripts().get_current_head()


def inspect_state(conn: Connection) -> State:
    tables = set(inspect(conn).get_table_names())
    revision = MigrationContext.configure(conn).get_current_revision() if "alembic_version" in tables else None
    tables.discard("alembic_version")
    legacy = None
    if revision is None and tables:
        seen: set[str] = set()
        for rev, added in reversed(LEGACY_TABLES):
            seen |= added
            if seen <= tables:
                legacy = rev
    return State(revision=revision, head=head(), legacy=legacy, empty=not tables and revision is None)


@contextmanager
def locked(engine: Engine) -> Iterator[Connection]:
    """One transaction that no other process preparing the schema can enter at the same time."""
    with engine.execution_options(sqlite_write=True).begin() as conn:  # SQLite: BEGIN IMMEDIATE
        if conn.dialect.name == "postgresql":
            conn.execute(select(func.pg_advisory_xact_lock(zlib.crc32(b"patrol.ddl"))))
        yield conn


def current(engine: Engine) -> State:
    with engine.connect() as conn:
        return inspect_state(conn)


def prepare(engine: Engine) -> State:
    """Make the database ready for this release, or say why it is not (``SchemaError``)."""
    with locked(engine) as conn:
        state = inspect_state(conn)
        if state.current:
            return state
        if state.revision is not None:
            _known(state.revision)
        if state.empty:
            return _upgrade(conn, state)
        if conn.dialect.name == "sqlite":  # one machine, no operator to ask: upgrade at start
            after = _upgrade(conn, state)
            log.warning("upgraded the case database from %s to revision %s", state.label, after.revision)
            return after
    raise SchemaError(f"the case database needs an upgrade: it is {state.describe()}")


def upgrade(engine: Engine) -> tuple[State, State]:
    """``patrol db upgrade``: the state before and after."""
    with locked(engine) as conn:
        before = inspect_state(conn)
        if before.revision is not None:
            _known(before.revision)
        after = before if before.current else _upgrade(conn, before)
    return before, after


def upgrade_sql(engine: Engine, output: IO[str]) -> State:
    """Write the SQL that ``upgrade`` would run, without changing the database."""
    state = current(engine)
    if state.current:
        return state
    cfg = config(url=engine.url, output=output)
    if state.empty:
        command.upgrade(cfg, "head", sql=True)  # the migrations from scratch
    elif state.revision is None:
        if not state.legacy:
            raise SchemaError("this database lacks tables of the first revision; `patrol db upgrade` creates "
                              "them, but they cannot be written as SQL in advance")
        command.stamp(cfg, state.legacy, sql=True)
        if state.legacy != state.head:
            command.upgrade(cfg, f"{state.legacy}:head", sql=True)
    else:
        _known(state.revision)
        command.upgrade(cfg, f"{state.revision}:head", sql=True)
    return state


def run_migrations(conn: Connection, target: str = "head") -> None:
    """Alembic's upgrade on ``conn``, inside its transaction."""
    command.upgrade(config(conn), target)


def differences(conn: Connection) -> list:
    """What ``alembic check`` would report: where the database differs from ``schema.METADATA``."""
    ctx = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(ctx, schema.METADATA)


def _upgrade(conn: Connection, state: State) -> State:
    if state.empty:
        schema.create(conn)
        command.stamp(config(conn), "head")
    else:
        if state.revision is None and state.legacy:  # made before migrations: start from what it has
            command.stamp(config(conn), state.legacy)
        run_migrations(conn)
        left = differences(conn)
        if left:
            raise SchemaError(f"after upgrading, the case database still differs from this release's schema "
                              f"({len(left)} difference(s), first: {left[0]!r}); nothing was changed")
    return inspect_state(conn)



def _known(revision: str) -> None:
    try:
        found = scripts().get_revision(revision)
    except CommandError:
        found = None
    if found is None:
        raise SchemaError(f"the case database is at revision {revision}, which this release does not know: "
                          "it was made by a newer release")
