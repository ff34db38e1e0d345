"""Camera-cost video for simulations and capacity benchmarks.

The sample clips are small renders (960x540, 10 fps, about 0.3 Mbit/s of flat
colour): far cheaper to decode than what a city's cameras send. Prepared here
from them, once, into a cache: the picture scaled to the camera's resolution at
25 fps, a fixed fine texture (the grain of real surfaces, which key frames must
pay for) and per-pixel sensor noise that changes every frame (which every
predicted frame must pay for), encoded by libx264 like a camera encodes: constant
bitrate, key frames at a fixed interval, no B-frames.

| profile  | size      | bitrate    | GOP  | used for                                 |
| -------- | --------- | ---------- | ---- | ---------------------------------------- |
| main1080 | 1920x1080 | 4 Mbit/s   | 2 s  | fixed cameras' main stream               |
| sub360   | 640x360   | 0.5 Mbit/s | 2 s  | fixed cameras' sub-stream                |
| hd720    | 1280x720  | 2 Mbit/s   | 1 s  | patrol vehicles, phones (720x1280 if the clip is portrait) |
| drone1080| 1920x1080 | 4 Mbit/s   | 1 s  | the drone's live feed                    |

Each profile's GOP equals its kind's patrol interval (fixed 2 s, others 1 s,
streams.sources.DEFAULT_INTERVAL_S), within the 1-2 s cameras use; `gop_s`
overrides it to measure the other case.
"""
from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import av

# Bump when the recipe below changes: cached files of another version are not reused.
RECIPE_VERSION = 1
FPS = 25
# Noise strengths (0-100, ffmpeg's noise filter): a static grain on all planes, then
# temporal sensor noise on luma. Fixed seeds: the same clip always gives the same file.
TEXTURE = "noise=c0s=16:c1s=6:c2s=6:all_seed=20231"
SENSOR_NOISE = "noise=c0s=7:c0f=t:all_seed=4242"


class MediaError(RuntimeError):
    """Camera media cannot be prepared; the message says why."""


@dataclass(frozen=True)
class Profile:
    name: str
    width: int  # landscape size; a portrait clip gets it turned
    height: int
    kbps: int
    gop_s: float

    def size_for(self, portrait: bool) -> tuple[int, int]:
        return (self.height, self.width) if portrait else (self.width, self.height)


PROFILES: dict[str, Profile] = {
    "main1080": Profile("main1080", 1920, 1080, 4000, 2.0),
    "sub360": Profile("sub360", 640, 360, 500, 2.0),
    "hd720": Profile("hd720", 1280, 720, 2000, 1.0),
    "drone1080": Profile("drone1080", 1920, 1080, 4000, 1.0),
}

# What each kind of source sends: (main profile, sub-stream profile or None).
KIND_PROFILES: dict[str, tuple[str, str | None]] = {
    "fixed": ("main1080", "sub360"),
    "vehicle": ("hd720", None),
    "mobile": ("hd720", None),
    "drone": ("drone1080", None),
}


@dataclass(frozen=True)
class MediaInfo:
    """What a prepared file really is, measured from its packets (not its settings)."""

    path: str
    profile: str
    width: int
    height: int
    fps: float
    kbps: float  # measured over the whole file
    gop_s: float  # measured: median spacing of key frames
    duration_s: float

    def as_dict(self) -> dict:
        return asdict(self)


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:12]


def _portrait(path: Path) -> bool:
    with av.open(str(path)) as c:
        ctx = c.streams.video[0].codec_context
        return ctx.height > ctx.width


def _duration(path: Path) -> float:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        if s.duration is not None and s.time_base is not None:
            return float(s.duration * s.time_base)
        return (c.duration or 0) / av.time_base


def ffmpeg_args(source: Path, out: Path, profile: Profile, portrait: bool) -> list[str]:
    w, h = profile.size_for(portrait)
    gop = max(1, round(profile.gop_s * FPS))
    vf = f"fps={FPS},scale={w}:{h}:flags=bicubic,{TEXTURE},{SENSOR_NOISE},format=yuv420p"
    return [
        "ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source), "-an",
        "-vf", vf, "-c:v", "libx264", "-preset", "veryfast", "-profile:v", "main", "-bf", "0",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0",
        # constant bitrate with one second of buffer, as camera encoders run
        "-b:v", f"{profile.kbps}k", "-maxrate", f"{profile.kbps}k", "-bufsize", f"{profile.kbps}k",
        "-threads", "2", "-movflags", "+faststart", "-progress", "pipe:1", "-nostats", str(out),
    ]


Progress = Callable[[str, float, float], None]  # (what, seconds done, seconds in all)


def prepare(source: str | Path, profile: Profile | str, cache_dir: str | Path,
            progress: Progress | None = None) -> Path:
    """The camera-cost version of `source` for `profile`, encoded on first use and cached.

    The cache name carries the source's content hash, the profile and the recipe
    version, so a changed clip or recipe is prepared afresh and never mixed up.
    """
    source = Path(source)
    if isinstance(profile, str):
        profile = PROFILES[profile]
    if not source.is_file():
        raise MediaError(f"{source}: no such video")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = f"{profile.kbps}k-gop{profile.gop_s:g}-v{RECIPE_VERSION}-{_file_digest(source)}"
    out = cache_dir / f"{source.stem}.{profile.name}.{key}.mp4"
    if out.is_file():
        return out
    portrait = _portrait(source)
    total = _duration(source)
    tmp = out.with_suffix(".part.mp4")
    what = f"{source.stem} {profile.name}"
    proc = subprocess.Popen(ffmpeg_args(source, tmp, profile, portrait), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:  # -progress: key=value lines, out_time_us among them
        if line.startswith("out_time_us=") and progress is not None:
            try:
                progress(what, min(total, int(line.split("=", 1)[1]) / 1e6), total)
            except ValueError:
                pass
    err = proc.stderr.read()
    if proc.wait() != 0:
        tmp.unlink(missing_ok=True)
        raise MediaError(f"preparing {what} failed: {err.strip().splitlines()[-1] if err.strip() else 'ffmpeg failed'}")
    if progress is not None:
        progress(what, total, total)
    tmp.rename(out)  # only a finished file ever carries the cache name
    return out


def measure(path: str | Path, profile: str = "") -> MediaInfo:
    """Size, frame rate, bitrate and GOP as they are in the file's packets."""
    path = Path(path)
    cache = path.with_suffix(".info.json")
    if cache.is_file() and cache.stat().st_mtime >= path.stat().st_mtime:
        return MediaInfo(**json.loads(cache.read_text()))
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        tb = float(s.time_base)
        size, keys, last = 0, [], 0.0
        first = None
        for p in c.demux(s):
            if p.size == 0 or p.pts is None:
                continue
            t = p.pts * tb
            first = t if first is None else first
            last = max(last, t)
            size += p.size
            if p.is_keyframe:
                keys.append(t)
        rate = s.average_rate or s.guessed_rate
        fps = float(rate) if rate else float(FPS)
        duration = last - (first or 0.0) + 1 / fps
        gaps = sorted(b - a for a, b in zip(keys, keys[1:]))
        info = MediaInfo(str(path), profile, s.codec_context.width, s.codec_context.height, round(fps, 2),
                         round(size * 8 / duration / 1000, 1), round(gaps[len(gaps) // 2], 2) if gaps else duration,
                         round(duration, 2))
    cache.write_text(json.dumps(info.as_dict()))
    return info


def with_gop(profile: str, gop_s: float | None) -> Profile:
    """A profile, with its key-frame interval overridden when `gop_s` is given."""
    p = PROFILES[profile]
    return p if gop_s is None else replace(p, gop_s=gop_s)
