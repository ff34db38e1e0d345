"""A real RTSP server for many simulated cameras: each mount point plays an H.264 MP4
in an endless loop at real-time pace, like a camera that never stops.

Runs under Debian's interpreter (/usr/bin/python3, which has the GStreamer GObject
bindings; the project's venv does not), as a child process of `bench.simulate`:

    /usr/bin/python3 bench/rtsp_serve.py --port 8554 --mounts mounts.json

``mounts.json`` is a list of ``{"path": "fixed-001", "file": "/abs/clip.mp4"}``; the
mount is served at ``rtsp://ADDRESS:PORT/<path>``. The line ``READY rtsp://ADDRESS:PORT``
on stdout says the port is bound; ``ERROR ...`` says why not.

Each file is read once into memory (its H.264 access units, never decoded or
re-encoded), shared by all mounts that play it, and fed to each mount's pipeline
with timestamps that keep growing across loops: a client sees one continuous
stream, not a file that restarts. A mount is shared by its clients, as a camera
is; it starts when its first client connects and stops with its last.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# Access units pushed per need-data call: the sink paces them; this only bounds
# how far ahead of real time a mount's queue runs.
_CHUNK = 12


class Clip:
    """One file's H.264 access units with their timestamps, ready to be replayed."""

    def __init__(self, path: str):
        pipeline = Gst.parse_launch(
            f'filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 '
            "! video/x-h264,stream-format=byte-stream,alignment=au ! appsink name=sink sync=false emit-signals=false"
        )
        sink = pipeline.get_by_name("sink")
        pipeline.set_state(Gst.State.PLAYING)
        self.buffers: list[Gst.Buffer] = []
        self.caps: Gst.Caps | None = None
        try:
            while True:
                sample = sink.emit("pull-sample")
                if sample is None:
                    break
                self.caps = self.caps or sample.get_caps()
                self.buffers.append(sample.get_buffer())
        finally:
            pipeline.set_state(Gst.State.NULL)
        if not self.buffers:
            raise RuntimeError(f"{path}: no H.264 video read")
        first, last = self.buffers[0], self.buffers[-1]
        frame = last.duration if last.duration != Gst.CLOCK_TIME_NONE else Gst.SECOND // 25
        self.start = first.pts
        # One loop lasts from the first frame to the end of the last one.
        self.period = last.pts - first.pts + frame


class Feed:
    """One mount's endless replay of a clip into its appsrc."""

    def __init__(self, clip: Clip):
        self.clip = clip
        self.index = 0
        self.offset = 0  # added to the clip's timestamps: grows by one period per loop
        self.lock = threading.Lock()

    def need_data(self, src, _length) -> None:
        with self.lock:
            for _ in range(_CHUNK):
                orig = self.clip.buffers[self.index]
                buf = orig.copy()  # shares the memory; only the timestamps differ
                buf.pts = orig.pts - self.clip.start + self.offset
                buf.dts = buf.pts if orig.dts == Gst.CLOCK_TIME_NONE else orig.dts - self.clip.start + self.offset
                if src.emit("push-buffer", buf) != Gst.FlowReturn.OK:
                    return
                self.index += 1
                if self.index == len(self.clip.buffers):
                    self.index, self.offset = 0, self.offset + self.clip.period


class LoopFactory(GstRtspServer.RTSPMediaFactory):
    def __init__(self, clip_loader, path: str):
        super().__init__()
        self.clip_loader = clip_loader
        self.path = path
        self.set_shared(True)
        self.set_launch(
            "( appsrc name=src format=time is-live=false stream-type=stream "
            "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        self.connect("media-configure", self._configure)

    def _configure(self, _factory, media) -> None:
        clip = self.clip_loader(self.path)
        src = media.get_element().get_by_name("src")
        src.set_property("caps", clip.caps)
        feed = Feed(clip)
        src.connect("need-data", feed.need_data)
        media.feed = feed  # keep it alive as long as the media


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--address", default="127.0.0.1")
    ap.add_argument("--mounts", required=True, help="JSON list of {path, file}")
    args = ap.parse_args()

    Gst.init(None)
    with open(args.mounts, encoding="utf-8") as f:
        mounts = json.load(f)
    clips: dict[str, Clip] = {}
    lock = threading.Lock()

    def clip_for(path: str) -> Clip:
        with lock:  # read on first use, then shared by every mount that plays it
            if path not in clips:
                clips[path] = Clip(path)
            return clips[path]

    server = GstRtspServer.RTSPServer()
    server.set_address(args.address)
    server.set_service(str(args.port))
    points = server.get_mount_points()
    for m in mounts:
        points.add_factory("/" + m["path"].lstrip("/"), LoopFactory(clip_for, m["file"]))
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on {args.address}:{args.port}", flush=True)
        return 1
    print(f"READY rtsp://{args.address}:{args.port}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
