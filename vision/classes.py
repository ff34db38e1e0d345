"""The detector's classes, in model order: what the default model was trained to find.

The runtime names detections by the model's own metadata (``vision.detector``); this list
is what training writes into a data set and what evaluation scores by, kept here so both
sides share one list and the runtime needs nothing of the lab.
"""
from __future__ import annotations

CLASSES = ("stall", "umbrella", "goods", "scaffold", "hoarding", "steel_shed", "material_pile", "dust")
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
