"""Two review actions of the console on the real store (SQLite and PostgreSQL):
merging two drafts of one violation, and moving a draft to where it really is."""
from __future__ import annotations

import uuid

import pytest

from cases.builder import CaseBuilder
from cases.evidence_store import EvidenceStore
from cases.store import CaseError, CaseNotFound
from db_fixtures import db_url, grid, store, taxonomy  # noqa: F401  (fixtures)
from vision.events import Event

T0 = 1_780_000_000.0
LAT, LON = 30.6, 114.3
FAR_LAT = 30.61  # about 1.1 km north: too far for the builder to call it the same violation


def ev(source, *, start=T0, conf=0.5, lat=LAT, lon=LON, rev=1, event_id=None, state="opened", zone=None,
       before=b"before-jpeg", clip=b"clip-mp4") -> Event:
    return Event(event_id=event_id or uuid.uuid4().hex, source_id=source, event_type="illegal_construction",
                 state=state, start=start, last_seen=start + 60, confidence=conf, bbox=(1.0, 2.0, 30.0, 40.0),
                 label="steel_shed", zone=zone, revision=rev, hits=4, samples=6, lat=lat, lon=lon,
                 model_version="patrol-v1", trace=[f"steel_shed seen by {source}"],
                 snapshot=f"snap {source} {conf}".encode(), before=before + source.encode(), before_ts=start - 2,
                 clip=clip + source.encode())


@pytest.fixture
def builder(store, taxonomy, grid, tmp_path):
    return CaseBuilder(store, taxonomy, grid, EvidenceStore(tmp_path / "evidence"))


@pytest.fixture
def two_drafts(builder):
    """One shed proposed twice: the cameras' positions are too far apart for the builder to join them."""
    a = builder.apply(ev("cam-a", conf=0.6), "fixed")
    b = builder.apply(ev("cam-b", conf=0.9, lat=FAR_LAT, start=T0 + 120), "fixed")
    assert a.id != b.id
    return a, b


def test_merge_folds_the_other_draft_in_and_rejects_it_as_a_duplicate(store, two_drafts):
    a, b = two_drafts
    kept = store.merge(a.id, b.id, "analyst.wang")
    assert kept.status == "draft" and kept.source_ids == ["cam-a", "cam-b"]
    assert (kept.first_seen, kept.last_seen) == (T0, T0 + 180)
    assert kept.confidence == 0.9 and kept.snapshot_key == b.snapshot_key  # the better picture wins
    assert (kept.lat, kept.lon, kept.grid) == (a.lat, a.lon, a.grid)  # the kept case's place stays
    assert (kept.hits, kept.samples) == (8, 12)
    assert any("merged from " + b.case_no + " by analyst.wang" in line for line in kept.trace)
    gone = store.get_case(b.id)
    assert (gone.status, gone.review_reason, gone.review_note, gone.reviewer) == (
        "rejected", "duplicate", f"merged into {a.case_no}", "analyst.wang")
    assert {e.source_id for e in store.events(a.id)} == {"cam-a", "cam-b"} and store.events(b.id) == []
    assert sorted(e.source_id for e in store.evidence(a.id) if e.kind == "clip") == ["cam-a", "cam-b"]
    assert store.evidence(b.id) == []
    assert [(x.action, x.details) for x in store.actions(a.id)] == [
        ("merge", {"absorbed": b.id, "case_no": b.case_no})]
    assert [(x.action, x.details) for x in store.actions(b.id)] == [("merge", {"into": a.id, "case_no": a.case_no})]


def test_after_a_merge_later_sightings_of_either_update_the_kept_case(store, builder, two_drafts):
    a, b = two_drafts
    b_event = store.events(b.id)[0]
    store.merge(a.id, b.id, "analyst.wang")
    later = builder.apply(ev("cam-b", event_id=b_event.event_id, rev=2, state="closed", conf=0.95,
                             lat=FAR_LAT, start=T0 + 120), "fixed")
    assert later is not None and later.id == a.id and later.confidence == 0.95
    # a new sighting from cam-b's place joins the kept draft, not the merged-away one
    again = builder.apply(ev("cam-b", lat=FAR_LAT, start=T0 + 400), "fixed")
    assert again is not None and again.id == a.id


@pytest.mark.parametrize("first", ["approve", "merge_away"])
def test_merge_needs_two_drafts(store, two_drafts, first):
    a, b = two_drafts
    with pytest.raises(CaseError, match="into itself"):
        store.merge(a.id, a.id, "analyst.wang")
    with pytest.raises(CaseNotFound):
        store.merge(a.id, 999_999, "analyst.wang")
    if first == "approve":
        store.approve(b.id, "analyst.li")
        with pytest.raises(CaseError, match="already approved by analyst.li"):
            store.merge(a.id, b.id, "analyst.wang")
    else:
        store.merge(b.id, a.id, "analyst.li")
        with pytest.raises(CaseError, match="already rejected"):
            store.merge(a.id, b.id, "analyst.wang")
    assert store.get_case(b.id).source_ids == (["cam-b"] if first == "approve" else ["cam-b", "cam-a"])


def test_relocate_moves_the_case_and_its_grid_cell(store, grid, two_drafts):
    a, _ = two_drafts
    target = grid.codes[100]
    lat, lon = grid.cell_center(target)
    moved = store.relocate(a.id, "analyst.wang", lat, lon, grid)
    assert (moved.lat, moved.lon, moved.grid) == (lat, lon, target) and target != a.grid
    (action,) = store.actions(a.id)
    assert action.action == "relocate" and action.actor == "analyst.wang"
    assert action.details == {"from": {"lat": a.lat, "lon": a.lon, "grid": a.grid},
                              "to": {"lat": lat, "lon": lon, "grid": target}}


def test_relocate_refuses_places_outside_the_city_and_non_positions(store, grid, two_drafts):
    a, _ = two_drafts
    with pytest.raises(CaseError, match="none of the city's 945 grid cells"):
        store.relocate(a.id, "analyst.wang", 39.9, 116.4, grid)  # Beijing
    with pytest.raises(CaseError, match="not a WGS84 position"):
        store.relocate(a.id, "analyst.wang", 95.0, 114.3, grid)
    with pytest.raises(CaseError, match="not a WGS84 position"):
        store.relocate(a.id, "analyst.wang", float("nan"), 114.3, grid)
    with pytest.raises(CaseError, match="already at"):
        store.relocate(a.id, "analyst.wang", a.lat, a.lon, grid)
    with pytest.raises(CaseError, match="actor"):
        store.relocate(a.id, " ", 30.601, 114.301, grid)
    assert store.get_case(a.id) == a and store.actions(a.id) == []


def test_changed_since_lists_what_a_live_view_must_redraw(store, builder, two_drafts):
    a, b = two_drafts
    everything = store.changed_since(None)
    assert [c.id for c in everything] == [a.id, b.id]
    mark = everything[-1].updated_at
    assert store.changed_since(mark) == []
    store.approve(a.id, "analyst.wang")
    c = builder.apply(ev("cam-c", lat=30.58), "fixed")
    assert [x.id for x in store.changed_since(mark)] == [a.id, c.id]
