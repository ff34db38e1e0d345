"""Render the sample clips and their ground truth.

    python sample_videos/generate.py [--out sample_videos]

Each clip exercises one source kind and one event type (plus one clip with no
violation and look-alikes that must not fire). For ``X.mp4`` it writes
``X.json`` with the ground truth (format in shared/DESIGN.md), for the drone
clip ``X.SRT`` telemetry, and for clips that need them ``X.zones.yaml``.
Rendering is deterministic: same script, same pictures (the H.264 encoder may round
a few early frames differently between runs).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from streams.telemetry import TelemetrySample, write_srt  # noqa: E402
from vision.synth import (  # noqa: E402
    SIZE_M, TOPDOWN_SIZE_M, lighting, paste, render_sprite, street_background, topdown_background,
)

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
    variants: list = field(default_factory=list)

    def sprite(self, t: float, topdown: bool):
        if not self.variants:
            n = 6 if self.name in ("dust", "steam") else 1
            self.variants = [render_sprite(self.name, np.random.default_rng(self.seed + k), self.w, self.h, topdown) for k in range(n)]
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
    seen: dict[str, list] = {}  # event type -> [(t, visible box, visible area)]
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
            box = paste(frame, (img, alpha), sx, sy, solid=0.3 if actor.name == "dust" else 0.5)
            if box and actor.event:
                # counts as seen when most of it is in the picture (and a plume has built up)
                vis_w = max(0, min(W, sx + actor.w) - max(0, sx))
                vis_h = max(0, min(H, sy + actor.h) - max(0, sy))
                built_up = actor.name != "dust" or float(alpha.max()) >= 0.45
                if vis_w * vis_h >= 0.6 * actor.w * actor.h and built_up:
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


ZOOM = 3.2  # the sample cameras look at the pavement from closer than the scene's default lens


def _on_ground(scene, name: str, ground_y: float, x: float, rng, **kw) -> Actor:
    s = scene.px_per_m(ground_y) * ZOOM
    mw, mh = SIZE_M[name]
    w, h = int(mw * s), int(mh * s)
    return Actor(name, x, ground_y - h, w, h, seed=int(rng.integers(1 << 30)), **kw)


def _passing(scene, name: str, ground_y: float, t0: float, speed: float, W: int, rng) -> Actor:
    a = _on_ground(scene, name, ground_y, -200 if speed > 0 else W + 50, rng, t_in=t0, t_out=t0 + (W + 300) / abs(speed))
    a.vx = speed
    return a


def clips() -> list[Clip]:
    out = []
    W, H = 960, 540

    # 1. fixed camera, stall with umbrella on the pavement in a no-vending zone
    rng = np.random.default_rng(101)
    scene = street_background(rng, W, H)
    kerb = scene.kerb
    stall_y = kerb - 4
    actors = [
        _on_ground(scene, "stall", stall_y, 380, rng, t_in=6, t_out=30, event="street_vending"),
        _on_ground(scene, "umbrella", stall_y - 6, 360, rng, t_in=6.5, t_out=29.5, event="street_vending"),
        _on_ground(scene, "person", stall_y + 10, 520, rng, t_in=7, t_out=28),
        _passing(scene, "car", H - 10, 2, 160, W, rng),
        _passing(scene, "car", H - 40, 18, -140, W, rng),
        _passing(scene, "person", kerb - 20, 1, 35, W, rng),
    ]
    out.append(Clip("fixed_street_vending", "fixed", (W, H), 40, scene.image, actors, seed=1,
                    zones=[{"name": "East Gate pavement", "role": "no_vending",
                            "polygon": [[0, round(scene.horizon / H, 3)], [1, round(scene.horizon / H, 3)], [1, round((kerb + 30) / H, 3)], [0, round((kerb + 30) / H, 3)]]}]))

    # 2. fixed camera, a blue steel-sheet shed and scaffolding go up and stay
    rng = np.random.default_rng(202)
    scene = street_background(rng, W, H)
    gy = scene.kerb - 2
    actors = [
        _on_ground(scene, "steel_shed", gy, 520, rng, t_in=8, event="illegal_construction"),
        _on_ground(scene, "scaffold", gy - 20, 330, rng, t_in=12, event="illegal_construction"),
        _passing(scene, "car", H - 20, 4, 150, W, rng),
        _passing(scene, "tricycle", H - 60, 20, -120, W, rng),
    ]
    out.append(Clip("fixed_illegal_construction", "fixed", (W, H), 40, scene.image, actors, seed=2))

    # 3. fixed camera at a permitted site: material pile inside the permitted zone, then a dust plume
    rng = np.random.default_rng(303)
    scene = street_background(rng, W, H)
    gy = scene.kerb + 40
    pile = _on_ground(scene, "material_pile", gy, 60, rng)
    pile.event = None  # permitted: inside the site's zone, so not a violation
    dust = Actor("dust", 430, gy + 40 - 320, 300, 320, t_in=10, t_out=28, event="dust", seed=int(rng.integers(1 << 30)))
    actors = [pile, _on_ground(scene, "hoarding", gy - 60, 40, rng) , dust, _passing(scene, "car", H - 5, 30, 170, W, rng)]
    actors[1].event = None  # the site's own fence
    out.append(Clip("fixed_dust", "fixed", (W, H), 40, scene.image, actors, seed=3, light="haze",
                    zones=[{"name": "Permitted site No.7", "role": "permitted_construction",
                            "polygon": [[0.0, 0.3], [0.42, 0.3], [0.42, 1.0], [0.0, 1.0]]}]))

    # 4. patrol vehicle driving past a stall with goods on the pavement
    rng = np.random.default_rng(404)
    world_w = W * 3
    scene = street_background(rng, world_w, H)
    gy = scene.kerb - 3
    actors = [
        _on_ground(scene, "stall", gy, 1400, rng, event="street_vending"),
        _on_ground(scene, "goods", gy + 12, 1580, rng, event="street_vending"),
        _on_ground(scene, "tree", gy - 30, 700, rng),
        _on_ground(scene, "tree", gy - 30, 2300, rng),
        _on_ground(scene, "car", H - 30, 2000, rng),
    ]
    out.append(Clip("vehicle_street_vending", "vehicle", (W, H), 40, scene.image, actors, cam_speed=(world_w - W) / 40.0,
                    shake=1.5, seed=4))

    # 5. drone flying over a plot with a new steel shed and a material pile (with telemetry)
    rng = np.random.default_rng(505)
    world = topdown_background(rng, W, int(H * 2.2))
    px = 14.0
    def td(name, x, y, **kw):
        mw, mh = TOPDOWN_SIZE_M[name]
        return Actor(name, x, y, int(mw * px), int(mh * px), seed=int(rng.integers(1 << 30)), **kw)
    actors = [
        td("steel_shed", 380, 520, event="illegal_construction"),
        td("material_pile", 560, 560, event="illegal_construction"),
        td("car", 120, 300), td("car", 700, 900),
    ]
    out.append(Clip("drone_illegal_construction", "drone", (W, H), 40, world, actors, topdown=True,
                    cam_speed_y=(world.shape[0] - H) / 40.0, seed=5, telemetry=(30.6120, 114.2950, 30.6135, 114.2950)))

    # 6. officer's phone, portrait and shaky: goods laid on the pavement under an umbrella
    rng = np.random.default_rng(606)
    PW, PH = 540, 960
    scene = street_background(rng, PW + 40, PH + 40)
    gy = scene.kerb + 60
    actors = [
        _on_ground(scene, "goods", gy, 90, rng, event="street_vending"),
        _on_ground(scene, "umbrella", gy - 20, 200, rng, event="street_vending"),
        _on_ground(scene, "person", gy - 10, 400, rng),
    ]
    out.append(Clip("mobile_street_vending", "mobile", (PW, PH), 30, scene.image, actors, shake=6.0, seed=6))

    # 7. a quiet street: traffic, a delivery tricycle passing, steam from a shop — no violation
    rng = np.random.default_rng(707)
    scene = street_background(rng, W, H)
    actors = [
        _passing(scene, "tricycle", scene.kerb + 30, 3, 90, W, rng),
        _passing(scene, "car", H - 20, 10, -160, W, rng),
        _passing(scene, "person", scene.kerb - 10, 0, 40, W, rng),
        _passing(scene, "person", scene.kerb - 25, 12, -30, W, rng),
        _on_ground(scene, "steam", scene.kerb - 20, 600, rng, t_in=5, t_out=25),
        _on_ground(scene, "tree", scene.kerb - 15, 100, rng),
    ]
    out.append(Clip("fixed_no_violation", "fixed", (W, H), 30, scene.image, actors, seed=7))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent))
    ap.add_argument("--only", nargs="*", help="clip names to render")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for clip in clips():
        if args.only and clip.name not in args.only:
            continue
        truth = render(clip, out)
        print(f"{clip.name}.mp4: {len(truth['events'])} event(s) {[(e['event_type'], e['start'], e['end']) for e in truth['events']]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
