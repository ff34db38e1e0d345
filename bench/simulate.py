"""A simulated city: the sample clips served as many live sources, looped at real-time
pace, with the city's mix of kinds and resolutions, and a registry that points at them.

    sim = CitySimulation(plan({"fixed": 50, "vehicle": 3, "drone": 1, "mobile": 200}, SAMPLES),
                         cache_dir=".cache/sim")
    sim.prepare()                      # camera-cost media, once (bench/camera_media.py)
    with sim.serve("rtsp") as served:  # or "rtmp", or "file"
        yaml.safe_dump(served.registry(), open("registry.yaml", "w"))
        ...

Transports:

- ``file``: no server. The registry points at the prepared files; a worker with
  ``worker.loop_files`` plays each as a live camera (streams/live.py paces it at
  real time and starts it again at its end). The pipeline's own cost, no network.
- ``rtsp``: one GStreamer RTSP server process (bench/rtsp_serve.py, run by
  Debian's /usr/bin/python3) with a mount point per stream, each an endless loop
  with continuous timestamps.
- ``rtmp``: nginx with the RTMP module, and one ``ffmpeg -re -stream_loop -1 -c copy``
  publisher per stream (the packets as they are, never re-encoded).

Fixed cameras have a main stream (1080p) and a sub-stream (640x360): ``url`` and
``sub_url`` in the registry; the others send 720p (vehicles, phones) or 1080p (drone).
"""
from __future__ import annotations

import json
import os
import random
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from bench.camera_media import KIND_PROFILES, MediaInfo, Progress, measure, prepare, with_gop

CITY_MIX: dict[str, int] = {"fixed": 50, "vehicle": 3, "drone": 1, "mobile": 200}
KINDS = ("fixed", "vehicle", "drone", "mobile")
TRANSPORTS = ("file", "rtsp", "rtmp")

# Which sample clips play as which kind; sources of a kind take them in turn.
KIND_CLIPS: dict[str, tuple[str, ...]] = {
    "fixed": ("fixed_street_vending", "fixed_illegal_construction", "fixed_dust", "fixed_no_violation"),
    "vehicle": ("vehicle_street_vending",),
    "drone": ("drone_illegal_construction",),
    "mobile": ("mobile_street_vending",),
}

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_serve.py")
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"

# The simulated city lies where config/make_city.py puts the real one.
_LAT0, _LAT_SPAN, _LON0, _LON_SPAN = 30.5700, 0.06, 114.2650, 0.07


class SimulationError(RuntimeError):
    """The simulation cannot start; the message is one line meant for a person."""


@dataclass
class SimSource:
    id: str
    kind: str
    clip: Path  # the sample clip it plays
    lat: float | None = None
    lon: float | None = None
    zones: list = field(default_factory=list)
    srt: Path | None = None
    main: Path | None = None  # prepared camera-cost media
    sub: Path | None = None


def scaled_mix(total: int, mix: dict[str, int] = CITY_MIX) -> dict[str, int]:
    """`total` sources in the proportions of `mix`: largest remainders, then at least one
    of each of the `total` most common kinds (taken from the largest), so that even a
    small mix holds every kind it can."""
    if total < 0:
        raise ValueError("the number of sources cannot be negative")
    kinds = [k for k in KINDS if mix.get(k)]
    whole = sum(mix[k] for k in kinds)
    exact = {k: total * mix[k] / whole for k in kinds}
    counts = {k: int(exact[k]) for k in kinds}
    for k in sorted(kinds, key=lambda k: exact[k] - counts[k], reverse=True)[: total - sum(counts.values())]:
        counts[k] += 1
    for k in sorted(kinds, key=lambda k: mix[k], reverse=True)[:total]:
        if counts[k] == 0:
            counts[k] = 1
            counts[max(kinds, key=lambda j: counts[j])] -= 1
    return {k: counts.get(k, 0) for k in KINDS}


def _zones(clip: Path) -> list:
    side = clip.with_suffix(".zones.yaml")  # the sample's own zones, as in the demo registry
    if not side.is_file():
        return []
    return (yaml.safe_load(side.read_text(encoding="utf-8")) or {}).get("zones", [])


def plan(counts: dict[str, int], samples_dir: str | Path, seed: int = 254) -> list[SimSource]:
    """Which clip each simulated source plays, and where it stands (deterministic)."""
    samples_dir = Path(samples_dir)
    unknown = set(counts) - set(KINDS)
    if unknown:
        raise SimulationError(f"unknown source kind(s): {', '.join(sorted(unknown))}; use {', '.join(KINDS)}")
    rng = random.Random(seed)
    out: list[SimSource] = []
    for kind in KINDS:
        n = counts.get(kind, 0)
        if n < 0:
            raise SimulationError(f"--{kind} cannot be negative")
        clips = [samples_dir / f"{name}.mp4" for name in KIND_CLIPS[kind]]
        clips = [c for c in clips if c.is_file()]  # a kind plays those of its clips that are there
        if n and not clips:
            raise SimulationError(f"no {kind} clip in {samples_dir} ({', '.join(KIND_CLIPS[kind])}.mp4; "
                                  "make samples renders them)")
        for i in range(n):
            clip = clips[i % len(clips)]
            src = SimSource(f"sim-{kind}-{i + 1:03d}", kind, clip)
            if kind == "fixed":
                src.lat = round(_LAT0 + rng.random() * _LAT_SPAN, 6)
                src.lon = round(_LON0 + rng.random() * _LON_SPAN, 6)
                src.zones = _zones(clip)
            srt = clip.with_suffix(".SRT")
            if kind == "drone" and srt.is_file():
                src.srt = srt
            out.append(src)
    return out


class CitySimulation:
    def __init__(self, sources: list[SimSource], cache_dir: str | Path, gop_s: dict[str, float] | None = None):
        """`gop_s`: key-frame interval per profile name, overriding the profile's own."""
        self.sources = sources
        self.cache_dir = Path(cache_dir)
        self.gop_s = gop_s or {}
        self.media: dict[Path, MediaInfo] = {}

    def prepare(self, progress: Progress | None = None) -> None:
        """Camera-cost media for every clip and profile in use (cached; see camera_media)."""
        done: dict[tuple[Path, str], Path] = {}

        def get(clip: Path, profile: str) -> Path:
            if (clip, profile) not in done:
                path = prepare(clip, with_gop(profile, self.gop_s.get(profile)), self.cache_dir, progress)
                done[clip, profile] = path
                self.media[path] = measure(path, profile)
            return done[clip, profile]

        for s in self.sources:
            main, sub = KIND_PROFILES[s.kind]
            s.main = get(s.clip, main)
            s.sub = get(s.clip, sub) if sub else None

    def media_table(self) -> list[dict]:
        """What the sources send, measured from the prepared files."""
        return [m.as_dict() | {"path": Path(m.path).name} for m in self.media.values()]

    def serve(self, transport: str, port: int | None = None, workdir: str | Path | None = None) -> Served:
        if transport not in TRANSPORTS:
            raise SimulationError(f"unknown transport {transport!r}; use {', '.join(TRANSPORTS)}")
        if any(s.main is None for s in self.sources):
            self.prepare()
        cls = {"file": FileServed, "rtsp": RtspServed, "rtmp": RtmpServed}[transport]
        return cls(self.sources, port, workdir).start()


# ---------------------------------------------------------------- serving


class Served:
    """Sources being served; a context manager that stops every child it started."""

    transport = ""

    def __init__(self, sources: list[SimSource], port: int | None, workdir: str | Path | None):
        self.sources = sources
        self.port = port
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix=f"patrol-sim-{self.transport}-")
        self.workdir = Path(workdir or self._tmp.name)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.children: list[subprocess.Popen] = []

    def start(self) -> Served:
        return self

    def urls(self, s: SimSource) -> tuple[str, str | None]:
        raise NotImplementedError

    def registry(self) -> dict:
        """The registry (streams.sources format) of the served sources."""
        entries = []
        for s in self.sources:
            url, sub = self.urls(s)
            e: dict = {"id": s.id, "kind": s.kind, "name": f"simulated {s.kind} ({s.clip.stem})", "url": url}
            if sub:
                e["sub_url"] = sub
            if s.lat is not None:
                e.update(lat=s.lat, lon=s.lon)
            if s.kind in ("vehicle", "mobile", "drone"):
                e["location"] = "telemetry"
            if s.srt is not None and self.transport == "file":  # positions by file time: only while it restarts at 0
                e["srt"] = str(s.srt)
            if s.zones:
                e["zones"] = s.zones
            entries.append(e)
        return {"sources": entries}

    def write_registry(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        head = (f"# Simulated city ({len(self.sources)} sources over {self.transport}), "
                "written by `patrol simulate`; valid while it runs.\n")
        path.write_text(head + yaml.safe_dump(self.registry(), allow_unicode=True, sort_keys=False, width=140),
                        encoding="utf-8")
        return path

    def failed(self) -> list[str]:
        """Children that have died (a server or publisher), as one line each."""
        return [f"{' '.join(p.args[:2]) if isinstance(p.args, list) else p.args} exited with {p.returncode}"
                for p in self.children if p.poll() is not None]

    def _spawn(self, argv: list[str], log_name: str, **kw) -> subprocess.Popen:
        with open(self.workdir / log_name, "ab") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=log, **kw)
        self.children.append(proc)
        return proc

    def close(self) -> None:
        for p in self.children:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in self.children:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)
            if p.stdout:
                p.stdout.close()
        self.children.clear()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class FileServed(Served):
    transport = "file"

    def urls(self, s: SimSource) -> tuple[str, str | None]:
        return str(s.main), str(s.sub) if s.sub else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def rtsp_unavailable() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} missing (Debian package python3)"
    check = ("import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
             "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
             "assert Gst.ElementFactory.find('h264parse') and Gst.ElementFactory.find('qtdemux'), 'h264parse/qtdemux'")
    r = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        return ("GStreamer RTSP server unavailable (Debian packages python3-gi, gir1.2-gst-rtsp-server-1.0, "
                f"gstreamer1.0-plugins-good, gstreamer1.0-plugins-bad): {tail}")
    return None


def rtmp_unavailable() -> str | None:
    if shutil.which("nginx") is None:
        return "nginx missing (Debian package nginx)"
    if not os.path.exists(NGINX_RTMP_MODULE):
        return f"{NGINX_RTMP_MODULE} missing (Debian package libnginx-mod-rtmp)"
    if shutil.which("ffmpeg") is None:
        return "ffmpeg missing (Debian package ffmpeg)"
    return None


class RtspServed(Served):
    transport = "rtsp"

    def start(self) -> RtspServed:
        why = rtsp_unavailable()
        if why:
            raise SimulationError(why)
        self.port = self.port or free_port()
        mounts = []
        for s in self.sources:
            mounts.append({"path": s.id, "file": str(s.main)})
            if s.sub:
                mounts.append({"path": f"{s.id}_sub", "file": str(s.sub)})
        spec = self.workdir / "mounts.json"
        spec.write_text(json.dumps(mounts))
        proc = self._spawn([SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), "--mounts", str(spec)],
                           "rtsp-server.log", stdout=subprocess.PIPE, text=True)
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline().strip() if ready else ""
        if not line.startswith("READY"):
            log = (self.workdir / "rtsp-server.log").read_text(errors="replace").strip().splitlines()[-3:]
            self.close()
            raise SimulationError(f"RTSP server did not start: {line or 'no answer in 30 s'} {' | '.join(log)}")
        return self

    def urls(self, s: SimSource) -> tuple[str, str | None]:
        base = f"rtsp://127.0.0.1:{self.port}"
        return f"{base}/{s.id}", f"{base}/{s.id}_sub" if s.sub else None


NGINX_CONF = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections {connections}; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            idle_streams off;
            wait_key on;
            wait_video on;
        }}
    }}
}}
"""


class RtmpServed(Served):
    transport = "rtmp"

    def start(self) -> RtmpServed:
        why = rtmp_unavailable()
        if why:
            raise SimulationError(why)
        self.port = self.port or free_port()
        streams = [(s.id, s.main) for s in self.sources] + [(f"{s.id}_sub", s.sub) for s in self.sources if s.sub]
        conf = self.workdir / "nginx.conf"
        # Every publisher and every player is a connection.
        conf.write_text(NGINX_CONF.format(module=NGINX_RTMP_MODULE, prefix=self.workdir, port=self.port,
                                          connections=max(256, 4 * len(streams) + 64)))
        self._spawn(["nginx", "-p", str(self.workdir), "-c", str(conf), "-e", str(self.workdir / "error.log")],
                    "nginx.log", stdout=subprocess.DEVNULL)
        if not _wait_for_port(self.port, 10):
            self.close()
            raise SimulationError(f"nginx-rtmp did not start on port {self.port}")
        for name, path in streams:
            self._spawn(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
                         "-i", str(path), "-c", "copy", "-f", "flv", self._url(name)],
                        f"publish-{name}.log", stdout=subprocess.DEVNULL)
        time.sleep(1.0)  # a publisher that cannot connect gives up within a second
        dead = self.failed()
        if dead:
            self.close()
            raise SimulationError(f"RTMP publishers failed: {dead[0]} ({len(dead)} in all)")
        return self

    def _url(self, name: str) -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def urls(self, s: SimSource) -> tuple[str, str | None]:
        return self._url(s.id), self._url(f"{s.id}_sub") if s.sub else None


def progress_printer(stream) -> Callable[[str, float, float], None]:
    """A one-line progress bar per prepared file, for terminals and logs alike."""
    state = {"what": None, "last": 0.0, "finished": None}

    def show(what: str, done: float, total: float) -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if state["finished"] == what or (what == state["what"] and not finished and now - state["last"] < 0.5):
            return
        state.update(what=what, last=now, finished=what if finished else None)
        frac = min(1.0, done / total) if total else 1.0
        end = "\n" if finished else ""
        stream.write(f"\r  preparing {what:<40} [{'#' * int(frac * 30):<30}] {done:5.1f}/{total:.1f} s{end}")
        stream.flush()

    return show
