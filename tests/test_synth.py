"""The renderer's labels: reproducible from a seed, and only what a camera would see."""
from dataclasses import replace

import cv2
import numpy as np
import pytest

from training import photos
from training.recipes import RECIPES
from training.synth import CLASS_ID, labelled_image, sprite_dust, thicken
from training.visibility import LIGHTING_CONTRAST, VisibleLabels

DUST = CLASS_ID["dust"]


def _block(value, h=40, w=40):
    return np.full((h, w, 3), value, np.uint8), np.ones((h, w), np.float32)


def test_a_picture_is_a_function_of_its_seed():
    a, b, c = (labelled_image(s, recipe=4) for s in (41, 41, 42))
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes
    assert not np.array_equal(a.image, c.image)


def test_an_object_hidden_behind_a_nearer_one_loses_its_label():
    canvas = np.zeros((100, 200, 3), np.uint8)
    labels = VisibleLabels()
    labels.paste(canvas, _block(200), 10, 10, cls=0)
    labels.paste(canvas, _block(90, 60, 60), 0, 0, cls=None)  # a car in front, covering it all
    assert labels.boxes() == []


def test_a_half_hidden_object_is_boxed_by_its_visible_part():
    canvas = np.zeros((100, 200, 3), np.uint8)
    labels = VisibleLabels()
    labels.paste(canvas, _block(200), 100, 10, cls=3)
    labels.paste(canvas, _block(90, 40, 20), 120, 10, cls=None)  # covers its right half
    assert labels.boxes() == [(3, 100, 10, 120, 50)]


def test_a_plume_the_colour_of_its_background_is_not_labelled_and_over_a_contrast_it_is():
    rng = np.random.default_rng(0)
    img, alpha = sprite_dust(rng, 120, 120, density=0.9)
    plume = img, thicken(alpha, 2.0)
    tan = plume[0].reshape(-1, 3).mean(axis=0).astype(np.uint8)
    same = np.tile(tan, (200, 300, 1))
    labels = VisibleLabels(dust_class=DUST)
    labels.paste(same, plume, 50, 40, cls=DUST)
    assert labels.boxes() == []

    dark = np.full((200, 300, 3), 40, np.uint8)
    labels = VisibleLabels(dust_class=DUST)
    labels.paste(dark, plume, 50, 40, cls=DUST)
    [(cls, x1, y1, x2, y2)] = labels.boxes()
    assert cls == DUST and 50 <= x1 < x2 <= 170 and 40 <= y1 < y2 <= 160
    assert (x2 - x1) * (y2 - y1) > 0.2 * 120 * 120  # the body of the plume, not a speck


def test_a_plume_visible_by_day_can_be_invisible_at_night():
    rng = np.random.default_rng(3)
    img, alpha = sprite_dust(rng, 120, 120, density=0.5)
    plume = img, thicken(alpha, 2.0)
    grey = np.full((200, 300, 3), 90, np.uint8)
    day, night = VisibleLabels(dust_class=DUST), VisibleLabels(dust_class=DUST, contrast=LIGHTING_CONTRAST["night"])
    day.paste(grey.copy(), plume, 50, 40, cls=DUST)
    night.paste(grey.copy(), plume, 50, 40, cls=DUST)
    assert len(day.boxes()) == 1 and night.boxes() == []


def test_a_thin_veil_is_not_labelled_as_a_dust_cloud():
    rng = np.random.default_rng(5)
    img, alpha = sprite_dust(rng, 120, 120, density=0.9)
    black = np.zeros((200, 300, 3), np.uint8)  # the veil changes a dark coat by many grey levels
    labels = VisibleLabels(dust_class=DUST)
    labels.paste(black, (img, alpha * 0.3), 50, 40, cls=DUST)
    assert labels.boxes() == []


def _three_plumes(clouds: bool) -> list:
    """Two plumes overlapping (one cloud), a third far off, a stall between them."""
    rng = np.random.default_rng(7)
    img, alpha = sprite_dust(rng, 80, 80, density=0.9)
    plume = img, thicken(alpha, 2.0)
    labels = VisibleLabels(dust_class=DUST, clouds=clouds)
    canvas = np.full((200, 400, 3), 40, np.uint8)
    labels.paste(canvas, plume, 10, 20, cls=DUST)
    labels.paste(canvas, _block(200, 30, 30), 150, 100, cls=0)
    labels.paste(canvas, plume, 30, 50, cls=DUST)  # overlaps the first
    labels.paste(canvas, plume, 300, 20, cls=DUST)  # far from both
    return labels.boxes()


def test_plumes_seen_as_one_cloud_get_one_box_with_cloud_labels():
    each = _three_plumes(clouds=False)
    assert [b[0] for b in each] == [DUST, 0, DUST, DUST]
    clouds = _three_plumes(clouds=True)
    assert [b[0] for b in clouds] == [DUST, 0, DUST]  # the cloud where its first plume was pasted
    (_, x1, y1, x2, y2), first, second = clouds[0], each[0], each[2]
    assert (x1, y1, x2, y2) == (min(first[1], second[1]), min(first[2], second[2]),
                                max(first[3], second[3]), max(first[4], second[4]))
    assert clouds[1] == each[1] and clouds[2] == each[3]  # the stall and the lone plume keep their boxes


def test_cloud_labels_change_only_the_labels_of_touching_plumes():
    """The picture is the same either way; recipe 13 labels by cloud, the recipes before it by plume."""
    assert RECIPES[13] == replace(RECIPES[12], cloud_labels=True)
    merged = 0
    for s in range(60):
        each = labelled_image(900 + s, recipe=12, view="dust_photo")
        cloud = labelled_image(900 + s, recipe=12, view="dust_photo", clouds=True)
        assert np.array_equal(each.image, cloud.image)
        assert cloud.boxes == labelled_image(900 + s, recipe=13, view="dust_photo").boxes
        assert len(cloud.boxes) <= len(each.boxes)
        assert [b for b in cloud.boxes if b[0] != DUST] == [b for b in each.boxes if b[0] != DUST]
        merged += len(cloud.boxes) < len(each.boxes)
    assert merged >= 5  # photographs with 1-3 plumes often show them as one cloud


def test_labelled_objects_are_never_below_the_models_size_range():
    sides = [min(x2 - x1, y2 - y1) for s in range(60) for _, x1, y1, x2, y2 in labelled_image(700 + s, recipe=4).boxes]
    assert sides and min(sides) >= VisibleLabels().min_side


@pytest.mark.skipif(len(photos.scenes()) < len(photos.SCENES), reason="not every scene photo is installed")
def test_held_out_photographs_are_kept_out_of_training_pictures():
    train, heldout = photos.scenes("train"), photos.scenes("heldout")
    assert len(train) + len(heldout) == len(photos.SCENES) and heldout
    held = {h.tobytes()[:4096] for h in heldout}
    assert not any(t.tobytes()[:4096] in held for t in train)
    # a training picture's photo background is never one of the held-out photographs
    picked = []
    original = photos.scenes

    def spy(split="all"):
        picked.append(split)
        return original(split)

    photos.scenes = spy
    try:
        for s in range(40):
            labelled_image(s, view="photo", recipe=4)
            labelled_image(s, view="photo", recipe=4, heldout=True)
    finally:
        photos.scenes = original
    assert picked.count("train") == 40 and picked.count("heldout") == 40


def test_rain_darkens_the_scene_and_streaks_it():
    from training.synth import lighting

    flat = np.full((384, 640, 3), 120, np.uint8)
    day = lighting(flat, np.random.default_rng(1), "day").astype(np.float32)
    rain = lighting(flat, np.random.default_rng(1), "rain").astype(np.float32)
    assert day.std() < 1 and np.median(rain) < np.median(day)
    streaks = rain[..., 0] - np.median(rain[..., 0])
    assert 0.005 < (streaks > 10).mean() < 0.2  # thin lines, not a veil


def test_building_sites_from_above_show_construction_and_never_vending():
    vending = {CLASS_ID[n] for n in ("stall", "umbrella", "goods")}
    construction = {CLASS_ID[n] for n in ("scaffold", "hoarding", "steel_shed", "material_pile")}
    labels = [b[0] for s in range(30) for b in labelled_image(500 + s, recipe=5, view="site_from_above").boxes]
    assert not vending & set(labels)
    assert sum(c in construction for c in labels) >= 30  # most sites keep two or more objects in the size range


def test_recipe_five_sees_the_ground_from_higher_up_than_recipe_four():
    def median_short_side(recipe, view):
        sides = [min(b[3] - b[1], b[4] - b[2]) for s in range(40)
                 for b in labelled_image(700 + s, recipe=recipe, view=view).boxes if b[0] == CLASS_ID["steel_shed"]]
        return float(np.median(sides))

    assert median_short_side(5, "topdown_high") < median_short_side(4, "topdown")


def test_recipe_six_holds_out_recipe_fives_pictures_byte_for_byte():
    """Recipe 6 only widens the training photographs, so its held-out pictures are recipe 5's."""
    for s in range(12):
        five, six = labelled_image(900 + s, recipe=5, heldout=True), labelled_image(900 + s, recipe=6, heldout=True)
        assert np.array_equal(five.image, six.image) and five.boxes == six.boxes


def test_extra_photographs_train_and_the_probe_pictures_never_do():
    paths = lambda entries: {rel for _, rel in entries}  # noqa: E731
    training = paths(photos.SCENES) | paths(photos.EXTRA_SCENES)
    probes = paths(photos.PROBES) | paths(photos.EXTRA_PROBES)
    assert not training & probes
    # the same street seen from another side would not be a fair probe: both Leuven views probe
    assert {p for p in probes if "leuven" in p} and not {p for p in training if "leuven" in p}


@pytest.mark.parametrize("recipe, extra", [(5, 0), (6, 1), (7, 1), (8, 2), (9, 3), (10, 3)])
def test_each_recipe_trains_on_its_own_photographs_and_holds_out_the_same_two(monkeypatch, recipe, extra):
    """``extra`` as in ``photos.scene_crop``: 1 EXTRA_SCENES, 2 also WALLPAPER_SCENES, 3 also
    OUTDOOR_SCENES (each widens only the training pool: the tests below)."""
    drawn = []
    original = photos.scene_crop
    monkeypatch.setattr(photos, "scene_crop", lambda rng, w, h, split="all", extra=0: drawn.append((split, extra))
                        or original(rng, w, h, split, extra))
    for s in range(3):
        labelled_image(s, view="photo", recipe=recipe)
        labelled_image(s, view="photo", recipe=recipe, heldout=True)
    assert drawn == [("train", extra), ("heldout", extra)] * 3


def test_the_extra_photographs_widen_only_the_training_pool(monkeypatch):
    marker = np.full((50, 80, 3), 7, np.uint8)
    monkeypatch.setattr(photos, "extra_scenes", lambda: (marker,) * 200)  # nearly always drawn if in the pool
    rng = np.random.default_rng(0)
    train = [photos.scene_crop(rng, 64, 40, "train", extra=True) for _ in range(5)]
    held = [photos.scene_crop(rng, 64, 40, "heldout", extra=True) for _ in range(5)]
    flat = lambda img: img is not None and img.reshape(-1, 3).std(axis=0).max() == 0  # noqa: E731 (one colour)
    assert sum(map(flat, train)) >= 4 and not any(map(flat, held))


def _sharpness(img):
    return cv2.Laplacian(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), cv2.CV_32F).var()


def test_a_defocused_photograph_is_soft_wholly_or_along_a_depth_of_field():
    from training.synth import _defocus
    photo = photos.scenes("train")[0]
    whole = partial = 0
    for s in range(12):
        out = _defocus(photo, np.random.default_rng(s))
        assert out.shape == photo.shape and out.dtype == np.uint8
        assert _sharpness(out) < 0.7 * _sharpness(photo)
        h, w = photo.shape[:2]
        parts = [out[:h // 2, :w // 2], out[:h // 2, w // 2:], out[h // 2:, :w // 2], out[h // 2:, w // 2:]]
        originals = [photo[:h // 2, :w // 2], photo[:h // 2, w // 2:], photo[h // 2:, :w // 2], photo[h // 2:, w // 2:]]
        kept = [_sharpness(p) / _sharpness(o) for p, o in zip(parts, originals)]
        whole += max(kept) < 0.5
        partial += max(kept) > 0.6 and min(kept) < 0.5  # one corner still in focus, another not
    assert whole >= 2 and partial >= 2


def test_recipe_seven_defocuses_about_half_its_photographs_and_older_recipes_none(monkeypatch):
    from training import synth
    calls = []
    original = synth._defocus
    monkeypatch.setattr(synth, "_defocus", lambda img, rng: calls.append(1) or original(img, rng))
    for s in range(30):
        labelled_image(s, view="photo", recipe=6)
    assert not calls
    for s in range(30):
        labelled_image(s, view="photo", recipe=7)
    assert 8 <= len(calls) <= 22


def test_the_wallpapers_widen_only_the_training_pool_and_are_never_probes(monkeypatch):
    paths = lambda entries: {rel for _, rel in entries}  # noqa: E731
    assert not paths(photos.WALLPAPER_SCENES) & (paths(photos.PROBES) | paths(photos.EXTRA_PROBES))
    marker = np.full((50, 80, 3), 7, np.uint8)
    monkeypatch.setattr(photos, "wallpaper_scenes", lambda: (marker,) * 200)
    rng = np.random.default_rng(0)
    flat = lambda img: img is not None and img.reshape(-1, 3).std(axis=0).max() == 0  # noqa: E731 (one colour)
    assert sum(flat(photos.scene_crop(rng, 64, 40, "train", extra=2)) for _ in range(5)) >= 4
    assert not any(flat(photos.scene_crop(rng, 64, 40, "train", extra=1)) for _ in range(5))  # recipes 6-7
    assert not any(flat(photos.scene_crop(rng, 64, 40, "heldout", extra=2)) for _ in range(5))


def test_a_large_wallpaper_is_kept_at_a_working_size():
    from training.photos import WALLPAPER_SIDE, _shrunk
    big = np.random.default_rng(0).integers(0, 255, (3000, 4500, 3), dtype=np.uint8)
    small = _shrunk(big, WALLPAPER_SIDE)
    assert small.shape == (1280, 1920, 3)
    assert _shrunk(small[:800, :1000], WALLPAPER_SIDE).shape == (800, 1000, 3)  # smaller ones are left alone


def test_recipe_eight_shows_the_drone_more_often_and_more_of_its_sites_with_dust():
    drone = ("topdown", "topdown_high", "site_from_above")
    share = lambda r: sum(v in drone for v in RECIPES[r].views) / len(RECIPES[r].views)  # noqa: E731
    assert share(8) > 1.5 * share(7)
    with_dust = {r: sum(any(b[0] == DUST for b in labelled_image(600 + s, recipe=r, view="site_from_above").boxes)
                        for s in range(60)) for r in (7, 8)}
    assert with_dust[8] > with_dust[7] + 5


def test_only_recipe_eight_draws_more_plumes_on_building_sites():
    """Recipes 5-7 render a site from above byte for byte alike (models are compared on
    recipe 5's held-out pictures)."""
    import hashlib
    digest = lambda pic: (hashlib.md5(pic.image.tobytes()).hexdigest(), pic.boxes)  # noqa: E731
    for s in range(3):
        pics = [labelled_image(40 + s, recipe=r, view="site_from_above", heldout=True) for r in (5, 6, 7, 8)]
        assert digest(pics[0]) == digest(pics[1]) == digest(pics[2])
    assert any(digest(labelled_image(40 + s, recipe=5, view="site_from_above")) !=
               digest(labelled_image(40 + s, recipe=8, view="site_from_above")) for s in range(10))


def test_the_view_of_a_picture_is_known_from_its_seed_alone(monkeypatch):
    """``patrol eval`` splits held-out plumes by view without storing anything per picture."""
    from training import synth
    seen = []
    original = synth._photo_image
    monkeypatch.setattr(synth, "_photo_image", lambda *a, **k: seen.append(1) or original(*a, **k))
    for recipe in (5, 8, 10):
        for s in range(40):
            seen.clear()
            labelled_image(s, recipe=recipe)
            assert bool(seen) == (synth.view_of(s, recipe) in synth.PHOTO_VIEWS)
    assert {synth.view_of(s, 8) for s in range(60)} == set(RECIPES[8].views)


def test_training_names_the_photographs_of_its_recipe_that_are_not_installed(monkeypatch):
    """A missing package does not stop training, but the data then differs from the model card's."""
    gone = ("lomiri-wallpapers-16.04", "/nonexistent/Bridge_by_Sander_Klootwijk.jpg")
    monkeypatch.setattr(photos, "WALLPAPER_SCENES", (gone,) + photos.WALLPAPER_SCENES[1:])
    from training.synth import missing_photos
    assert "Bridge_by_Sander_Klootwijk.jpg" in missing_photos(8)
    assert "Bridge_by_Sander_Klootwijk.jpg" not in missing_photos(7)  # recipe 7 never drew it
    assert missing_photos(2) == []  # rendered only, no photographs
    monkeypatch.setattr(photos, "OUTDOOR_SCENES", (("lxqt-themes", "/nonexistent/fog.jpg"),))
    assert "fog.jpg" in missing_photos(9) and "fog.jpg" not in missing_photos(8)
    monkeypatch.setattr(photos, "CLUTTER_SCENES", (("opencv-doc", "/nonexistent/sudoku.png"),))
    assert "sudoku.png" in missing_photos(10) and "sudoku.png" not in missing_photos(9)
    from training.synth import missing_photo_packages  # what the warning tells to install
    assert missing_photo_packages(9) == ["lomiri-wallpapers-16.04", "lxqt-themes"]
    assert missing_photo_packages(8) == ["lomiri-wallpapers-16.04"] and missing_photo_packages(2) == []
    held = ("ultralytics", "assets/no-such-heldout.jpg")  # a held-out photograph never trains
    monkeypatch.setattr(photos, "SCENES", tuple(held if i in photos.HELDOUT_SCENES else e
                                                for i, e in enumerate(photos.SCENES)))
    assert "no-such-heldout.jpg" not in missing_photos(8)


def test_the_outdoor_photographs_widen_only_the_training_pool_and_are_never_probes(monkeypatch):
    paths = lambda entries: {rel for _, rel in entries}  # noqa: E731
    assert not paths(photos.OUTDOOR_SCENES) & (paths(photos.PROBES) | paths(photos.EXTRA_PROBES))
    marker = np.full((50, 80, 3), 7, np.uint8)
    monkeypatch.setattr(photos, "outdoor_scenes", lambda: (marker,) * 2000)  # nearly always drawn if in the pool
    rng = np.random.default_rng(0)
    flat = lambda img: img is not None and img.reshape(-1, 3).std(axis=0).max() == 0  # noqa: E731 (one colour)
    assert sum(flat(photos.scene_crop(rng, 64, 40, "train", extra=3)) for _ in range(5)) >= 4
    assert not any(flat(photos.scene_crop(rng, 64, 40, "train", extra=2)) for _ in range(5))  # recipe 8
    assert not any(flat(photos.scene_crop(rng, 64, 40, "heldout", extra=3)) for _ in range(5))


def test_recipe_nine_puts_plumes_on_more_photographs():
    with_dust = {r: sum(any(b[0] == DUST for b in labelled_image(700 + s, recipe=r, view="photo").boxes)
                        for s in range(80)) for r in (8, 9)}
    assert with_dust[9] > with_dust[8] + 4


def test_the_clutter_pictures_train_only_in_their_own_view_and_are_never_probes(monkeypatch):
    """Recipe 10's pictures of print and goods: hard negatives, drawn by the "clutter" view
    only (not by the other photographs' views), never for held-out pictures."""
    paths = lambda entries: {rel for _, rel in entries}  # noqa: E731
    assert not paths(photos.CLUTTER_SCENES) & (paths(photos.PROBES) | paths(photos.EXTRA_PROBES))
    assert not paths(photos.CLUTTER_SCENES) & paths(photos.EXTRA_SCENES + photos.WALLPAPER_SCENES
                                                     + photos.OUTDOOR_SCENES)
    marker = np.full((50, 80, 3), 7, np.uint8)
    monkeypatch.setattr(photos, "clutter_scenes", lambda: (marker,))
    flat = lambda img: img is not None and img.reshape(-1, 3).std(axis=0).max() == 0  # noqa: E731 (one colour)
    rng = np.random.default_rng(0)
    assert all(flat(photos.clutter_crop(rng, 64, 40, "train")) for _ in range(3))
    assert not any(flat(photos.clutter_crop(rng, 64, 40, "heldout")) for _ in range(3))
    assert not any(flat(photos.scene_crop(rng, 64, 40, "train", extra=3)) for _ in range(20))


def test_recipe_ten_shows_clutter_in_one_view_of_fifteen_half_of_it_without_objects():
    from training import synth
    assert RECIPES[10].views[:-1] == RECIPES[9].views and RECIPES[10].views[-1] == "clutter"
    assert "clutter" not in {v for r in range(1, 10) for v in RECIPES[r].views}
    drawn = []
    original = synth._scene_names
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth, "_scene_names", lambda rng, kinds, n: drawn.append(list(kinds)) or original(rng, kinds, n))
        empty = {v: sum(not labelled_image(500 + s, recipe=10, view=v).boxes for s in range(40))
                 for v in ("clutter", "photo")}
    share = {v: np.mean([k.count("none") / len(k) for k in ks]) for v, ks in (("clutter", drawn[:40]),
                                                                             ("photo", drawn[40:]))}
    assert share["clutter"] >= 0.5 > share["photo"] and empty["clutter"] > empty["photo"]


def test_recipe_eleven_shows_the_drone_dust_over_many_plain_roofs_and_nothing_else():
    from training import synth
    assert RECIPES[11].views[:-2] == RECIPES[10].views and RECIPES[11].views[-2:] == ("dust_from_above",) * 2
    assert "dust_from_above" not in {v for r in range(1, 11) for v in RECIPES[r].views}
    roofs = []
    original = synth.topdown_background
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth, "topdown_background", lambda *a, **k: roofs.append(k.get("extra_roofs", 0)) or original(*a, **k))
        pics = [labelled_image(700 + s, recipe=11, view="dust_from_above") for s in range(30)]
        labelled_image(700, recipe=11, view="site_from_above")
    assert min(roofs[:30]) >= 3 and roofs[30] == 0  # only this view adds roofs
    assert {b[0] for p in pics for b in p.boxes} == {DUST}
    assert 12 <= sum(bool(p.boxes) for p in pics) <= 28  # a plume in most, not all


def test_recipe_twelve_adds_photographs_with_plumes_and_photographs_with_look_alikes_only():
    """Recipe 12's "dust_photo" view: a training photograph with plumes on most, steam and
    other look-alikes only on the rest, and no other class."""
    from training import synth
    assert RECIPES[12].views[:-2] == RECIPES[11].views and RECIPES[12].views[-2:] == ("dust_photo",) * 2
    assert "dust_photo" in synth.PHOTO_VIEWS
    drawn = []
    original = synth._scene_names
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(synth, "_scene_names", lambda rng, kinds, n: drawn.append(list(kinds)) or original(rng, kinds, n))
        pics = [labelled_image(900 + s, recipe=12, view="dust_photo") for s in range(40)]
    assert all(set(k) <= {"dust", "none"} for k in drawn) and len(drawn) == 40
    assert {b[0] for p in pics for b in p.boxes} == {DUST}
    assert 20 <= sum(bool(p.boxes) for p in pics) <= 36  # most carry a visible plume, not all
    # the rest of recipe 12 renders as recipe 11 does: same seed and view, same picture
    a, b = labelled_image(77, recipe=11, view="photo"), labelled_image(77, recipe=12, view="photo")
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes


def test_extra_roofs_are_plain_roofs_drawn_after_the_usual_ground():
    """With no extra roofs the drone's ground is drawn as before (the held-out drone clips and
    pictures use it); extra roofs cover a part of it (the grain laid over the whole picture
    last differs by a few grey levels everywhere)."""
    from training.synth import topdown_background
    plain = topdown_background(np.random.default_rng(3), 320, 200)
    again = topdown_background(np.random.default_rng(3), 320, 200, extra_roofs=0)
    more = topdown_background(np.random.default_rng(3), 320, 200, extra_roofs=6)
    assert np.array_equal(plain, again)
    changed = np.abs(more.astype(int) - plain.astype(int)).max(axis=2) > 25
    assert 0.02 < changed.mean() < 0.6


def test_the_cli_offers_every_recipe():
    from patrol.cli import RECIPE_NUMBERS
    assert RECIPE_NUMBERS == sorted(RECIPES)
