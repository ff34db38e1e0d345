"""``patrol bench review-loop`` end to end, small: clips made from the real set's manifest,
analysed by the real model and rules into real SQLite stores, cases rejected over HTTP by an
analyst logged in to the real API (uvicorn on loopback), exported, fine-tuned for one epoch,
and analysed again.

The real set's own footage is not here in CI, so the test's manifest takes its pictures from a
sample video (real H.264) that does show a stall: the model raises cases on it, which the loop
treats as the false alarms of no-violation footage. What is checked is the loop, not the figure.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from bench.review_loop import _half, footage, reject_through_api
from core.settings import ROOT, load_settings
from core.wiring import Parts
from training.real_set import COLUMNS, fetch

VIDEO = ROOT / "sample_videos" / "fixed_street_vending.mp4"


def _scene_names() -> tuple[str, str, str]:
    """Two scenes for the reviewed half (an export needs two pictures), one for the measured."""
    names = [f"street-{i}" for i in range(40)]
    reviewed = [n for n in names if _half(n) == "reviewed"]
    return reviewed[0], reviewed[1], next(n for n in names if _half(n) == "measured")


@pytest.fixture(scope="module")
def loop_set(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("loop")
    sha = hashlib.sha256(VIDEO.read_bytes()).hexdigest()
    rows = []
    for first, scene in enumerate(_scene_names()):
        for i in range(10):  # a picture every 2 s of the 10 fps clip, the scenes a second apart
            rows.append({"id": f"{scene}-{i:02d}", "repo": "file:", "commit": "", "path": str(VIDEO.relative_to(ROOT)),
                         "frame": str((first + 2 * i) * 10), "sha256": sha, "licence": "project's own",
                         "camera": "fixed", "city": "", "scene": scene, "kind": "negative", "split": "eval", "notes": ""})
    manifest = root / "set" / "manifest.csv"
    (root / "set" / "labels").mkdir(parents=True)
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    for r in rows:
        (root / "set" / "labels" / f"{r['id']}.txt").write_text("")
    data = root / "data"
    assert fetch(data, manifest)["failed"] == []
    return manifest, data


def test_footage_becomes_clips_halved_by_scene(loop_set, tmp_path):
    import av

    manifest, data = loop_set
    halves = footage(data, tmp_path / "clips", manifest, interval=2.0)
    assert [len(halves["reviewed"]), len(halves["measured"])] == [2, 1]
    clip = halves["measured"][0]
    assert clip.seconds == 20.0 and clip.kind == "fixed"
    with av.open(str(clip.path)) as c:
        stream = c.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 10


def test_an_analyst_rejects_cases_through_the_api(tmp_path):
    from core.analyze import analyze_video

    parts = Parts(load_settings(None)).fork(f"sqlite:///{tmp_path / 'cases.db'}", tmp_path / "evidence")
    result = analyze_video(parts, VIDEO, kind="fixed")
    ids = [c.id for c in result.cases]
    assert ids, "the sample's stall should raise a case"
    assert reject_through_api(parts, ids) == len(ids)
    for case_id in ids:
        case = parts.store.get_case(case_id)
        assert case.status == "rejected"
        assert case.review_reason == "false_alarm"


@pytest.mark.slow
def test_the_whole_loop(loop_set, tmp_path):
    from bench.review_loop import run
    from training.train import generate_dataset

    manifest, data = loop_set
    rendered = generate_dataset(tmp_path / "rendered", 8, 4, seed=3, size=(320, 192), recipe=13)
    report = run(load_settings(None), data, tmp_path / "loop", manifest=manifest, epochs=1, imgsz=160,
                 rendered=rendered, say=lambda *a: None)
    assert report["reviewed"]["false_cases"] >= 2
    assert report["reviewed"]["rejected_via_api"] == report["reviewed"]["false_cases"]
    assert report["export"]["hard_negatives"] >= 2
    assert Path(report["tuned_model"]).exists()
    assert report["after"]["source_hours"] == report["before"]["source_hours"] > 0
    saved = json.loads((tmp_path / "loop" / "review-loop.json").read_text())
    assert saved["before"]["per_source_hour"] == report["before"]["per_source_hour"]


def test_extra_training_pictures_join_a_data_set_named_from_the_working_folder(tmp_path, monkeypatch):
    import yaml

    from training.train import with_extra_train

    monkeypatch.chdir(tmp_path)
    for folder in ("set/images/train", "set/images/val", "more/images/train"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "more/images/train/a.jpg").write_bytes(b"x")
    # `path:` relative to the working folder, as an export written to a relative --out has it
    (tmp_path / "set/data.yaml").write_text("path: set\ntrain: images/train\nval: images/val\nnames: {0: a}\n")
    out = with_extra_train(Path("set/data.yaml"), Path("more/images/train"), tmp_path / "mix.yaml")
    data = yaml.safe_load(out.read_text())
    assert data["train"] == [str(tmp_path / "set/images/train"), str(tmp_path / "more/images/train")]
    assert data["val"] == [str(tmp_path / "set/images/val")]


def test_extra_training_pictures_can_weigh_more_than_once(tmp_path):
    import cv2
    import numpy as np
    import yaml
    from ultralytics.data.dataset import YOLODataset

    from training.train import DataError, with_extra_train

    for folder in ("set/images/train", "set/images/val", "real/images/train", "real/labels/train"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("a", "b"):
        cv2.imwrite(str(tmp_path / "real/images/train" / f"{name}.jpg"), np.zeros((64, 64, 3), np.uint8))
        (tmp_path / "real/labels/train" / f"{name}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "real/images/train/notes.txt").write_text("not a picture")
    (tmp_path / "set/data.yaml").write_text(f"path: {tmp_path / 'set'}\ntrain: images/train\nval: images/val\nnames: {{0: a}}\n")
    out = with_extra_train(tmp_path / "set/data.yaml", tmp_path / "real/images/train", tmp_path / "mix.yaml", repeat=3)
    listing = yaml.safe_load(out.read_text())["train"][1]
    # ultralytics itself reads the listing as six samples: each picture three times, the text file left out
    samples = YOLODataset(img_path=listing, data={"names": {0: "a"}, "channels": 3}, imgsz=64, augment=False)
    assert len(samples) == 6
    assert sorted(Path(f).name for f in samples.im_files) == ["a.jpg"] * 3 + ["b.jpg"] * 3
    with pytest.raises(DataError):
        with_extra_train(tmp_path / "set/data.yaml", tmp_path / "real/images/train", tmp_path / "mix.yaml", repeat=0)


def test_pictures_without_a_violation_can_weigh_more_than_those_with_one(tmp_path):
    import cv2
    import numpy as np
    import yaml
    from ultralytics.data.dataset import YOLODataset

    from training.train import DataError, with_extra_train

    for folder in ("set/images/train", "set/images/val", "real/images/train", "real/labels/train"):
        (tmp_path / folder).mkdir(parents=True)
    for name in ("stall", "facade", "sky"):
        cv2.imwrite(str(tmp_path / "real/images/train" / f"{name}.jpg"), np.zeros((64, 64, 3), np.uint8))
    (tmp_path / "real/labels/train/stall.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "real/labels/train/facade.txt").write_text("")  # an empty label file: no violation
    # (sky.jpg has no label file at all, which ultralytics also reads as a picture without boxes)
    (tmp_path / "set/data.yaml").write_text(f"path: {tmp_path / 'set'}\ntrain: images/train\nval: images/val\nnames: {{0: a}}\n")
    out = with_extra_train(tmp_path / "set/data.yaml", tmp_path / "real/images/train", tmp_path / "mix.yaml",
                           repeat=2, negative_repeat=3)
    listing = yaml.safe_load(out.read_text())["train"][1]
    samples = YOLODataset(img_path=listing, data={"names": {0: "a"}, "channels": 3}, imgsz=64, augment=False)
    assert sorted(Path(f).name for f in samples.im_files) == ["facade.jpg"] * 3 + ["sky.jpg"] * 3 + ["stall.jpg"] * 2
    # without negative_repeat every picture weighs as --real-repeat says
    out = with_extra_train(tmp_path / "set/data.yaml", tmp_path / "real/images/train", tmp_path / "mix.yaml", repeat=2)
    names = [Path(line).name for line in Path(yaml.safe_load(out.read_text())["train"][1]).read_text().split()]
    assert sorted(names) == ["facade.jpg"] * 2 + ["sky.jpg"] * 2 + ["stall.jpg"] * 2
    with pytest.raises(DataError, match="negative_repeat"):
        with_extra_train(tmp_path / "set/data.yaml", tmp_path / "real/images/train", tmp_path / "mix.yaml",
                         negative_repeat=0)


def test_pictures_of_a_missed_class_can_weigh_more(tmp_path):
    import cv2
    import numpy as np
    import yaml
    from ultralytics.data.dataset import YOLODataset

    from training.train import DataError, class_repeats, with_extra_train

    for folder in ("set/images/train", "set/images/val", "real/images/train", "real/labels/train"):
        (tmp_path / folder).mkdir(parents=True)
    labels = {"market": "0 0.5 0.5 0.2 0.2\n2 0.2 0.8 0.1 0.1\n", "umbrella": "1 0.5 0.5 0.2 0.2\n",
              "goods": "2 0.5 0.5 0.2 0.2\n", "street": ""}
    for name, text in labels.items():
        cv2.imwrite(str(tmp_path / "real/images/train" / f"{name}.jpg"), np.zeros((64, 64, 3), np.uint8))
        (tmp_path / "real/labels/train" / f"{name}.txt").write_text(text)
    names = ["stall", "umbrella", "goods"]
    (tmp_path / "set/data.yaml").write_text(f"path: {tmp_path / 'set'}\ntrain: images/train\nval: images/val\n"
                                            f"names: {names}\n")
    wanted = class_repeats(["stall=5", "goods=3"], names)
    assert wanted == {0: ("stall", 5), 2: ("goods", 3)}
    out = with_extra_train(tmp_path / "set/data.yaml", tmp_path / "real/images/train", tmp_path / "mix.yaml",
                           repeat=2, class_repeat={i: n for i, (_, n) in wanted.items()})
    listing = yaml.safe_load(out.read_text())["train"][1]
    samples = YOLODataset(img_path=listing, data={"names": dict(enumerate(names)), "channels": 3}, imgsz=64,
                          augment=False)
    # the largest of a picture's weights; never fewer than --real-repeat; the negative as --real-repeat
    assert sorted(Path(f).name for f in samples.im_files) == (["goods.jpg"] * 3 + ["market.jpg"] * 5
                                                              + ["street.jpg"] * 2 + ["umbrella.jpg"] * 2)
    with pytest.raises(DataError, match="no class 'stal'"):
        class_repeats(["stal=5"], names)
    with pytest.raises(DataError, match="whole number"):
        class_repeats(["stall=lots"], names)
    with pytest.raises(DataError, match="at least 1"):
        class_repeats(["stall=0"], names)


def test_rejected_pictures_are_a_set_share_of_an_epoch():
    from bench.review_loop import HARD_NEGATIVE_SHARE, hard_negative_repeat

    repeat = hard_negative_repeat(6, 3600)
    share = 6 * repeat / (6 * repeat + 3600)
    assert abs(share - HARD_NEGATIVE_SHARE) < 0.005
    assert hard_negative_repeat(500, 100) == 1  # many rejections are shown once, never fewer
    assert hard_negative_repeat(0, 100) == 1
