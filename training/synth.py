"""Procedural renderer of city scenes with labelled violations.

No data set of Chinese street vending, steel-sheet sheds or site dust can be
shipped, so the project draws its own: street views (side-on, for fixed,
vehicle and phone cameras) and top-down views (drone), with the objects the
detector must find and look-alikes it must not. The same sprites feed the
training set and the sample videos, and every picture is reproducible from a
seed.

What is drawn and how it is labelled is chosen by a data recipe
(``training.recipes.Recipe``, picked by number). A sprite is a BGR patch plus a float
alpha mask; its label box is the tight box around alpha > 0.5 (a plume's at the recipe's
``plume_label_opacity``), or, with the recipe's ``visible_labels``,
``training.visibility.VisibleLabels`` boxes only what stays visible in the finished
picture (``Labelled.place`` chooses).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from training import photos
from training.recipes import Recipe, recipe_of
from training.visibility import LIGHTING_CONTRAST, VisibleLabels, blend, mask_box
from vision.classes import CLASS_ID, CLASSES

Sprite = tuple[np.ndarray, np.ndarray]  # (bgr uint8 HxWx3, alpha float32 HxW in 0..1)


def _rgb(rng: np.random.Generator, base: tuple[int, int, int], spread: int = 25) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-spread, spread + 1), 0, 255)) for c in base)


def _noise_texture(rng: np.random.Generator, h: int, w: int, scale: float = 8.0, amp: float = 18.0) -> np.ndarray:
    """Smooth value noise: what makes flat drawings look like surfaces."""
    small = rng.normal(0, 1, (max(2, int(h / scale)), max(2, int(w / scale)))).astype(np.float32)
    big = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    fine = rng.normal(0, 0.35, (h, w)).astype(np.float32)
    return (big + fine) * amp


def _texture(img: np.ndarray, rng: np.random.Generator, amp: float = 14.0, scale: float = 6.0) -> np.ndarray:
    n = _noise_texture(rng, img.shape[0], img.shape[1], scale, amp)
    return np.clip(img.astype(np.float32) + n[..., None], 0, 255).astype(np.uint8)


def _canvas(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((h, w, 3), np.uint8), np.zeros((h, w), np.float32)


# --- violation sprites (side view) -------------------------------------------------------


def sprite_stall(rng, w: int, h: int) -> Sprite:
    """A vendor's cart or table with goods heaped on top (and wheels, sometimes)."""
    img, a = _canvas(h, w)
    body = _rgb(rng, [(60, 90, 140), (40, 40, 160), (150, 150, 150), (30, 110, 60)][rng.integers(4)], 30)
    top = int(h * rng.uniform(0.35, 0.5))
    bottom = int(h * 0.85)
    cv2.rectangle(img, (0, top), (w - 1, bottom), body, -1)
    cv2.rectangle(a, (0, top), (w - 1, bottom), 1.0, -1)
    cv2.rectangle(img, (0, top), (w - 1, top + max(2, h // 20)), _rgb(rng, (200, 200, 200)), -1)
    # legs or wheels
    if rng.random() < 0.5:
        r = max(3, h // 9)
        for cx in (r + 2, w - r - 3):
            cv2.circle(img, (cx, h - r - 1), r, (30, 30, 30), -1)
            cv2.circle(a, (cx, h - r - 1), r, 1.0, -1)
    else:
        for x in (2, w - 6):
            cv2.rectangle(img, (x, bottom), (x + 4, h - 1), (50, 50, 50), -1)
            cv2.rectangle(a, (x, bottom), (x + 4, h - 1), 1.0, -1)
    # goods heaped on the top: fruit, boxes, bags in many colours
    for _ in range(int(rng.integers(8, 20))):
        cx, cy = int(rng.uniform(0.05, 0.95) * w), int(rng.uniform(0.15, 0.95) * top)
        r = max(2, int(rng.uniform(0.04, 0.1) * w))
        col = tuple(int(c) for c in rng.integers(30, 255, 3))
        if rng.random() < 0.6:
            cv2.circle(img, (cx, cy), r, col, -1)
            cv2.circle(a, (cx, cy), r, 1.0, -1)
        else:
            cv2.rectangle(img, (cx - r, cy - r), (cx + r, top), col, -1)
            cv2.rectangle(a, (cx - r, cy - r), (cx + r, top), 1.0, -1)
    return _texture(img, rng, 10), a


def sprite_umbrella(rng, w: int, h: int, topdown: bool = False) -> Sprite:
    """A striped vendor umbrella: a dome on a pole (or a disc from above)."""
    img, a = _canvas(h, w)
    cols = [_rgb(rng, c, 20) for c in [(40, 40, 200), (240, 240, 240), (40, 160, 230), (180, 100, 30), (40, 180, 60)]]
    c1, c2 = cols[rng.integers(len(cols))], cols[rng.integers(len(cols))]
    if topdown:
        cx, cy, r = w // 2, h // 2, min(w, h) // 2 - 1
        n = int(rng.integers(6, 12))
        for i in range(n):
            col = c1 if i % 2 == 0 else c2
            cv2.ellipse(img, (cx, cy), (r, r), 0, 360 * i / n, 360 * (i + 1) / n, col, -1)
        cv2.circle(a, (cx, cy), r, 1.0, -1)
        return _texture(img, rng, 8), a
    dome_h = int(h * 0.45)
    n = int(rng.integers(5, 9))
    for i in range(n):
        col = c1 if i % 2 == 0 else c2
        cv2.ellipse(img, (w // 2, dome_h), (w // 2 - 1, dome_h - 1), 0, 180 + 180 * i / n, 180 + 180 * (i + 1) / n, col, -1)
    cv2.ellipse(a, (w // 2, dome_h), (w // 2 - 1, dome_h - 1), 0, 180, 360, 1.0, -1)
    cv2.rectangle(img, (0, dome_h - 2), (w - 1, dome_h + max(2, h // 25)), c1, -1)
    cv2.rectangle(a, (0, dome_h - 2), (w - 1, dome_h + max(2, h // 25)), 1.0, -1)
    pw = max(2, w // 30)
    cv2.rectangle(img, (w // 2 - pw, dome_h), (w // 2 + pw, h - 1), (90, 90, 90), -1)
    cv2.rectangle(a, (w // 2 - pw, dome_h), (w // 2 + pw, h - 1), 1.0, -1)
    return _texture(img, rng, 8), a


def sprite_goods(rng, w: int, h: int) -> Sprite:
    """Goods laid out on a cloth on the pavement: low, wide, many small items."""
    img, a = _canvas(h, w)
    cloth = _rgb(rng, [(40, 40, 40), (200, 120, 40), (60, 60, 170), (170, 170, 170)][rng.integers(4)], 25)
    pts = np.array([[int(w * 0.08), 0], [int(w * 0.92), 0], [w - 1, h - 1], [0, h - 1]], np.int32)
    cv2.fillPoly(img, [pts], cloth)
    cv2.fillPoly(a, [pts], 1.0)
    for _ in range(int(rng.integers(10, 26))):
        cx, cy = int(rng.uniform(0.08, 0.92) * w), int(rng.uniform(0.1, 0.9) * h)
        r = max(2, int(rng.uniform(0.03, 0.07) * w))
        col = tuple(int(c) for c in rng.integers(20, 255, 3))
        if rng.random() < 0.5:
            cv2.circle(img, (cx, cy), r, col, -1)
        else:
            cv2.rectangle(img, (cx - r, cy - r // 2), (cx + r, cy + r // 2), col, -1)
    return _texture(img, rng, 8), a


def sprite_scaffold(rng, w: int, h: int) -> Sprite:
    """Scaffolding: a lattice of tubes, sometimes with green safety netting."""
    img, a = _canvas(h, w)
    tube = _rgb(rng, [(60, 160, 220), (150, 150, 150), (40, 40, 40)][rng.integers(3)], 20)
    t = max(2, min(w, h) // 45)
    nx, ny = int(rng.integers(3, 7)), int(rng.integers(3, 8))
    netting = rng.random() < 0.4
    if netting:
        net = _rgb(rng, (60, 130, 40), 20)
        img[:] = net
        a[:] = 0.75
    for i in range(nx + 1):
        x = int(i * (w - t) / nx)
        cv2.rectangle(img, (x, 0), (x + t, h - 1), tube, -1)
        cv2.rectangle(a, (x, 0), (x + t, h - 1), 1.0, -1)
    for j in range(ny + 1):
        y = int(j * (h - t) / ny)
        cv2.rectangle(img, (0, y), (w - 1, y + t), tube, -1)
        cv2.rectangle(a, (0, y), (w - 1, y + t), 1.0, -1)
        if j < ny and not netting:
            y2 = int((j + 1) * (h - t) / ny)
            for i in range(0, nx, 2):
                x1, x2 = int(i * (w - t) / nx), int((i + 1) * (w - t) / nx)
                cv2.line(img, (x1, y), (x2, y2), tube, t)
                cv2.line(a, (x1, y), (x2, y2), 1.0, t)
    return _texture(img, rng, 10), a


def sprite_hoarding(rng, w: int, h: int) -> Sprite:
    """A construction fence: long run of coloured panels with a stripe band."""
    img, a = _canvas(h, w)
    panel = _rgb(rng, [(160, 90, 20), (60, 140, 40), (235, 235, 235), (150, 60, 30)][rng.integers(4)], 20)
    img[:] = panel
    a[:] = 1.0
    pw = max(8, int(rng.uniform(0.08, 0.2) * w))
    for x in range(0, w, pw):
        cv2.line(img, (x, 0), (x, h - 1), tuple(max(0, c - 60) for c in panel), max(1, w // 200))
    band = _rgb(rng, [(240, 240, 240), (40, 40, 200), (40, 200, 230)][rng.integers(3)], 10)
    y0 = int(h * rng.uniform(0.1, 0.3))
    cv2.rectangle(img, (0, y0), (w - 1, y0 + max(2, h // 8)), band, -1)
    cv2.rectangle(img, (0, 0), (w - 1, max(1, h // 20)), (200, 200, 200), -1)
    return _texture(img, rng, 9), a


def sprite_steel_shed(rng, w: int, h: int, topdown: bool = False) -> Sprite:
    """A blue (or white) steel-sheet shed (彩钢瓦): corrugated roof over plain walls."""
    img, a = _canvas(h, w)
    roof = _rgb(rng, [(170, 90, 20), (190, 120, 40), (225, 225, 225)][rng.integers(3)], 15)
    dark = tuple(max(0, c - 55) for c in roof)
    if topdown:
        img[:] = roof
        a[:] = 1.0
        step = max(3, w // int(rng.integers(12, 24)))
        for x in range(0, w, step):
            cv2.line(img, (x, 0), (x, h - 1), dark, max(1, step // 3))
        cv2.line(img, (0, h // 2), (w - 1, h // 2), dark, max(1, h // 40))
        return _texture(img, rng, 6), a
    roof_h = int(h * rng.uniform(0.25, 0.4))
    pts = np.array([[0, roof_h], [int(w * 0.1), 0], [int(w * 0.9), 0], [w - 1, roof_h]], np.int32)
    cv2.fillPoly(img, [pts], roof)
    cv2.fillPoly(a, [pts], 1.0)
    step = max(3, w // int(rng.integers(14, 28)))
    for x in range(int(w * 0.1), int(w * 0.9), step):
        cv2.line(img, (x, 0), (int(x + (x - w / 2) * 0.2), roof_h), dark, max(1, step // 3))
    wall = _rgb(rng, [(225, 225, 225), (170, 100, 30)][rng.integers(2)], 15)
    cv2.rectangle(img, (int(w * 0.03), roof_h), (int(w * 0.97), h - 1), wall, -1)
    cv2.rectangle(a, (int(w * 0.03), roof_h), (int(w * 0.97), h - 1), 1.0, -1)
    for x in range(int(w * 0.03), int(w * 0.97), step):
        cv2.line(img, (x, roof_h), (x, h - 1), tuple(max(0, c - 25) for c in wall), 1)
    dw = int(w * rng.uniform(0.15, 0.25))
    dx = int(rng.uniform(0.1, 0.7) * w)
    cv2.rectangle(img, (dx, int(h * 0.55)), (dx + dw, h - 1), (70, 70, 70), -1)
    return _texture(img, rng, 6), a


def sprite_material_pile(rng, w: int, h: int) -> Sprite:
    """A heap of sand, gravel or bricks: a mound with grainy texture."""
    img, a = _canvas(h, w)
    col = _rgb(rng, [(110, 170, 200), (120, 120, 120), (60, 90, 170), (80, 120, 150)][rng.integers(4)], 20)
    pts = [(0, h - 1)]
    n = 9
    for i in range(1, n):
        x = int(i * w / n)
        peak = 1 - abs(i / n - 0.5) * 2
        y = int(h - 1 - h * (0.15 + 0.8 * peak) * rng.uniform(0.85, 1.0))
        pts.append((x, y))
    pts.append((w - 1, h - 1))
    poly = np.array(pts, np.int32)
    cv2.fillPoly(img, [poly], col)
    cv2.fillPoly(a, [poly], 1.0)
    grain = rng.normal(0, 28, (h, w)).astype(np.float32)
    img = np.clip(img.astype(np.float32) + grain[..., None] * (a[..., None] > 0), 0, 255).astype(np.uint8)
    return _texture(img, rng, 12, 4), a


def dust_alpha(rng, w: int, h: int, density: float = 0.75) -> np.ndarray:
    """A plume's opacity: soft-edged, billowing, densest near its source (the bottom)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    cx = w / 2
    # plume widens as it rises; opacity falls off at the edges
    width = (0.25 + 0.25 * (1 - yy / h)) * w
    shape = np.exp(-(((xx - cx) / np.maximum(width, 1)) ** 2) * 2.2) * np.clip(0.35 + 0.65 * yy / h, 0, 1)
    shape *= np.clip((h - yy) / (0.08 * h + 1), 0, 1)  # soft base
    billow = _noise_texture(rng, h, w, scale=max(4.0, min(w, h) / 6), amp=1.0)
    billow2 = _noise_texture(rng, h, w, scale=max(2.0, min(w, h) / 16), amp=0.5)
    alpha = shape * np.clip(0.75 + 0.45 * billow + 0.25 * billow2, 0, 1.4) * density
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, min(w, h) / 40))
    return np.clip(alpha, 0, 0.95).astype(np.float32)


def thicken(alpha: np.ndarray, k: float) -> np.ndarray:
    """A denser plume of the same shape: k layers of it, 1 - (1 - a)^k."""
    return (1 - (1 - alpha) ** k).astype(np.float32)


def sprite_dust(rng, w: int, h: int, density: float | None = None) -> Sprite:
    """A dust plume: a semi-transparent, textured, earth-coloured volume."""
    col = np.array(_rgb(rng, [(120, 150, 175), (140, 160, 180), (105, 135, 160), (150, 165, 175)][rng.integers(4)], 12), np.float32)
    shade = _noise_texture(rng, h, w, scale=max(3.0, min(w, h) / 10), amp=22)
    img = np.clip(col[None, None, :] + shade[..., None], 0, 255).astype(np.uint8)
    return img, dust_alpha(rng, w, h, density if density is not None else rng.uniform(0.6, 0.9))


# --- look-alikes and clutter (never labelled) --------------------------------------------


def sprite_car(rng, w: int, h: int, topdown: bool = False) -> Sprite:
    img, a = _canvas(h, w)
    col = tuple(int(c) for c in rng.integers(20, 235, 3))
    if topdown:
        cv2.rectangle(img, (0, 0), (w - 1, h - 1), col, -1)
        cv2.rectangle(a, (0, 0), (w - 1, h - 1), 1.0, -1)
        cv2.rectangle(img, (int(w * 0.25), int(h * 0.12)), (int(w * 0.7), int(h * 0.88)), (40, 40, 40), -1)
        return _texture(img, rng, 5), a
    cv2.rectangle(img, (0, int(h * 0.4)), (w - 1, int(h * 0.85)), col, -1)
    cv2.rectangle(a, (0, int(h * 0.4)), (w - 1, int(h * 0.85)), 1.0, -1)
    cabin = np.array([[int(w * 0.2), int(h * 0.4)], [int(w * 0.3), int(h * 0.05)], [int(w * 0.7), int(h * 0.05)], [int(w * 0.82), int(h * 0.4)]], np.int32)
    cv2.fillPoly(img, [cabin], col)
    cv2.fillPoly(a, [cabin], 1.0)
    cv2.fillPoly(img, [(cabin * [1, 1] + [0, 3]).astype(np.int32)], (70, 60, 50))
    r = max(3, h // 6)
    for cx in (int(w * 0.2), int(w * 0.8)):
        cv2.circle(img, (cx, h - r - 1), r, (20, 20, 20), -1)
        cv2.circle(a, (cx, h - r - 1), r, 1.0, -1)
    return _texture(img, rng, 5), a


def sprite_person(rng, w: int, h: int) -> Sprite:
    img, a = _canvas(h, w)
    shirt = tuple(int(c) for c in rng.integers(20, 235, 3))
    pants = tuple(int(c) for c in rng.integers(10, 120, 3))
    head = max(2, w // 4)
    cv2.circle(img, (w // 2, head + 1), head, (80, 110, 150), -1)
    cv2.circle(a, (w // 2, head + 1), head, 1.0, -1)
    cv2.rectangle(img, (w // 5, 2 * head + 1), (4 * w // 5, int(h * 0.55)), shirt, -1)
    cv2.rectangle(a, (w // 5, 2 * head + 1), (4 * w // 5, int(h * 0.55)), 1.0, -1)
    cv2.rectangle(img, (w // 4, int(h * 0.55)), (3 * w // 4, h - 1), pants, -1)
    cv2.rectangle(a, (w // 4, int(h * 0.55)), (3 * w // 4, h - 1), 1.0, -1)
    return img, a


def sprite_tricycle(rng, w: int, h: int) -> Sprite:
    """A delivery tricycle with a closed box: moves on, must not read as a stall."""
    img, a = _canvas(h, w)
    box = _rgb(rng, [(40, 140, 230), (200, 200, 200), (60, 60, 180)][rng.integers(3)], 15)
    cv2.rectangle(img, (int(w * 0.35), int(h * 0.1)), (w - 1, int(h * 0.75)), box, -1)
    cv2.rectangle(a, (int(w * 0.35), int(h * 0.1)), (w - 1, int(h * 0.75)), 1.0, -1)
    r = max(3, h // 7)
    for cx in (r + 1, int(w * 0.55), w - r - 2):
        cv2.circle(img, (cx, h - r - 1), r, (25, 25, 25), 2)
        cv2.circle(a, (cx, h - r - 1), r, 1.0, 2)
    cv2.line(img, (r, h - r), (int(w * 0.35), int(h * 0.5)), (60, 60, 60), 3)
    cv2.line(a, (r, h - r), (int(w * 0.35), int(h * 0.5)), 1.0, 3)
    return img, a


def sprite_tree(rng, w: int, h: int) -> Sprite:
    img, a = _canvas(h, w)
    cv2.rectangle(img, (w // 2 - max(2, w // 14), h // 2), (w // 2 + max(2, w // 14), h - 1), (30, 60, 90), -1)
    cv2.rectangle(a, (w // 2 - max(2, w // 14), h // 2), (w // 2 + max(2, w // 14), h - 1), 1.0, -1)
    leaf = _rgb(rng, (40, 120, 50), 25)
    for _ in range(6):
        cx, cy = int(rng.uniform(0.25, 0.75) * w), int(rng.uniform(0.15, 0.45) * h)
        r = int(rng.uniform(0.2, 0.32) * w)
        cv2.circle(img, (cx, cy), r, leaf, -1)
        cv2.circle(a, (cx, cy), r, 1.0, -1)
    return _texture(img, rng, 20, 3), a


def sprite_steam(rng, w: int, h: int) -> Sprite:
    """White steam or fog: soft like dust, but white-grey and thin — a look-alike."""
    shade = _noise_texture(rng, h, w, scale=max(3.0, min(w, h) / 10), amp=8)
    img = np.clip(np.float32(rng.uniform(225, 250)) + shade[..., None].repeat(3, 2), 0, 255).astype(np.uint8)
    return img, dust_alpha(rng, w, h, rng.uniform(0.25, 0.45))


VIOLATION_SPRITES = {
    "stall": sprite_stall,
    "umbrella": sprite_umbrella,
    "goods": sprite_goods,
    "scaffold": sprite_scaffold,
    "hoarding": sprite_hoarding,
    "steel_shed": sprite_steel_shed,
    "material_pile": sprite_material_pile,
    "dust": sprite_dust,
}

# Typical (width, height) in metres, so scenes keep plausible proportions.
SIZE_M = {
    "stall": (1.8, 1.2), "umbrella": (2.2, 2.3), "goods": (2.0, 0.45), "scaffold": (5.0, 7.0),
    "hoarding": (10.0, 2.2), "steel_shed": (6.0, 3.5), "material_pile": (3.5, 1.6), "dust": (6.0, 6.0),
    "car": (4.3, 1.5), "person": (0.5, 1.7), "tricycle": (2.2, 1.4), "tree": (3.0, 5.0), "steam": (3.0, 4.0),
}
TOPDOWN_SIZE_M = {
    "stall": (1.8, 1.0), "umbrella": (2.4, 2.4), "goods": (2.0, 1.4), "scaffold": (6.0, 2.0),
    "hoarding": (14.0, 0.6), "steel_shed": (8.0, 6.0), "material_pile": (4.0, 4.0), "dust": (9.0, 9.0),
    "car": (4.3, 1.9),
}


def render_sprite(name: str, rng: np.random.Generator, w: int, h: int, topdown: bool = False) -> Sprite:
    w, h = max(4, int(w)), max(4, int(h))
    if topdown and name == "umbrella":
        return sprite_umbrella(rng, w, h, topdown=True)
    if topdown and name == "steel_shed":
        return sprite_steel_shed(rng, w, h, topdown=True)
    if topdown and name == "car":
        return sprite_car(rng, w, h, topdown=True)
    fn = VIOLATION_SPRITES.get(name) or {
        "car": sprite_car, "person": sprite_person, "tricycle": sprite_tricycle, "tree": sprite_tree, "steam": sprite_steam,
    }[name]
    return fn(rng, w, h)


# --- backgrounds -----------------------------------------------------------------------


@dataclass
class StreetScene:
    """A side-on street: sky, buildings with shop fronts, pavement, road.

    ``horizon`` and ``kerb`` are image rows; ``px_per_m(y)`` gives the scale at a
    ground row, so sprites shrink with distance.
    """

    image: np.ndarray
    horizon: int
    kerb: int  # row where pavement meets road (pavement above it, nearer rows = road)
    near_scale: float  # pixels per metre at the bottom row

    def px_per_m(self, y: float) -> float:
        h = self.image.shape[0]
        return self.near_scale * max(0.12, (y - self.horizon) / max(1, h - self.horizon))


def street_background(rng: np.random.Generator, w: int, h: int) -> StreetScene:
    img = np.zeros((h, w, 3), np.uint8)
    horizon = int(h * rng.uniform(0.3, 0.45))
    kerb = int(horizon + (h - horizon) * rng.uniform(0.35, 0.55))
    # sky
    top, bottom = np.array(_rgb(rng, (230, 190, 150), 25), np.float32), np.array(_rgb(rng, (240, 225, 210), 15), np.float32)
    t = np.linspace(0, 1, horizon)[:, None, None]
    img[:horizon] = (top * (1 - t) + bottom * t).astype(np.uint8)
    # buildings along the far side with shop fronts at the bottom
    x = 0
    while x < w:
        bw = int(rng.uniform(0.12, 0.3) * w)
        bh = int(rng.uniform(0.5, 1.0) * horizon) + int((kerb - horizon) * 0.5)
        col = _rgb(rng, [(170, 180, 190), (140, 150, 170), (200, 200, 195), (120, 130, 150)][rng.integers(4)], 25)
        y0 = max(0, horizon + int((kerb - horizon) * 0.5) - bh)
        y1 = horizon + int((kerb - horizon) * 0.5)
        cv2.rectangle(img, (x, y0), (x + bw, y1), col, -1)
        for wy in range(y0 + 6, y1 - 20, 14):
            for wx in range(x + 5, x + bw - 8, 12):
                cv2.rectangle(img, (wx, wy), (wx + 6, wy + 7), tuple(max(0, c - 70) for c in col), -1)
        sign = tuple(int(c) for c in rng.integers(20, 240, 3))
        cv2.rectangle(img, (x + 2, y1 - 24), (x + bw - 2, y1 - 16), sign, -1)  # shop sign
        cv2.rectangle(img, (x + 4, y1 - 15), (x + bw - 4, y1), (60, 70, 80), -1)  # shop front
        x += bw + int(rng.integers(0, 6))
    # pavement (tiles) and road (asphalt, lane marks)
    ground_top = horizon + int((kerb - horizon) * 0.5)
    pave = _rgb(rng, (175, 180, 185), 20)
    img[ground_top:kerb] = pave
    for y in range(ground_top, kerb, 9):
        cv2.line(img, (0, y), (w - 1, y), tuple(max(0, c - 20) for c in pave), 1)
    road = _rgb(rng, (85, 85, 88), 15)
    img[kerb:] = road
    cv2.line(img, (0, kerb), (w - 1, kerb), (200, 200, 200), 2)
    lane_y = kerb + int((h - kerb) * 0.55)
    for lx in range(0, w, 60):
        cv2.rectangle(img, (lx, lane_y), (lx + 30, lane_y + 3), (220, 220, 220), -1)
    img = _texture(img, rng, 9, 5)
    return StreetScene(img, horizon=ground_top, kerb=kerb, near_scale=h / rng.uniform(5.5, 8.0))


# Plain roofs seen from above (BGR): red tile, grey concrete, brown-grey (every drone view), and
# two grey-blues (only the extra roofs of the "dust_from_above" view).
ROOF_COLOURS = ((60, 60, 150), (130, 130, 130), (90, 100, 110), (150, 135, 115), (165, 150, 135))


def _flat_roof(img: np.ndarray, rng: np.random.Generator, size: tuple[float, float],
               colours: tuple[tuple[int, int, int], ...]) -> tuple[int, int, int, int, tuple[int, int, int]]:
    """Draw one plain roof of ``size`` (a share of the picture's sides) in one of ``colours``;
    returns where it lies and its colour. The draws' order is fixed: every drone render
    depends on it."""
    h, w = img.shape[:2]
    rw, rh = int(rng.uniform(*size) * w), int(rng.uniform(*size) * h)
    x, y = int(rng.uniform(0, w - rw)), int(rng.uniform(0, h - rh))
    colour = _rgb(rng, colours[rng.integers(len(colours))], 15)
    cv2.rectangle(img, (x, y), (x + rw, y + rh), colour, -1)
    return x, y, rw, rh, colour


def topdown_background(rng: np.random.Generator, w: int, h: int, extra_roofs: int = 0) -> np.ndarray:
    """Ground seen from a drone: fields or bare lots, roads, roofs. ``extra_roofs`` adds that
    many more plain roofs, some grey-blue and some with a ridge, none corrugated: permitted
    roofs that a detector can take for steel sheds on drone clips."""
    base = _rgb(rng, [(80, 120, 100), (100, 140, 160), (90, 110, 120), (70, 130, 90)][rng.integers(4)], 20)
    img = np.full((h, w, 3), base, np.uint8)
    img = _texture(img, rng, 22, 20)
    for _ in range(int(rng.integers(1, 3))):  # roads
        if rng.random() < 0.5:
            y = int(rng.uniform(0.1, 0.9) * h)
            cv2.rectangle(img, (0, y), (w - 1, y + int(h * 0.07)), _rgb(rng, (90, 90, 95), 10), -1)
        else:
            x = int(rng.uniform(0.1, 0.9) * w)
            cv2.rectangle(img, (x, 0), (x + int(w * 0.05), h - 1), _rgb(rng, (90, 90, 95), 10), -1)
    for _ in range(int(rng.integers(2, 7))):  # existing (permitted) roofs
        _flat_roof(img, rng, (0.06, 0.16), ROOF_COLOURS[:3])
    for _ in range(extra_roofs):
        x, y, rw, rh, colour = _flat_roof(img, rng, (0.05, 0.2), ROOF_COLOURS)
        if rng.random() < 0.5:  # a pitched roof's ridge, along its longer side
            ridge = tuple(max(0, c - 35) for c in colour)
            ends = ((x, y + rh // 2), (x + rw, y + rh // 2)) if rw >= rh else ((x + rw // 2, y), (x + rw // 2, y + rh))
            cv2.line(img, *ends, ridge, max(1, min(rw, rh) // 12))
    return _texture(img, rng, 8, 3)



# --- compositing and camera effects ------------------------------------------------------


def paste(dst: np.ndarray, sprite: Sprite, x: int, y: int, solid: float = 0.5) -> tuple[int, int, int, int] | None:
    """Alpha-blend a sprite with its top-left at (x, y); return the box of its visible
    part that is at least ``solid`` opaque (its label box)."""
    blended = blend(dst, sprite, x, y)
    if blended is None:
        return None
    (x0, y0, _, _), sa, _, _ = blended
    return mask_box(sa > solid, x0, y0)


def rain_streaks(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Falling rain as the camera sees it: short, thin, motion-blurred bright streaks at
    one slant (an additive float layer)."""
    layer = np.zeros((h, w), np.float32)
    slant = rng.uniform(-0.35, 0.35)
    for _ in range(int(rng.integers(250, 900) * h * w / (640 * 384))):
        x, y, length = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(6, 22)
        cv2.line(layer, (int(x), int(y)), (int(x + slant * length), int(y + length)), float(rng.uniform(25, 70)), 1)
    return cv2.GaussianBlur(layer, (0, 0), 0.7)


def lighting(img: np.ndarray, rng: np.random.Generator, mode: str | None = None) -> np.ndarray:
    """Day, dusk, night, haze or rain, as a global tone change (rain adds its streaks)."""
    mode = mode or rng.choice(["day", "day", "day", "dusk", "night", "haze"])
    f = img.astype(np.float32)
    if mode == "rain":  # overcast and wet: darker, flatter, greyer, streaked
        k = rng.uniform(0.15, 0.3)
        f = f * rng.uniform(0.6, 0.85) * (1 - k) + 110 * k
        f = f + rain_streaks(rng, *f.shape[:2])[..., None]
    elif mode == "dusk":
        f = f * [0.7, 0.8, 1.0] * rng.uniform(0.6, 0.85)
    elif mode == "night":
        f = f * rng.uniform(0.3, 0.5) + rng.normal(0, 6, f.shape)
    elif mode == "haze":
        k = rng.uniform(0.2, 0.4)
        f = f * (1 - k) + 200 * k
    else:
        f = f * rng.uniform(0.85, 1.15)
    return np.clip(f, 0, 255).astype(np.uint8)


def camera_effects(img: np.ndarray, rng: np.random.Generator, strength: float = 1.0) -> np.ndarray:
    """Sensor noise, motion or focus blur, and compression artefacts."""
    if rng.random() < 0.35 * strength:
        k = int(rng.integers(3, 9))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0 / k
        if rng.random() < 0.5:
            kernel = kernel.T
        img = cv2.filter2D(img, -1, kernel)
    elif rng.random() < 0.2 * strength:
        img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.5))
    noise = rng.normal(0, rng.uniform(1, 7) * strength, img.shape)
    img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
    if rng.random() < 0.6:
        q = int(rng.integers(35, 90))
        ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])
        img = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return img


@dataclass
class Labelled:
    image: np.ndarray
    boxes: list[tuple[int, float, float, float, float]] = field(default_factory=list)  # class, x1, y1, x2, y2
    labeller: VisibleLabels | None = None  # boxes of what is visible, set at the end

    def too_small(self, name: str, width: int, height: int) -> bool:
        return self.labeller is not None and name in CLASS_ID and self.labeller.too_small(width, height)

    def place(self, name: str, sprite: Sprite, x: int, y: int, rng: np.random.Generator, solid: float = 0.5) -> None:
        """Paste a sprite into the picture and label it (if its name is a class)."""
        if self.labeller is not None:
            if name == "dust":  # clouds as dense as a site's, not only veils
                sprite = (sprite[0], thicken(sprite[1], rng.uniform(1.5, 3.0)))
            self.labeller.paste(self.image, sprite, x, y, CLASS_ID.get(name))
            return
        box = paste(self.image, sprite, x, y, solid=solid)
        if box and name in CLASS_ID:
            self.boxes.append((CLASS_ID[name], *box))


def _real_ground(scene: "StreetScene", rng: np.random.Generator) -> None:
    """Give the rendered pavement and road the grain of a real surface photograph."""
    h, w = scene.image.shape[:2]
    g = photos.grain(rng, w, h - scene.horizon, amp=rng.uniform(6, 16))
    if g is not None:
        ground = scene.image[scene.horizon:].astype(np.float32) + g[..., None]
        scene.image[scene.horizon:] = np.clip(ground, 0, 255).astype(np.uint8)


def _street_image(rng: np.random.Generator, w: int, h: int, dust_solid: float = 0.5,
                  real_ground: bool = False, labeller: VisibleLabels | None = None) -> Labelled:
    scene = street_background(rng, w, h)
    if real_ground:
        _real_ground(scene, rng)
    img = scene.image
    out = Labelled(img, labeller=labeller)
    H = h
    n_obj = int(rng.choice([0, 1, 1, 2, 2, 3, 4]))
    things = list(rng.choice(CLASSES, n_obj)) + list(rng.choice(["car", "person", "tricycle", "tree", "steam", "person"], int(rng.integers(0, 5))))
    placed = []
    for name in things:
        ground = rng.uniform(scene.horizon + 4, H + (0.15 * H if name in ("dust", "scaffold", "steel_shed") else 0))
        s = scene.px_per_m(min(ground, H)) * rng.uniform(0.8, 1.25)
        mw, mh = SIZE_M[name]
        if name == "hoarding":
            mw *= rng.uniform(0.5, 1.5)
        sw, sh = int(mw * s), int(mh * s)
        if sw < 10 or sh < 8 or sw > 0.95 * w or sh > 1.3 * H or out.too_small(name, sw, sh):
            continue
        x = int(rng.uniform(-0.15 * sw, w - 0.85 * sw))
        y = int(ground - sh)
        placed.append((ground, name, sw, sh, x, y))
    for ground, name, sw, sh, x, y in sorted(placed):  # far first, near last
        out.place(name, render_sprite(name, rng, sw, sh), x, y, rng, solid=dust_solid if name == "dust" else 0.5)
    return out


POOLS = {"vending": ("stall", "umbrella", "goods"), "construction": ("scaffold", "hoarding", "steel_shed", "material_pile"),
         "dust": ("dust",), "mixed": CLASSES, "none": ()}
LOOKALIKES = ["car", "person", "tricycle", "tree", "steam"]


def _scene_names(rng: np.random.Generator, kinds: list[str], max_lookalikes: int) -> list[str]:
    """What a close view shows: 1-3 things of one kind of violation (or none), and look-alikes."""
    pool = POOLS[rng.choice(kinds)]
    names = list(rng.choice(pool, int(rng.integers(1, 4)))) if pool else []
    return names + list(rng.choice(LOOKALIKES, int(rng.integers(0, max_lookalikes + 1))))


def _compose_close(img: np.ndarray, rng: np.random.Generator, names: list[str], where, out: "Labelled") -> None:
    """Paste ``names`` large and close, far first; ``where(name)`` gives (ground row, px per metre)."""
    h, w = img.shape[:2]
    placed = []
    for name in names:
        ground, s = where(name)
        mw, mh = SIZE_M[name]
        if name == "hoarding":
            mw *= rng.uniform(0.4, 1.0)
        if name == "dust":
            mw, mh = mw * rng.uniform(0.5, 1.0), mh * rng.uniform(0.5, 1.0)
        sw, sh = int(mw * s), int(mh * s)
        if sw < 10 or sh < 8 or sw > 0.9 * w or sh > 0.95 * h or out.too_small(name, sw, sh):
            continue
        placed.append((ground, name, sw, sh, int(rng.uniform(-0.1 * sw, w - 0.9 * sw)), int(ground - sh)))
    for ground, name, sw, sh, x, y in sorted(placed):
        sprite = render_sprite(name, rng, sw, sh)
        if name == "dust":  # plumes at every density, thin ones included
            sprite = (sprite[0], sprite[1] * rng.uniform(0.45, 1.0))
        out.place(name, sprite, x, y, rng, solid=0.25 if name == "dust" else 0.5)


def _kerbside_image(rng: np.random.Generator, w: int, h: int, real_ground: bool = False,
                    labeller: VisibleLabels | None = None) -> Labelled:
    """A camera close to the pavement, as street cameras and phones see vendors and
    sheds: objects at the kerb, large, often beside each other."""
    scene = street_background(rng, w, h)
    if real_ground:
        _real_ground(scene, rng)
    out = Labelled(scene.image, labeller=labeller)
    zoom = rng.uniform(2.2, 4.2)
    names = _scene_names(rng, ["vending", "construction", "dust", "mixed", "none"], 3)

    def at_kerb(name):
        ground = scene.kerb + rng.uniform(-12, 40 if name in ("car", "tricycle", "dust") else 15)
        return ground, scene.px_per_m(ground) * zoom * rng.uniform(0.85, 1.15)

    _compose_close(scene.image, rng, names, at_kerb, out)
    return out


def _topdown_image(rng: np.random.Generator, w: int, h: int, labeller: VisibleLabels | None = None,
                   scales: tuple[float, float] = (9, 20)) -> Labelled:
    """A drone's view straight down: objects anywhere, at ``scales`` pixels per metre (at 640 wide)."""
    img = topdown_background(rng, w, h)
    out = Labelled(img, labeller=labeller)
    px_per_m = rng.uniform(*scales) * w / 640
    names = list(rng.choice(CLASSES, int(rng.choice([0, 1, 2, 3, 4])))) + ["car"] * int(rng.integers(0, 4))
    _place_topdown(rng, names, px_per_m, out)
    return out


def _site_from_above(rng: np.random.Generator, w: int, h: int, labeller: VisibleLabels | None = None,
                     scales: tuple[float, float] = (6, 20), dust_chance: float = 0.3) -> Labelled:
    """A building site seen by the drone: sheds, scaffolding, hoardings, piles and often dust
    (``dust_chance``) close together, and nothing of vending; cars drive past. Without such
    pictures small cars and objects seen from high above passed for goods on a cloth (false
    street-vending cases on drone clips)."""
    img = topdown_background(rng, w, h)
    out = Labelled(img, labeller=labeller)
    px_per_m = rng.uniform(*scales) * w / 640
    names = list(rng.choice(POOLS["construction"], int(rng.integers(2, 6))))
    names += ["dust"] * int(rng.random() < dust_chance) + ["car"] * int(rng.integers(0, 3))
    _place_topdown(rng, names, px_per_m, out, cluster=(rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h))
    return out


def _dust_from_above(rng: np.random.Generator, w: int, h: int, labeller: VisibleLabels | None = None,
                     scales: tuple[float, float] = (6, 20)) -> Labelled:
    """Dust seen by the drone over built-up ground: many plain (permitted) roofs, a plume in
    seven pictures of ten and passing cars, nothing else: grey-blue roofs under or beside a
    plume are easily taken for steel sheds; these pictures teach that such roofs are background."""
    out = Labelled(topdown_background(rng, w, h, extra_roofs=int(rng.integers(3, 9))), labeller=labeller)
    px_per_m = rng.uniform(*scales) * w / 640
    names = ["dust"] * int(rng.random() < 0.7) + ["car"] * int(rng.integers(0, 3))
    _place_topdown(rng, names, px_per_m, out)
    return out


def _place_topdown(rng: np.random.Generator, names: list[str], px_per_m: float, out: Labelled,
                   cluster: tuple[float, float] | None = None) -> None:
    """Paste top-down sprites; around ``cluster`` (a site's centre) when given, else anywhere."""
    h, w = out.image.shape[:2]
    for name in names:
        mw, mh = TOPDOWN_SIZE_M[name]
        if rng.random() < 0.5 and name in ("scaffold", "hoarding", "car", "steel_shed", "stall"):
            mw, mh = mh, mw
        sw, sh = int(mw * px_per_m * rng.uniform(0.8, 1.2)), int(mh * px_per_m * rng.uniform(0.8, 1.2))
        if sw < 8 or sh < 5 or sw > 0.9 * w or sh > 0.9 * h or out.too_small(name, sw, sh):
            continue
        if cluster is not None and name != "car":
            x = int(np.clip(cluster[0] + rng.normal(0, 0.12 * w) - sw / 2, -0.1 * sw, w - 0.9 * sw))
            y = int(np.clip(cluster[1] + rng.normal(0, 0.12 * h) - sh / 2, -0.1 * sh, h - 0.9 * sh))
        else:
            x, y = int(rng.uniform(-0.1 * sw, w - 0.9 * sw)), int(rng.uniform(-0.1 * sh, h - 0.9 * sh))
        out.place(name, render_sprite(name, rng, sw, sh, topdown=True), x, y, rng)


def _defocus(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The photograph partly or wholly out of focus, as behind a sharp subject: the depth
    of field fades along a random direction. Blurred crowds and walls are soft, low-contrast
    and often dust-coloured, like a plume, so they teach what is not one."""
    h, w = img.shape[:2]
    sigma = rng.uniform(1.5, 7.0) * w / 640
    soft = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.random() < 0.4:
        return soft
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * (xx - w / 2) + np.sin(angle) * (yy - h / 2)) / (0.5 * max(w, h))
    a = np.clip(0.5 + rng.uniform(0.6, 1.5) * ramp + rng.uniform(-0.3, 0.3), 0, 1)[..., None]
    return (soft.astype(np.float32) * a + img.astype(np.float32) * (1 - a)).astype(np.uint8)


def _photo_image(rng: np.random.Generator, w: int, h: int, labeller: VisibleLabels | None = None,
                 photo_split: str = "all", extra_photos: int = 0, defocus: bool = False,
                 more_plumes: bool = False, clutter: bool = False, plumes: bool = False) -> Labelled:
    """Objects composited onto a real photograph; a third of them with none at all, so
    the photo's own windows, clothes and furniture are learnt as background. With
    ``defocus`` half the photographs are partly out of focus and four in ten carry nothing;
    ``more_plumes`` puts plumes on a quarter of them instead of a seventh. ``extra_photos``
    widens the training photographs (``photos.scene_crop``). ``clutter`` draws a picture of
    paper, print or packaged goods instead (``photos.clutter_crop``), half of them with
    nothing pasted on: hard negatives. ``plumes`` puts 1-3 plumes on three photographs in
    four and nothing but look-alikes (steam among them) on the fourth."""
    if clutter:
        bg = photos.clutter_crop(rng, w, h, photo_split)
    else:
        bg = photos.scene_crop(rng, w, h, photo_split, extra=extra_photos)
    if bg is None:  # no photo installed: fall back to a rendered kerbside view
        return _kerbside_image(rng, w, h, real_ground=True, labeller=labeller)
    if clutter:
        kinds = ["vending", "construction", "dust", "none", "none", "none"]
    elif plumes:
        kinds = ["dust", "dust", "dust", "none"]
    else:
        kinds = ["vending", "construction", "dust", "mixed", "none", "none"] + ["dust"] * more_plumes
    if defocus:
        if rng.random() < 0.5:
            bg = _defocus(bg, rng)
        kinds.append("none")
    out = Labelled(bg, labeller=labeller)
    names = _scene_names(rng, kinds, 2)

    def anywhere_low(name):  # ground row in the lower half; pixels per metre near and far
        return rng.uniform(0.45 * h, 1.08 * h), h / rng.uniform(3.5, 12.0)

    _compose_close(bg, rng, names, anywhere_low, out)
    return out


# The views whose background is a real photograph (``_photo_image``).
PHOTO_VIEWS = ("photo", "photo_portrait", "clutter", "dust_photo")
LIGHTING_MODES = ("day", "day", "day", "dusk", "night", "haze", "rain")


def cloud_labels(recipe: int, clouds: bool | None = None) -> bool:
    """Whether plumes are labelled by cloud: ``clouds`` when given, else the recipe's switch."""
    return recipe_of(recipe).cloud_labels if clouds is None else clouds


def missing_photos(recipe: int) -> list[str]:
    """The photographs ``recipe`` trains on that are not installed here (none for a recipe
    without ``real_photos``)."""
    r = recipe_of(recipe)
    return photos.missing_training_photos(r.extra_photo_sets, r.clutter) if r.real_photos else []


def missing_photo_packages(recipe: int) -> list[str]:
    """The Debian packages that would install :func:`missing_photos`' pictures."""
    r = recipe_of(recipe)
    return photos.missing_training_packages(r.extra_photo_sets, r.clutter) if r.real_photos else []


def view_of(seed: int, recipe: int) -> str:
    """The view ``labelled_image`` renders for this seed and recipe (its first draw), so a
    rendered data set can be broken down by view without storing anything beside it."""
    return _draw_view(np.random.default_rng(seed), recipe_of(recipe))


def _draw_view(rng: np.random.Generator, recipe: Recipe) -> str:
    return str(rng.choice(recipe.views))


def labelled_image(seed: int, w: int = 640, h: int = 384, view: str | None = None, recipe: int = 1,
                   heldout: bool = False, clouds: bool | None = None) -> Labelled:
    """One training picture of data recipe ``recipe`` (``training.recipes.RECIPES``) with its
    boxes (tiny slivers dropped).

    ``heldout`` (with the recipe's ``visible_labels``) draws photo backgrounds from the
    photographs training never uses; otherwise every photo is used either way. ``clouds``
    (default: the recipe's ``cloud_labels``) gives plumes seen as one cloud one box; the
    picture is the same either way, only its labels differ.
    """
    r = recipe_of(recipe)
    clouds = r.cloud_labels if clouds is None else clouds
    rng = np.random.default_rng(seed)
    view = view or _draw_view(rng, r)
    dust_solid = r.plume_label_opacity
    real = r.real_photos
    labeller, mode, split = None, None, "all"
    if r.visible_labels:  # the lighting is chosen first: how visible a plume is depends on it
        mode = str(rng.choice(LIGHTING_MODES))
        labeller = VisibleLabels(contrast=LIGHTING_CONTRAST[mode], dust_class=CLASS_ID["dust"], clouds=clouds)
        split = "heldout" if heldout else "train"
    if view == "portrait":
        sample = _street_image(rng, h, w, dust_solid, real_ground=real, labeller=labeller)
    elif view == "kerbside":
        sample = _kerbside_image(rng, w, h, real_ground=real, labeller=labeller)
    elif view == "kerbside_portrait":
        sample = _kerbside_image(rng, h, w, real_ground=real, labeller=labeller)
    elif view == "topdown":
        sample = _topdown_image(rng, w, h, labeller=labeller)
    elif view == "topdown_high":
        sample = _topdown_image(rng, w, h, labeller=labeller, scales=(6, 20))
    elif view == "dust_from_above":
        sample = _dust_from_above(rng, w, h, labeller=labeller)
    elif view == "site_from_above":
        sample = _site_from_above(rng, w, h, labeller=labeller, dust_chance=r.site_dust_chance)
    elif view in PHOTO_VIEWS:
        pw, ph = (h, w) if view == "photo_portrait" else (w, h)
        sample = _photo_image(rng, pw, ph, labeller=labeller, photo_split=split,
                              extra_photos=r.extra_photo_sets,
                              defocus=r.defocus, more_plumes=r.more_plumes, clutter=view == "clutter",
                              plumes=view == "dust_photo")
    else:
        sample = _street_image(rng, w, h, dust_solid, real_ground=real, labeller=labeller)
    if labeller is not None:
        sample.boxes = labeller.boxes()
    sample.image = camera_effects(lighting(sample.image, rng, mode), rng)
    sample.boxes = [b for b in sample.boxes if (b[3] - b[1]) >= 6 and (b[4] - b[2]) >= 6]
    return sample
