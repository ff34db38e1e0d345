"""Training-data recipes: what ``training.synth.labelled_image`` renders, as named switches.

A recipe is picked by its number (``patrol train --recipe N``); the renderer asks its
switches and never compares numbers. Pure Python, so the CLI can list the recipes without
importing OpenCV.
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Recipe:
    """How training pictures are drawn and labelled.

    views: the views drawn, one picked uniformly per picture (a view listed twice is drawn
        twice as often); the names ``labelled_image`` knows, e.g. "street", "kerbside",
        "topdown_high", "photo", "clutter", "dust_from_above", "dust_photo".
    plume_label_opacity: a plume's label box covers the part at least this opaque (when
        ``visible_labels`` is off; other objects are boxed at 0.5).
    real_photos: rendered ground gets the grain of real surface photographs, and the photo
        views composite objects onto installed photographs.
    visible_labels: boxes cover only what stays visible in the finished picture (occluded
        parts and plumes that change nothing are not boxed, objects below the model's size
        range are not placed); plumes are as dense as a site's; the lighting (rain among
        day, dusk, night and haze) is chosen first, as a plume's visibility depends on it;
        two photographs are kept for held-out pictures only.
    extra_photo_sets: training photographs besides ``photos.SCENES``: 1 adds EXTRA_SCENES
        (Debian sample pictures), 2 also WALLPAPER_SCENES, 3 also OUTDOOR_SCENES (sky, cloud,
        fog, hills); ``photos.scene_crop``'s ``extra``.
    defocus: half the photo backgrounds are partly or wholly out of focus, and more of them
        carry nothing (blurred, dust-coloured backgrounds are background, not plumes).
    more_plumes: plumes on a quarter of the photo views instead of a seventh.
    site_dust_chance: how often a building site seen from above has a plume.
    cloud_labels: plumes that overlap or touch get one box (``VisibleLabels``' clouds).
    """

    views: tuple[str, ...]
    plume_label_opacity: float = 0.5
    real_photos: bool = False
    visible_labels: bool = False
    extra_photo_sets: int = 0
    defocus: bool = False
    more_plumes: bool = False
    site_dust_chance: float = 0.3
    cloud_labels: bool = False

    @property
    def clutter(self) -> bool:
        """Whether pictures of print, grids and packaged goods (CLUTTER_SCENES) are drawn."""
        return "clutter" in self.views


_STREET = ("street", "street", "street", "portrait", "topdown")
_KERBSIDE = ("street", "street", "kerbside", "kerbside", "kerbside_portrait", "portrait", "topdown")
_PHOTO = ("street", "kerbside", "kerbside", "kerbside_portrait", "portrait", "topdown", "photo", "photo",
          "photo_portrait")
_HIGH = ("street", "kerbside", "kerbside", "kerbside_portrait", "portrait", "topdown_high", "site_from_above",
         "photo", "photo", "photo_portrait")
_MORE_PHOTO = ("street", "kerbside", "kerbside", "kerbside_portrait", "portrait", "topdown_high", "site_from_above",
               "photo", "photo", "photo", "photo_portrait")
_MORE_DRONE = ("street", "kerbside", "kerbside", "kerbside_portrait", "portrait", "topdown_high", "topdown_high",
               "site_from_above", "site_from_above", "photo", "photo", "photo", "photo_portrait")
_MORE_DRONE_PHOTO = ("street", "kerbside", "kerbside", "kerbside_portrait", "portrait", "topdown_high",
                     "topdown_high", "site_from_above", "site_from_above", "photo", "photo", "photo", "photo",
                     "photo_portrait")
_CLUTTER = _MORE_DRONE_PHOTO + ("clutter",)
_DUST_FROM_ABOVE = _CLUTTER + ("dust_from_above", "dust_from_above")
_DUST_PHOTO = _DUST_FROM_ABOVE + ("dust_photo", "dust_photo")


def _table() -> dict[int, Recipe]:
    r: dict[int, Recipe] = {1: Recipe(views=_STREET)}
    r[2] = replace(r[1], views=_KERBSIDE, plume_label_opacity=0.25)
    r[3] = replace(r[2], views=_PHOTO, real_photos=True)
    r[4] = replace(r[3], visible_labels=True)
    r[5] = replace(r[4], views=_HIGH)
    r[6] = replace(r[5], extra_photo_sets=1)
    r[7] = replace(r[6], views=_MORE_PHOTO, defocus=True)
    r[8] = replace(r[7], views=_MORE_DRONE, extra_photo_sets=2, site_dust_chance=0.5)
    r[9] = replace(r[8], views=_MORE_DRONE_PHOTO, extra_photo_sets=3, more_plumes=True)
    r[10] = replace(r[9], views=_CLUTTER)
    r[11] = replace(r[10], views=_DUST_FROM_ABOVE)
    r[12] = replace(r[11], views=_DUST_PHOTO)
    r[13] = replace(r[12], cloud_labels=True)
    return r


# The recipes by the number users pass (``--recipe``). A new recipe gets the next number;
# a number, once trained on, keeps its switches, so its pictures can be rendered again.
RECIPES: dict[int, Recipe] = _table()
DEFAULT_RECIPE = 13  # the default model's


def recipe_of(number: int) -> Recipe:
    """The recipe of this number, or a clear error."""
    try:
        return RECIPES[number]
    except KeyError:
        raise ValueError(f"no data recipe {number!r} (known: {', '.join(map(str, sorted(RECIPES)))})") from None
