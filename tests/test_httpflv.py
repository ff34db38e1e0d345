"""LiveReader on HTTP-FLV, the form most gateways re-export phones and body cameras in.

The server is FFmpeg's own HTTP server writing live FLV (tests/media_servers.py,
`HttpFlvServer`, says why FFmpeg rather than nginx or node-media-server): a real
HTTP response carrying a real FLV stream, as `http://gateway/x.live.flv` does.
"""
from __future__ import annotations

import time

import pytest

from streams.reader import container_options
from test_live_reader import FAST, Recorder, assert_samples_on_interval, collect, readers, wait_for  # noqa: F401

pytestmark = pytest.mark.media


def test_http_flv_opens_with_an_io_timeout_and_never_listens():
    # For http:// FFmpeg's `timeout` is a socket timeout, but `listen` would make the
    # reader a server; only rw_timeout (every protocol's I/O timeout) is given.
    opts = container_options("http://gateway:8080/live/cam-7.live.flv", 3.0)
    assert opts["rw_timeout"] == "3000000"
    assert "timeout" not in opts and "listen" not in opts


def test_http_flv_goes_live_with_samples_on_the_interval(httpflv_server, readers):
    rec = Recorder()
    reader = readers("phone-3", httpflv_server.url, interval_s=0.5, on_state=rec, **FAST)
    wait_for(lambda: reader.state == "live", 10, "live")
    assert rec.states[:2] == ["connecting", "live"]
    assert_samples_on_interval(collect(reader, 2.5), 0.5, (640, 360))
    stats = reader.stats()
    assert stats["samples_per_s"] > 0
    assert stats["reconnects"] == 0 and stats["size"] == "640x360"


def test_http_flv_reconnects_when_the_server_comes_back(httpflv_server, readers):
    rec = Recorder()
    reader = readers("phone-4", httpflv_server.url, interval_s=0.5, on_state=rec, **FAST)
    wait_for(lambda: reader.state == "live", 10, "live")

    httpflv_server.kill()  # the gateway crashes: the stream ends, then connections are refused
    wait_for(lambda: reader.state in ("down", "stalled"), 5, "the reader to notice the server died")
    wait_for(lambda: "Connection refused" in (reader.stats()["last_error"] or ""), 5, "a refused reconnect")

    httpflv_server.restart()
    wait_for(lambda: reader.state == "live", 10, "live again")
    assert reader.stats()["reconnects"] >= 1
    assert rec.states[-1] == "live" and rec.states[-2] in ("down", "stalled")
    fresh = collect(reader, 1.5)
    assert fresh and all(abs(f.ts - time.time()) < 5 for f in fresh)


def test_http_flv_stream_that_goes_silent_is_stalled_then_recovers(httpflv_server, readers):
    rec = Recorder()
    reader = readers("phone-5", httpflv_server.url, interval_s=0.5, on_state=rec, **FAST)
    wait_for(lambda: reader.state == "live", 10, "live")

    httpflv_server.freeze()  # SIGSTOP: the HTTP response stays open, no more bytes come
    frozen_at = time.monotonic()
    wait_for(lambda: reader.state == "stalled", FAST["read_timeout_s"] + 3, "stalled")
    assert time.monotonic() - frozen_at < FAST["read_timeout_s"] + 3
    assert "no data for 2 s" in reader.stats()["last_error"]
    # While frozen, the server is not listening for a new player: the retries are down.
    wait_for(lambda: reader.state == "down", 5, "the reconnect attempts to fail")

    httpflv_server.thaw()  # the frozen process finds its player gone and exits; a fresh one serves
    wait_for(lambda: reader.state == "live", 10, "live after the server woke up")
    assert rec.states[-1] == "live" and "stalled" in rec.states
    assert reader.stats()["reconnects"] >= 1
    assert collect(reader, 1.5), "no samples after recovering"
