"""Real photographic material for the renderer: photos and surface textures that ship
inside installed packages (scikit-image's sample data, ultralytics' assets, matplotlib's
sample data; with a recipe's ``extra_photo_sets`` also pictures that Debian packages
ship: sample pictures and the photographs among desktop wallpapers).

Pictures drawn only by code teach the detector that "real-looking" means "background":
the first model fired on bus windows and clothing. Compositing the rendered objects onto
real photographs and texturing the rendered ground with real brick, gravel and grass
photographs gives it real camera statistics on both sides of every box, and the photos
with nothing pasted on them are hard negatives. Nothing is downloaded: a file that is not
installed is simply not used.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

# (package, path inside it). Scenes are colour photographs used as whole backgrounds;
# textures are grey surface photographs used to give rendered ground real grain.
SCENES = (
    ("ultralytics", "assets/bus.jpg"),
    ("ultralytics", "assets/zidane.jpg"),
    ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
    ("skimage", "data/astronaut.png"),
    ("skimage", "data/chelsea.png"),
    ("skimage", "data/coffee.png"),
    ("skimage", "data/rocket.jpg"),
    ("skimage", "data/motorcycle_left.png"),
    ("skimage", "data/motorcycle_right.png"),
)
# Photos kept out of training (recipes with ``visible_labels``), so held-out pictures have
# backgrounds the model has not learnt (indices into SCENES): zidane.jpg (two men in suits) and rocket.jpg.
HELDOUT_SCENES = (1, 6)
# Further installed pictures that no recipe renders from: a camera man outdoors, coins, a
# page of text, cells, a gift box, a clock, the moon, the deep sky, a retina, a stain.
# None shows a violation; with the held-out scenes they are the model's real-picture
# false-alarm check (``patrol eval``).
PROBES = (
    ("skimage", "data/camera.png"), ("skimage", "data/coins.png"), ("skimage", "data/page.png"),
    ("skimage", "data/text.png"), ("skimage", "data/cell.png"), ("skimage", "data/clock_motion.png"),
    ("skimage", "data/moon.png"), ("skimage", "data/hubble_deep_field.jpg"), ("skimage", "data/retina.jpg"),
    ("skimage", "data/ihc.png"), ("matplotlib", "mpl-data/sample_data/Minduka_Present_Blue_Pack.png"),
)
# Extra photo set 1 (``Recipe.extra_photo_sets`` >= 1): more real pictures without a violation for
# the training backgrounds (street and aerial views of a city, a car, people, clutter, cloud over
# a road, sand), from Debian packages (``apt-get install opencv-doc mate-backgrounds``).
# Entries are absolute paths.
_CV = "/usr/share/doc/opencv-doc/examples/data/"
_MATE = "/usr/share/backgrounds/mate/nature/"
EXTRA_SCENES = tuple(("opencv-doc", _CV + f) for f in (
    "aero1.jpg", "building.jpg", "licenseplate_motion.jpg", "basketball1.png", "graf1.png", "board.jpg",
    "messi5.jpg", "fruits.jpg", "box_in_scene.png", "squirrel_cls.jpg", "baboon.jpg", "aloeL.jpg",
    "rubberwhale1.png", "butterfly.jpg", "stuff.jpg")) + tuple(("mate-backgrounds", _MATE + f) for f in (
    "Storm.jpg", "Dune.jpg", "Wood.jpg", "GreenMeadow.jpg"))
# Extra photo set 2 (``Recipe.extra_photo_sets`` >= 2): the photographs among two desktop packages'
# wallpapers (``apt-get install lomiri-wallpapers plasma-workspace-wallpapers``): warm
# out-of-focus tables and leaves, mist over water, a beach from the air, forest paths, grass,
# bark. Unlike every other training picture they are not of a street; they are there for the
# plumes' sake: plumes on real pictures unlike the few the detector had learnt are the ones it
# misses or invents. Abstract and painted wallpapers are left out.
_LOMIRI = "/usr/share/backgrounds/"
_PLASMA = "/usr/share/wallpapers/"
# (in this order: renders draw them by index; Kleiber ships in the 20.04 set, and
# `lomiri-wallpapers` installs both)
WALLPAPER_SCENES = tuple(
    (f"lomiri-wallpapers-{'20.04' if f.startswith('Kleiber') else '16.04'}", _LOMIRI + f) for f in (
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Kleiber_by_Lukas_Baubkus.jpg",
        "Picture_0B_by_freespace.jpg", "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg",
        "aitzgorri_by_Aitzol_Berasategi.jpg", "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg",
        "life_by_Aitzol_Berasategi.jpg", "picosdeeuropa_by_Aitzol_Berasategi.jpg",
        "seeding_by_Clements_Engelhardt.jpg", "sunset_by_Aitzol_Berasategi.jpg")) + tuple(
    ("plasma-workspace-wallpapers", _PLASMA + f) for f in (
        "BytheWater/contents/images/1920x1080.jpg", "ColdRipple/contents/images/1920x1080.jpg",
        "DarkestHour/contents/images/1920x1080.jpg", "EveningGlow/contents/images/1920x1080.jpg",
        "FallenLeaf/contents/images/1920x1080.jpg", "Grey/contents/images/1920x1080.jpg",
        "OneStandsOut/contents/images/1920x1080.jpg", "Path/contents/images/1920x1080.jpg",
        "Volna/contents/images/5120x2880.jpg", "ColorfulCups/contents/images/2560x1600.jpg"))
# ``extra_photo_sets`` 3: the photographs among a third desktop package's wallpapers and scikit-learn's
# two sample pictures (``apt-get install lxqt-themes python3-sklearn``): mountains under
# cloud, sunsets, sky, fog over a field, hills, flowers and leaves out of focus, a pagoda
# above a lake. Sky, cloud and fog are what a plume is seen against, and what must not be
# taken for one. In this order.
_LXQT = "/usr/share/lxqt/wallpapers/"
_SKLEARN = "/usr/lib/python3/dist-packages/sklearn/datasets/images/"
OUTDOOR_SCENES = tuple(("lxqt-themes", _LXQT + f) for f in (
    "Butterfly-Kenneth-Wimer.jpg", "Valendas.png", "after-the-rain.jpg", "appleflower.png", "beam.png",
    "butterfly.png", "cloud.png", "drop.png", "flowers.png", "fog.jpg", "this-is-not-windows.jpg")) + tuple(
    ("python3-sklearn", _SKLEARN + f) for f in ("china.jpg", "flower.jpg"))
# For recipes with the "clutter" view: pictures of paper, print and packaged goods from the
# same OpenCV package (``apt-get install opencv-doc``): pages of text (sharp, defocused,
# shaken), a score, a sudoku grid, a chessboard held up in a room, a biscuit box, playing
# cards, wooden blocks, sweets, an orange, a drawn fish. They are drawn in their own view (``synth``'s "clutter"), half of it
# with nothing pasted on, so that ruled lines are not learnt as scaffold nor printed boxes as
# steel sheds. None of them is a probe (PROBES, EXTRA_PROBES).
CLUTTER_SCENES = tuple(("opencv-doc", _CV + f) for f in (
    "text_defocus.jpg", "text_motion.jpg", "imageTextN.png", "imageTextR.png", "notes.png", "sudoku.png",
    "left01.jpg", "left05.jpg", "left09.jpg", "left13.jpg", "box.png", "cards.png", "blox.jpg",
    "smarties.png", "orange.jpg", "HappyFish.jpg"))
# Wallpapers are up to 6000 px wide; a crop of half the picture or more becomes 640 px, so
# they are kept at this long side (a few MB each instead of tens, in every render process).
WALLPAPER_SIDE = 1920
# ...and the same packages' pictures kept for the false-alarm check only: ordinary streets
# (both Leuven views, so no training picture shows the same street), a house, a city from the
# air (aero3.jpg; aero1.jpg of the same flight trains), an apple, a notebook.
EXTRA_PROBES = tuple(("opencv-doc", _CV + f) for f in (
    "leuvenA.jpg", "leuvenB.jpg", "home.jpg", "aero3.jpg", "apple.jpg", "ela_original.jpg"))
TEXTURES = (("skimage", "data/brick.png"), ("skimage", "data/gravel.png"), ("skimage", "data/grass.png"))


def _package_file(package: str, rel: str) -> Path | None:
    if rel.startswith("/"):  # a Debian package's file
        return Path(rel) if Path(rel).exists() else None
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / rel
    return path if path.exists() else None


def _read(package: str, rel: str) -> np.ndarray | None:
    path = _package_file(package, rel)
    return cv2.imread(str(path), cv2.IMREAD_COLOR) if path else None


@lru_cache(maxsize=None)
def scenes(split: str = "all") -> tuple[np.ndarray, ...]:
    """The installed scene photographs as BGR arrays (empty when none is installed);
    ``split`` is "all", "train" (without HELDOUT_SCENES) or "heldout" (only those)."""
    out = []
    for i, (package, rel) in enumerate(SCENES):
        if (split == "train" and i in HELDOUT_SCENES) or (split == "heldout" and i not in HELDOUT_SCENES):
            continue
        img = _read(package, rel)
        if img is not None:
            out.append(img)
    return tuple(out)


@lru_cache(maxsize=None)
def extra_scenes() -> tuple[np.ndarray, ...]:
    """The installed EXTRA_SCENES as BGR arrays (``extra_photo_sets`` 1 and up, training only)."""
    return tuple(img for img in (_read(p, r) for p, r in EXTRA_SCENES) if img is not None)


def _shrunk(img: np.ndarray | None, side: int) -> np.ndarray | None:
    if img is None or max(img.shape[:2]) <= side:
        return img
    f = side / max(img.shape[:2])
    return cv2.resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), interpolation=cv2.INTER_AREA)


@lru_cache(maxsize=None)
def wallpaper_scenes() -> tuple[np.ndarray, ...]:
    """The installed WALLPAPER_SCENES as BGR arrays, long side at most WALLPAPER_SIDE
    (``extra_photo_sets`` 2 and up, training only)."""
    return tuple(img for img in (_shrunk(_read(p, r), WALLPAPER_SIDE) for p, r in WALLPAPER_SCENES)
                 if img is not None)


@lru_cache(maxsize=None)
def outdoor_scenes() -> tuple[np.ndarray, ...]:
    """The installed OUTDOOR_SCENES as BGR arrays, long side at most WALLPAPER_SIDE
    (``extra_photo_sets`` 3, training only)."""
    return tuple(img for img in (_shrunk(_read(p, r), WALLPAPER_SIDE) for p, r in OUTDOOR_SCENES)
                 if img is not None)


@lru_cache(maxsize=None)
def clutter_scenes() -> tuple[np.ndarray, ...]:
    """The installed CLUTTER_SCENES as BGR arrays (the "clutter" view, training only)."""
    return tuple(img for img in (_read(p, r) for p, r in CLUTTER_SCENES) if img is not None)


def _training_entries(extra: int, clutter: bool) -> list[tuple[str, str]]:
    entries = [e for i, e in enumerate(SCENES) if i not in HELDOUT_SCENES]
    entries += list(EXTRA_SCENES) * (extra >= 1) + list(WALLPAPER_SCENES) * (extra >= 2)
    return entries + list(OUTDOOR_SCENES) * (extra >= 3) + list(CLUTTER_SCENES) * clutter


def missing_training_photos(extra: int, clutter: bool = False) -> list[str]:
    """File names of the training photographs that are not installed here, with ``extra`` as
    in :func:`scene_crop` (and ``clutter`` for a recipe with the clutter view): the rendered data then differs from the model card's (it still
    renders, from fewer pictures)."""
    return [Path(rel).name for package, rel in _training_entries(extra, clutter) if _package_file(package, rel) is None]


def missing_training_packages(extra: int, clutter: bool = False) -> list[str]:
    """The Debian packages that would install those photographs (for the warning's hint)."""
    return sorted({package for package, rel in _training_entries(extra, clutter)
                   if rel.startswith("/") and _package_file(package, rel) is None})


def probe_entries() -> list[tuple[str, str]]:
    """Every picture of the false-alarm check, installed or not: the held-out scenes, then
    PROBES and EXTRA_PROBES."""
    return [SCENES[i] for i in HELDOUT_SCENES] + list(PROBES) + list(EXTRA_PROBES)


def missing_probes() -> list[str]:
    """File names of the probe pictures that are not installed here (the false-alarm check
    then runs on fewer pictures: ``apt-get install opencv-doc`` adds EXTRA_PROBES)."""
    return [Path(rel).name for package, rel in probe_entries() if _package_file(package, rel) is None]


def heldout_photos() -> list[tuple[str, np.ndarray]]:
    """(file name, BGR picture) of the installed real pictures training never uses (the
    probe entries): none shows a violation, so the model must report no event."""
    out = []
    for package, rel in probe_entries():
        img = _read(package, rel)
        if img is not None:
            out.append((Path(rel).name, img))
    return out


@lru_cache(maxsize=None)
def textures() -> tuple[np.ndarray, ...]:
    """Surface photographs as zero-mean float32 grain (grey), ready to add to a colour."""
    out = []
    for package, rel in TEXTURES:
        path = _package_file(package, rel)
        img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) if path else None
        if img is not None:
            g = img.astype(np.float32)
            out.append((g - g.mean()) / (g.std() + 1e-6))
    return tuple(out)


def scene_crop(rng: np.random.Generator, w: int, h: int, split: str = "all",
               extra: int = 0) -> np.ndarray | None:
    """A random crop of a random photo of ``split``, flipped and colour-shifted, resized to
    w×h. For training, ``extra`` 1 (or True) also draws from EXTRA_SCENES, 2 from those and
    WALLPAPER_SCENES, 3 from those and OUTDOOR_SCENES (CLUTTER_SCENES have their own view,
    :func:`clutter_crop`)."""
    pool = scenes(split)
    if extra and split == "train":
        pool = pool + extra_scenes() + (wallpaper_scenes() if extra >= 2 else ())
        pool = pool + (outdoor_scenes() if extra >= 3 else ())
    return _crop(rng, pool, w, h)


def clutter_crop(rng: np.random.Generator, w: int, h: int, split: str = "train") -> np.ndarray | None:
    """Like :func:`scene_crop`, from CLUTTER_SCENES (the "clutter" view). They train
    only: for held-out pictures (and when none is installed) the crop is of ``split``'s scenes."""
    pool = clutter_scenes() if split == "train" else ()
    return _crop(rng, pool, w, h) if pool else scene_crop(rng, w, h, split)


def _crop(rng: np.random.Generator, pool: tuple[np.ndarray, ...], w: int, h: int) -> np.ndarray | None:
    if not pool:
        return None
    src = pool[int(rng.integers(len(pool)))]
    H, W = src.shape[:2]
    aspect = w / h
    # crop between half and all of the photo, at the target aspect
    ch = int(H * rng.uniform(0.5, 1.0))
    cw = int(min(W, ch * aspect))
    ch = int(min(H, cw / aspect))
    y, x = int(rng.integers(0, H - ch + 1)), int(rng.integers(0, W - cw + 1))
    crop = cv2.resize(src[y:y + ch, x:x + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    gain = rng.uniform(0.8, 1.2, 3).astype(np.float32)
    return np.clip(crop.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def grain(rng: np.random.Generator, w: int, h: int, amp: float) -> np.ndarray | None:
    """A w×h patch of real surface grain scaled to ``amp`` grey levels (None: no textures)."""
    pool = textures()
    if not pool:
        return None
    src = pool[int(rng.integers(len(pool)))]
    scale = rng.uniform(0.4, 1.2)
    tile = cv2.resize(src, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    reps = (h // tile.shape[0] + 2, w // tile.shape[1] + 2)
    big = np.tile(tile, reps)
    y, x = int(rng.integers(0, tile.shape[0])), int(rng.integers(0, tile.shape[1]))
    return big[y:y + h, x:x + w] * amp
