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

