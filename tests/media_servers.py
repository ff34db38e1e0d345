"""Real media servers for tests: no mocks, the same protocols cameras speak.

- `rtsp_server()`: GStreamer's RTSP server (tests/rtsp_server.py, run by Debian's
  /usr/bin/python3, which has the GObject bindings) serving a live test pattern.
- `rtmp_server()`: nginx with libnginx-mod-rtmp, unprivileged on a high port,
  plus `server.publish(name)`: an ffmpeg process pushing a test pattern to it.
  nginx also repackages every published stream as HLS at `server.hls_url(name)`.
- `httpflv_server()`: FFmpeg's own HTTP server sending live FLV, the way a media
  gateway serves `http://…/x.live.flv` (see `HttpFlvServer` for why FFmpeg).
- `make_video()`: a small H.264 file with a known GOP.

Every server can be killed (a crash), restarted on the same port, or frozen
(SIGSTOP: the connection stays open but goes silent), to test recovery.

    with rtsp_server() as srv:
        reader = LiveReader("cam", srv.url)
        ...
        srv.kill(); srv.restart()

`require_rtsp()` / `require_rtmp()` skip the calling test, saying which Debian
package is missing; nothing else is a reason to skip.
"""
from __future__ import annotations

import functools
import os
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SCRIPT = Path(__file__).with_name("rtsp_server.py")
NGINX_RTMP_MODULE = "/usr/lib/nginx/modules/ngx_rtmp_module.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout_s:g} s")
            time.sleep(0.05)


# ---------------------------------------------------------------- availability


@functools.cache
def rtsp_unavailable() -> str | None:
    """Why the RTSP server cannot run here, or None."""
    if not os.path.exists(SYSTEM_PYTHON):
        return f"{SYSTEM_PYTHON} missing (Debian package python3)"
    check = (
        "import gi; gi.require_version('Gst', '1.0'); gi.require_version('GstRtspServer', '1.0');"
        "from gi.repository import Gst, GstRtspServer; Gst.init(None);"
        "assert Gst.ElementFactory.find('x264enc'), 'x264enc'"
    )
    r = subprocess.run([SYSTEM_PYTHON, "-c", check], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        packages = "python3-gi, gir1.2-gst-rtsp-server-1.0, gstreamer1.0-plugins-ugly"
        return f"GStreamer RTSP server unavailable ({packages}): {tail}"
    return None


@functools.cache
def rtmp_unavailable() -> str | None:
    if shutil.which("nginx") is None:
        return "nginx missing (Debian package nginx)"
    if not os.path.exists(NGINX_RTMP_MODULE):
        return f"{NGINX_RTMP_MODULE} missing (Debian package libnginx-mod-rtmp)"
    return ffmpeg_unavailable()


@functools.cache
def ffmpeg_unavailable() -> str | None:
    return None if shutil.which("ffmpeg") else "ffmpeg missing (Debian package ffmpeg)"


def require_rtsp() -> None:
    reason = rtsp_unavailable()
    if reason:
        pytest.skip(reason)


def require_rtmp() -> None:
    reason = rtmp_unavailable()
    if reason:
        pytest.skip(reason)


def require_ffmpeg() -> None:
    reason = ffmpeg_unavailable()
    if reason:
        pytest.skip(reason)


# ---------------------------------------------------------------- processes


class _Process:
    """A child process that can crash (kill), freeze, thaw and restart."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _spawn(self, argv: list[str], **kw) -> subprocess.Popen:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stderr=log, **kw)
        finally:
            log.close()
        return self.proc

    def log_tail(self, lines: int = 5) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").strip().splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """Die without a goodbye, as a crashed server or a pulled cable would."""
        if self.running:
            self.thaw()
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait(timeout=10)
            if self.proc.stdout:
                self.proc.stdout.close()

    def terminate(self) -> None:
        if self.running:
            self.thaw()
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def freeze(self) -> None:
        """Stop answering but keep every connection open."""
        if self.running:
            self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        if self.running:
            self.proc.send_signal(signal.SIGCONT)


class RtspServer(_Process):
    """tests/rtsp_server.py in a subprocess; `url` is what readers open."""

    def __init__(self, port: int | None = None, name: str = "test", workdir: Path | None = None, **options):
        self.port = port or free_port()
        self.name = name
        self.options = options  # codec, file, size, fps, gop, pattern: see rtsp_server.py
        self._tmp = None if workdir else tempfile.TemporaryDirectory(prefix="rtsp-")
        workdir = Path(workdir or self._tmp.name)
        super().__init__(workdir / f"rtsp-{self.port}.log")

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}/{self.name}"

    def start(self, timeout_s: float = 15.0) -> RtspServer:
        """Start and wait for READY; retries while the port is still being released."""
        deadline = time.monotonic() + timeout_s
        while True:
            line = self._start_once(deadline)
            if line.startswith("READY"):
                return self
            self.kill()
            if line.startswith("ERROR") and time.monotonic() < deadline:
                time.sleep(0.3)  # the old server's socket may not be released yet
                continue
            raise RuntimeError(f"RTSP server did not start: {line or 'no output'} {self.log_tail()}")

    def _start_once(self, deadline: float) -> str:
        argv = [SYSTEM_PYTHON, str(RTSP_SCRIPT), "--port", str(self.port), "--name", self.name]
        for key, value in self.options.items():
            argv += [f"--{key}", str(value)]
        proc = self._spawn(argv, stdout=subprocess.PIPE, text=True)
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(0.1, remaining))
        return proc.stdout.readline().strip() if ready else ""

    def restart(self) -> RtspServer:
        self.kill()
        return self.start()

    def close(self) -> None:
        self.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> RtspServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def rtsp_server(port: int | None = None, name: str = "test", **options):
    """A running RTSP server (test pattern by default) for the `with` block."""
    with RtspServer(port, name, **options) as server:
        server.start()
        yield server


NGINX_CONF = """\
load_module {module};
daemon off;
master_process off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log info;
events {{ worker_connections 128; }}
rtmp {{
    server {{
        listen 127.0.0.1:{port};
        application live {{
            live on;
            # Players of a stream nobody publishes are refused at once instead
            # of waiting, and each player starts at a key frame.
            idle_streams off;
            wait_key on;
            wait_video on;
            hls on;
            hls_path {prefix}/hls;
            hls_fragment 1s;
            hls_playlist_length 4s;
        }}
    }}
}}
http {{
    access_log off;
    # Every temp path inside the prefix: the compiled-in ones are root's.
    client_body_temp_path {prefix}/tmp-body;
    proxy_temp_path {prefix}/tmp-proxy;
    fastcgi_temp_path {prefix}/tmp-fastcgi;
    uwsgi_temp_path {prefix}/tmp-uwsgi;
    scgi_temp_path {prefix}/tmp-scgi;
    types {{ application/vnd.apple.mpegurl m3u8; video/mp2t ts; }}
    server {{
        listen 127.0.0.1:{http_port};
        location /hls/ {{ root {prefix}; add_header Cache-Control no-cache; }}
    }}
}}
"""


class Publisher(_Process):
    """ffmpeg pushing a live test pattern (H.264 in FLV) to an RTMP URL."""

    def __init__(self, url: str, log_path: Path, size: str = "640x360", fps: int = 10, gop: int = 10):
        super().__init__(log_path)
        self.url = url
        self.size, self.fps, self.gop = size, fps, gop

    def start(self) -> Publisher:
        self._spawn(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re",
             "-f", "lavfi", "-i", f"testsrc2=size={self.size}:rate={self.fps}",
             "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency", "-g", str(self.gop),
             "-pix_fmt", "yuv420p", "-f", "flv", self.url],
            stdout=subprocess.DEVNULL,
        )
        return self

    def restart(self) -> Publisher:
        self.kill()
        return self.start()


class RtmpServer(_Process):
    """nginx-rtmp under its own temporary prefix; `url(name)` for players and publishers."""

    def __init__(self, port: int | None = None, http_port: int | None = None):
        self.port = port or free_port()
        self.http_port = http_port or free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="nginx-rtmp-")
        self.prefix = Path(self._tmp.name)
        self.publishers: list[Publisher] = []
        super().__init__(self.prefix / "error.log")

    def url(self, name: str = "test") -> str:
        return f"rtmp://127.0.0.1:{self.port}/live/{name}"

    def hls_url(self, name: str = "test") -> str:
        return f"http://127.0.0.1:{self.http_port}/hls/{name}.m3u8"

    def start(self, timeout_s: float = 10.0) -> RtmpServer:
        conf = self.prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(module=NGINX_RTMP_MODULE, prefix=self.prefix, port=self.port, http_port=self.http_port)
        )
        # -e: nginx writes its startup errors to the default /var/log path otherwise.
        argv = ["nginx", "-p", str(self.prefix), "-c", str(conf), "-e", str(self.log_path)]
        self._spawn(argv, stdout=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, timeout_s)
            wait_for_port(self.http_port, timeout_s)
        except TimeoutError as err:
            self.kill()
            raise RuntimeError(f"nginx-rtmp did not start: {err}; {self.log_tail()}") from None
        return self

    def publish(self, name: str = "test", **options) -> Publisher:
        """Start pushing a test pattern to `url(name)`; stopped with the server."""
        pub = Publisher(self.url(name), self.prefix / f"publish-{name}.log", **options).start()
        self.publishers.append(pub)
        return pub

    def close(self) -> None:
        for pub in self.publishers:
            pub.kill()
        self.terminate()
        self._tmp.cleanup()

    def __enter__(self) -> RtmpServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def rtmp_server(port: int | None = None):
    """A running nginx-rtmp for the `with` block (publish streams with `.publish`)."""
    with RtmpServer(port) as server:
        server.start()
        yield server


# ---------------------------------------------------------------- HTTP-FLV


def serving(port: int) -> bool:
    """Whether a server on 127.0.0.1:`port` is up, asked of the kernel: connecting to find
    out would itself be taken as a player by a one-client server. Up means listening, or
    already serving a player: FFmpeg's ``-listen 1`` stops listening the moment a player
    connects, and a reader retrying every few milliseconds can connect between two looks."""
    wanted = f"{port:04X}"
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            # local address is ours; 0A: TCP_LISTEN, 01: TCP_ESTABLISHED
            if fields[1].rsplit(":", 1)[1] == wanted and fields[3] in ("0A", "01"):
                return True
    return False


class HttpFlvServer(_Process):
    """Live H.264 in FLV over HTTP from FFmpeg's own HTTP server (``-listen 1``).

    Gateways (SRS, ZLMediaKit, a GB/T 28181 platform's media server) re-export
    cameras as ``http://…/x.live.flv``: one endless HTTP response carrying an FLV
    stream. Debian's nginx-rtmp has no HTTP-FLV (that is the separate, unpackaged
    nginx-http-flv-module), and node-media-server would add Node and an npm install
    to CI; FFmpeg's HTTP server is already installed for the other tests and is a
    real HTTP server writing real FLV, so the reader meets the protocol exactly.

    One FFmpeg process serves one player and ends when that player leaves, so a
    supervisor thread starts a fresh one each time, as a gateway keeps serving.
    ``kill()`` crashes the server and keeps it down until ``restart()``;
    ``freeze()`` (SIGSTOP) keeps the player's connection open and silent.
    The picture is a test pattern (640x360, 10 fps, a key frame every second),
    or ``file`` looped and sent as it is (``-c copy``).
    """

    def __init__(self, port: int | None = None, name: str = "live", file: Path | None = None,
                 size: str = "640x360", fps: int = 10, gop: int = 10):
        self.port = port or free_port()
        self.name, self.file = name, file
        self.size, self.fps, self.gop = size, fps, gop
        self._tmp = tempfile.TemporaryDirectory(prefix="httpflv-")
        super().__init__(Path(self._tmp.name) / f"httpflv-{self.port}.log")
        self._lock = threading.Lock()
        self._serving = False  # whether the supervisor keeps a server process up
        self._closed = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.served = 0  # server processes started: one per player session

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{self.name}.flv"

    def _argv(self) -> list[str]:
        if self.file is not None:
            source = ["-stream_loop", "-1", "-i", str(self.file), "-c:v", "copy"]
        else:
            source = ["-f", "lavfi", "-i", f"testsrc2=size={self.size}:rate={self.fps}",
                      "-c:v", "libx264", "-preset", "ultrafast", "-tune", "zerolatency",
                      "-g", str(self.gop), "-pix_fmt", "yuv420p"]
        return ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-re", *source, "-an",
                "-f", "flv", "-listen", "1", self.url]

    def _spawn_server(self, timeout_s: float = 20.0) -> None:
        """Start one server process and wait until it listens (called under the lock)."""
        proc = self._spawn(self._argv(), stdout=subprocess.DEVNULL)
        self.served += 1
        deadline = time.monotonic() + timeout_s
        while not serving(self.port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"HTTP-FLV server did not start (exit {proc.poll()}): {self.log_tail()}")
            time.sleep(0.02)

    def _supervise(self) -> None:
        while not self._closed.wait(0.05):
            with self._lock:
                if self._serving and not self.running:
                    try:
                        self._spawn_server()
                    except RuntimeError:  # the port may still be held by the last one: try again
                        if self.running:
                            self.proc.kill()

    def start(self) -> HttpFlvServer:
        with self._lock:
            self._serving = True
            if not self.running:
                self._spawn_server()
        if self._supervisor is None:
            self._supervisor = threading.Thread(target=self._supervise, name="httpflv-supervisor", daemon=True)
            self._supervisor.start()
        return self

    def kill(self) -> None:
        with self._lock:
            self._serving = False
            super().kill()

    def restart(self) -> HttpFlvServer:
        self.kill()
        return self.start()

    def close(self) -> None:
        self._closed.set()
        if self._supervisor is not None:
            self._supervisor.join(5)
        self.kill()
        self._tmp.cleanup()

    def __enter__(self) -> HttpFlvServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@contextmanager
def httpflv_server(port: int | None = None, **options):
    """A running HTTP-FLV server for the `with` block (options: see `HttpFlvServer`)."""
    require_ffmpeg()
    with HttpFlvServer(port, **options) as server:
        server.start()
        yield server


# ---------------------------------------------------------------- files


def make_video(
    path: Path,
    seconds: float = 6,
    fps: int = 10,
    gop: int = 10,
    size: str = "320x240",
    bframes: int = 0,
    faststart: bool = False,
) -> Path:
    """An H.264 MP4 of testsrc2 with a key frame exactly every `gop` frames."""
    require_ffmpeg()
    argv = [
        "ffmpeg", "-nostdin", "-loglevel", "error", "-y",
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={fps}", "-t", str(seconds),
        "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p",
        "-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0", "-bf", str(bframes),
    ]
    if faststart:
        argv += ["-movflags", "+faststart"]
    subprocess.run(argv + [str(path)], check=True, timeout=60)
    return path
