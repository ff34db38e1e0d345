import hashlib
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from cases.evidence_store import EvidenceKeyError, EvidenceStore
from cases.store import CaseError, CaseEvent, CaseNotFound, DraftCase, Store, utcnow
from db_fixtures import db_url, store, taxonomy  # noqa: F401  (fixtures)

# -- evidence store --------------------------------------------------------------


def test_evidence_round_trip_is_content_addressed(tmp_path):
    ev = EvidenceStore(tmp_path / "evidence")
    data = b"\xff\xd8 a jpeg \xff\xd9"
    key = ev.put(data, ".JPG")
    digest = hashlib.sha256(data).hexdigest()
    assert key == f"{digest[:2]}/{digest[2:]}.jpg"
    assert ev.path(key) == tmp_path / "evidence" / digest[:2] / f"{digest[2:]}.jpg"
    assert ev.get(key) == data and ev.exists(key)
    assert ev.put(data, "jpg") == key  # same content, same file
    assert ev.put(data, "png") != key
    assert ev.put(b"other", "jpg") != key
    files = sorted(p.name for p in (tmp_path / "evidence").rglob("*") if p.is_file())
    assert len(files) == 3 and not any(name.startswith(".tmp-") for name in files)


def test_evidence_that_was_never_stored(tmp_path):
    ev = EvidenceStore(tmp_path)
    key = "ab/" + "c" * 62 + ".jpg"
    assert not ev.exists(key)
    with pytest.raises(FileNotFoundError):
        ev.get(key)


@pytest.mark.parametrize(
    "key",
    [
        "../" + "c" * 62 + ".jpg",
        "ab/../../" + "c" * 56 + ".jpg",
        "/etc/passwd",
        "ab/" + "c" * 62 + ".jpg/../../x",
        "AB/" + "C" * 62 + ".jpg",
        "ab/" + "c" * 62 + ".jpg\n",
        "ab\\" + "c" * 62 + ".jpg",
        "ab/" + "c" * 61 + ".jpg",
        "",
        None,
    ],
)
def test_evidence_keys_cannot_escape_the_root(tmp_path, key):
    ev = EvidenceStore(tmp_path)
    with pytest.raises(EvidenceKeyError):
        ev.path(key)
    with pytest.raises(EvidenceKeyError):
        ev.get(key)


@pytest.mark.parametrize("ext", ["", "../jpg", "j/pg", "verylongext"])
def test_evidence_extension_is_checked(tmp_path, ext):
    with pytest.raises(EvidenceKeyError):
        EvidenceStore(tmp_path).put(b"x", ext)


# -- case store ------------------------------------------------------------------

T0 = 1_780_000_000.0
NOW = datetime(2026, 11, 29, 3, 0, tzinfo=timezone.utc)


def add_case(store: Store, *, created_at: datetime = NOW, sources: tuple[str, ...] = (), **fields) -> int:
    """Insert a draft case directly, with control over what the builder would decide."""
    values = dict(
        status="draft", event_type="street_vending", major="05", major_name="街面秩序", minor="01",
        minor_name="无照经营游商", description="d", source_id="cam-1", source_kind="fixed", lat=None, lon=None,
        grid=None, first_seen=T0, last_seen=T0 + 60, ended=False, confidence=0.5, bbox=[0, 0, 10, 10],
        label="stall", zone=None, trace=[], model_version="m1", hits=1, samples=1,
    )
    values.update(fields)
    values["source_ids"] = [values["source_id"], *sources]
    with store.transaction() as s:
        case = DraftCase(case_no=store.next_case_no(s, created_at), created_at=created_at, updated_at=created_at,
                         **values)
        s.add(case)
        s.flush()
        for i, source in enumerate(values["source_ids"]):
            s.add(CaseEvent(event_id=f"{case.case_no}-{i}", case_id=case.id, revision=1, source_id=source,
                            state="opened", start=T0, last_seen=T0 + 60, end=None, confidence=0.5, hits=1,
                            samples=1, trace=[], joined=None))
        return case.id


def ids(page) -> list[int]:
    return [c.id for c in page.items]


def test_case_numbers_count_per_local_day(store):
    first, second = add_case(store), add_case(store)
    late = add_case(store, created_at=datetime(2026, 11, 29, 17, 0, tzinfo=timezone.utc))  # 01:00 on the 30th in China
    assert [store.get_case(i).case_no for i in (first, second, late)] == [
        "CP-20261129-0001", "CP-20261129-0002", "CP-20261130-0001"]


def test_case_numbers_go_past_9999(store):
    add_case(store)
    with store.transaction() as s:
        s.get(DraftCase, 1).case_no = "CP-20261129-9999"
    add_case(store)
    assert store.get_case(2).case_no == "CP-20261129-10000"
    add_case(store)
    assert store.get_case(3).case_no == "CP-20261129-10001"


def test_get_case_returns_a_detached_view(store):
    case_id = add_case(store, bbox=[1.5, 2, 3, 4], trace=["opened: 3 of 5 samples"], lat=30.6, lon=114.3)
    view = store.get_case(case_id)
    assert view.bbox == [1.5, 2, 3, 4] and view.trace == ["opened: 3 of 5 samples"]
    assert view.created_at == NOW and view.created_at.tzinfo is not None
    assert view.category.code == "05/01" and (view.lat, view.lon) == (30.6, 114.3)
    assert store.get_case(999) is None


def test_list_filters(store):
    a = add_case(store, source_id="cam-1", grid="42011700100101")
    b = add_case(store, source_id="cam-2", sources=("cam-3",), grid="42011700100203", event_type="dust")
    c = add_case(store, source_id="cam-3", grid="42011700200101", status="approved")
    assert ids(store.list_cases(status="draft")) == [b, a]
    assert ids(store.list_cases(status="approved")) == [c]
    assert ids(store.list_cases(event_type="dust")) == [b]
    assert ids(store.list_cases(source_id="cam-3")) == [c, b]  # b was also seen by cam-3
    assert ids(store.list_cases(source_id="cam-9")) == []
    assert ids(store.list_cases(grid="42011700100203")) == [b]
    assert ids(store.list_cases(grid="420117001")) == [b, a]  # a street
    assert ids(store.list_cases(grid="420117001002")) == [b]  # a community
    assert ids(store.list_cases(status="draft", event_type="street_vending", grid="420117001")) == [a]


def test_list_time_window_is_on_when_the_case_was_opened(store):
    old = add_case(store, created_at=NOW - timedelta(days=1))
    new = add_case(store, created_at=NOW)
    assert ids(store.list_cases(since=NOW - timedelta(hours=1))) == [new]
    assert ids(store.list_cases(until=NOW)) == [old]
    assert ids(store.list_cases(since=(NOW - timedelta(days=2)).timestamp(), until=NOW.timestamp() + 1)) == [new, old]
    assert ids(store.list_cases(since=NOW.replace(tzinfo=None))) == [new]  # naive means UTC


def test_list_order_and_pagination(store):
    conf = [0.3, 0.9, 0.6, 0.8, 0.5]
    made = [add_case(store, confidence=c, created_at=NOW + timedelta(minutes=i)) for i, c in enumerate(conf)]
    newest = list(reversed(made))
    assert ids(store.list_cases()) == newest
    assert ids(store.list_cases(order="confidence")) == [made[1], made[3], made[2], made[4], made[0]]
    page = store.list_cases(limit=2, offset=2)
    assert ids(page) == newest[2:4] and page.total == 5 and (page.limit, page.offset) == (2, 2)
    last = store.list_cases(limit=2, offset=4)
    assert ids(last) == newest[4:] and last.total == 5
    assert store.list_cases(status="approved").total == 0


@pytest.mark.parametrize("kwargs", [{"status": "open"}, {"order": "oldest"}, {"limit": 0}, {"offset": -1}])
def test_list_refuses_bad_arguments(store, kwargs):
    with pytest.raises(ValueError):
        store.list_cases(**kwargs)


def test_approve_records_who_and_when(store):
    case_id = add_case(store)
    before = utcnow()
    view = store.approve(case_id, "analyst-li")
    assert view.status == "approved" and view.reviewer == "analyst-li" and view.reviewed_at >= before
    assert store.get_case(case_id) == view
    [action] = store.actions(case_id)
    assert (action.action, action.actor, action.details) == ("approve", "analyst-li", {})
    assert action.at == view.reviewed_at


def test_reject_needs_a_known_reason(store):
    case_id = add_case(store)
    with pytest.raises(CaseError, match="reason must be one of false_alarm, duplicate, permitted, other"):
        store.reject(case_id, "analyst-li", "ugly")
    with pytest.raises(CaseError, match="needs a note"):
        store.reject(case_id, "analyst-li", "other", "  ")
    assert store.get_case(case_id).status == "draft" and store.actions(case_id) == []
    view = store.reject(case_id, "analyst-li", "permitted", "market day, licensed stalls")
    assert (view.status, view.review_reason, view.review_note) == ("rejected", "permitted", "market day, licensed stalls")
    [action] = store.actions(case_id)
    assert action.details == {"reason": "permitted", "note": "market day, licensed stalls"}


@pytest.mark.parametrize("first", ["approve", "reject"])
def test_a_reviewed_case_cannot_be_reviewed_again(store, taxonomy, first):
    case_id = add_case(store)
    store.approve(case_id, "a") if first == "approve" else store.reject(case_id, "a", "false_alarm")
    status = {"approve": "approved", "reject": "rejected"}[first]
    with pytest.raises(CaseError, match=f"cannot approve case CP-20261129-0001: it was already {status} by a"):
        store.approve(case_id, "b")
    with pytest.raises(CaseError, match="cannot reject"):
        store.reject(case_id, "b", "duplicate")
    with pytest.raises(CaseError, match="cannot reclassify"):
        store.reclassify(case_id, "b", event_type="dust", taxonomy=taxonomy)
    assert len(store.actions(case_id)) == 1
    assert store.get_case(case_id).reviewer == "a"


def test_review_of_a_missing_case_or_without_an_actor(store):
    with pytest.raises(CaseNotFound):
        store.approve(42, "a")
    case_id = add_case(store)
    with pytest.raises(CaseError, match="actor"):
        store.approve(case_id, " ")
    assert store.get_case(case_id).status == "draft"


def test_reclassify_by_event_type_follows_the_mapping(store, taxonomy):
    case_id = add_case(store, label="material_pile", zone="gate")
    view = store.reclassify(case_id, "analyst-li", event_type="dust", taxonomy=taxonomy)
    assert (view.event_type, view.major, view.minor, view.minor_name) == ("dust", "03", "03", "施工废弃料")
    assert "扬尘" in view.description and view.status == "draft"
    [action] = store.actions(case_id)
    assert action.action == "reclassify" and action.details == {
        "from": {"event_type": "street_vending", "major": "05", "minor": "01"},
        "to": {"event_type": "dust", "major": "03", "minor": "03"},
    }


def test_reclassify_to_an_explicit_category(store, taxonomy):
    case_id = add_case(store)
    view = store.reclassify(case_id, "analyst-li", major="05", minor="04", taxonomy=taxonomy)
    assert (view.event_type, view.major_name, view.minor_name) == ("street_vending", "街面秩序", "店外经营")
    with pytest.raises(CaseError, match="no category 05/77"):
        store.reclassify(case_id, "analyst-li", major="05", minor="77", taxonomy=taxonomy)
    with pytest.raises(CaseError, match="both major and minor"):
        store.reclassify(case_id, "analyst-li", major="05", taxonomy=taxonomy)
    with pytest.raises(CaseError, match="nothing to reclassify"):
        store.reclassify(case_id, "analyst-li", taxonomy=taxonomy)
    with pytest.raises(CaseError, match="already street_vending, 05 街面秩序 / 04 店外经营"):
        store.reclassify(case_id, "analyst-li", major="05", minor="04", taxonomy=taxonomy)
    with pytest.raises(CaseError, match="littering"):
        store.reclassify(case_id, "analyst-li", event_type="littering", taxonomy=taxonomy)
    assert [a.action for a in store.actions(case_id)] == ["reclassify"]


def test_audit_trail_keeps_every_action_in_order(store, taxonomy):
    case_id = add_case(store)
    store.reclassify(case_id, "li", event_type="illegal_construction", taxonomy=taxonomy)
    store.reclassify(case_id, "wang", major="01", minor="99", taxonomy=taxonomy)
    store.reject(case_id, "zhao", "duplicate")
    trail = store.actions(case_id)
    assert [(a.action, a.actor) for a in trail] == [("reclassify", "li"), ("reclassify", "wang"), ("reject", "zhao")]
    assert trail[0].at <= trail[1].at <= trail[2].at
    assert trail[1].details["to"] == {"event_type": "illegal_construction", "major": "01", "minor": "99"}
    assert store.actions(999) == []


def test_sqlite_is_shared_safely_between_processes(tmp_path):
    path = str(tmp_path / "shared.db")
    api, builder = Store(path, busy_timeout_s=0.2), Store(path, busy_timeout_s=0.2)
    try:
        with api.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        with builder.transaction() as s:
            s.execute(text("select 1"))  # a write transaction holds the lock from its first statement
            assert api.list_cases().total == 0  # readers are not blocked
            with pytest.raises(OperationalError, match="locked"):
                with api.transaction() as s:
                    s.execute(text("select 1"))
        add_case(api)
        assert builder.get_case(1).case_no == "CP-20261129-0001"
    finally:
        api.close()
        builder.close()


def test_an_in_memory_database_works_across_sessions():
    st = Store("sqlite://")
    add_case(st)
    assert st.list_cases().total == 1
