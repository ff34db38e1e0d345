"""The figures behind the dust check's thresholds (``vision.plume.VETO`` and ``STRONG``):
how the plume measure separates true plume boxes from other boxes on rendered pictures.

    python -m training.plume_calibration
"""
from __future__ import annotations

import numpy as np

from training.synth import labelled_image
from vision.classes import CLASSES
from vision.plume import STRONG, VETO, measure


def calibrate(count: int = 600, seed: int = 9, recipe: int = 4) -> dict:
    """How the measure separates true plume boxes from other boxes on held-out rendered
    pictures (seeds never used for training, held-out photographs): the figures behind
    VETO and STRONG."""
    plume, other = [], []
    for s in range(seed * 1_000_000, seed * 1_000_000 + count):
        pic = labelled_image(s, recipe=recipe, heldout=True)
        for c, *box in pic.boxes:
            (plume if CLASSES[c] == "dust" else other).append(measure(pic.image, box).score)
    plume_a, other_a = np.array(plume), np.array(other)
    return {"pictures": count, "recipe": recipe, "plume_boxes": len(plume), "other_boxes": len(other),
            "veto": VETO, "plume_kept_by_veto": round(float((plume_a >= VETO).mean()), 3),
            "other_kept_by_veto": round(float((other_a >= VETO).mean()), 3),
            "strong": STRONG, "plume_strong": round(float((plume_a >= STRONG).mean()), 3),
            "other_strong": round(float((other_a >= STRONG).mean()), 3)}


if __name__ == "__main__":
    import json

    print(json.dumps(calibrate()))
