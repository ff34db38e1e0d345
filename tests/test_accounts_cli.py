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


def accounts_of(data_dir: Path) -> Accounts:
    return Accounts(Store(f"sqlite:///{data_dir / 'patrol.db'}"), kdf=FAST_KDF)


def test_add_list_and_disable_a_user(data_dir):
    r = patrol(data_dir, "user", "add", "wu", "--role", "operator", "--password-stdin", stdin="drone-pilot-7\n")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "user wu (operator) added"
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
    assert r.returncode == 2 and r.stderr.strip() == "patrol: a password needs at least 8 characters"
    patrol(data_dir, "user", "add", "li", "--role", "analyst", "--password-stdin", stdin="long-enough-1\n")
    r = patrol(data_dir, "user", "add", "li", "--role", "analyst", "--password-stdin", stdin="long-enough-1\n")
    assert r.returncode == 2 and r.stderr.strip() == "patrol: user 'li' already exists"
    r = patrol(data_dir, "user", "add", "x", "--role", "platform", "--password-stdin", stdin="long-enough-1\n")
    assert r.returncode == 2 and "invalid choice" in r.stderr  # argparse: platform is a token role
    r = patrol(data_dir, "token", "revoke", "42")
    assert r.returncode == 2 and r.stderr.strip() == "patrol: no API token with id 42"


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
