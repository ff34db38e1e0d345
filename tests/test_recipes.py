"""Data recipes are data: named switches the renderer asks, and each recipe's pictures stay put."""
import hashlib
import re
from pathlib import Path

import pytest

from training import photos
from training.recipes import DEFAULT_RECIPE, RECIPES, Recipe, recipe_of
from training.synth import labelled_image

# Small renders of every recipe (seeds 0 and 1, for training and held out, and one picture of
# each of its views), hashed. A change that is meant to alter a recipe's pictures makes a new
# recipe instead; these numbers pin the old ones, made with the photographs installed.
FINGERPRINTS = {1: "4a7dcc28f1a0af63", 2: "035f63967fcf4e37", 3: "8c6b9acc135941a7", 4: "38fa3d1eaa8f6714",
                5: "76922bb7fba46357", 6: "6eef47f9f6933b3f", 7: "f816e8bbf3296791", 8: "ec8317f86f765e46",
                9: "28e54a3cfc81fadd", 10: "bef9ce2e820236ca", 11: "ebd5eb3d78af25c5", 12: "c132d3e39267e33d",
                13: "794232329804773d"}


def _digest(pic) -> str:
    h = hashlib.sha256(pic.image.tobytes())
    h.update(repr([tuple(round(float(v), 3) for v in b) for b in pic.boxes]).encode())
    return h.hexdigest()[:16]


def _fingerprint(number: int) -> str:
    renders = {f"seed{s}" + ("/heldout" if held else ""): labelled_image(s, 160, 96, recipe=number, heldout=held)
               for s in (0, 1) for held in (False, True)}
    renders |= {v: labelled_image(100, 160, 96, view=v, recipe=number) for v in set(RECIPES[number].views)}
    h = hashlib.sha256()
    for key in sorted(renders):
        h.update(f"{key}={_digest(renders[key])};".encode())
    return h.hexdigest()[:16]


@pytest.mark.skipif(bool(photos.missing_training_photos(3, clutter=True)) or len(photos.scenes()) < len(photos.SCENES),
                    reason="not every training photograph is installed")
@pytest.mark.parametrize("number", sorted(FINGERPRINTS))
def test_every_recipe_renders_the_pictures_it_always_rendered(number):
    assert _fingerprint(number) == FINGERPRINTS[number]


def test_the_table_holds_every_pinned_recipe_and_the_default():
    assert sorted(RECIPES) == sorted(FINGERPRINTS) and DEFAULT_RECIPE in RECIPES
    assert all(isinstance(r, Recipe) and r.views for r in RECIPES.values())


def test_an_unknown_recipe_is_a_clear_error():
    with pytest.raises(ValueError, match="no data recipe 99 .known: 1, 2,"):
        recipe_of(99)
    with pytest.raises(ValueError, match="no data recipe 0"):
        labelled_image(0, 64, 48, view="street", recipe=0)


def test_the_renderer_asks_switches_and_never_compares_recipe_numbers():
    source = (Path(__file__).parents[1] / "training" / "synth.py").read_text()
    assert not re.search(r"recipe\s*(>=|<=|>|<|==|!=)\s*\d", source)
