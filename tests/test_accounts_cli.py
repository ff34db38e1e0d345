"""``patrol user`` and ``patrol token`` as an admin runs them (real subprocesses on a
real SQLite file), and the demo's first users."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from auth_helpers import FAST_KDF
from cases.accounts import Accounts, Unauthenticated
from cases.store import Store
from patrol.accounts_cli import demo_users

ROOT = Path(__file__).resolve().parents[1]
_PATROL = Path(sys.executable).with_name("patrol")
PATROL = [str(_PATROL)] if _PATROL.exists() else [sys.executable, "-m", "patrol.cli"]


@pytest.fixture
def data_dir(tmp_path) -> Path:
    return tmp_path / "data"


def patrol(data_dir: Path, *args, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("PATROL_") or k in ("REDIS_URL", "DATABASE_URL"))}
    env["PATROL_DATA_DIR"] = str(data_dir)
    return subprocess.run([*PATROL, *map(str, args)], input=stdin, capture_output=True, text=True, timeout=120,
                          cwd=ROOT, env=env)


def last_line(r: subprocess.CompletedProcess) -> str:
    """The error (stderr's first line names the database used)."""
    return r.stderr.strip().splitlines()[-1]


def accounts_of(data_dir: Path) -> Accounts:
    return Accounts(Store(f"sqlite:///{data_dir / 'patrol.db'}"), kdf=FAST_KDF)


def test_add_list_and_disable_a_user(data_dir):
    r = patrol(data_dir, "user", "add", "wu", "--role", "operator", "--password-stdin", stdin="drone-pilot-7\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "user wu (operator) added"
    assert r.stderr.startswith(f"patrol: database sqlite:///{data_dir / 'patrol.db'} (the data folder of the settings)")
    listed = patrol(data_dir, "user", "list")
    assert listed.returncode == 0 and listed.stdout.split()[:3] == ["wu", "operator", "active"]

    acc = accounts_of(data_dir)
    assert acc.login("wu", "drone-pilot-7").user.role == "operator"
    assert patrol(data_dir, "user", "disable", "wu").returncode == 0
    with pytest.raises(Unauthenticated, match="disabled"):
        acc.login("wu", "drone-pilot-7")
    acc.store.close()


def test_bad_input_is_one_line_and_exit_2(data_dir):
    r = patrol(data_dir, "user", "add", "li", "--role", "analyst", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and last_line(r) == "patrol: a password needs at least 8 characters"
    patrol(data_dir, "user", "add", "li", "--role", "analyst", "--password-stdin", stdin="long-enough-1\n")
    r = patrol(data_dir, "user", "add", "li", "--role", "analyst", "--password-stdin", stdin="long-enough-1\n")
    assert r.returncode == 2 and last_line(r) == "patrol: user 'li' already exists"
    r = patrol(data_dir, "user", "add", "x", "--role", "platform", "--password-stdin", stdin="long-enough-1\n")
    assert r.returncode == 2 and "invalid choice" in r.stderr  # argparse: platform is a token role
    r = patrol(data_dir, "token", "revoke", "42")
    assert r.returncode == 2 and last_line(r) == "patrol: no API token with id 42"


def test_a_token_is_printed_once_and_works_until_revoked(data_dir):
    r = patrol(data_dir, "token", "create", "city-platform", "--days", "30")
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()  # alone on stdout, for scripts
    assert token.startswith("pat_") and "shown now and never again" in r.stderr
    acc = accounts_of(data_dir)
    assert acc.authenticate(token).role == "platform"
    listed = patrol(data_dir, "token", "list").stdout
    assert "city-platform" in listed and token not in listed
    assert patrol(data_dir, "token", "revoke", "1").returncode == 0
    with pytest.raises(Unauthenticated, match="revoked"):
        acc.authenticate(token)
    acc.store.close()


def test_the_demo_makes_its_first_users_once(tmp_path):
    acc = Accounts(Store(f"sqlite:///{tmp_path / 'demo.db'}"), kdf=FAST_KDF)
    made = demo_users(acc, None)
    assert [(n, r) for n, r, _ in made] == [("demo", "analyst"), ("pilot", "operator"), ("admin", "admin")]
    (_, _, pw1), (_, _, pw2), (_, _, pw3) = made
    assert len({pw1, pw2, pw3}) == 3 and len(pw1) >= 12  # random, each its own
    assert acc.login("demo", pw1).user.role == "analyst" and acc.login("pilot", pw2).user.role == "operator"
    assert acc.login("admin", pw3).user.role == "admin"
    assert demo_users(acc, None) == []  # users exist: nothing made, nothing printed
    acc.store.close()

    chosen = Accounts(Store(f"sqlite:///{tmp_path / 'chosen.db'}"), kdf=FAST_KDF)
    assert {pw for _, _, pw in demo_users(chosen, "from-the-settings")} == {"from-the-settings"}
    chosen.store.close()


def test_with_nothing_configured_the_demos_database_is_used_and_named(tmp_path, monkeypatch, capsys):
    """README's commands against `make demo`: no settings, the demo's database (var/demo)
    is the one that has users, and the token printed works on the demo's API."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from core.settings import Settings
    from core.wiring import Parts
    from patrol import accounts_cli, cli

    default, demo = tmp_path / "var", tmp_path / "var" / "demo"
    monkeypatch.setattr(accounts_cli, "DEFAULT_DATA_DIR", default)
    monkeypatch.setattr(accounts_cli, "DEMO_DATA_DIR", demo)
    for name in [k for k in os.environ if k.startswith("PATROL_") or k in ("REDIS_URL", "DATABASE_URL")]:
        monkeypatch.delenv(name)
    settings = Settings(data_dir=default)
    assert accounts_cli.product_settings(settings)[0].data_dir == default  # no demo yet: the default folder

    demo_parts = Parts(Settings(data_dir=demo))
    demo_users(demo_parts.accounts, "demo-password-1")  # what `patrol demo` makes on its first start
    chosen, why = accounts_cli.product_settings(settings)
    assert chosen.data_dir == demo and why.startswith("the demo's")
    assert accounts_cli.product_settings(Settings(data_dir=tmp_path / "elsewhere"))[0].data_dir == tmp_path / "elsewhere"

    monkeypatch.setattr(cli, "_settings", lambda args, **kw: Settings(data_dir=default, **kw))
    assert cli.main(["token", "create", "city-platform"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert f"patrol: database sqlite:///{demo / 'patrol.db'} (the demo's" in err
    with TestClient(create_app(demo_parts)) as api:  # the demo's API accepts it
        assert api.get("/api/v1/feed", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert not (default / "patrol.db").exists()

    # once the default folder has a database of its own (`patrol serve`), that one is used; the demo's is named
    Parts(Settings(data_dir=default)).accounts.count_users()
    chosen, why = accounts_cli.product_settings(settings)
    assert chosen.data_dir == default and f"PATROL_DATA_DIR={demo}" in why
    demo_parts.store.close()


def test_the_demos_restart_hint_runs_as_printed_without_a_venv(tmp_path, monkeypatch, capsys):
    """On a restart the demo prints how to list its users; that line runs in a plain shell
    whose PATH has no venv."""
    from types import SimpleNamespace

    from core.settings import Settings
    from core.wiring import Parts
    from patrol import cli

    data_dir = tmp_path / "demo data"
    parts = Parts(Settings(data_dir=data_dir))
    demo_users(parts.accounts, "demo-password-1")  # the first start made them
    runtime = SimpleNamespace(parts=parts, settings=parts.settings)
    for argv0 in (str(_PATROL), "/somewhere/else/pytest"):  # the installed script, or `python -m patrol.cli`
        if argv0 == str(_PATROL) and not _PATROL.exists():
            continue
        monkeypatch.setattr(sys, "argv", [argv0, "demo"])
        cli._print_demo_users(runtime, data_dir)
        line = capsys.readouterr().out.strip()
        command = line[line.index("(") + 1:line.rindex(")")]
        assert command.startswith("PATROL_DATA_DIR=") and command.endswith(" user list")
        env = {k: v for k, v in os.environ.items() if not (k.startswith("PATROL_") or k in ("REDIS_URL", "DATABASE_URL"))}
        env["PATH"] = "/usr/bin:/bin"  # no venv
        r = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stderr
        assert [row.split()[0] for row in r.stdout.splitlines()] == ["admin", "demo", "pilot"]
    parts.store.close()
