"""``patrol db upgrade [--sql]`` and ``patrol db current``: the case database's schema
revision, on the database of the settings (``database_url``, else the data folder's
``patrol.db``)."""
from __future__ import annotations

import sys

from cases import migrate
from cases.store import make_engine
from patrol.accounts_cli import describe


def run(args, db_url: str) -> int:
    engine = make_engine(db_url, busy_timeout_s=30.0)
    where = describe(db_url)
    try:
        if args.action == "current":
            state = migrate.current(engine)
            print(f"{where}: {state.describe()}")
            return 0 if state.current else 1
        if args.sql:  # for a DBA to read or run: the database is not touched
            print(f"-- {where}", flush=True)
            state = migrate.upgrade_sql(engine, sys.stdout)
            if state.current:
                print(f"-- already at revision {state.head} (head): nothing to do")
            return 0
        before, after = migrate.upgrade(engine)
        if before.current:
            print(f"{where}: already at revision {after.revision} (head), nothing to do")
        elif before.empty:
            print(f"{where}: created at revision {after.revision} (head)")
        else:
            print(f"{where}: upgraded from {before.label} to revision {after.revision} (head)")
        return 0
    except migrate.SchemaError as err:
        print(f"patrol: {where}: {err}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()


def add_parser(sub, fn) -> None:
    db = sub.add_parser("db", help="the case database's schema: current revision, upgrade")
    act = db.add_subparsers(dest="action", required=True)
    up = act.add_parser("upgrade", help="bring the database to this release's schema (back it up first)")
    up.add_argument("--sql", action="store_true", help="print the SQL instead of running it")
    act.add_parser("current", help="the database's revision and whether it needs an upgrade (exit 1 if it does)")
    db.set_defaults(fn=fn)
