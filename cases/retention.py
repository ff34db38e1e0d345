"""Evidence retention: which cases' pictures and clips are removed, and when.

Cases themselves (number, decision, history, audit) are never removed; only their
evidence files, and a case whose files were removed keeps a row in
``evidence_removals`` saying when and why. The city sets the rules
(``retention:`` in the settings):

* by age: a rejected case's evidence ``rejected_days`` after the decision; a draft
  nobody reviewed ``draft_days`` after its last change; an approved case's only
  after ``approved_days`` (the legal period enforcement records are kept for);
* by quota: while the evidence folder holds more than ``quota_gb``, rejected cases'
  evidence goes first (oldest decision first), then drafts' (longest unchanged
  first). Approved cases' evidence is never removed for the quota;
* files no case refers to any more (a snapshot replaced by a better sighting, an
  earlier view), once an hour old.

Files are addressed by content hash and may be shared by several cases: a file is
removed only when no case that keeps its evidence refers to it. The decision and
the unlinking happen while holding the case builder's lock, so a builder cannot
take up a file (same content, same key) between the check and the removal.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Iterable

from pydantic import BaseModel, ConfigDict
from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from . import audit
from .clean_frames import CleanFrame
from .db import Base, utcnow
from .evidence_index import CaseEvidence
from .evidence_store import KEY, EvidenceStore
from .store import DraftCase, Store

log = logging.getLogger(__name__)

REASONS = {
    "rejected_age": "rejected case kept for its period",
    "draft_age": "draft never reviewed within its period",
    "approved_age": "legal period of an approved case ended",
    "quota": "evidence quota reached",
}
ORPHAN_MIN_AGE_S = 3600.0  # a file written by a builder whose transaction is still open is younger


class EvidenceRemoval(Base):
    """One row per case whose evidence files were removed (a new table; no existing column changes)."""

    __tablename__ = "evidence_removals"

    case_id: Mapped[int] = mapped_column(ForeignKey("draft_cases.id"), primary_key=True)
    removed_at: Mapped[datetime] = mapped_column(index=True)
    reason: Mapped[str] = mapped_column(String(16))  # a key of REASONS
    keys: Mapped[list[str]] = mapped_column(JSON)  # the files it referred to then (removed, or kept if shared)
    files: Mapped[int] = mapped_column(Integer)  # of them, unlinked by this removal
    bytes: Mapped[int] = mapped_column(BigInteger)  # what that freed
    shared: Mapped[int] = mapped_column(Integer)  # kept because a case that keeps its evidence refers to them


class RemovalView(BaseModel):
    model_config = ConfigDict(from_attributes=True, frozen=True)

    case_id: int
    removed_at: datetime
    reason: str
    keys: list[str]
    files: int
    bytes: int
    shared: int

    @property
    def why(self) -> str:
        return REASONS.get(self.reason, self.reason)


@dataclass(frozen=True)
class Policy:
    rejected_days: float = 30.0
    draft_days: float = 90.0
    approved_days: float = 5 * 366.0
    quota_bytes: int | None = None
    warn_percent: float = 80.0

    @classmethod
    def from_settings(cls, r) -> "Policy":
        return cls(r.rejected_days, r.draft_days, r.approved_days, r.quota_bytes, r.warn_percent)


@dataclass
class Usage:
    """How much the evidence folder holds, measured by the last run in this process."""

    bytes: int
    files: int
    quota_bytes: int | None
    warn_percent: float
    approved_bytes: int  # of it, approved cases' evidence (never removed for the quota)
    measured_at: float = field(default_factory=time.time)

    @property
    def percent(self) -> float | None:
        return 100.0 * self.bytes / self.quota_bytes if self.quota_bytes else None

    @property
    def warning(self) -> str | None:
        if self.quota_bytes is None:
            return None
        if self.approved_bytes >= self.quota_bytes:
            return (f"approved cases' evidence alone ({_gib(self.approved_bytes)}) fills the evidence quota "
                    f"({_gib(self.quota_bytes)}): it is never removed for the quota; raise retention.quota_gb")
        if self.percent >= self.warn_percent:
            return (f"evidence uses {self.percent:.0f}% of its quota ({_gib(self.bytes)} of {_gib(self.quota_bytes)}); "
                    "at 100% the evidence of rejected cases, then of unreviewed drafts, is removed")
        return None

    def as_dict(self) -> dict:
        return {"bytes": self.bytes, "files": self.files, "quota_bytes": self.quota_bytes,
                "percent": None if self.percent is None else round(self.percent, 1),
                "approved_bytes": self.approved_bytes, "warning": self.warning,
                "measured_at": datetime.fromtimestamp(self.measured_at).astimezone().isoformat(timespec="seconds")}


LAST_USAGE: Usage | None = None  # for /health, /metrics and the console of this process


@dataclass
class Report:
    dry_run: bool
    removed: dict[str, list[int]] = field(default_factory=dict)  # reason -> case ids
    files: int = 0
    bytes: int = 0
    shared: int = 0
    orphans: int = 0
    orphan_bytes: int = 0
    usage: Usage | None = None

    def summary(self) -> str:
        verb = "would remove" if self.dry_run else "removed"
        cases = [f"{len(ids)} case(s) ({REASONS[r]})" for r, ids in self.removed.items() if ids]
        what = (f"the evidence of {', '.join(cases)}: {self.files} file(s), {_gib(self.bytes)}"
                f" ({self.shared} file(s) shared with kept cases stay)") if cases else "no case's evidence"
        u = self.usage
        quota = f" of a {_gib(u.quota_bytes)} quota ({u.percent:.0f}%)" if u and u.quota_bytes else " (no quota)"
        return (f"{verb} {what}; {self.orphans} file(s) no case refers to, {_gib(self.orphan_bytes)};"
                f" evidence now {_gib(u.bytes) if u else '?'}{quota}")


def _gib(n: int | None) -> str:
    from .disk import human

    return human(n or 0)


def removals(session: Session, case_ids: Iterable[int]) -> dict[int, RemovalView]:
    ids = sorted(set(case_ids))
    out: dict[int, RemovalView] = {}
    for i in range(0, len(ids), 500):
        for row in session.scalars(select(EvidenceRemoval).where(EvidenceRemoval.case_id.in_(ids[i:i + 500]))):
            out[row.case_id] = RemovalView.model_validate(row)
    return out


def removals_of(store: Store, case_ids: Iterable[int]) -> dict[int, RemovalView]:
    with store.reading() as s:
        return removals(s, case_ids)


def removal_of(store: Store, case_id: int) -> RemovalView | None:
    with store.reading() as s:
        return removals(s, [case_id]).get(case_id)


def removed_counts(store: Store) -> dict[str, int]:
    with store.reading() as s:
        return dict(s.execute(select(EvidenceRemoval.reason, func.count()).group_by(EvidenceRemoval.reason)).all())


def _sizes(evidence: EvidenceStore) -> tuple[dict[str, int], dict[str, float]]:
    """Every evidence file's size and modification time, by key."""
    sizes, mtimes = {}, {}
    root = evidence.root
    for fan in os.scandir(root):
        if not fan.is_dir() or len(fan.name) != 2:
            continue
        for f in os.scandir(fan.path):
            key = f"{fan.name}/{f.name}"
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            if KEY.fullmatch(key) or f.name.startswith(".tmp-"):
                sizes[key], mtimes[key] = st.st_size, st.st_mtime
    return sizes, mtimes


def _case_keys(s: Session) -> tuple[dict[int, set[str]], dict[int, tuple]]:
    """Each case's files (snapshot, its clean twin, views and clips) and its retention facts."""
    keys: dict[int, set[str]] = {}
    facts: dict[int, tuple] = {}
    twins = dict(s.execute(select(CleanFrame.snapshot_key, CleanFrame.frame_key)).all())
    for cid, status, reviewed_at, updated_at, snap in s.execute(
            select(DraftCase.id, DraftCase.status, DraftCase.reviewed_at, DraftCase.updated_at, DraftCase.snapshot_key)):
        ks = keys.setdefault(cid, set())
        if snap:
            ks.add(snap)
            if snap in twins:
                ks.add(twins[snap])
        facts[cid] = (status, reviewed_at, updated_at)
    for cid, key in s.execute(select(CaseEvidence.case_id, CaseEvidence.key)):
        keys.setdefault(cid, set()).add(key)
    return keys, facts


def run(store: Store, evidence: EvidenceStore, policy: Policy, *, dry_run: bool = False,
        now: datetime | None = None, actor: str = "system:retention") -> Report:
    """Apply the policy once; with ``dry_run`` only say what would go."""
    global LAST_USAGE
    now = now or utcnow()
    report = Report(dry_run=dry_run)
    sizes, mtimes = _sizes(evidence)  # the slow part, outside the lock
    with store.transaction() as s:
        store.lock(s, "cases.builder")  # no builder takes up a file while we decide on it
        keys, facts = _case_keys(s)
        done = {r.case_id: r.removed_at for r in s.scalars(select(EvidenceRemoval))}

        def pending(cid: int) -> bool:  # keeps evidence: never removed, or gained some since
            if not keys.get(cid):
                return False
            return cid not in done or facts[cid][2] > done[cid]

        # cases keeping evidence that refer to each file (one already removed releases its files)
        refs = Counter(k for cid, ks in keys.items() if pending(cid) for k in ks)
        total = sum(v for k, v in sizes.items() if KEY.fullmatch(k))
        approved_bytes = sum(sizes.get(k, 0) for k in
                             {k for cid, ks in keys.items() if facts[cid][0] == "approved" for k in ks})
        cutoff = time.time() - ORPHAN_MIN_AGE_S
        orphans = [k for k, m in mtimes.items() if refs[k] == 0 and m < cutoff]
        report.orphans = sum(1 for k in orphans if KEY.fullmatch(k))
        report.orphan_bytes = sum(sizes[k] for k in orphans)
        usage = total - sum(sizes[k] for k in orphans if KEY.fullmatch(k))

        chosen: dict[int, str] = {}
        freed_keys: set[str] = set()

        def choose(cid: int, reason: str) -> int:
            chosen[cid] = reason
            freed = 0
            for k in keys[cid]:
                refs[k] -= 1
                if refs[k] == 0:
                    freed_keys.add(k)
                    freed += sizes.get(k, 0)
            return freed

        limits = {"rejected": (policy.rejected_days, "rejected_age"), "draft": (policy.draft_days, "draft_age"),
                  "approved": (policy.approved_days, "approved_age")}
        for cid, (status, reviewed_at, updated_at) in sorted(facts.items()):
            days, reason = limits[status]
            since = updated_at if status == "draft" else reviewed_at or updated_at
            if pending(cid) and since < now - timedelta(days=days):
                usage -= choose(cid, reason)
        if policy.quota_bytes is not None and usage > policy.quota_bytes:
            # approved cases never: only rejected ones (oldest decision first), then drafts (longest unchanged)
            rank = {"rejected": 0, "draft": 1}
            queue = sorted((cid for cid, f in facts.items() if f[0] in rank and cid not in chosen and pending(cid)),
                           key=lambda c: (rank[facts[c][0]], facts[c][1] or facts[c][2], facts[c][2], c))
            for cid in queue:
                if usage <= policy.quota_bytes:
                    break
                usage -= choose(cid, "quota")

        for cid, reason in chosen.items():
            report.removed.setdefault(reason, []).append(cid)
        report.files = sum(1 for k in freed_keys if k in sizes)
        report.bytes = sum(sizes.get(k, 0) for k in freed_keys)
        report.shared = sum(1 for cid in chosen for k in keys[cid] if k not in freed_keys)

        if not dry_run:
            for cid, reason in chosen.items():
                gone = [k for k in keys[cid] if k in freed_keys]
                values = dict(removed_at=now, reason=reason, keys=sorted(keys[cid]), files=sum(k in sizes for k in gone),
                              bytes=sum(sizes.get(k, 0) for k in gone), shared=len(keys[cid]) - len(gone))
                row = s.get(EvidenceRemoval, cid)
                if row is None:
                    s.add(EvidenceRemoval(case_id=cid, **values))
                else:
                    for name, value in values.items():
                        setattr(row, name, value)
            s.flush()
            # unlinked before the commit, under the lock: should the commit fail, the next run
            # finds these cases again and records them
            for k in sorted(freed_keys) + orphans:
                try:
                    (evidence.root / k).unlink()
                except FileNotFoundError:
                    pass
            if chosen or orphans:
                audit.record(s, actor, "evidence.retention", "evidence:retention", {
                    "removed": {r: len(ids) for r, ids in report.removed.items()}, "files": report.files,
                    "bytes": report.bytes, "shared_kept": report.shared, "orphans": report.orphans,
                    "orphan_bytes": report.orphan_bytes, "evidence_bytes": usage, "quota_bytes": policy.quota_bytes})
    report.usage = Usage(bytes=max(0, usage), files=sum(1 for k in sizes if KEY.fullmatch(k)) - report.files
                         - report.orphans, quota_bytes=policy.quota_bytes, warn_percent=policy.warn_percent,
                         approved_bytes=approved_bytes)
    if not dry_run:
        LAST_USAGE = report.usage
    if chosen or orphans:
        log.info("retention: %s", report.summary())
    return report


def evidence_keys_of(store: Store, case_id: int) -> set[str]:
    """The files a case refers to now (its snapshot, the snapshot's clean twin, its views and clips)."""
    with store.reading() as s:
        case = s.get(DraftCase, case_id)
        if case is None:
            return set()
        out = {k for k in s.scalars(select(CaseEvidence.key).where(CaseEvidence.case_id == case_id))}
        if case.snapshot_key:
            out.add(case.snapshot_key)
            twin = s.get(CleanFrame, case.snapshot_key)
            if twin is not None:
                out.add(twin.frame_key)
        return out


def loop(stop, store: Store, evidence: EvidenceStore, policy: Policy, every_s: float) -> None:
    """Run now, then every ``every_s`` until ``stop`` is set (for ``patrol serve``)."""
    while not stop.is_set():
        try:
            run(store, evidence, policy)
        except Exception as err:  # a failed run (database down, disk full) is tried again next time
            log.warning("evidence retention failed, tried again in %.0f min: %s", every_s / 60, err)
        stop.wait(every_s)


