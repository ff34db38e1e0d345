"""Training on the city's own decisions: reviewed cases → a YOLO data set → a fine-tuned model.

The cases come through the real path: rendered street pictures (training/synth.py, so
every box is known) go through the real rules as samples of a camera whose video is
twice the sample's size, the events (snapshot drawn, clean frame beside it) through
the real case builder into a real SQLite store and evidence folder; analysts'
decisions through the store's review actions; the export and the training through
``patrol.cli.main``; the trained weights through the product's Detector.
"""
from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from sqlalchemy.orm import Session

from cases import clean_frames
from core.settings import load_settings
from core.wiring import Parts
from patrol.cli import main
from streams.frame import Frame
from streams.grab import Grab
from streams.sources import Source
from training.synth import labelled_image
from training.train import trainable_weights
from vision.classes import CLASSES
from vision.detections import Detections
from vision.events import Event
from vision.rules import DEFAULT_RULES, SourceRules
from workers.main_grab import MainStreamEvidence

W, H = 320, 192  # the samples the rules see
SOURCE = (640, 384)  # the camera's own video: boxes of cases are in these pixels
T0 = 1_780_000_000.0


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for k in list(os.environ):
        if k.startswith("PATROL_") or k in ("DATABASE_URL", "REDIS_URL"):
            monkeypatch.delenv(k)


def fast_rules():
    """The product's rules, confirming on the first sighting (and no plume measure:
    the boxes here are the renderer's, not a detector's)."""
    return [replace(r, min_hits=1, window=1, min_dwell_s=0.0, plume_check=False) for r in DEFAULT_RULES.values()]


def patrol_picture(seed: int, source_id: str) -> tuple[list[Event], list]:
    """One rendered picture seen by a camera for two samples, then gone: its events
    (one per event type present) and the picture's true boxes in sample pixels."""
    sample = labelled_image(seed, W, H, view="kerbside")
    assert sample.boxes, f"seed {seed} renders nothing"
    dets = Detections(np.array([b[1:] for b in sample.boxes], np.float32),
                      np.array([0.9 - 0.05 * i for i in range(len(sample.boxes))], np.float32),
                      np.array([b[0] for b in sample.boxes], np.int32), [CLASSES[b[0]] for b in sample.boxes])
    rules = SourceRules.build(source_id, [], fast_rules())
    events = []
    for i in range(2):
        events += rules.update(Frame(source_id, T0 + 2 * i, sample.image, i, SOURCE), dets)
    events += rules.update(Frame(source_id, T0 + 60, np.zeros((H, W, 3), np.uint8), 2, SOURCE), Detections.empty())
    events += rules.flush(T0 + 61)
    return events, sample.boxes


class City:
    """A data folder with a store full of cases from rendered pictures."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "patrol.yaml"
        self.config.write_text(yaml.safe_dump({"data_dir": str(root / "data")}))
        self.parts = Parts(load_settings(self.config))
        self.truth: dict[str, list] = {}  # case_no -> true boxes (sample pixels) of its picture

    def add(self, seed: int, event_type: str | None = None) -> list:
        events, boxes = patrol_picture(seed, f"cam-{seed}")
        cases = {}
        for ev in events:
            view = self.parts.builder.apply(ev, "fixed")
            if view is not None:
                cases[view.event_type] = view
        for c in cases.values():
            self.truth[c.case_no] = boxes
        return cases[event_type] if event_type else cases

    def approve(self, case):
        return self.parts.store.approve(case.id, "analyst-1")

    def reject(self, case, reason, note=None):
        return self.parts.store.reject(case.id, "analyst-1", reason, note)

    def export(self, out: Path, *args) -> int:
        return main(["--config", str(self.config), "export-dataset", "--out", str(out), *map(str, args)])


def labels_of(out: Path, image: str) -> list[list[float]]:
    text = (out / image.replace("images/", "labels/").replace(".jpg", ".txt")).read_text()
    return [[float(v) for v in line.split()] for line in text.splitlines()]


def flat(rows) -> list[float]:
    return [v for row in rows for v in row]


def yolo_box(c: int, box, size) -> list[float]:
    x1, y1, x2, y2 = box
    w, h = size
    return [c, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h]


@pytest.fixture(scope="module")
def city(tmp_path_factory):
    """Every kind of decision an analyst makes, on rendered pictures."""
    city = City(tmp_path_factory.mktemp("city"))
    store, tax = city.parts.store, city.parts.taxonomy
    c = {}
    c["shed"] = city.approve(city.add(8, "illegal_construction"))
    c["stall_goods"] = city.approve(city.add(10, "street_vending"))  # two detections, one case box
    c["false_goods"] = city.reject(city.add(14, "street_vending"), "false_alarm")
    c["dust"] = city.approve(city.add(17, "dust"))
    c["sheds"] = city.approve(city.add(21, "illegal_construction"))
    c["permitted"] = city.reject(city.add(34, "illegal_construction"), "permitted")
    c["duplicate"] = city.reject(city.add(22, "street_vending"), "duplicate")
    c["other"] = city.reject(city.add(2, "street_vending"), "other", "camera of the neighbouring county")
    umbrella = city.add(6, "street_vending")  # the analyst says: that is dust
    store.reclassify(umbrella.id, "analyst-1", event_type="dust", taxonomy=tax)
    c["to_dust"] = city.approve(umbrella)
    stalls = city.add(29, "street_vending")  # ... and that is construction (which kind, unsaid)
    store.reclassify(stalls.id, "analyst-1", event_type="illegal_construction", taxonomy=tax)
    c["to_construction"] = city.approve(stalls)
    three = city.add(3)  # dust, a stall and a material pile on one picture: three cases
    c["three_vending"] = city.approve(three["street_vending"])
    c["three_pile"] = city.approve(three["illegal_construction"])
    c["three_dust"] = city.reject(three["dust"], "false_alarm")
    c["pile_missing"] = city.approve(city.add(0, "illegal_construction"))
    c["draft"] = city.add(28, "dust")
    c["hoarding_pile"] = city.approve(city.add(26, "illegal_construction"))
    c["scaffold_pile"] = city.approve(city.add(36, "illegal_construction"))
    c["false_dust"] = city.reject(city.add(16, "dust"), "false_alarm")
    # a case stored before clean frames were kept: a snapshot only
    old = Event("old-1", "cam-old", "street_vending", "closed", T0, T0 + 30, 0.8, (10, 20, 110, 220), label="stall",
                revision=1, snapshot=cv2.imencode(".jpg", np.full((H, W, 3), 90, np.uint8))[1].tobytes())
    c["old"] = city.approve(city.parts.builder.apply(old, "fixed"))
    # an evidence file lost on disk
    with Session(store.engine) as s:
        twin = clean_frames.of_snapshots(s, [c["pile_missing"].snapshot_key])[c["pile_missing"].snapshot_key]
    city.parts.evidence.path(twin.frame_key).unlink()
    city.cases = c
    return city


@pytest.fixture(scope="module")
def exported(city, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "ds"
    assert city.export(out, "--val-fraction", "0.25", "--seed", "7") == 0
    manifest = json.loads((out / "manifest.json").read_text())
    return out, manifest, {m["case_no"]: m for m in manifest["cases"]}


# ---------------------------------------------------------------- evidence: a clean picture beside the drawn one


def test_each_case_keeps_a_clean_picture_of_its_best_sighting_beside_the_drawn_snapshot(city):
    case = city.cases["stall_goods"]
    with Session(city.parts.store.engine) as s:
        twin = clean_frames.of_snapshots(s, [case.snapshot_key])[case.snapshot_key]
    clean = cv2.imread(str(city.parts.evidence.path(twin.frame_key)))
    drawn = cv2.imread(str(city.parts.evidence.path(case.snapshot_key)))
    original = labelled_image(10, W, H, view="kerbside").image
    assert clean.shape == drawn.shape == original.shape
    # the clean one is the sample (JPEG aside); the snapshot differs where the box is drawn
    assert np.abs(clean.astype(int) - original).mean() < 3
    x1, y1, x2, y2 = (int(v / 2) for v in case.bbox)  # case box: video pixels, twice the sample's
    edge = (slice(y1, y1 + 2), slice(x1, x2))
    assert np.abs(drawn[edge].astype(int) - original[edge]).mean() > 40
    assert np.abs(clean[edge].astype(int) - original[edge]).mean() < 8
    # the detections that make up the case's box, in its pixels
    assert (twin.width, twin.height) == SOURCE
    truth = [[CLASSES[b[0]], *(v * 2 for v in b[1:])] for b in city.truth[case.case_no]]
    assert sorted(b[0] for b in twin.boxes) == sorted(b[0] for b in truth) == ["goods", "stall"]
    for label, _conf, *box in twin.boxes:
        assert box == pytest.approx(next(t[1:] for t in truth if t[0] == label))
    union = [min(b[2] for b in twin.boxes), min(b[3] for b in twin.boxes), max(b[4] for b in twin.boxes),
             max(b[5] for b in twin.boxes)]
    assert union == pytest.approx(case.bbox)


def test_the_clean_picture_travels_over_redis_fields():
    ev = patrol_picture(8, "cam-8")[0][0]
    assert ev.frame and ev.frame_size == SOURCE and ev.boxes
    back = Event.from_message(ev.to_message())
    assert (back.frame, back.frame_size, back.boxes) == (ev.frame, ev.frame_size, ev.boxes)
    old = ev.to_message()  # written before the field existed
    old.pop("frame")
    assert Event.from_message(old).frame is None


def test_main_stream_evidence_gives_the_clean_picture_and_boxes_in_main_stream_pixels():
    sub_event = patrol_picture(21, "cam-21")[0][0]  # sub-stream sighting: boxes in 640x384
    main = cv2.resize(labelled_image(21, W, H, view="kerbside").image, (1280, 768))
    evidence = MainStreamEvidence(grab=lambda url, timeout, transport: Grab(main, T0))
    try:
        evidence.add(sub_event, Source(id="cam-21", kind="fixed", url="rtsp://main", sub_url="rtsp://sub"), SOURCE)
        (ev,) = evidence.drain()
    finally:
        evidence.close()
    assert ev.frame_size == (1280, 768) and ev.bbox == pytest.approx([v * 2 for v in sub_event.bbox])
    assert flat(b[2:] for b in ev.boxes) == pytest.approx([v * 2 for v in flat(b[2:] for b in sub_event.boxes)])
    frame = cv2.imdecode(np.frombuffer(ev.frame, np.uint8), cv2.IMREAD_COLOR)
    assert frame.shape[:2] == (384, 640)  # stored small: at most 640 px a side


# ---------------------------------------------------------------- the export


def test_approved_cases_are_positives_labelled_with_their_detections_as_classes(city, exported):
    out, manifest, by_no = exported
    for key in ("shed", "stall_goods", "dust", "sheds", "hoarding_pile", "scaffold_pile"):
        case = city.cases[key]
        entry = by_no[case.case_no]
        assert entry["use"] == "positive" and entry["status"] == "approved", entry
        img = cv2.imread(str(out / entry["image"]))
        assert img.shape == (H, W, 3)  # the clean picture, not resized
        # each true box of the case's type, normalised: the case box (video pixels) over the video size
        fits = DEFAULT_RULES[case.event_type].labels
        want = sorted(yolo_box(c, [v * 2 for v in box], SOURCE) for c, *box in city.truth[case.case_no]
                      if CLASSES[c] in fits)
        assert flat(sorted(labels_of(out, entry["image"]))) == pytest.approx(flat(want), abs=1e-5)
        assert entry["evidence"]["snapshot"] == case.snapshot_key and entry["evidence"]["frame"]
        assert entry["model_version"] == case.model_version
    # the case's box is the union of its lines (stall + goods)
    rows = labels_of(out, by_no[city.cases["stall_goods"].case_no]["image"])
    assert sorted(int(r[0]) for r in rows) == [CLASSES.index("stall"), CLASSES.index("goods")]
    x1 = min(r[1] - r[3] / 2 for r in rows) * SOURCE[0]
    assert x1 == pytest.approx(city.cases["stall_goods"].bbox[0], abs=0.01)


def test_false_alarms_are_hard_negatives_and_other_rejections_are_skipped(city, exported):
    out, manifest, by_no = exported
    for key in ("false_goods", "false_dust"):
        entry = by_no[city.cases[key].case_no]
        assert entry["use"] == "negative" and entry["labels"] == []
        assert (out / entry["image"]).is_file() and labels_of(out, entry["image"]) == []
    for key, words in (("duplicate", "duplicate"), ("permitted", "permitted structure is still a structure"),
                       ("other", "neighbouring county"), ("old", "no clean evidence frame"),
                       ("pile_missing", "evidence file missing")):
        entry = by_no[city.cases[key].case_no]
        assert entry["use"] == "skipped" and words in entry["why"] and entry["image"] is None, entry
    assert city.cases["draft"].case_no not in by_no  # drafts wait for review
    names = {p.stem for p in out.glob("images/*/*.jpg")}
    assert not names & {city.cases[k].case_no for k in ("duplicate", "permitted", "other", "old", "pile_missing")}


def test_reclassified_cases_take_the_reviewed_type_or_are_skipped_with_the_reason(city, exported):
    out, manifest, by_no = exported
    to_dust = by_no[city.cases["to_dust"].case_no]  # an umbrella box the analyst called dust
    assert to_dust["use"] == "positive" and to_dust["event_type"] == "dust"
    assert [int(r[0]) for r in labels_of(out, to_dust["image"])] == [CLASSES.index("dust")]
    assert "'umbrella' labelled dust" in to_dust["why"]
    skipped = by_no[city.cases["to_construction"].case_no]
    assert skipped["use"] == "skipped" and "illegal_construction" in skipped["why"]
    assert "'stall' is not one of that type's classes" in skipped["why"]


def test_cases_on_one_picture_share_one_image_with_all_their_positive_boxes(city, exported):
    out, manifest, by_no = exported
    three = [by_no[city.cases[k].case_no] for k in ("three_vending", "three_pile", "three_dust")]
    assert len({e["image"] for e in three}) == 1 and len({e["split"] for e in three}) == 1
    assert [e["use"] for e in three] == ["positive", "positive", "negative"]
    classes = sorted(int(r[0]) for r in labels_of(out, three[0]["image"]))
    assert classes == [CLASSES.index("stall"), CLASSES.index("material_pile")]  # the false dust is not boxed


def test_split_is_by_picture_seeded_stable_and_never_splits_a_case(city, exported, tmp_path):
    out, manifest, by_no = exported
    train = {p.stem for p in out.glob("images/train/*.jpg")}
    val = {p.stem for p in out.glob("images/val/*.jpg")}
    assert train and val and not train & val
    assert {p.stem for p in out.glob("labels/train/*.txt")} == train
    assert {p.stem for p in out.glob("labels/val/*.txt")} == val
    assert manifest["counts"]["images"] == {"train": len(train), "val": len(val)}
    assert any(labels_of(out, f"images/val/{n}.jpg") for n in val)  # something to measure on
    for entry in by_no.values():
        if entry["image"]:
            assert entry["image"].startswith(f"images/{entry['split']}/")
    again = tmp_path / "again"
    assert city.export(again, "--val-fraction", "0.25", "--seed", "7") == 0
    assert {p.stem for p in again.glob("images/val/*.jpg")} == val  # same seed, same split
    splits = set()
    for seed in range(6):
        other = tmp_path / f"seed{seed}"
        assert city.export(other, "--val-fraction", "0.25", "--seed", seed) == 0
        splits.add(frozenset(p.stem for p in other.glob("images/val/*.jpg")))
    assert len(splits) > 1  # the seed chooses


def test_data_yaml_and_manifest_say_what_the_data_set_is(city, exported):
    out, manifest, by_no = exported
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {"train": "images/train", "val": "images/val", "names": dict(enumerate(CLASSES))}
    assert manifest["classes"] == list(CLASSES)
    counts = manifest["counts"]
    assert (counts["positive"], counts["negative"]) == (9, 3)
    assert counts["cases"] == len(city.cases) - 1  # all but the draft
    assert counts["skipped"] == counts["cases"] - 12
    assert sum(manifest["model_versions"].values()) == 12
    other = by_no[city.cases["other"].case_no]
    assert (other["review_reason"], other["reviewer"]) == ("other", "analyst-1")
    readme = (out / "README.md").read_text()
    assert "9 positives" in readme and "3 hard negatives" in readme and "only as clean as" in readme


def test_drafts_go_in_only_when_asked(city, tmp_path):
    assert city.export(tmp_path / "d", "--include-drafts", "yes") == 0
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    entry = next(m for m in manifest["cases"] if m["case_no"] == city.cases["draft"].case_no)
    assert entry["use"] == "positive" and "not reviewed" in entry["why"]


def test_export_refuses_bad_requests_with_one_line(city, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("mine")
    assert city.export(full) == 2
    assert "not empty" in capsys.readouterr().err
    assert city.export(full, "--force") == 0  # replaces only what an export writes
    assert (full / "notes.txt").read_text() == "mine" and (full / "data.yaml").is_file()
    assert city.export(tmp_path / "v", "--val-fraction", "1") == 2
    assert "--val-fraction" in capsys.readouterr().err
    assert city.export(tmp_path / "s", "--since", "yesterday") == 2
    assert "not a date" in capsys.readouterr().err
    assert city.export(tmp_path / "f", "--since", "2001-01-01", "--until", "2001-12-31") == 2
    assert "no reviewed cases from 2001-01-01 00:00 to 2002-01-01 00:00" in capsys.readouterr().err
    empty = City(tmp_path / "empty")
    empty.add(8)  # a draft only
    assert empty.export(tmp_path / "e") == 2
    assert "no reviewed cases (1 drafts are waiting for review)" in capsys.readouterr().err


def test_export_reports_progress_and_the_missing_evidence(city, tmp_path, capsys):
    assert city.export(tmp_path / "p") == 0
    out = capsys.readouterr().out
    assert "checking evidence: 11/11" in out and "writing: 10/10" in out
    assert "1 for missing or unreadable evidence files" in out and "9 positives, 3 hard negatives" in out


# ---------------------------------------------------------------- training on it


def test_fine_tune_on_the_export_gives_weights_the_detector_loads(city, exported, tmp_path, capsys):
    from vision.detector import Detector

    out, _, _ = exported
    dest = tmp_path / "city.pt"
    rc = main(["--config", str(city.config), "train", "--data", str(out / "data.yaml"), "--epochs", "1",
               "--imgsz", "64", "--batch", "4", "--project", str(tmp_path / "runs"), "--name", "smoke",
               "--output", str(dest), "--lr0", "0.0005", "--warmup-epochs", "0", "--freeze", "10"])
    text = capsys.readouterr().out
    assert rc == 0, text
    # the configured model, not from scratch: the PyTorch weights behind the deployed OpenVINO export
    assert f"fine-tuning {trainable_weights(city.parts.settings.model.weights)}" in text
    assert trainable_weights(city.parts.settings.model.weights).suffix == ".pt"
    assert "training and" in text and "1 epochs, the first 10 layers frozen at 64 px, batch 4" in text
    assert "--resume --name smoke" in text and "validation after epoch 1: precision" in text
    used = yaml.safe_load((tmp_path / "runs" / "smoke" / "args.yaml").read_text())
    assert (used["lr0"], used["warmup_epochs"], used["freeze"]) == (0.0005, 0, 10)  # a gentle fine-tune, as asked
    # the frozen backbone's convolutions are the starting model's; the head has learnt
    import torch

    start = torch.load(trainable_weights(city.parts.settings.model.weights), weights_only=False)["model"].state_dict()
    tuned = torch.load(dest, weights_only=False)["model"].state_dict()
    assert torch.equal(start["model.0.conv.weight"], tuned["model.0.conv.weight"])
    assert not torch.equal(start["model.24.cv3.0.2.weight"], tuned["model.24.cv3.0.2.weight"])
    detector = Detector(dest, imgsz=64)
    assert detector.names == list(CLASSES)
    assert len(detector.detect([cv2.imread(str(next(out.glob("images/train/*.jpg"))))])) == 1


def test_train_checks_the_data_set_and_the_run_before_starting(city, exported, tmp_path, capsys):
    out, _, _ = exported

    def train(*args):
        rc = main(["--config", str(city.config), "train", "--project", str(tmp_path / "runs"), *map(str, args)])
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("patrol: "), err
        return rc, err[0]

    shuffled = tmp_path / "shuffled.yaml"
    names = list(CLASSES)
    names[1], names[2] = names[2], names[1]
    shuffled.write_text(yaml.safe_dump({"path": str(out), "train": "images/train", "val": "images/val",
                                        "names": names}))
    rc, err = train("--data", shuffled)
    assert rc == 2 and "another order: class 1 is 'goods' there but 'umbrella' in the weights" in err
    fewer = tmp_path / "fewer.yaml"
    fewer.write_text(yaml.safe_dump({"path": str(out), "train": "images/train", "val": "images/val",
                                     "names": ["stall", "shop_sign"]}))
    rc, err = train("--data", fewer)
    assert "has 2 classes" in err and "not in the weights: shop_sign" in err and "missing from the data set: umbrella" in err
    nowhere = tmp_path / "nowhere.yaml"
    nowhere.write_text(yaml.safe_dump({"train": "images/train", "val": "images/val", "names": list(CLASSES)}))
    rc, err = train("--data", nowhere)
    assert "train images not found" in err
    rc, err = train("--data", tmp_path / "absent.yaml")
    assert "no such data set file" in err
    rc, err = train("--resume", "--name", "never")
    assert "nothing to resume" in err and "never" in err
    rc, err = train("--epochs", "1")
    assert "give --data" in err
    rc, err = train("--generate", "10", "--seed", "7")
    assert rc == 2 and "held-out pictures" in err and not (tmp_path / "runs").exists()
    rc, err = train("--data", out / "data.yaml", "--class-repeat", "stall=6")
    assert rc == 2 and "give --real too" in err
    real = tmp_path / "real"
    (real / "images" / "train").mkdir(parents=True)
    rc, err = train("--data", out / "data.yaml", "--real", real, "--class-repeat", "stalls=6")
    assert rc == 2 and "no class 'stalls'" in err and not (tmp_path / "runs").exists()


@pytest.mark.slow
def test_an_interrupted_fine_tune_resumes_where_it_stopped(city, exported, tmp_path, capsys):
    from training.train import train

    out, _, _ = exported
    runs = tmp_path / "runs"

    def stop_after_first_epoch(trainer):
        raise KeyboardInterrupt  # as ^C would, once last.pt of epoch 1 is saved

    with pytest.raises(KeyboardInterrupt):
        train(out / "data.yaml", runs, model=str(trainable_weights(city.parts.settings.model.weights)), epochs=2, imgsz=64, batch=4,
              name="cut", callbacks={"on_model_save": stop_after_first_epoch})
    results = (runs / "cut" / "results.csv").read_text().splitlines()
    assert len(results) == 2  # header + epoch 1
    args = ["--config", str(city.config), "train", "--project", str(runs), "--name", "cut"]
    assert main([*args, "--data", str(out / "data.yaml")]) == 2  # a new run would overwrite it
    assert "already holds a run" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0
    text = capsys.readouterr().out
    assert "resuming run 'cut'" in text and "validation after epoch 2" in text
    assert len((runs / "cut" / "results.csv").read_text().splitlines()) == 3  # epoch 2 only was added
    assert main([*args, "--resume"]) == 2
    assert "finished; nothing to resume" in capsys.readouterr().err
