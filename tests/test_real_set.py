"""The real picture set: manifest checks, hash-checked fetching, and ``patrol eval --real``.

The project's real set names pictures of public repositories that CI cannot reach, so these
tests build a small manifest of their own from files that are here: pictures shipped inside
scikit-image (real photographs) and a frame of one of the sample videos (real H.264). The
model and rules are the real ones.
"""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import pytest

from core.settings import ROOT, load_settings
from core.wiring import Parts
from training.evaluate_real import evaluate_real, judge_picture
from training.labelcheck import main as labelcheck
from training.real_set import COLUMNS, RealSetError, fetch, load_manifest

SKIMAGE = Path(__import__("skimage").__file__).parent


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _row(**kw) -> dict:
    row = {"licence": "BSD-3-Clause", "camera": "photo", "city": "", "notes": "", "frame": "", "commit": "",
           "kind": "negative", "split": "eval"}
    row.update(kw)
    return row


def _write(folder: Path, rows: list[dict], labels: dict[str, str], name: str = "manifest.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = folder / name
    with manifest.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    (folder / "labels").mkdir(exist_ok=True)
    for pid, text in labels.items():
        (folder / "labels" / f"{pid}.txt").write_text(text)
    return manifest


@pytest.fixture
def small_set(tmp_path) -> Path:
    video = ROOT / "sample_videos" / "fixed_no_violation.mp4"
    rows = [
        _row(id="cam-photo", repo="pypi:skimage", path="data/camera.png", sha256=_sha(SKIMAGE / "data/camera.png"),
             scene="skimage-camera"),
        _row(id="coffee", repo="pypi:skimage", path="data/coffee.png", sha256=_sha(SKIMAGE / "data/coffee.png"),
             scene="skimage-coffee", split="train"),
        _row(id="street-f10", repo="file:", path="sample_videos/fixed_no_violation.mp4", frame="10",
             sha256=_sha(video), camera="fixed", scene="sample-street"),
        # a box drawn on a picture of a real photographer: the recall path runs on whatever the model sees
        _row(id="boxed", repo="pypi:skimage", path="data/astronaut.png", sha256=_sha(SKIMAGE / "data/astronaut.png"),
             kind="positive", scene="skimage-astronaut"),
    ]
    labels = {"cam-photo": "", "coffee": "", "street-f10": "", "boxed": "3 0.5 0.5 0.4 0.6\n"}
    return _write(tmp_path / "set", rows, labels)


def test_fetch_writes_a_yolo_set_split_by_scene(small_set, tmp_path):
    out = tmp_path / "data"
    done = fetch(out, small_set)
    assert done == {"pictures": 4, "written": 4, "failed": [], "removed": 0}
    assert (out / "images" / "eval" / "cam-photo.png").read_bytes() == (SKIMAGE / "data/camera.png").read_bytes()
    assert (out / "images" / "train" / "coffee.png").exists()
    frame = out / "images" / "eval" / "street-f10.jpg"
    import cv2

    import av

    with av.open(str(ROOT / "sample_videos" / "fixed_no_violation.mp4")) as c:
        size = (c.streams.video[0].height, c.streams.video[0].width)
    assert cv2.imread(str(frame)).shape[:2] == size
    assert (out / "labels" / "eval" / "boxed.txt").read_text() == "3 0.5 0.5 0.4 0.6\n"
    assert "val: images/eval" in (out / "data.yaml").read_text()


def test_a_scene_moved_to_the_other_split_leaves_nothing_behind(small_set, tmp_path):
    out = tmp_path / "data"
    fetch(out, small_set)
    rows = list(csv.DictReader(small_set.open()))
    for r in rows:
        if r["id"] == "cam-photo":
            r["split"] = "train"
    manifest = _write(small_set.parent, rows, {})
    assert fetch(out, manifest)["removed"] == 2  # its picture and its label under eval/
    assert not (out / "images" / "eval" / "cam-photo.png").exists()
    assert (out / "images" / "train" / "cam-photo.png").exists()


def test_a_file_that_is_not_the_one_labelled_is_refused(small_set, tmp_path):
    rows = list(csv.DictReader(small_set.open()))
    rows[0]["sha256"] = "0" * 64
    manifest = _write(tmp_path / "bad", rows, {r["id"]: "" if r["kind"] == "negative" else "3 0.5 0.5 0.4 0.6"
                                                for r in rows})
    done = fetch(tmp_path / "data", manifest)
    assert done["written"] == 3
    assert "cam-photo" in done["failed"][0] and "SHA-256" in done["failed"][0]


def test_a_picture_training_cannot_read_is_written_as_one_it_can(tmp_path):
    import subprocess

    from PIL import Image
    from ultralytics.data.dataset import YOLODataset

    from training.labelcheck import CLASSES

    # a repository snapshot as `fetch` finds them, publishing a GIF under a .jpg name
    repo = tmp_path / "mirrors" / "someone+smoke" / "repo"
    repo.mkdir(parents=True)
    Image.new("RGB", (96, 64), (90, 90, 90)).save(repo / "plume.jpg", format="GIF")
    for cmd in (["init", "-q"], ["add", "plume.jpg"],
                ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a plume"]):
        subprocess.run(["git", "-C", str(repo), *cmd], check=True)
    commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    manifest = _write(tmp_path / "set", [_row(id="plume", repo="someone/smoke", commit=commit, path="plume.jpg",
                                               sha256=_sha(repo / "plume.jpg"), kind="positive", split="train",
                                               scene="smoke-1")],
                      {"plume": "7 0.5 0.5 0.5 0.5\n"})
    out = tmp_path / "data"
    assert fetch(out, manifest, mirrors=[tmp_path / "mirrors"])["written"] == 1
    written = out / "images" / "train" / "plume.jpg"
    assert Image.open(written).format == "JPEG" and Image.open(written).size == (96, 64)
    samples = YOLODataset(img_path=str(written.parent), data={"names": dict(enumerate(CLASSES)), "channels": 3}, imgsz=64,
                          augment=False)
    assert len(samples) == 1  # ultralytics trains on it (a GIF it would leave out as corrupt)
    # a set fetched before, holding the GIF as published, is mended on the next fetch
    written.write_bytes((repo / "plume.jpg").read_bytes())
    fetch(out, manifest, mirrors=[tmp_path / "mirrors"])
    assert Image.open(written).format == "JPEG"
    # a file that is no picture at all is named, not written
    (repo / "plume.jpg").write_bytes(b"not a picture")
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qam", "x"],
                   check=True)
    broken = _write(tmp_path / "set2", [_row(id="junk", repo="someone/smoke", commit="HEAD", path="plume.jpg",
                                             sha256=_sha(repo / "plume.jpg"), scene="junk-1")], {"junk": ""})
    done = fetch(tmp_path / "data2", broken, mirrors=[tmp_path / "mirrors"])
    assert done["written"] == 0 and "junk: plume.jpg: not a picture" in done["failed"][0]


def test_a_scene_in_both_splits_is_refused(small_set, tmp_path):
    rows = list(csv.DictReader(small_set.open()))
    rows[1]["scene"] = rows[0]["scene"]  # coffee (train) now shares the camera's scene (eval)
    manifest = _write(tmp_path / "mixed", rows, {})
    with pytest.raises(RealSetError, match="both splits"):
        load_manifest(manifest)


def test_a_negative_with_boxes_is_refused(small_set, tmp_path):
    (small_set.parent / "labels" / "coffee.txt").write_text("7 0.5 0.5 0.2 0.2\n")
    with pytest.raises(RealSetError, match="kind negative but 1 boxes"):
        fetch(tmp_path / "data", small_set)


def test_eval_real_counts_what_the_rules_accept(small_set, tmp_path):
    out = tmp_path / "data"
    fetch(out, small_set)
    parts = Parts(load_settings(None))
    result = evaluate_real(parts, out, "eval", small_set, boxes=False)
    assert result["pictures"] == 3 and result["scenes"] == 3
    neg = result["no_violation"]
    assert neg["all"]["pictures"] == 2 and neg["fixed"]["pictures"] == 1 and neg["photo"]["pictures"] == 1
    by_id = {p["id"]: p for p in result["per_picture"]}
    # the counts are the per-picture verdicts, summed
    assert neg["all"]["with_event"] == sum(bool(by_id[i]["raised"]) for i in ("cam-photo", "street-f10"))
    boxed = by_id["boxed"]
    assert boxed["truth"] == ["illegal_construction"]
    assert result["recall"]["illegal_construction"]["positives"] == 1
    assert result["recall"]["illegal_construction"]["found"] == int("illegal_construction" in boxed["found"])
    # found implies raised: a labelled type is found only through a detection the rules accepted
    assert set(boxed["found"]) <= set(boxed["raised"])
    # the operating curve: at no shift it is the figures above; a higher floor never sees more
    curve = {point["floor_shift"]: point for point in result["operating_curve"]}
    assert curve[0.0]["no_violation"]["with_event"] == neg["all"]["with_event"]
    assert curve[0.0]["recall"]["illegal_construction"]["found"] == result["recall"]["illegal_construction"]["found"]
    shifts = sorted(curve)
    assert shifts[0] < 0 < shifts[-1]
    sightings = [curve[k]["no_violation"]["with_event"] for k in shifts]
    assert sightings == sorted(sightings, reverse=True)
    for k in shifts:
        assert set(by_id["boxed"]["at_shift"].get(str(k), boxed)["found"]) <= set(
            by_id["boxed"]["at_shift"].get(str(k), boxed)["raised"])


class OneScaffold:
    """The detector's answer fixed by the test (a stand-in, not the model): one scaffold at
    (10, 10)-(60, 60) with the given confidence. What the tests below check is how the rules
    and the matching treat a known box, which the model cannot be made to give."""

    version = "test"

    def __init__(self, confidence: float):
        self.confidence = confidence

    def detect(self, images):
        import numpy as np

        from vision.detections import Detections
        return [Detections(np.array([[10, 10, 60, 60]], np.float32), np.array([self.confidence], np.float32),
                           np.array([3], np.int32), ["scaffold"])]


def _parts_seeing(confidence: float) -> Parts:
    parts = Parts(load_settings(None))
    parts.__dict__["detector"] = OneScaffold(confidence)
    return parts


NEAR = [(3, 35 / 512, 35 / 512, 50 / 512, 50 / 512)]  # a scaffold labelled where the box is


def test_a_detection_elsewhere_does_not_find_a_labelled_box():
    import cv2

    from vision.rules import EventRule

    parts = _parts_seeing(0.9)
    image = cv2.imread(str(SKIMAGE / "data/astronaut.png"))
    rules = {r.event_type: EventRule(r, [], "t") for r in parts.rules}
    far = [(3, 0.8, 0.8, 0.2, 0.2)]  # a scaffold labelled in the lower right corner
    assert judge_picture(parts, image, far, rules)["found"] == []
    assert judge_picture(parts, image, far, rules)["raised"] == ["illegal_construction"]
    assert judge_picture(parts, image, NEAR, rules)["found"] == ["illegal_construction"]


def test_a_higher_confidence_floor_drops_a_weak_sighting():
    import cv2

    from training.evaluate_real import shifted_rules

    # 0.40: above illegal construction's floor of 0.35, below it once the floor moves up by 0.10
    parts = _parts_seeing(0.40)
    image = cv2.imread(str(SKIMAGE / "data/astronaut.png"))
    verdict = judge_picture(parts, image, NEAR, shifted_rules(parts.rules, 0.0),
                            {k: shifted_rules(parts.rules, k) for k in (-0.05, 0.10)})
    assert verdict["found"] == ["illegal_construction"]
    assert verdict["at_shift"]["-0.05"]["found"] == ["illegal_construction"]
    assert verdict["at_shift"]["0.1"] == {"raised": [], "found": []}


def test_patrol_eval_real_json(small_set, tmp_path, capsys):
    from patrol.cli import main

    out = tmp_path / "data"
    assert main(["real-set", "fetch", "--manifest", str(small_set), "--out", str(out)]) == 0
    code = main(["eval", "--real", "--manifest", str(small_set), "--real-dir", str(out), "--json",
                 "--out", str(tmp_path / "report")])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["real"]["no_violation"]["all"]["pictures"] == 2
    assert "AP50" in (tmp_path / "report" / "report-real.md").read_text()
    # what went wrong is drawn for a person to see: one sheet per kind of failure that occurred
    per = {p["id"]: p for p in result["real"]["per_picture"]}
    missed = set(per["boxed"]["truth"]) - set(per["boxed"]["found"])
    assert (tmp_path / "report" / "misses" / "sheet-000.jpg").exists() == bool(missed)
    false = any(p["raised"] for p in per.values() if p["kind"] == "negative")
    assert (tmp_path / "report" / "false-sightings" / "sheet-000.jpg").exists() == false
    assert result["looks"] == "320 px from 0.20, confirmed at 416 px" and "confirmed at 416 px" in \
        (tmp_path / "report" / "report-real.md").read_text()  # how the detector looked is part of the figure
    assert main(["eval", "--real", "--manifest", str(small_set), "--real-dir", str(out), "--json", "--skip-boxes",
                 "--out", str(tmp_path / "quick")]) == 0
    assert "boxes" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["real"]


def test_eval_real_without_the_pictures_says_how_to_get_them(small_set, tmp_path, capsys):
    from patrol.cli import main

    code = main(["eval", "--real", "--manifest", str(small_set), "--real-dir", str(tmp_path / "none")])
    assert code == 2
    assert "patrol real-set fetch" in capsys.readouterr().err


def test_labelcheck_draws_every_label(small_set, tmp_path):
    out = tmp_path / "data"
    fetch(out, small_set)
    check = tmp_path / "check"
    assert labelcheck([str(out / "images" / "eval"), str(out / "labels" / "eval"), "--out", str(check)]) == 0
    assert sorted(p.name for p in check.iterdir()) == ["boxed.jpg", "cam-photo.jpg", "sheet-000.jpg", "street-f10.jpg"]


def test_the_sources_table_counts_each_origin(small_set):
    from training.real_set import load_manifest, sources_table

    pictures = load_manifest(small_set)
    lines = sources_table(pictures)
    assert lines[0].startswith("| origin | commit | pictures (train / eval)")
    body = lines[2:]
    assert len(body) == len({p.repo for p in pictures})
    assert [line.split("|")[3].strip() for line in body] == ["3 (1 / 2)", "1 (0 / 1)"]  # skimage, then the video
    assert "fixed 1" in body[1] and "| 1 |" in body[0]  # one of skimage's pictures has a violation


@pytest.mark.parametrize("licence, ok", [
    ("CC0 1.0 (repo LICENSE)", True),
    ("CC BY 4.0 (Roboflow export data.yaml; no LICENSE file)", True),
    ("CC BY-NC 4.0 (README: personal and research use only)", False),
    ("CC BY-NC-SA 4.0 (README)", False),
    ("MIT (repo LICENSE); footage origin not stated", False),
    ("none stated", False),
])
def test_only_openly_licensed_pictures_are_shareable(licence, ok):
    from training.evaluate_real import shareable

    assert shareable(licence) is ok


def test_failure_sheets_draw_only_the_pictures_allowed(small_set, tmp_path):
    from training.evaluate_real import failure_sheets

    out = tmp_path / "data"
    fetch(out, small_set)
    result = {"per_picture": [
        {"id": "cam-photo", "kind": "negative", "raised": ["dust"], "truth": [], "found": [],
         "detections": [["dust", 0.5, 10, 10, 100, 100]], "labels": []},
        {"id": "boxed", "kind": "positive", "raised": [], "truth": ["illegal_construction"], "found": [],
         "detections": [], "labels": [[3, 0.5, 0.5, 0.4, 0.6]]},
    ]}
    everything = failure_sheets(result, out, tmp_path / "all")
    assert sorted(p.parent.name for p in everything) == ["false-sightings", "misses"]
    # only the positive may be published: no sheet of false sightings is drawn
    allowed = failure_sheets(result, out, tmp_path / "shareable", only={"boxed"})
    assert [p.parent.name for p in allowed] == ["misses"]
    assert not (tmp_path / "shareable" / "false-sightings").exists()


def test_the_committed_real_set_is_consistent_and_large_enough():
    """The project's own manifest and labels (no pictures needed): every row is well formed, a
    scene is in one split, every label file parses and agrees with its kind, no file is both
    trained and evaluated on, and the set holds at least 300 labelled pictures with a violation,
    each of the three event types in at least 50 (dust plumes counted without smoke and
    sandstorms), and at least 30 dust plumes among the eval scenes, so that dust recall is judged."""
    from training.evaluate_real import _group, event_type_of
    from training.real_set import MANIFEST, check_labels, label_rows, labels_of
    from vision.rules import default_rules

    pictures = load_manifest(MANIFEST)
    labels = labels_of(MANIFEST)
    check_labels(pictures, labels)
    by_file: dict[tuple[str, str], set[str]] = {}
    for p in pictures:
        by_file.setdefault((p.sha256, p.frame), set()).add(p.split)
    assert not [k for k, splits in by_file.items() if len(splits) > 1], "a file is in both splits"
    rules = default_rules()
    with_type = {r.event_type: 0 for r in rules}
    dust_in_eval = 0
    positives = [p for p in pictures if p.kind == "positive"]
    for p in positives:
        for t in {event_type_of(row[0], rules) for row in label_rows(p.id, labels)} - {None}:
            if t != "dust" or _group(p) == "real":  # smoke and sandstorms are counted apart, as in eval
                with_type[t] += 1
                dust_in_eval += t == "dust" and p.split == "eval"
    assert len(positives) >= 300
    assert all(n >= 50 for n in with_type.values()), with_type
    assert dust_in_eval >= 30, dust_in_eval


def test_the_data_card_lists_every_source_as_the_manifest_has_it():
    """training/real/DATA.md's table of origins is `patrol real-set sources` of the committed
    manifest: a picture added without the table, or the table edited by hand, fails here."""
    from training.real_set import HERE, MANIFEST, sources_table

    card = (HERE / "DATA.md").read_text(encoding="utf-8")
    assert "\n".join(sources_table(load_manifest(MANIFEST))) in card, \
        "DATA.md's sources table is stale: paste `patrol real-set sources` over it"


# -- adding labelled pictures (patrol real-set add) ------------------------------------------


def _new_rows(folder: Path, rows: list[dict], labels: dict[str, str]) -> tuple[Path, Path]:
    """What a labeller brings: new rows, and a folder of their label files."""
    return _write(folder, rows, labels, "new.csv"), folder / "labels"


def _new_row(**kw) -> dict:
    return _row(**{"split": "", "sha256": "", **kw})  # a labeller leaves both to the command


def _scene_rule(scene: str) -> str:
    return "eval" if hashlib.sha1(scene.encode()).hexdigest()[0] in "0123" else "train"


def test_added_pictures_are_hashed_split_by_scene_and_fetchable(small_set, tmp_path):
    from training.real_add import add

    before = small_set.read_bytes()
    rows, labels = _new_rows(tmp_path / "new", [
        _new_row(id="chelsea", repo="pypi:skimage", path="data/chelsea.png", scene="skimage-chelsea"),
        _new_row(id="coffee-2", repo="pypi:skimage", path="data/coffee.png", scene="skimage-coffee"),  # a known scene
        _new_row(id="brick-pile", repo="pypi:skimage", path="data/brick.png", scene="skimage-brick", kind="positive"),
        _new_row(id="street-f20", repo="file:", path="sample_videos/fixed_no_violation.mp4", frame="20", camera="fixed",
             scene="sample-street"),
    ], {"chelsea": "", "coffee-2": "", "brick-pile": "6 0.5 0.5 0.8 0.8\n", "street-f20": ""})
    done = add(rows, labels, small_set)
    assert done == {"added": 4, "positives": 1, "new_scenes": 2,
                    "train": 1 + sum(_scene_rule(s) == "train" for s in ("skimage-chelsea", "skimage-brick")),
                    "eval": 1 + sum(_scene_rule(s) == "eval" for s in ("skimage-chelsea", "skimage-brick"))}
    after = small_set.read_bytes()
    assert after.startswith(before) and after.count(b"\r\n") == before.count(b"\r\n") + 4  # appended, same endings
    pictures = {p.id: p for p in load_manifest(small_set)}
    assert pictures["coffee-2"].split == "train" and pictures["street-f20"].split == "eval"  # their scenes' splits
    assert pictures["chelsea"].split == _scene_rule("skimage-chelsea")
    assert pictures["chelsea"].sha256 == _sha(SKIMAGE / "data/chelsea.png")
    assert (small_set.parent / "labels" / "brick-pile.txt").read_text() == "6 0.5 0.5 0.8 0.8\n"
    out = tmp_path / "data"
    assert fetch(out, small_set)["failed"] == []
    assert (out / "images" / pictures["street-f20"].split / "street-f20.jpg").exists()


@pytest.mark.parametrize("bad, labels, why", [
    (_new_row(id="cam-photo", repo="pypi:skimage", path="data/chelsea.png", scene="x"), {"cam-photo": ""}, "already in"),
    (_new_row(id="c2", repo="pypi:skimage", path="data/chelsea.png", scene="x", sha256="0" * 64), {"c2": ""}, "SHA-256"),
    (_new_row(id="c3", repo="pypi:skimage", path="data/chelsea.png", scene="x", kind="positive"), {"c3": ""}, "0 boxes"),
    (_new_row(id="c4", repo="pypi:skimage", path="data/chelsea.png", scene="x"), {}, "no label file"),
    (_new_row(id="c5", repo="pypi:skimage", path="data/chelsea.png", scene="skimage-coffee", split="eval"), {"c5": ""},
     "belongs to train"),
    (_new_row(id="c6", repo="file:", path="training/real_add.py", scene="x"), {"c6": ""}, "not a picture"),
    (_new_row(id="c7", repo="file:", path="sample_videos/fixed_no_violation.mp4", frame="100000", scene="x"), {"c7": ""},
     "no frame"),
    (_new_row(id="c8", repo="pypi:skimage", path="data/chelsea.png", scene="x", camera="satellite"), {"c8": ""},
     "camera must be"),
    (_new_row(id="c9", repo="pypi:skimage", path="data/none.png", scene="x"), {"c9": ""}, "is not here"),
    (_new_row(id="c10", repo="pypi:skimage", path="data/chelsea.png", scene="", licence=""), {"c10": ""},
     "licence, scene must be given"),
])
def test_one_bad_row_refuses_the_whole_batch(small_set, tmp_path, bad, labels, why):
    from training.real_add import add

    before = small_set.read_bytes()
    good = _new_row(id="moon", repo="pypi:skimage", path="data/moon.png", scene="skimage-moon")
    rows, folder = _new_rows(tmp_path / "new", [good, bad], {"moon": "", **labels})
    with pytest.raises(RealSetError, match=why):
        add(rows, folder, small_set)
    assert small_set.read_bytes() == before
    assert not (small_set.parent / "labels" / "moon.txt").exists()


def test_patrol_real_set_add(small_set, tmp_path, capsys):
    from patrol.cli import main

    rows, labels = _new_rows(tmp_path / "new", [_new_row(id="moon", repo="pypi:skimage", path="data/moon.png",
                                                      scene="skimage-moon")], {"moon": ""})
    args = ["real-set", "add", "--manifest", str(small_set), "--rows", str(rows), "--labels", str(labels)]
    assert main(args) == 0
    assert "added 1 pictures" in capsys.readouterr().out and "moon" in {p.id for p in load_manifest(small_set)}
    assert main(args) == 2  # the same rows again: their ids are taken
    assert "already in" in capsys.readouterr().err
