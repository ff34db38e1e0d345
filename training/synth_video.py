"""Rendered video clips with ground truth: the sample videos and held-out test videos.

A clip is a world picture (a street, or ground seen from above), actors placed in
it with the times they are present, and a camera (fixed, panning, shaking). The
renderer encodes it as H.264 and writes the ground truth in the format of
shared/DESIGN.md (``X.json``), plus zones and DJI telemetry where the clip has them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import yaml

from streams.telemetry import TelemetrySample, write_srt
from training.synth import (SIZE_M, TOPDOWN_SIZE_M, lighting, paste, render_sprite, street_background, thicken,
                          topdown_background)
from training.visibility import LIGHTING_CONTRAST, blend, mask_box, visible_dust

FPS = 10


@dataclass
class Actor:
    """A sprite placed in world pixels, visible from t_in to t_out, optionally moving."""

    name: str
    x: float
    y: float  # top-left, world pixels
    w: int
    h: int
    t_in: float = 0.0
    t_out: float = 1e9
    vx: float = 0.0  # world pixels per second
    event: str | None = None  # event type this actor belongs to (None = clutter)
    seed: int = 0
    opacity: float = 1.0  # alpha multiplier: a dense plume from an earthworks site is > 1
    density: float = 1.0  # layers of the same plume (``synth.thicken``), as the training pictures draw them
    variants: list = field(default_factory=list)

    def sprite(self, t: float, topdown: bool):
        if not self.variants:
            n = 6 if self.name in ("dust", "steam") else 1
            self.variants = [render_sprite(self.name, np.random.default_rng(self.seed + k), self.w, self.h, topdown) for k in range(n)]
            if self.opacity != 1.0:
                self.variants = [(img, np.clip(alpha * self.opacity, 0.0, 0.95)) for img, alpha in self.variants]
            if self.density != 1.0:
                self.variants = [(img, thicken(alpha, self.density)) for img, alpha in self.variants]
        if len(self.variants) == 1:
            return self.variants[0]
        # a plume billows: cross-fade between renderings over time
        pos = (t * 0.7) % len(self.variants)
        i, f = int(pos), pos - int(pos)
        a, b = self.variants[i], self.variants[(i + 1) % len(self.variants)]
        grow = min(1.0, max(0.15, (t - self.t_in) / 4.0), max(0.0, (self.t_out - t) / 3.0))  # rises, then settles
        return ((a[0] * (1 - f) + b[0] * f).astype(np.uint8), (a[1] * (1 - f) + b[1] * f) * grow)

    def at(self, t: float) -> tuple[float, float]:
        return self.x + self.vx * (t - self.t_in), self.y


@dataclass
class Clip:
    name: str
    kind: str
    size: tuple[int, int]  # output (w, h)
    seconds: float
    world: np.ndarray
    actors: list[Actor]
    topdown: bool = False
    cam_speed: float = 0.0  # world pixels per second, horizontal pan
    cam_speed_y: float = 0.0
    shake: float = 0.0  # handheld jitter amplitude, pixels
    light: str = "day"
    zones: list | None = None
    telemetry: list | None = None  # (lat0, lon0, lat1, lon1) straight flight
    seed: int = 0


def render(clip: Clip, out_dir: Path) -> dict:
    """Encode the clip as H.264 and return its ground truth."""
    rng = np.random.default_rng(clip.seed)
    W, H = clip.size
    path = out_dir / f"{clip.name}.mp4"
    container = av.open(str(path), "w")
    stream = container.add_stream("libx264", rate=FPS)
    stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
    stream.options = {"crf": "30", "preset": "medium", "g": str(2 * FPS), "keyint_min": str(2 * FPS), "sc_threshold": "0"}
    n = int(clip.seconds * FPS)
    contrast = LIGHTING_CONTRAST[clip.light]
    seen: dict[str, list] = {}  # event type -> [(t, union of its visible boxes)]
    for i in range(n):
        t = i / FPS
        cx = clip.cam_speed * t + (rng.normal(0, clip.shake) if clip.shake else 0)
        cy = clip.cam_speed_y * t + (rng.normal(0, clip.shake) if clip.shake else 0)
        cx = float(np.clip(cx, 0, clip.world.shape[1] - W))
        cy = float(np.clip(cy, 0, clip.world.shape[0] - H))
        frame = clip.world[int(cy) : int(cy) + H, int(cx) : int(cx) + W].copy()
        boxes: dict[str, list] = {}
        for actor in sorted(clip.actors, key=lambda a: a.y + a.h):
            if not (actor.t_in <= t < actor.t_out):
                continue
            img, alpha = actor.sprite(t, clip.topdown)
            ax, ay = actor.at(t)
            sx, sy = int(ax - cx), int(ay - cy)
            if actor.name == "dust" and actor.event:
                box = _visible_plume(frame, (img, alpha), sx, sy, contrast)
            else:
                box = paste(frame, (img, alpha), sx, sy)
            if box and actor.event:
                # counts as seen when most of it is in the picture
                vis_w = max(0, min(W, sx + actor.w) - max(0, sx))
                vis_h = max(0, min(H, sy + actor.h) - max(0, sy))
                if vis_w * vis_h >= 0.6 * actor.w * actor.h:
                    boxes.setdefault(actor.event, []).append(box)
        for ev, bs in boxes.items():
            union = (min(b[0] for b in bs), min(b[1] for b in bs), max(b[2] for b in bs), max(b[3] for b in bs))
            seen.setdefault(ev, []).append((t, union))
        frame = lighting(frame, rng, clip.light) if clip.light != "day" else frame
        frame = np.clip(frame.astype(np.float32) + rng.normal(0, 1.0, frame.shape), 0, 255).astype(np.uint8)
        vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
        for packet in stream.encode(vf):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
    container.close()

    events = []
    for ev, hits in seen.items():
        start, end = hits[0][0], hits[-1][0] + 1.0 / FPS
        mid = hits[len(hits) // 2][1]
        events.append({"event_type": ev, "start": round(start, 1), "end": round(end, 1), "bbox": [int(v) for v in mid]})
    truth = {"source_kind": clip.kind, "events": sorted(events, key=lambda e: e["start"])}
    (out_dir / f"{clip.name}.json").write_text(json.dumps(truth, indent=2) + "\n")
    if clip.zones:
        (out_dir / f"{clip.name}.zones.yaml").write_text(yaml.safe_dump({"zones": clip.zones}, allow_unicode=True, sort_keys=False))
    if clip.telemetry:
        lat0, lon0, lat1, lon1 = clip.telemetry
        samples = []
        for i in range(int(clip.seconds * FPS)):
            f = i / (clip.seconds * FPS)
            samples.append(TelemetrySample(t=i / FPS, lat=lat0 + (lat1 - lat0) * f, lon=lon0 + (lon1 - lon0) * f,
                                           alt=120.0, end=(i + 1) / FPS))
        write_srt(samples, out_dir / f"{clip.name}.SRT", dialect="mavic3")
    return truth


def _visible_plume(frame: np.ndarray, sprite, x: int, y: int, contrast: float) -> tuple[int, int, int, int] | None:
    """Paste a plume; return the box of its visible part, by the same rule as the training
    labels (``visibility.visible_dust``): a veil that changes nothing is not a dust event."""
    blended = blend(frame, sprite, x, y)
    if blended is None:
        return None
    (x0, y0, _, _), sa, before, after = blended
    return mask_box(visible_dust(sa, before, after, sprite[1].shape, contrast), x0, y0)


ZOOM = 3.2  # the sample cameras look at the pavement from closer than the scene's default lens


def on_ground(scene, name: str, ground_y: float, x: float, rng, zoom: float = ZOOM, **kw) -> Actor:
    """An actor standing on the ground row ``ground_y``, sized by the scene's perspective."""
    s = scene.px_per_m(ground_y) * zoom
    mw, mh = SIZE_M[name]
    w, h = int(mw * s), int(mh * s)
    return Actor(name, x, ground_y - h, w, h, seed=int(rng.integers(1 << 30)), **kw)


def passing(scene, name: str, ground_y: float, t0: float, speed: float, W: int, rng) -> Actor:
    """Traffic: an actor crossing the picture at ``speed`` world pixels per second."""
    a = on_ground(scene, name, ground_y, -200 if speed > 0 else W + 50, rng, t_in=t0, t_out=t0 + (W + 300) / abs(speed))
    a.vx = speed
    return a


# --- held-out scenarios ------------------------------------------------------------------

# Which objects make up one violation, by event type (any of these groups).
EVENT_GROUPS = {
    "street_vending": (("stall", "umbrella"), ("stall",), ("goods", "umbrella"), ("goods",), ("stall", "goods")),
    "illegal_construction": (("steel_shed",), ("scaffold",), ("hoarding",), ("steel_shed", "material_pile"),
                             ("scaffold", "hoarding")),
    "dust": (("dust",),),
}
KIND_EVENTS = {
    "fixed": ("street_vending", "illegal_construction", "dust", None),
    "vehicle": ("street_vending", "illegal_construction", None),
    "drone": ("illegal_construction", "dust"),
    "mobile": ("street_vending", None),
}


def _group(rng, event_type: str) -> tuple[str, ...]:
    groups = EVENT_GROUPS[event_type]
    return groups[int(rng.integers(len(groups)))]


def random_clip(seed: int, kind: str | None = None, event_type: str | None = "any", seconds: float = 40.0) -> Clip:
    """A clip drawn from a seed: a source kind, one violation (or none) with random
    objects, place, timing, lens and light, and passing traffic. Used for held-out
    evaluation: its scenes are not the training pictures nor the sample videos.
    """
    rng = np.random.default_rng(seed)
    kind = kind or str(rng.choice(["fixed", "fixed", "vehicle", "drone", "mobile"]))
    if event_type == "any":
        options = KIND_EVENTS[kind]
        event_type = options[int(rng.integers(len(options)))]
    light = str(rng.choice(["day", "day", "dusk", "haze"]))
    name = f"heldout_{seed:05d}_{kind}_{event_type or 'none'}"
    t_in = float(rng.uniform(3, 12))
    t_out = t_in + float(rng.uniform(15, 26)) if event_type in ("street_vending", "dust") else 1e9
    W, H = (540, 960) if kind == "mobile" else (960, 540)
    # A dust event is a cloud as dense as the training pictures draw one (drawn from its
    # own generator, so that every other draw of the seed stays as it was).
    density = float(np.random.default_rng((seed, 1)).uniform(1.5, 3.0))

    if kind == "drone":
        world = topdown_background(rng, W, int(H * 2.2))
        px = float(rng.uniform(11, 17))
        actors = []
        if event_type:
            x, y = float(rng.uniform(100, W - 350)), float(rng.uniform(0.7 * H, 1.3 * H))
            for i, obj in enumerate(_group(rng, event_type)):
                mw, mh = TOPDOWN_SIZE_M[obj]
                actors.append(Actor(obj, x + i * 0.9 * mw * px, y, int(mw * px), int(mh * px), event=event_type,
                                    seed=int(rng.integers(1 << 30)),
                                    **({"t_in": t_in, "t_out": t_out, "density": density} if obj == "dust" else {})))
        for _ in range(int(rng.integers(1, 4))):
            mw, mh = TOPDOWN_SIZE_M["car"]
            actors.append(Actor("car", float(rng.uniform(0, W - 80)), float(rng.uniform(0, world.shape[0] - 40)),
                                int(mw * px), int(mh * px), seed=int(rng.integers(1 << 30))))
        lat0, lon0 = 30.58 + float(rng.uniform(0, 0.04)), 114.28 + float(rng.uniform(0, 0.04))
        return Clip(name, kind, (W, H), seconds, world, actors, topdown=True,
                    cam_speed_y=(world.shape[0] - H) / seconds, seed=seed, light=light,
                    telemetry=(lat0, lon0, lat0 + 0.0015, lon0))

    world_w = W * 3 if kind == "vehicle" else W + 40
    scene = street_background(rng, world_w, H + 40)
    zoom = float(rng.uniform(2.6, 3.8))
    gy = scene.kerb - float(rng.uniform(0, 12))
    actors = []
    zones = None
    if event_type == "dust":
        w = int(rng.uniform(220, 340))
        x = float(rng.uniform(40, W - w - 40))
        actors.append(Actor("dust", x, gy + 40 - w * 1.05, w, int(w * 1.05), t_in=t_in, t_out=t_out, event="dust",
                            seed=int(rng.integers(1 << 30)), density=density))
    elif event_type:
        lo, hi = (W, 2 * W - 300) if kind == "vehicle" else (40, W - 360)
        x = float(rng.uniform(lo, hi))
        for obj in _group(rng, event_type):
            a = on_ground(scene, obj, gy + (10 if obj == "goods" else 0), x, rng, zoom=zoom,
                          **({"t_in": t_in, "t_out": t_out} if kind != "vehicle" else {}), event=event_type)
            if a.w > W * 0.6:  # a long hoarding: keep it in the picture
                a.w = int(W * 0.6)
            actors.append(a)
            x += a.w * float(rng.uniform(0.7, 1.0))
        if event_type == "street_vending" and kind == "fixed":
            top, bottom = scene.horizon / (H + 40), min(1.0, (scene.kerb + 40) / (H + 40))
            zones = [{"name": "pavement", "role": "no_vending",
                      "polygon": [[0, round(top, 3)], [1, round(top, 3)], [1, round(bottom, 3)], [0, round(bottom, 3)]]}]
    for _ in range(int(rng.integers(1, 4))):  # traffic and passers-by: never violations
        what = str(rng.choice(["car", "person", "tricycle"]))
        row = H - float(rng.uniform(0, 40)) if what == "car" else scene.kerb + float(rng.uniform(-20, 30))
        actors.append(passing(scene, what, row, float(rng.uniform(0, seconds - 10)),
                              float(rng.choice([-1, 1]) * rng.uniform(60, 170)), W, rng))
    if event_type is None and rng.random() < 0.5:
        actors.append(on_ground(scene, "steam", scene.kerb - 10, float(rng.uniform(50, W - 300)), rng,
                                t_in=float(rng.uniform(0, 10)), t_out=float(rng.uniform(20, 35))))
    return Clip(name, kind, (W, H), seconds, scene.image, actors, seed=seed, light=light, zones=zones,
                cam_speed=(world_w - W) / seconds if kind == "vehicle" else 0.0,
                shake=float(rng.uniform(4, 8)) if kind == "mobile" else (1.5 if kind == "vehicle" else 0.0))
