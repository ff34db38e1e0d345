"""Evidence retention (cases/retention.py) on SQLite and PostgreSQL, with real evidence files.

Under a quota the evidence of rejected cases goes first, then drafts', never an
approved case's; the age rules; a file shared with a kept case stays; a case
whose evidence was removed says so; the quota warning shows in /health and /metrics.
"""
from __future__ import annotations

import os
import time
from datetime import timedelta

import pytest

from api.app import create_app
from auth_helpers import client_as
from cases import retention
from cases.builder import CaseBuilder
from cases.retention import Policy
from db_fixtures import db_url, store, taxonomy  # noqa: F401  (fixtures)
from core.settings import CaseSettings, RetentionSettings, Settings
from core.wiring import Parts
from test_builder import T0, ev

KB = 10_000  # every picture here is this big


def picture(n: int) -> bytes:
    return (f"picture {n:06d} ".encode() * KB)[:KB]


@pytest.fixture(autouse=True)
def _fresh_usage():
    """The measured usage is per process: leave none behind for other tests' /health."""
    yield
    retention.LAST_USAGE = None


@pytest.fixture
def parts(db_url, tmp_path):
    p = Parts(Settings(data_dir=tmp_path / "data", cases=CaseSettings(grid_file=None)), db_url=db_url)
    yield p
    p.store.close()


def open_case(parts, n: int, *, snapshot: bytes | None = None, before: bytes | None = None):
    """Case n: its own camera, hours apart, a snapshot (and a view before) of KB bytes each."""
    e = ev(f"e{n}", source=f"cam-{n}", start=T0 + 3600 * n, lat=None, lon=None,
           snapshot=snapshot or picture(n))
    e.before, e.before_ts = before, T0 + 3600 * n - 5
    return parts.builder.apply(e, "fixed")


def files(parts, case_id: int) -> dict[str, bool]:
    return {k: parts.evidence.exists(k) for k in retention.evidence_keys_of(parts.store, case_id)}


def test_under_the_quota_rejected_go_first_then_the_oldest_drafts_never_approved(parts):
    store = parts.store
    approved = [open_case(parts, n, before=picture(100 + n)) for n in (1, 2)]  # 2 files each
    rejected_old, rejected_new = open_case(parts, 3), open_case(parts, 4)
    draft_old, draft_new = open_case(parts, 5), open_case(parts, 6)
    for c in approved:
        store.approve(c.id, "li")
    store.reject(rejected_old.id, "li", "false_alarm")
    store.reject(rejected_new.id, "li", "false_alarm")
    store.list_cases()  # (the drafts' order is their last change: draft_old first)
    total = 8 * KB
    # room for the approved (4 files) and one more: both rejected and the older draft must go
    policy = Policy(quota_bytes=5 * KB + KB // 2)

    dry = retention.run(store, parts.evidence, policy, dry_run=True)
    assert dry.removed == {"quota": [rejected_old.id, rejected_new.id, draft_old.id]} and dry.bytes == 3 * KB
    assert all(all(files(parts, c.id).values()) for c in store.list_cases(limit=20).items)  # a dry run removes nothing

    report = retention.run(store, parts.evidence, policy)
    assert report.removed == {"quota": [rejected_old.id, rejected_new.id, draft_old.id]}
    assert (report.files, report.bytes, report.usage.bytes) == (3, 3 * KB, total - 3 * KB)
    for c in approved + [draft_new]:
        assert all(files(parts, c.id).values()), c.case_no
    for c in (rejected_old, rejected_new, draft_old):
        assert not any(files(parts, c.id).values()), c.case_no
        r = retention.removal_of(store, c.id)
        assert (r.reason, r.files, r.bytes, r.shared) == ("quota", 1, KB, 0)

    # now only approved evidence and one draft: a quota below the approved alone removes the draft, and no more
    report = retention.run(store, parts.evidence, Policy(quota_bytes=KB))
    assert report.removed == {"quota": [draft_new.id]}
    for c in approved:
        assert all(files(parts, c.id).values())
    assert "approved cases' evidence alone" in report.usage.warning
    assert retention.run(store, parts.evidence, Policy(quota_bytes=KB)).removed == {}  # nothing more to take


def test_age_rules(parts):
    store = parts.store
    approved, rejected, draft = open_case(parts, 1), open_case(parts, 2), open_case(parts, 3)
    store.approve(approved.id, "li")
    store.reject(rejected.id, "li", "duplicate")
    policy = Policy(rejected_days=30, draft_days=90, approved_days=5 * 365)
    now = store.get_case(draft.id).updated_at

    assert retention.run(store, parts.evidence, policy, now=now + timedelta(days=29)).removed == {}
    assert retention.run(store, parts.evidence, policy, now=now + timedelta(days=31)).removed == {
        "rejected_age": [rejected.id]}
    assert retention.run(store, parts.evidence, policy, now=now + timedelta(days=91)).removed == {
        "draft_age": [draft.id]}
    assert all(files(parts, approved.id).values())  # within its legal period, however old
    assert retention.run(store, parts.evidence, policy, now=now + timedelta(days=4 * 365)).removed == {}
    report = retention.run(store, parts.evidence, policy, now=now + timedelta(days=5 * 365 + 1))
    assert report.removed == {"approved_age": [approved.id]}
    assert not any(files(parts, approved.id).values())
    assert retention.removal_of(store, approved.id).why == "legal period of an approved case ended"


def test_a_file_another_kept_case_refers_to_stays(parts):
    store = parts.store
    same = picture(7)  # two cameras' identical pictures: one file, two cases
    kept, dropped = open_case(parts, 1, snapshot=same), open_case(parts, 2, snapshot=same, before=picture(8))
    assert kept.snapshot_key == dropped.snapshot_key
    store.approve(kept.id, "li")
    store.reject(dropped.id, "li", "false_alarm")

    report = retention.run(store, parts.evidence, Policy(quota_bytes=1))
    assert report.removed == {"quota": [dropped.id]}
    assert parts.evidence.exists(kept.snapshot_key)
    r = retention.removal_of(store, dropped.id)
    assert (r.files, r.shared, r.bytes) == (1, 1, KB)  # its view before went; the shared snapshot stayed
    assert files(parts, dropped.id) == {kept.snapshot_key: True, store.evidence(dropped.id)[0].key: False}

    # when both cases' evidence goes (the approved one's legal period ended), the file goes too
    later = store.get_case(kept.id).reviewed_at + timedelta(days=10_000)
    retention.run(store, parts.evidence, Policy(approved_days=1), now=later)
    assert not parts.evidence.exists(kept.snapshot_key)


def test_files_no_case_refers_to_go_once_an_hour_old(parts):
    first = parts.builder.apply(ev("e1", snapshot=picture(1), conf=0.5), "fixed")
    better = parts.builder.apply(ev("e1", rev=2, snapshot=picture(2), conf=0.9), "fixed")  # replaces the snapshot
    assert better.snapshot_key != first.snapshot_key
    assert retention.run(parts.store, parts.evidence, Policy()).orphans == 0  # too fresh: a builder may be mid-way
    old = time.time() - 2 * 3600
    os.utime(parts.evidence.path(first.snapshot_key), (old, old))
    report = retention.run(parts.store, parts.evidence, Policy())
    assert (report.orphans, report.orphan_bytes, report.removed) == (1, KB, {})
    assert not parts.evidence.exists(first.snapshot_key) and parts.evidence.exists(better.snapshot_key)


def test_the_case_says_its_evidence_was_removed_and_health_and_metrics_warn(parts):
    store = parts.store
    app = create_app(parts)
    cases = [open_case(parts, n, before=picture(100 + n)) for n in range(1, 5)]
    store.reject(cases[0].id, "li", "false_alarm")
    # 8 files; the quota leaves 6 after the rejected case's 2 go: 6 of 7 is over the 80% warning
    retention.run(store, parts.evidence, Policy(quota_bytes=7 * KB, warn_percent=80))
    gone, kept = cases[0], cases[1]

    with client_as(app, "analyst") as c:
        body = c.get(f"/api/v1/cases/{gone.id}").json()
        assert body["evidence_removed"]["reason"] == "quota"
        assert body["evidence_removed"]["why"] == "evidence quota reached" and body["evidence_removed"]["files"] == 2
        assert c.get(f"/api/v1/cases/{kept.id}").json()["evidence_removed"] is None
        r = c.get(f"/api/v1/cases/{gone.id}/snapshot")
        assert r.status_code == 410 and "evidence quota reached" in r.json()["detail"]
        ev_body = c.get(f"/api/v1/cases/{gone.id}/evidence").json()
        assert ev_body["snapshot"]["removed"] and all(i["removed"] for i in ev_body["items"])
        assert ev_body["evidence_removed"]["reason"] == "quota"
        assert c.get(ev_body["items"][0]["url"]).status_code == 410
        assert not c.get(f"/api/v1/cases/{kept.id}/evidence").json()["snapshot"]["removed"]
        page = c.get(f"/ui/cases/{gone.id}").text
        assert "evidence was removed" in page and "evidence quota reached" in page

        health = c.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok", health.text
        assert health.json()["evidence"]["percent"] == pytest.approx(600 / 7, abs=0.1)
        assert "86% of its quota" in health.json()["warnings"][0]
        console = c.get("/").text
        assert "86% of its quota" in console
    with client_as(app, "admin") as c:
        metrics = c.get("/metrics").text
    assert f"patrol_evidence_bytes {6 * KB:.1f}" in metrics
    assert f"patrol_evidence_quota_bytes {7 * KB:.1f}" in metrics
    assert "patrol_evidence_quota_warning 1.0" in metrics
    assert 'patrol_evidence_removed_cases_total{reason="quota"} 1.0' in metrics

    retention.run(store, parts.evidence, Policy(quota_bytes=70 * KB, warn_percent=80))  # a larger quota: no warning
    with client_as(app, "admin") as c:
        assert "warnings" not in c.get("/health").json()
        assert "patrol_evidence_quota_warning 0.0" in c.get("/metrics").text


def test_patrol_retention_command_and_the_periodic_run(tmp_path, capsys):
    import threading

    import yaml

    from patrol.cli import main

    config = tmp_path / "settings.yaml"
    config.write_text(yaml.safe_dump({"data_dir": str(tmp_path / "data"), "cases": {"grid_file": None},
                                      "retention": {"quota_gb": 1e-9}}))  # about one byte: everything removable goes
    parts = Parts(Settings(data_dir=tmp_path / "data", cases=CaseSettings(grid_file=None)))
    rejected, approved = open_case(parts, 1), open_case(parts, 2)
    parts.store.reject(rejected.id, "li", "false_alarm")
    parts.store.approve(approved.id, "li")

    assert main(["--config", str(config), "retention", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("would remove the evidence of 1 case(s) (evidence quota reached): 1 file(s)"), out
    assert "fills the evidence quota" in out  # the approved case's evidence alone is over it, and is kept
    assert parts.evidence.exists(rejected.snapshot_key)
    assert main(["--config", str(config), "retention"]) == 0
    assert capsys.readouterr().out.startswith("removed the evidence of 1 case(s)")
    assert not parts.evidence.exists(rejected.snapshot_key) and parts.evidence.exists(approved.snapshot_key)

    # `patrol serve`'s loop: runs at once, then every period, until stopped
    draft = open_case(parts, 3)
    stop = threading.Event()
    policy = Policy.from_settings(RetentionSettings(quota_gb=1e-9))
    t = threading.Thread(target=retention.loop, args=(stop, parts.store, parts.evidence, policy, 0.05), daemon=True)
    t.start()
    deadline = time.monotonic() + 10
    while parts.evidence.exists(draft.snapshot_key) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    t.join(5)
    assert not t.is_alive() and not parts.evidence.exists(draft.snapshot_key)
    assert retention.removal_of(parts.store, draft.id).reason == "quota"
    parts.store.close()
