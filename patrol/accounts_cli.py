"""``patrol user ...`` and ``patrol token ...``: accounts from the command line, and the
first users of ``patrol demo``.

These act on the database of the settings (``database_url``, else the data folder's
``patrol.db``), as the admin API does, and are recorded in the audit log as done by
``cli:<login name>``. With nothing configured they act on the running product's: the
default data folder's database, or the demo's (``var/demo``) when only the demo has
one. Each run says on stderr which database it used.
"""
from __future__ import annotations

import getpass
import secrets
import sys
from pathlib import Path

from cases.accounts import TOKEN_ROLES, USER_ROLES, AccountError, Accounts
from core.settings import DEFAULT_DATA_DIR, DEMO_DATA_DIR, Settings


def _by() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no login name (some containers)
        return "cli"


def _password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if getpass.getpass("again: ") != first:
        raise AccountError("the two passwords differ")
    return first


def cmd_user(args, accounts: Accounts) -> int:
    if args.action == "add":
        user = accounts.add_user(args.name, args.role, _password(args), by=_by())
        print(f"user {user.username} ({user.role}) added")
    elif args.action == "list":
        for u in accounts.users():
            state = f"disabled {u.disabled_at:%Y-%m-%d %H:%M} UTC" if u.disabled else "active"
            print(f"{u.username:<24} {u.role:<9} {state:<28} created {u.created_at:%Y-%m-%d} by {u.created_by or '-'}")
    elif args.action == "disable":
        accounts.disable_user(args.name, by=_by())
        print(f"user {args.name} disabled; their sessions have ended")
    elif args.action == "passwd":
        accounts.set_password(args.name, _password(args), by=_by())
        print(f"password of {args.name} changed; their sessions have ended")
    return 0


def cmd_token(args, accounts: Accounts) -> int:
    if args.action == "create":
        made = accounts.create_token(args.name, args.role, days=args.days, by=_by())
        until = f"until {made.info.expires_at:%Y-%m-%d %H:%M} UTC" if made.info.expires_at else "until revoked"
        print(f"API token {made.info.id} '{made.info.name}' ({made.info.role}), valid {until}. "
              "It is shown now and never again:", file=sys.stderr)
        print(made.token)  # alone on stdout, for scripts
    elif args.action == "list":
        for t in accounts.tokens():
            state = (f"revoked {t.revoked_at:%Y-%m-%d}" if t.revoked_at else
                     f"expires {t.expires_at:%Y-%m-%d}" if t.expires_at else "no expiry")
            print(f"{t.id:>4}  {t.name:<24} {t.role:<10} {state:<20} created {t.created_at:%Y-%m-%d} by {t.created_by or '-'}")
    elif args.action == "revoke":
        t = accounts.revoke_token(args.id, by=_by())
        print(f"API token {t.id} '{t.name}' revoked")
    return 0


def add_parsers(sub, fn) -> None:
    """The ``user`` and ``token`` sub-commands, run by ``fn(args)`` (which calls ``run``)."""
    u = sub.add_parser("user", help="users who log in: add, list, disable, passwd")
    uact = u.add_subparsers(dest="action", required=True)
    add = uact.add_parser("add", help="add a user (the password is asked for, or read from stdin)")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=USER_ROLES)
    add.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    uact.add_parser("list", help="every user with role and state")
    dis = uact.add_parser("disable", help="the user can no longer log in; open sessions end")
    dis.add_argument("name")
    pw = uact.add_parser("passwd", help="set a user's password; open sessions end")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    u.set_defaults(fn=fn, accounts_fn=cmd_user)

    t = sub.add_parser("token", help="API tokens for the case platform and monitoring: create, list, revoke")
    tact = t.add_subparsers(dest="action", required=True)
    create = tact.add_parser("create", help="create a token; it is printed once")
    create.add_argument("name", help="what uses it, e.g. city-platform, prometheus")
    create.add_argument("--role", choices=TOKEN_ROLES, default="platform")
    create.add_argument("--days", type=float, help="valid for this many days (default: until revoked)")
    tact.add_parser("list", help="every token, without the secrets")
    rev = tact.add_parser("revoke", help="revoke a token at once")
    rev.add_argument("id", type=int)
    t.set_defaults(fn=fn, accounts_fn=cmd_token)


def product_settings(settings: Settings, default_dir: Path | None = None,
                     demo_dir: Path | None = None) -> tuple[Settings, str]:
    """The settings whose database the commands act on, and a note on why that one.

    A configured database or data folder is used as it is. With the defaults, the
    default folder's database is the product's (``patrol serve``); when it has none and
    the demo's folder has one, the demo's is (README's commands run against
    ``make demo``)."""
    default_dir, demo_dir = default_dir or DEFAULT_DATA_DIR, demo_dir or DEMO_DATA_DIR
    if settings.database_url:
        return settings, "database_url of the settings"
    if settings.data_dir.absolute() != default_dir.absolute():
        return settings, "the data folder of the settings"
    if not (default_dir / "patrol.db").exists() and (demo_dir / "patrol.db").exists():
        return (settings.model_copy(update={"data_dir": demo_dir}),
                "the demo's; set PATROL_DATA_DIR or DATABASE_URL for another")
    if (demo_dir / "patrol.db").exists():
        return settings, f"the default data folder; the demo's is PATROL_DATA_DIR={demo_dir}"
    return settings, "the default data folder; set PATROL_DATA_DIR or DATABASE_URL for another"


def describe(url: str) -> str:
    """A database URL fit to print: no password."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def run(args, parts, why: str = "") -> int:
    """Run a ``user``/``token`` command over the database of ``parts``; bad input is one line."""
    print(f"patrol: database {describe(parts.settings.db_url)}" + (f" ({why})" if why else ""), file=sys.stderr)
    try:
        return args.accounts_fn(args, parts.accounts)
    except AccountError as err:
        print(f"patrol: {err}", file=sys.stderr)
        return 2


def demo_users(accounts: Accounts, password: str | None) -> list[tuple[str, str, str]]:
    """On an empty user table, the demo's first users: ``demo`` (analyst), ``pilot`` (a drone
    operator, for the upload page) and ``admin``.
    Their password is ``password`` (settings ``auth.demo_password``) or a fresh random
    one each. Returns (name, role, password) to print once; [] when users exist."""
    if accounts.count_users():
        return []
    made = []
    for name, role in (("demo", "analyst"), ("pilot", "operator"), ("admin", "admin")):
        pw = password or secrets.token_urlsafe(12)
        accounts.add_user(name, role, pw, by="system:demo")
        made.append((name, role, pw))
    return made
