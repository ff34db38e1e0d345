"""The plume measure: haze, contrast loss and dust colour of a region against its
surroundings (vision/plume.py). Pictures are drawn here with known content."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from vision.plume import STRONG, VETO, measure, supports_dust

W, H = 320, 180
BOX = (100, 40, 220, 150)


def site(seed: int = 0) -> np.ndarray:
    """A dim, busy construction-site view: textured ground with edges everywhere."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 120, (H, W, 3), dtype=np.uint8)
    for _ in range(40):  # rods, edges, shadows
        x, y = int(rng.integers(0, W)), int(rng.integers(0, H))
        cv2.line(img, (x, y), (x + int(rng.integers(-40, 40)), y + int(rng.integers(-40, 40))),
                 tuple(int(v) for v in rng.integers(0, 255, 3)), 2)
    return img


def add_plume(img: np.ndarray, box, opacity: float = 0.75, colour=(120, 155, 185)) -> np.ndarray:
    """A dense plume: an ochre (BGR) scattering layer, soft-edged, that hides what is behind."""
    x1, y1, x2, y2 = box
    mask = np.zeros(img.shape[:2], np.float32)
    mask[y1:y2, x1:x2] = opacity
    mask = cv2.GaussianBlur(mask, (0, 0), max(2.0, (x2 - x1) / 16))[..., None]
    veil = np.array(colour, np.float32)[None, None, :]
    img[:] = np.clip(img * (1 - mask) + veil * mask, 0, 255).astype(np.uint8)
    return img


def test_a_dense_dust_plume_scores_high_on_every_part():
    m = measure(add_plume(site(), BOX), BOX)
    assert m.haze > 0.5 and m.contrast_loss > 0.3 and m.colour > 0.5
    assert m.score >= STRONG


def test_the_same_region_without_a_plume_scores_low():
    m = measure(site(), BOX)
    assert m.score < VETO


def test_white_steam_is_not_dust_coloured():
    steam = measure(add_plume(site(), BOX, colour=(235, 235, 235)), BOX)
    dust = measure(add_plume(site(), BOX), BOX)
    assert steam.colour < 0.2 < dust.colour
    assert steam.score < dust.score


def test_a_beige_wall_is_not_a_plume():
    # dust-coloured, but everywhere: nothing is brought into the box, and its edges stay
    img = site()
    img[:] = np.clip(img.astype(np.float32) * 0.3 + np.array([120, 155, 185]) * 0.7, 0, 255).astype(np.uint8)
    assert measure(img, BOX).colour < 0.2


@pytest.mark.parametrize("box", [(0, 0, W, H), (5, 5, 8, 8), (-50, -50, 400, 400)])
def test_degenerate_boxes_do_not_fail(box):
    m = measure(site(), box)
    assert 0.0 <= m.score <= 1.0


def test_judgement_combines_box_score_and_measure():
    clear, none = measure(add_plume(site(), BOX), BOX), measure(site(), BOX)
    assert supports_dust(0.7, clear, 0.3) and not supports_dust(0.7, none, 0.3)
    assert supports_dust(0.22, clear, 0.3)  # a hesitant box over a clear plume
    assert not supports_dust(0.1, clear, 0.3)  # but not a box the detector hardly believes
