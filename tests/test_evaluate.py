"""Event-level scoring of `patrol eval`: found, false and duplicate cases, time to first detection."""
from types import SimpleNamespace

import pytest

from training.evaluate import score_video


def case(cid, event_type, first, last):
    return SimpleNamespace(id=cid, event_type=event_type, first_seen=first, last_seen=last)


TRUTH = {"events": [{"event_type": "dust", "start": 10.0, "end": 30.0},
                    {"event_type": "street_vending", "start": 5.0, "end": 20.0}]}


def test_a_case_overlapping_a_truth_of_its_type_finds_it():
    s = score_video(TRUTH, [case(1, "dust", 12, 28), case(2, "street_vending", 6, 21)], {1: 16.0, 2: 9.0})
    assert (s["dust"].found, s["dust"].false_cases, s["dust"].ttfd) == (1, 0, [6.0])
    assert (s["street_vending"].found, s["street_vending"].ttfd) == (1, [4.0])


def test_a_second_case_for_one_violation_is_false_and_a_wrong_type_finds_nothing():
    s = score_video(TRUTH, [case(1, "dust", 12, 18), case(2, "dust", 20, 29), case(3, "illegal_construction", 5, 30)],
                    {1: 14.0, 2: 22.0, 3: 9.0})
    assert (s["dust"].found, s["dust"].cases, s["dust"].false_cases) == (1, 2, 1)
    assert s["dust"].ttfd == [4.0]  # the earliest case is the one that found it
    assert s["street_vending"].found == 0
    assert (s["illegal_construction"].truths, s["illegal_construction"].false_cases) == (0, 1)
    d = s["dust"].as_dict()
    assert d["recall"] == 1.0 and d["precision"] == 0.5


def test_a_case_outside_the_truths_time_is_false():
    s = score_video(TRUTH, [case(1, "dust", 31, 40)], {1: 33.0})
    assert (s["dust"].found, s["dust"].false_cases) == (0, 1)


def test_patrol_eval_writes_metrics_a_report_examples_and_case_snapshots(tmp_path):
    """The whole command on a small scale: held-out pictures rendered, boxes scored with the
    default model, two sample clips analysed, and the report with its pictures written."""
    import json
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import cv2

    from vision.detector import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("default model not in models/")
    root = Path(__file__).resolve().parents[1]
    clips = tmp_path / "clips"
    clips.mkdir()
    for stem in ("fixed_street_vending", "fixed_no_violation"):
        for f in (root / "sample_videos").glob(f"{stem}.*"):
            shutil.copy(f, clips / f.name)
    out = tmp_path / "report"
    run = subprocess.run([sys.executable, "-m", "patrol.cli", "eval", "--images", "8", "--data", str(clips),
                          "--work-dir", str(tmp_path / "work"), "--out", str(out), "--json"],
                         capture_output=True, text=True, timeout=600, cwd=root)
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result["boxes"]["per_class"]) and all(0 <= v["map50"] <= 1 for v in result["boxes"]["per_class"].values())
    events = result["events"]
    assert events["videos"] == 2 and events["overall"]["ground_truth_events"] == 1
    assert events["overall"]["found"] == 1 and events["overall"]["false_cases"] == 0
    [vending] = [v for v in events["per_video"] if v["video"] == "fixed_street_vending.mp4"]
    assert vending["snapshots"] and cv2.imread(str(out / vending["snapshots"][0])) is not None
    report = (out / "report.md").read_text()
    assert "pr_curve.png" in report and "examples.jpg" in report and vending["snapshots"][0] in report
    sheet = cv2.imread(str(out / "examples.jpg"))
    assert sheet is not None and sheet.shape[1] == 4 * 384
    assert json.loads((out / "eval.json").read_text())["boxes"]["map50"] == result["boxes"]["map50"]
    by_view = result["boxes"]["dust_by_view"]  # every held-out plume counted once, behind a photo or not
    labels = [line for f in (tmp_path / "work" / "images" / "labels" / "val").glob("*.txt")
              for line in f.read_text().splitlines() if line.split()[0] == "7"]
    assert sum(v["pictures"] for v in by_view.values()) == 8 and sum(v["plumes"] for v in by_view.values()) == len(labels)
    assert all(0 <= v["found"] <= v["plumes"] for v in by_view.values())
    assert "by what lies behind the plume" in report
    # held-out plumes are scored as clouds by default, and the rendered set records its rule
    made = json.loads((tmp_path / "work" / "images" / "recipe.json").read_text())
    assert result["boxes"]["plume_labels"] == "cloud" and made["clouds"] is True
    photos = result["photos"]
    assert [r["photo"] for r in photos["per_photo"]][:3] == ["zidane.jpg", "rocket.jpg", "camera.png"]
    from training.photos import heldout_photos, probe_entries  # 13 packaged pictures, 19 with opencv-doc

    assert photos["photos"] == len(heldout_photos()) >= 13
    assert photos["photos"] + len(photos["not_installed"]) == len(probe_entries())  # checked or named as missing
    assert photos["with_event"] == sum(bool(r["events"]) for r in photos["per_photo"])
    assert "## Held-out real pictures" in report


def test_an_event_on_a_photo_without_a_violation_is_counted_as_a_false_alarm():
    """evaluate_photos with the real default model: a frame of the street-vending sample
    passed off as an ordinary photo must show up as one with an event."""
    from pathlib import Path

    import av

    from core.settings import Settings
    from core.wiring import Parts
    from training.evaluate import evaluate_photos
    from vision.detector import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.exists():
        pytest.skip("default model not in models/")
    clip = Path(__file__).resolve().parents[1] / "sample_videos" / "fixed_street_vending.mp4"
    with av.open(str(clip)) as container:
        frame = next(f for f in container.decode(video=0) if f.time >= 18.0).to_ndarray(format="bgr24")
    blank = frame.copy()
    blank[:] = 128
    result = evaluate_photos(Parts(Settings()), [("stall.jpg", frame), ("grey.jpg", blank)])
    assert result["photos"] == 2 and result["with_event"] == 1
    assert result["per_photo"][0]["events"] == ["street_vending"] and result["per_photo"][1]["events"] == []


def test_the_report_names_probe_pictures_that_are_not_installed(tmp_path, monkeypatch):
    from training import photos
    from training.evaluate import write_report

    monkeypatch.setattr(photos, "EXTRA_PROBES", (("opencv-doc", "/nonexistent/opencv-doc/leuvenA.jpg"),))
    assert photos.missing_probes()[-1:] == ["leuvenA.jpg"]
    rows = [{"photo": "zidane.jpg", "events": [], "detections": []}]
    result = {"model": "m", "photos": {"photos": 1, "with_event": 0, "per_photo": rows, "not_installed": ["leuvenA.jpg"]}}
    report = write_report(result, tmp_path).read_text()
    assert "Not installed here, so not checked: leuvenA.jpg" in report and "| zidane.jpg | none | none |" in report


def test_a_development_set_of_clips_has_its_own_folder_and_never_the_held_out_seeds(tmp_path):
    import json


    from training.evaluate import make_heldout_videos, video_set_folder

    assert video_set_folder(90_000, None, 48) == "videos"
    assert video_set_folder(80_000, "drone", 30) == "videos-drone-80000"
    assert video_set_folder(89_990, None, 10) == "videos-any-89990"
    for seed, kind, count in ((90_000, "drone", 5), (89_990, None, 11), (90_047, "fixed", 1)):
        with pytest.raises(ValueError, match="overlap the held-out clips"):
            video_set_folder(seed, kind, count)
    made = make_heldout_videos(tmp_path, 2, seed=80_000, seconds=2.0, kind="drone")
    assert [name.split("_")[1:3] for name in made] == [["80000", "drone"], ["80001", "drone"]]
    assert all(json.loads((tmp_path / f"{name}.json").read_text())["source_kind"] == "drone" for name in made)
    assert make_heldout_videos(tmp_path, 1, seed=80_000, seconds=2.0, kind="drone") == made[:1]  # kept, named


def test_only_the_clips_asked_for_are_scored_not_all_the_folder_holds(tmp_path):
    """patrol eval renders into a folder kept between runs: a run asking for one clip scores
    one, though the folder holds two (short clips, the real default model)."""
    from core.settings import Settings
    from core.wiring import Parts
    from training.evaluate import evaluate_videos, make_heldout_videos

    names = make_heldout_videos(tmp_path, 2, seed=80_000, seconds=2.0, kind="drone")
    parts = Parts(Settings())
    assert evaluate_videos(parts, tmp_path)["videos"] == 2
    one = evaluate_videos(parts, tmp_path, only=names[:1])
    assert one["videos"] == 1 and one["per_video"][0]["video"] == f"{names[0]}.mp4"


@pytest.mark.parametrize("text, why", [
    ('{"events": []}', "needs source_kind"),
    ('{"source_kind": "tram", "events": []}', "needs source_kind"),
    ('{"source_kind": "fixed"}', "a list of events"),
    ('{"source_kind": "fixed", "events": [', "not a readable ground truth"),
])
def test_a_clip_is_scored_only_against_a_ground_truth_that_names_its_camera(tmp_path, text, why):
    from training.evaluate import read_truth

    (tmp_path / "clip.json").write_text(text)
    with pytest.raises(ValueError, match=why):
        read_truth(tmp_path / "clip.mp4")
    with pytest.raises(ValueError, match="not a readable"):
        read_truth(tmp_path / "other.mp4")  # no ground truth at all
    (tmp_path / "clip.json").write_text('{"source_kind": "drone", "events": []}')
    assert read_truth(tmp_path / "clip.mp4")["source_kind"] == "drone"
