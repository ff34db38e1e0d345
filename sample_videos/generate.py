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
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.synth import TOPDOWN_SIZE_M, street_background, topdown_background  # noqa: E402
from training.synth_video import Actor, Clip, on_ground, passing, render  # noqa: E402


def clips() -> list[Clip]:
    out = []
    W, H = 960, 540

    # 1. fixed camera, stall with umbrella on the pavement in a no-vending zone
    rng = np.random.default_rng(101)
    scene = street_background(rng, W, H)
    kerb = scene.kerb
    stall_y = kerb - 4
    actors = [
        on_ground(scene, "stall", stall_y, 380, rng, t_in=6, t_out=30, event="street_vending"),
        on_ground(scene, "umbrella", stall_y - 6, 360, rng, t_in=6.5, t_out=29.5, event="street_vending"),
        on_ground(scene, "person", stall_y + 10, 520, rng, t_in=7, t_out=28),
        passing(scene, "car", H - 10, 2, 160, W, rng),
        passing(scene, "car", H - 40, 18, -140, W, rng),
        passing(scene, "person", kerb - 20, 1, 35, W, rng),
    ]
    out.append(Clip("fixed_street_vending", "fixed", (W, H), 40, scene.image, actors, seed=1,
                    zones=[{"name": "East Gate pavement", "role": "no_vending",
                            "polygon": [[0, round(scene.horizon / H, 3)], [1, round(scene.horizon / H, 3)], [1, round((kerb + 30) / H, 3)], [0, round((kerb + 30) / H, 3)]]}]))

    # 2. fixed camera, a blue steel-sheet shed and scaffolding go up and stay
    rng = np.random.default_rng(202)
    scene = street_background(rng, W, H)
    gy = scene.kerb - 2
    actors = [
        on_ground(scene, "steel_shed", gy, 520, rng, t_in=8, event="illegal_construction"),
        on_ground(scene, "scaffold", gy - 20, 330, rng, t_in=12, event="illegal_construction"),
        passing(scene, "car", H - 20, 4, 150, W, rng),
        passing(scene, "tricycle", H - 60, 20, -120, W, rng),
    ]
    out.append(Clip("fixed_illegal_construction", "fixed", (W, H), 40, scene.image, actors, seed=2))

    # 3. fixed camera at a permitted site: material pile inside the permitted zone, then a dust plume
    rng = np.random.default_rng(303)
    scene = street_background(rng, W, H)
    gy = scene.kerb + 40
    pile = on_ground(scene, "material_pile", gy, 60, rng)
    pile.event = None  # permitted: inside the site's zone, so not a violation
    dust = Actor("dust", 430, gy + 40 - 320, 300, 320, t_in=10, t_out=28, event="dust", seed=int(rng.integers(1 << 30)),
                 opacity=2.0)  # earthworks raise a dense plume
    actors = [pile, on_ground(scene, "hoarding", gy - 60, 40, rng) , dust, passing(scene, "car", H - 5, 30, 170, W, rng)]
    actors[1].event = None  # the site's own fence
    out.append(Clip("fixed_dust", "fixed", (W, H), 40, scene.image, actors, seed=3,
                    zones=[{"name": "Permitted site No.7", "role": "permitted_construction",
                            # the whole site: its yard and its own fence
                            "polygon": [[0.0, 0.3], [0.68, 0.3], [0.68, 1.0], [0.0, 1.0]]}]))

    # 4. patrol vehicle driving past a stall with goods on the pavement
    rng = np.random.default_rng(404)
    world_w = W * 3
    scene = street_background(rng, world_w, H)
    gy = scene.kerb - 3
    actors = [
        on_ground(scene, "stall", gy, 1400, rng, event="street_vending"),
        on_ground(scene, "goods", gy + 12, 1580, rng, event="street_vending"),
        on_ground(scene, "tree", gy - 30, 700, rng),
        on_ground(scene, "tree", gy - 30, 2300, rng),
        on_ground(scene, "car", H - 30, 2000, rng),
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
        on_ground(scene, "goods", gy, 90, rng, event="street_vending"),
        on_ground(scene, "umbrella", gy - 20, 200, rng, event="street_vending"),
        on_ground(scene, "person", gy - 10, 400, rng),
    ]
    out.append(Clip("mobile_street_vending", "mobile", (PW, PH), 30, scene.image, actors, shake=6.0, seed=6))

    # 7. a quiet street: traffic, a delivery tricycle passing, steam from a shop — no violation
    rng = np.random.default_rng(707)
    scene = street_background(rng, W, H)
    actors = [
        passing(scene, "tricycle", scene.kerb + 30, 3, 90, W, rng),
        passing(scene, "car", H - 20, 10, -160, W, rng),
        passing(scene, "person", scene.kerb - 10, 0, 40, W, rng),
        passing(scene, "person", scene.kerb - 25, 12, -30, W, rng),
        on_ground(scene, "steam", scene.kerb - 20, 600, rng, t_in=5, t_out=25),
        on_ground(scene, "tree", scene.kerb - 15, 100, rng),
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
