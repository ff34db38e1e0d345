"""A real RTSP server for the reader tests, built on GStreamer's gst-rtsp-server.

Run it with Debian's interpreter (/usr/bin/python3), which has the GObject
bindings; the project's venv does not. It prints ``READY rtsp://...`` on stdout
once the port is bound, and serves until killed.

    /usr/bin/python3 tests/rtsp_server.py --port 8554 --name cam        # test pattern, H.264
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --codec h265      # needs x265enc
    /usr/bin/python3 tests/rtsp_server.py --port 8554 --file clip.mp4   # H.264 MP4, sent as is

A file is played once per client session (each new connection starts it
again); a test pattern is live and endless, like a camera.
"""
from __future__ import annotations

import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

# Encoders tuned like a camera's sub-stream: no B-frames, a key frame every `gop` frames.
ENCODERS = {
    "h264": ("x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800", "h264parse", "rtph264pay"),
    "h265": ("x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} bitrate=800", "h265parse", "rtph265pay"),
}


def launch_line(args) -> str:
    if args.file:
        # No re-encoding: the packets reach the client exactly as they are in the file.
        parse, pay = ("h265parse", "rtph265pay") if args.codec == "h265" else ("h264parse", "rtph264pay")
        return f"( filesrc location={args.file} ! qtdemux ! {parse} config-interval=-1 ! {pay} name=pay0 pt=96 )"
    enc, parse, pay = ENCODERS[args.codec]
    w, h = args.size.split("x")
    return (
        f"( videotestsrc is-live=true pattern={args.pattern} "
        f"! video/x-raw,width={w},height={h},framerate={args.fps}/1 "
        f"! {enc.format(gop=args.gop)} ! {parse} config-interval=-1 ! {pay} name=pay0 pt=96 )"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--name", default="test", help="mount point: rtsp://127.0.0.1:PORT/NAME")
    ap.add_argument("--file", help="an MP4 to serve instead of the test pattern")
    ap.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--fps", type=int, default=10)
    ap.add_argument("--gop", type=int, default=10, help="frames between key frames")
    ap.add_argument("--pattern", default="ball")
    args = ap.parse_args()

    Gst.init(None)
    if not args.file and Gst.ElementFactory.find(ENCODERS[args.codec][0].split()[0]) is None:
        print(f"UNSUPPORTED no GStreamer encoder for {args.codec}", flush=True)
        return 2

    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch_line(args))
    # A test pattern is shared by all clients, like a camera; a file starts afresh per client.
    factory.set_shared(not args.file)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    server.get_mount_points().add_factory(f"/{args.name}", factory)
    if server.attach(None) == 0:
        print(f"ERROR cannot listen on 127.0.0.1:{args.port}", flush=True)
        return 1
    print(f"READY rtsp://127.0.0.1:{args.port}/{args.name}", flush=True)
    GLib.MainLoop().run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
