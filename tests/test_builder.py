from concurrent.futures import ThreadPoolExecutor

import pytest

from cases.builder import MAX_TRACE_LINES, CaseBuilder, haversine_m
from cases.evidence_store import EvidenceStore
from cases.taxonomy import TaxonomyError
from db_fixtures import db_url, grid, store, taxonomy  # noqa: F401  (fixtures)
from vision.events import Event

T0 = 1_780_000_000.0  # Unix seconds: a live source
LAT, LON = 30.6, 114.3
M_PER_DEG_LAT = 111_194.9  # on the haversine sphere


def north(metres: float) -> float:
    return LAT + metres / M_PER_DEG_LAT


def ev(event_id="e1", source="cam-1", event_type="street_vending", *, start=T0, last=None, rev=1, state="opened",
       conf=0.5, lat=LAT, lon=LON, zone="z1", hits=3, samples=5, label="stall", end=None, trace=None,
       snapshot=None) -> Event:
    return Event(
        event_id=event_id, source_id=source, event_type=event_type, state=state, start=start,
        last_seen=start + 30 if last is None else last, confidence=conf, bbox=(10.0, 20.0, 110.0, 220.0),
        label=label, zone=zone, end=end, revision=rev, hits=hits, samples=samples, lat=lat, lon=lon,
        model_version="patrol-v1", trace=[f"{event_id} r{rev}: seen"] if trace is None else trace,
        snapshot=f"jpeg {event_id} {conf}".encode() if snapshot is None else snapshot,
    )


@pytest.fixture
def evidence(tmp_path):
    return EvidenceStore(tmp_path / "evidence")


@pytest.fixture
def builder(store, taxonomy, grid, evidence):
    return CaseBuilder(store, taxonomy, grid, evidence, cooldown_s=300, merge_radius_m=30)


def cases(store):
    return store.list_cases(limit=100).items


def test_haversine():
    assert haversine_m(LAT, LON, north(100), LON) == pytest.approx(100, abs=0.01)
    assert haversine_m(30.0, 114.0, 30.0, 115.0) == pytest.approx(96_297, rel=1e-3)


def test_a_new_event_opens_a_draft_case(builder, store, grid, evidence):
    view = builder.apply(ev(trace=["persistence: 3 of 5 samples", "dwell 30 s in zone z1"]), "fixed")
    assert view == store.get_case(view.id)
    assert view.case_no.startswith("CP-") and view.status == "draft" and not view.ended
    assert (view.event_type, view.major, view.major_name, view.minor, view.minor_name) == (
        "street_vending", "05", "街面秩序", "01", "无照经营游商")
    assert view.description.startswith("视频监控 cam-1（z1）发现疑似占道经营")
    assert (view.source_id, view.source_kind, view.source_ids) == ("cam-1", "fixed", ["cam-1"])
    assert (view.lat, view.lon, view.grid) == (LAT, LON, grid.cell_at(LAT, LON)) and view.grid
    assert (view.first_seen, view.last_seen, view.confidence, view.bbox) == (T0, T0 + 30, 0.5, [10, 20, 110, 220])
    assert (view.label, view.zone, view.model_version, view.hits, view.samples) == ("stall", "z1", "patrol-v1", 3, 5)
    assert view.trace == ["persistence: 3 of 5 samples", "dwell 30 s in zone z1"]
    assert evidence.get(view.snapshot_key) == b"jpeg e1 0.5"
    [row] = store.events(view.id)
    assert (row.event_id, row.revision, row.state, row.joined) == ("e1", 1, "opened", None)


def test_detector_label_picks_the_category(builder):
    assert builder.apply(ev(label="goods"), "fixed").minor_name == "店外经营"
    assert builder.apply(ev("d1", event_type="dust", label="material_pile"), "drone").minor_name == "施工废弃料"


def test_grid_falls_back_to_the_source_grid(builder, store, taxonomy):
    configured = "42011700300205"
    unlocated = builder.apply(ev("a", lat=None, lon=None), "fixed", source_grid=configured)
    assert (unlocated.lat, unlocated.grid) == (None, configured)
    outside = builder.apply(ev("b", source="cam-2", lat=39.9, lon=116.4), "fixed", source_grid=configured)
    assert (outside.lat, outside.grid) == (39.9, configured)
    assert builder.apply(ev("c", source="cam-3", lat=None, lon=None), "mobile").grid is None
    no_index = CaseBuilder(store, taxonomy)
    assert no_index.apply(ev("d", source="cam-4"), "fixed", source_grid=configured).grid == configured


def test_the_same_message_twice_changes_nothing(builder, store):
    first = builder.apply(ev(), "fixed")
    assert builder.apply(ev(), "fixed") is None
    assert cases(store) == [first]
    assert len(store.events(first.id)) == 1


def test_an_older_revision_after_a_newer_one_changes_nothing(builder, store):
    builder.apply(ev(rev=1, last=T0 + 10), "fixed")
    newer = builder.apply(ev(rev=3, last=T0 + 90, hits=9, samples=12), "fixed")
    assert builder.apply(ev(rev=2, last=T0 + 50, hits=5, samples=7, conf=0.99), "fixed") is None
    assert cases(store) == [newer]
    assert (newer.last_seen, newer.hits, newer.samples, newer.confidence) == (T0 + 90, 9, 12, 0.5)
    assert store.events(newer.id)[0].revision == 3


def test_revisions_update_one_case(builder, store):
    for rev in range(1, 6):
        view = builder.apply(ev(rev=rev, last=T0 + 60 * rev, hits=2 * rev, samples=3 * rev), "fixed")
    closed = builder.apply(ev(rev=6, last=T0 + 360, end=T0 + 360, state="closed", hits=12, samples=18), "fixed")
    assert closed.id == view.id and len(cases(store)) == 1
    assert (closed.first_seen, closed.last_seen, closed.ended) == (T0, T0 + 360, True)
    assert (closed.hits, closed.samples) == (12, 18)  # an event's counts are its latest, not summed
    assert closed.trace == ["e1 r6: seen"]  # the newest revision's trace, not one copy per revision
    [row] = store.events(closed.id)
    assert (row.revision, row.state, row.end) == (6, "closed", T0 + 360)


def test_best_evidence_is_kept(builder, evidence):
    builder.apply(ev(rev=1, conf=0.5, label="stall"), "fixed")
    better = builder.apply(ev(rev=2, conf=0.8, label="umbrella", snapshot=b"best"), "fixed")
    assert (better.confidence, better.label) == (0.8, "umbrella")
    worse = builder.apply(ev(rev=3, conf=0.6, label="stall", snapshot=b"blurry"), "fixed")
    assert (worse.confidence, worse.label, worse.snapshot_key) == (0.8, "umbrella", better.snapshot_key)
    assert evidence.get(worse.snapshot_key) == b"best"
    assert worse.minor == "01"  # the category chosen at opening stays; analysts reclassify


def test_a_snapshot_is_taken_when_the_case_has_none(builder, evidence):
    builder.apply(ev(rev=1, snapshot=b""), "fixed")
    view = builder.apply(ev(rev=2, conf=0.4, snapshot=b"late"), "fixed")
    assert evidence.get(view.snapshot_key) == b"late"


def test_without_an_evidence_store_no_snapshot_is_kept(store, taxonomy):
    assert CaseBuilder(store, taxonomy).apply(ev(), "fixed").snapshot_key is None


def test_a_flicker_within_the_cooldown_joins_the_case(builder, store):
    first = builder.apply(ev("e1", last=T0 + 60, end=T0 + 60, state="closed", hits=4, samples=6), "fixed")
    assert first.ended
    again = builder.apply(ev("e2", start=T0 + 60 + 250, hits=3, samples=5), "fixed")
    assert again.id == first.id and len(cases(store)) == 1
    assert not again.ended and (again.hits, again.samples) == (7, 11)
    assert (again.first_seen, again.last_seen, again.source_ids) == (T0, T0 + 340, ["cam-1"])
    assert again.trace == ["e1 r1: seen", "case: event e2 from cam-1 joined (same source and zone, 250 s after the last sighting)",
                           "e2 r1: seen"]
    assert [e.event_id for e in store.events(first.id)] == ["e1", "e2"]


def test_after_the_cooldown_a_new_case_opens(builder, store):
    first = builder.apply(ev("e1", last=T0 + 60), "fixed")
    later = builder.apply(ev("e2", start=T0 + 60 + 301), "fixed")
    assert later.id != first.id and len(cases(store)) == 2


def test_another_zone_of_the_same_camera_is_another_violation(builder, store):
    first = builder.apply(ev("e1", zone="z1"), "fixed")
    assert builder.apply(ev("e2", zone="z2", start=T0 + 10), "fixed").id != first.id


def test_a_moving_source_that_drove_on_sees_another_violation(builder):
    first = builder.apply(ev("e1", source="car-1", zone=None), "vehicle")
    assert builder.apply(ev("e2", source="car-1", zone=None, start=T0 + 60, lat=north(200)), "vehicle").id != first.id
    assert builder.apply(ev("e3", source="car-1", zone=None, start=T0 + 60, lat=north(5)), "vehicle").id == first.id


def test_the_same_shed_from_two_cameras_is_one_case(builder, store):
    first = builder.apply(ev("a1", source="cam-1", event_type="illegal_construction", conf=0.6), "fixed")
    second = builder.apply(
        ev("b1", source="cam-2", event_type="illegal_construction", start=T0 + 120, lat=north(10), zone="yard",
           conf=0.9, hits=2), "fixed")
    assert second.id == first.id and len(cases(store)) == 1
    assert second.source_ids == ["cam-1", "cam-2"] and second.source_id == "cam-1"
    assert (second.lat, second.lon) == (LAT, LON)  # the case stays where it was first seen
    assert second.confidence == 0.9 and second.hits == 5
    assert "case: event b1 from cam-2 joined (cam-2 saw it 10 m from the case)" in second.trace
    assert [c.id for c in store.list_cases(source_id="cam-2").items] == [first.id]
    # A later flicker on the second camera joins the same case too.
    assert builder.apply(ev("b2", source="cam-2", event_type="illegal_construction", start=T0 + 400,
                            lat=north(10), zone="yard"), "fixed").id == first.id


@pytest.mark.parametrize("metres, merged", [(29.0, True), (31.0, False), (500.0, False)])
def test_no_merge_beyond_the_radius(builder, store, metres, merged):
    first = builder.apply(ev("a1", source="cam-1"), "fixed")
    other = builder.apply(ev("b1", source="cam-2", start=T0 + 60, lat=north(metres)), "fixed")
    assert (other.id == first.id) is merged
    assert len(cases(store)) == (1 if merged else 2)


def test_no_merge_across_cameras_after_the_cooldown(builder):
    first = builder.apply(ev("a1", source="cam-1", last=T0 + 30), "fixed")
    assert builder.apply(ev("b1", source="cam-2", start=T0 + 30 + 301, lat=north(5)), "fixed").id != first.id


def test_no_merge_across_cameras_without_locations_or_types(builder):
    first = builder.apply(ev("a1", source="cam-1"), "fixed")
    assert builder.apply(ev("b1", source="cam-2", lat=None, lon=None), "fixed").id != first.id
    assert builder.apply(ev("c1", source="cam-3", event_type="dust"), "fixed").id != first.id


def test_seconds_into_different_files_do_not_merge(builder):
    # Two uploaded flights over the same site: times are seconds into each file.
    first = builder.apply(ev("f1", source="upload-1", start=12.0, zone=None), "upload")
    assert builder.apply(ev("f2", source="upload-2", start=20.0, zone=None), "upload").id != first.id
    assert builder.apply(ev("f3", source="upload-1", start=100.0, zone=None), "upload").id == first.id


def test_an_approved_case_seen_again_is_still_there_not_a_new_draft(builder, store):
    first = builder.apply(ev("e1", last=T0 + 60), "fixed")
    approved = store.approve(first.id, "analyst-li")
    # a new sighting within the cooldown (a restarted worker: a new event id) joins the approved case
    assert builder.apply(ev("e2", start=T0 + 200, last=T0 + 260), "fixed") is None
    # the case's own event goes on too
    assert builder.apply(ev("e1", rev=2, last=T0 + 120, conf=0.95), "fixed") is None
    after = store.get_case(first.id)
    assert after.status == "approved" and after.last_seen == T0 + 260  # still there, seen until then
    # what the analyst reviewed is unchanged
    assert (after.confidence, after.bbox, after.reviewer, after.trace) == (approved.confidence, approved.bbox,
                                                                            approved.reviewer, approved.trace)
    joined = {e.event_id: e.joined for e in store.events(first.id)}
    assert joined["e1"] is None and joined["e2"].startswith("still there after approval: same source and zone")
    assert builder.apply(ev("e1", rev=2, last=T0 + 120), "fixed") is None  # a re-delivery changes nothing
    # while it stays in view the cooldown runs from its newest sighting: no duplicate an hour on
    for i in range(1, 12):
        assert builder.apply(ev(f"r{i}", start=T0 + 260 + 290 * i, last=T0 + 260 + 290 * i + 10), "fixed") is None
    assert store.list_cases().total == 1
    # gone for longer than the cooldown and back: a repeat at the place, a new draft
    fresh = builder.apply(ev("e3", start=T0 + 260 + 290 * 11 + 10 + 301), "fixed")
    assert fresh.status == "draft" and fresh.id != first.id
    assert store.list_cases().total == 2


def test_a_rejected_false_alarm_stays_quiet_for_the_citys_period(store, taxonomy, grid, evidence):
    builder = CaseBuilder(store, taxonomy, grid, evidence, cooldown_s=300, merge_radius_m=30,
                          suppress_rejected_s=3600)
    first = builder.apply(ev("e1", last=T0 + 60), "fixed")
    store.reject(first.id, "analyst-li", "false_alarm", "a facade")
    # long after the cooldown, but within the period: suppressed, recorded with the rejected case
    assert builder.apply(ev("e2", start=T0 + 1800), "fixed") is None
    assert store.list_cases().total == 1
    [_, e2] = store.events(first.id)
    assert e2.joined.startswith(f"suppressed: {first.case_no} was rejected (false_alarm)")
    # once the period is over a sighting is news again
    quiet_over = CaseBuilder(store, taxonomy, grid, evidence, cooldown_s=300, merge_radius_m=30,
                             suppress_rejected_s=0)
    assert quiet_over.apply(ev("e3", start=T0 + 7200), "fixed").status == "draft"


def test_a_rejected_case_stops_a_merge_from_another_camera(builder, store):
    first = builder.apply(ev("a1", source="cam-1"), "fixed")
    store.reject(first.id, "analyst-li", "permitted", "licensed market")
    assert builder.apply(ev("b1", source="cam-2", start=T0 + 60, lat=north(5)), "fixed") is None
    assert store.list_cases().total == 1


def test_an_unknown_event_type_stores_nothing(builder, store):
    with pytest.raises(TaxonomyError):
        builder.apply(ev(event_type="littering"), "fixed")
    assert store.list_cases().total == 0


def test_a_long_trace_keeps_its_beginning_and_its_end(builder):
    lines = [f"line {i}" for i in range(500)]
    trace = builder.apply(ev(trace=lines), "fixed").trace
    assert len(trace) == MAX_TRACE_LINES + 1
    assert trace[0] == "line 0" and trace[-1] == "line 499"
    assert f"… {500 - MAX_TRACE_LINES} lines omitted" in trace


def test_concurrent_builders_make_one_case_per_violation(store, taxonomy, grid):
    # Two builder processes sharing the database, fed sightings of one shed by many cameras.
    builders = [CaseBuilder(store, taxonomy, grid), CaseBuilder(store, taxonomy, grid)]
    events = [ev(f"e{i}", source=f"cam-{i}", event_type="illegal_construction", start=T0 + i, lat=north(i))
              for i in range(12)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda i: builders[i % 2].apply(events[i], "fixed"), range(len(events))))
    assert all(r is not None for r in results)
    [case] = cases(store)
    assert sorted(case.source_ids) == sorted(f"cam-{i}" for i in range(12))
    assert len(store.events(case.id)) == 12
