"""The change gate skips samples in which nothing can be new, and re-checks on a timer."""
from __future__ import annotations

import cv2
import numpy as np

from vision.gate import ChangeGate


def street(seed: int = 7) -> np.ndarray:
    """A 640x360 'street': smooth shapes, as a camera sees them (not white noise)."""
    rng = np.random.default_rng(seed)
    img = np.full((360, 640, 3), 110, np.uint8)
    for _ in range(25):
        x, y = int(rng.integers(0, 600)), int(rng.integers(0, 320))
        colour = tuple(int(c) for c in rng.integers(30, 220, 3))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(20, 120)), y + int(rng.integers(20, 80))), colour, -1)
    return img


def with_sensor_noise(img: np.ndarray, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(-4, 5, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def with_stall(img: np.ndarray) -> np.ndarray:
    """The same street with a 60x50 px stall set up on it (under 2% of the picture)."""
    out = img.copy()
    cv2.rectangle(out, (300, 250), (360, 300), (20, 200, 240), -1)
    return out


def test_the_first_sample_passes():
    gate = ChangeGate(recheck_s=30)
    assert gate.check(street(), 0.0) == (True, "first sample")


def test_an_unchanged_scene_is_skipped_even_with_sensor_noise():
    gate = ChangeGate(recheck_s=30)
    scene = street()
    gate.check(scene, 0.0)
    results = [gate.check(with_sensor_noise(scene, seed), 2.0 * seed)[0] for seed in range(1, 10)]
    assert results == [False] * 9
    assert (gate.passed, gate.skipped) == (1, 9)


def test_a_small_new_object_passes():
    gate = ChangeGate(recheck_s=30)
    scene = street()
    gate.check(scene, 0.0)
    assert gate.check(scene, 2.0)[0] is False
    passed, why = gate.check(with_stall(scene), 4.0)
    assert passed is True and "changed" in why
    # the new picture is the reference now: the stall staying is no news
    assert gate.check(with_sensor_noise(with_stall(scene), 1), 6.0)[0] is False
    # and its leaving is news again
    assert gate.check(scene, 8.0)[0] is True


def test_the_recheck_timer_forces_a_pass_on_an_unchanged_scene():
    gate = ChangeGate(recheck_s=30)
    scene = street()
    gate.check(scene, 100.0)
    assert gate.check(scene, 129.0)[0] is False  # just before the timer
    assert gate.check(scene, 130.0) == (True, "re-check timer")
    # the timer restarts from that pass
    assert gate.check(scene, 159.0)[0] is False
    assert gate.check(scene, 160.0)[0] is True



# ---------------------------------------------------------------- cameras that move
# Real rendered clips (training/synth_video.py), encoded as H.264 and read back through the
# sampler, as a vehicle, a drone and a phone deliver them: the gate sees codec noise,
# sub-pixel shifts and shake, not clean arrays.

import time  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from streams.reader import iter_file_samples  # noqa: E402
from training.synth import street_background, topdown_background  # noqa: E402
from training.synth_video import Clip, on_ground, render  # noqa: E402
from vision.gate import MovingGate  # noqa: E402

W, H = 480, 270
SECONDS = 20
PAN = 2 * W / 40  # px/s: a patrol vehicle crossing two picture widths in 40 s, as the sample does
STALL_AT = 12.0


def moving_clips() -> dict[str, Clip]:
    rng = np.random.default_rng(3)
    street = street_background(rng, 3 * W, H + 20)
    stall = on_ground(street, "stall", street.kerb, 0.65 * W + STALL_AT * PAN, rng, t_in=STALL_AT)
    phone = street_background(rng, H + 40, W + 40)  # portrait
    ground = topdown_background(rng, W, int(H * 2.5))
    return {
        "vehicle": Clip("vehicle", "vehicle", (W, H), SECONDS, street.image, [], cam_speed=PAN, shake=1.5, seed=1),
        "drone": Clip("drone", "drone", (W, H), SECONDS, ground, [], topdown=True,
                      cam_speed_y=(ground.shape[0] - H) / 40, seed=4),
        "mobile": Clip("mobile", "mobile", (H, W), SECONDS, phone.image, [], shake=3.0, seed=2),
        # the vehicle's drive again, with a stall set up in view at STALL_AT
        "vehicle_stall": Clip("vehicle_stall", "vehicle", (W, H), SECONDS, street.image, [stall],
                              cam_speed=PAN, shake=1.5, seed=1),
    }


@pytest.fixture(scope="module")
def moving(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("moving")
    for clip in moving_clips().values():
        render(clip, out)
    return {name: out / f"{name}.mp4" for name in moving_clips()}


def run_gate(gate, path: Path, interval_s: float = 1.0) -> list[tuple[float, bool, str]]:
    return [(f.ts, *gate.check(f.image, f.ts)) for f in iter_file_samples(path, interval_s)]


@pytest.mark.parametrize("kind", ["vehicle", "drone", "mobile"])
def test_a_moving_camera_over_an_unchanged_scene_is_mostly_skipped(moving, kind):
    results = run_gate(MovingGate(recheck_s=30), moving[kind])
    passed = [(ts, why) for ts, ok, why in results if ok]
    assert len(results) == SECONDS
    # Only the first sample and those that reached ground the last analysed one never showed.
    assert len(passed) <= 0.25 * len(results), passed
    assert all(why == "first sample" or "new ground" in why for _, why in passed), passed
    # The fixed camera's gate, for contrast, takes every shifted picture for news.
    fixed = run_gate(ChangeGate(recheck_s=30), moving[kind])
    if kind != "mobile":  # (a hand's shake of a few pixels can slip under the fixed gate's blur)
        assert sum(ok for _, ok, _ in fixed) >= 0.8 * len(fixed)


def test_a_stall_set_up_while_the_camera_moves_is_let_through(moving):
    results = run_gate(MovingGate(recheck_s=30), moving["vehicle_stall"])
    at_stall = [(ts, ok, why) for ts, ok, why in results if STALL_AT <= ts < STALL_AT + 1]
    assert at_stall and at_stall[0][1] is True and "changed" in at_stall[0][2], at_stall
    # the same drive without the stall skips that sample
    plain = {ts: ok for ts, ok, _ in run_gate(MovingGate(recheck_s=30), moving["vehicle"])}
    assert plain[at_stall[0][0]] is False


def test_a_moving_camera_is_still_rechecked_on_the_timer(moving):
    results = run_gate(MovingGate(recheck_s=4), moving["mobile"])
    passed = [ts for ts, ok, _ in results if ok]
    assert passed == pytest.approx([0, 4, 8, 12, 16])
    assert all(why == "re-check timer" for ts, ok, why in results if ok and ts > 0)


def test_a_view_that_cannot_be_lined_up_passes():
    gate = MovingGate(recheck_s=30)
    gate.check(street(1), 0.0)
    ok, why = gate.check(street(2), 1.0)  # another street altogether: no shift explains it
    assert ok is True and ("beyond alignment" in why or "changed" in why)


def test_the_moving_gate_is_cheap(moving):
    frames = [f.image for f in iter_file_samples(moving["vehicle"], 1.0)]
    gate = MovingGate(recheck_s=1e9)
    started = time.perf_counter()
    for f in frames:
        gate.check(f, 0.0)
    per_sample_ms = (time.perf_counter() - started) * 1000 / len(frames)
    assert per_sample_ms < 5, f"{per_sample_ms:.2f} ms per sample"


def test_the_moving_gate_says_where_the_boxes_of_the_last_analysed_sample_went(moving):
    gate = MovingGate(recheck_s=30)
    frames = list(iter_file_samples(moving["vehicle"], 1.0))[:4]
    assert gate.check(frames[0].image, 0.0)[0] is True
    assert gate.shift_px(frames[0].size) == (0.0, 0.0)
    for n, f in enumerate(frames[1:], start=1):
        assert gate.check(f.image, float(n))[0] is False
        dx, dy = gate.shift_px(f.size)
        # the camera pans right at PAN px/s, so the street (and a stall on it) moves left
        assert dx == pytest.approx(-PAN * n, abs=3) and dy == pytest.approx(0, abs=3)
