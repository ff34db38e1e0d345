"""The done-when of the platform interface with real processes: `patrol serve` from a
settings file with a webhook, a consumer paging the feed over HTTP, the server
killed (SIGKILL) and approvals made while it is down, the server started again —
and the consumer, resuming from its cursor, and the webhook receiver each get every
approved case exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

from auth_helpers import bearer, make_user, token_headers
from feed_helpers import PUBLIC_URL, SECRET, make_drafts
from core.settings import load_settings
from core.wiring import Parts
from webhook_receiver import Receiver, free_port

ROOT = Path(__file__).resolve().parents[1]


def start_serve(config: Path, port: int, env: dict) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "patrol.cli", "--config", str(config), "serve", "--no-builder",
                             "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"patrol serve exited:\n{proc.stdout.read()}"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise AssertionError(f"patrol serve not up after 90 s:\n{proc.stdout.read()}")


def drain(client: httpx.Client, headers: dict, cursor: str | None) -> tuple[list[dict], str]:
    items = []
    while True:
        r = client.get("/api/v1/feed", params={"limit": 1} | ({"cursor": cursor} if cursor else {}), headers=headers)
        assert r.status_code == 200, r.text
        page = r.json()
        items += page["items"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return items, cursor


def test_feed_and_webhooks_across_a_killed_and_restarted_server(tmp_path, monkeypatch):
    receiver = Receiver().start()
    port = free_port()
    config = tmp_path / "patrol.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(tmp_path / "data"),
        "api": {"public_url": PUBLIC_URL},
        "webhooks": [{"name": "city-platform", "url": receiver.url, "secret_env": "TEST_HOOK_SECRET"}],
        "delivery": {"backoff_base_s": 0.1, "backoff_max_s": 0.5, "poll_s": 0.1},
    }))
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DATABASE_URL") and not k.startswith("PATROL_")}
    env["TEST_HOOK_SECRET"] = SECRET
    monkeypatch.setenv("TEST_HOOK_SECRET", SECRET)  # this process reads the same settings

    def parts() -> Parts:  # what another process on the same settings sees
        return Parts(load_settings(config))

    try:
        setup = parts()
        drafts = make_drafts(setup, 5)
        make_user(setup, "analyst.li", "analyst")
        analyst, platform = bearer(setup, "analyst.li"), token_headers(setup, "platform", "city-platform")
        setup.store.close()

        server = start_serve(config, port, env)
        approved: list[str] = []
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
            for case_id in drafts[:2]:
                r = api.post(f"/api/v1/cases/{case_id}/approve", json={"actor": "analyst.li"}, headers=analyst)
                assert r.status_code == 200, r.text
                approved.append(r.json()["case_no"])
            fed, cursor = drain(api, platform, None)
            receiver.wait_for(2)
        server.kill()  # no goodbye: SIGKILL
        server.wait(10)

        down = parts()  # approvals while the API is down: outbox rows wait in the database
        for case_id in reversed(drafts[2:]):
            approved.append(down.store.approve(case_id, "analyst.wang").case_no)
        down.store.close()

        server = start_serve(config, port, env)
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as api:
                more, cursor = drain(api, platform, cursor)
                fed += more
                assert drain(api, platform, cursor)[0] == []
                got = receiver.wait_for(5, timeout=30)
                snapshot = api.get(fed[0]["evidence"]["snapshot_url"].removeprefix(PUBLIC_URL), headers=platform)
                assert snapshot.status_code == 200 and snapshot.headers["content-type"] == "image/jpeg"
        finally:
            server.send_signal(signal.SIGINT)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
    finally:
        receiver.stop()

    assert [c["case_no"] for c in fed] == approved  # the feed: each once, in approval order, across the restart
    time.sleep(0.5)
    got = receiver.requests
    assert len(got) == 5 and all(r["valid"] for r in got)  # the webhooks: each once (no failures here)
    assert sorted(json.loads(r["body"])["data"]["case_no"] for r in got) == sorted(approved)
    assert len({r["headers"]["Idempotency-Key"] for r in got}) == 5
    assert fed[0]["approved_by"] == "analyst.li" and fed[-1]["approved_by"] == "analyst.wang"
