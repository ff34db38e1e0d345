"""Shared pytest fixtures. Each section belongs to one part of the product."""
from __future__ import annotations

import pytest

# ---------------------------------------------------------------- streams: real media servers
# Fixtures over tests/media_servers.py; a test that asks for one is skipped only
# when the Debian package the server needs is missing.

import media_servers  # noqa: E402  (tests/ is on sys.path under pytest's default import mode)


@pytest.fixture
def rtsp_server():
    """A GStreamer RTSP server with a live H.264 test pattern at `.url`
    (640x360, 10 fps, a key frame every second); `.kill()`, `.restart()`,
    `.freeze()`/`.thaw()` to break it."""
    media_servers.require_rtsp()
    with media_servers.rtsp_server() as server:
        yield server


@pytest.fixture
def rtmp_server():
    """nginx-rtmp; `.publish(name)` starts an ffmpeg test-pattern publisher
    (`.kill()`, `.restart()`, `.freeze()`), `.url(name)` is what players open,
    `.hls_url(name)` the same stream as HLS over HTTP."""
    media_servers.require_rtmp()
    with media_servers.rtmp_server() as server:
        yield server


@pytest.fixture
def httpflv_server():
    """FFmpeg's HTTP server with a live H.264 test pattern as FLV at `.url` (640x360,
    10 fps, a key frame every second); `.kill()`, `.restart()`, `.freeze()`/`.thaw()`."""
    with media_servers.httpflv_server() as server:
        yield server
