"""Ground truth of rendered clips: a dust event is a plume a person can see, by the same
rule as the training labels (training/visibility.py). Real H.264 files are written and the
truth is read from what the renderer reports."""
import json

import numpy as np

from training.synth import street_background
from training.synth_video import Actor, Clip, random_clip, render


def _plume_clip(opacity: float = 1.0, density: float = 1.0, world: np.ndarray | None = None) -> Clip:
    if world is None:
        world = street_background(np.random.default_rng(3), 480, 270).image
    dust = Actor("dust", 150, 20, 200, 210, t_in=1.0, t_out=7.0, event="dust", seed=11, opacity=opacity, density=density)
    return Clip("plume", "fixed", (480, 270), 8.0, world, [dust], seed=5)


def test_a_dense_plume_is_a_dust_event_and_a_faint_veil_is_none(tmp_path):
    dense = render(_plume_clip(density=2.5), tmp_path)
    assert [e["event_type"] for e in dense["events"]] == ["dust"]
    event = dense["events"][0]
    assert 1.0 <= event["start"] < 4.0 and event["end"] <= 7.1  # seen once it has built up, until it goes
    veil = render(_plume_clip(opacity=0.3), tmp_path)
    assert veil["events"] == []
    assert json.loads((tmp_path / "plume.json").read_text()) == veil
    assert (tmp_path / "plume.mp4").stat().st_size > 0


def test_an_opaque_plume_that_changes_nothing_is_no_event(tmp_path):
    """Opacity alone once made a dust event (alpha >= 0.45); a cloud the colour of the wall
    behind it cannot be seen, so it is not one."""
    img, alpha = _plume_clip().actors[0].sprite(5.0, False)
    colour = img[alpha > 0.2].mean(axis=0)
    same = np.empty((270, 480, 3), np.uint8)
    same[:] = colour.astype(np.uint8)
    hidden = _plume_clip(opacity=2.0, density=2.0, world=same)
    assert float(hidden.actors[0].sprite(5.0, False)[1].max()) >= 0.45
    assert render(hidden, tmp_path)["events"] == []
    dark = np.full((270, 480, 3), 40, np.uint8)
    assert [e["event_type"] for e in render(_plume_clip(opacity=2.0, density=2.0, world=dark), tmp_path)["events"]] == ["dust"]


def test_held_out_dust_events_are_dense_clouds_drawn_from_the_seed():
    def plumes(seed):
        return [(a.density, a.x, a.y, a.w) for a in random_clip(seed).actors if a.name == "dust" and a.event]

    drawn = {seed: plumes(seed) for seed in range(90000, 90048)}
    densities = [p[0] for ps in drawn.values() for p in ps]
    assert len(set(densities)) >= 5 and all(1.5 <= d <= 3.0 for d in densities)  # dense, and varied
    assert all(plumes(seed) == ps for seed, ps in list(drawn.items())[:12] if ps)  # the same from the same seed
