"""LiveReader against real servers: GStreamer RTSP, nginx-rtmp + ffmpeg, files and a FIFO."""
from __future__ import annotations

import errno
import os
import statistics
import subprocess
import time

import pytest

import media_servers
from media_servers import free_port, make_video
from streams.live import LiveReader

pytestmark = pytest.mark.media

# Short timeouts so that each failure shows within a few seconds.
FAST = dict(open_timeout_s=2, read_timeout_s=2, stall_timeout_s=4, backoff_initial_s=0.2, backoff_max_s=1.0)


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def collect(reader: LiveReader, seconds: float) -> list:
    frames, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        frame = reader.latest()
        if frame is not None:
            frames.append(frame)
        time.sleep(0.02)
    return frames


class Recorder:
    """An on_state callback that remembers the states it saw."""

    def __init__(self):
        self.events: list[tuple[str, str, str]] = []

    def __call__(self, source_id, state, detail):
        self.events.append((source_id, state, detail))

    @property
    def states(self) -> list[str]:
        return [state for _, state, _ in self.events]


@pytest.fixture
def readers():
    """Readers made through this fixture are stopped even when a test fails."""
    made = []

    def make(*args, **kw) -> LiveReader:
        reader = LiveReader(*args, **kw)
        made.append(reader)
        return reader.start()

    yield make
    for reader in made:
        reader.stop(timeout=5)


def assert_samples_on_interval(frames, interval_s, size):
    assert len(frames) >= 3, f"only {len(frames)} samples"
    gaps = [b.extra["pts"] - a.extra["pts"] for a, b in zip(frames, frames[1:])]
    assert statistics.median(gaps) == pytest.approx(interval_s, abs=0.15)
    assert all(b.index > a.index for a, b in zip(frames, frames[1:]))
    assert all(abs(f.ts - time.time()) < 10 for f in frames)  # wall clock, not stream time
    assert {f.source_size for f in frames} == {size}
    assert {f.image.shape for f in frames} == {(size[1], size[0], 3)}


def test_rtsp_goes_live_and_recovers_when_the_server_comes_back(rtsp_server, readers):
    rec = Recorder()
    reader = readers("cam-1", rtsp_server.url, interval_s=0.5, on_state=rec, **FAST)
    wait_for(lambda: reader.state == "live", 10, "live")
    assert rec.states[:2] == ["connecting", "live"]
    assert_samples_on_interval(collect(reader, 2.5), 0.5, (640, 360))
    assert reader.stats()["samples_per_s"] > 0

    rtsp_server.kill()
    wait_for(lambda: reader.state in ("down", "stalled"), 5, "the reader to notice the server died")
    assert reader.stats()["last_error"]
    rtsp_server.restart()
    wait_for(lambda: reader.state == "live", 10, "live again")
    stats = reader.stats()
    assert stats["reconnects"] >= 1
    assert rec.states[-1] == "live" and rec.states[-2] in ("down", "stalled")
    assert collect(reader, 1.5), "no samples after reconnecting"


def test_rtsp_silent_server_times_out_instead_of_hanging(rtsp_server, readers):
    reader = readers("cam-2", rtsp_server.url, interval_s=0.5, **FAST)
    wait_for(lambda: reader.state == "live", 10, "live")
    rtsp_server.freeze()  # the TCP connection stays open, nothing more arrives
    frozen_at = time.monotonic()
    wait_for(lambda: reader.state != "live", FAST["read_timeout_s"] + 3, "the read timeout")
    assert time.monotonic() - frozen_at < FAST["read_timeout_s"] + 3
    assert "no data" in reader.stats()["last_error"]
    rtsp_server.thaw()
    wait_for(lambda: reader.state == "live", 10, "live after the server woke up")


@pytest.mark.parametrize("transport, codec", [("udp", "h264"), ("tcp", "h265")])
def test_rtsp_udp_transport_and_h265(transport, codec, readers):
    media_servers.require_rtsp()
    if codec == "h265" and subprocess.run(
        ["gst-inspect-1.0", "x265enc"], capture_output=True
    ).returncode != 0:
        pytest.skip("x265enc missing (Debian package gstreamer1.0-plugins-bad)")
    with media_servers.rtsp_server(codec=codec) as server:
        reader = readers("cam-3", server.url, interval_s=0.5, transport=transport, **FAST)
        wait_for(lambda: reader.latest() is not None, 10, f"a sample over {transport}/{codec}")
        assert reader.state == "live"


def test_rtmp_goes_live_and_recovers_when_the_publisher_comes_back(rtmp_server, readers):
    publisher = rtmp_server.publish("van-1")
    rec = Recorder()
    reader = readers("van-1", rtmp_server.url("van-1"), interval_s=0.5, on_state=rec, **FAST)
    wait_for(lambda: reader.state == "live", 15, "live")
    assert_samples_on_interval(collect(reader, 2.5), 0.5, (640, 360))

    publisher.kill()
    wait_for(lambda: reader.state in ("down", "stalled"), 6, "the reader to notice the publisher left")
    publisher.restart()
    wait_for(lambda: reader.state == "live", 15, "live again")
    assert reader.stats()["reconnects"] >= 1
    assert "down" in rec.states or "stalled" in rec.states

    # nginx keeps the player's connection open while the publisher is frozen:
    # only the read timeout (never FFmpeg's rtmp `timeout`, which means listen) ends it.
    publisher.freeze()
    wait_for(lambda: reader.state != "live", FAST["read_timeout_s"] + 3, "the read timeout")
    assert "no data" in reader.stats()["last_error"]
    publisher.thaw()


def test_hls_goes_live_with_samples_on_the_interval(rtmp_server, readers):
    rtmp_server.publish("phone-7")
    reader = readers("phone-7", rtmp_server.hls_url("phone-7"), interval_s=0.5, **FAST)
    wait_for(lambda: reader.state == "live", 20, "live")  # once nginx has written the first segments
    # HLS arrives a segment at a time, so the consumer sees only the newest sample of
    # each burst; `index` still counts them all: two per second of stream time.
    frames = collect(reader, 4)
    first, last = frames[0], frames[-1]
    assert last.extra["pts"] - first.extra["pts"] >= 1.5
    assert (last.index - first.index) / (last.extra["pts"] - first.extra["pts"]) == pytest.approx(2.0, abs=0.3)
    assert {f.source_size for f in frames} == {(640, 360)}


@pytest.mark.parametrize(
    "url", ["rtsp://127.0.0.1:{port}/cam", "rtmp://127.0.0.1:{port}/live/cam", "http://127.0.0.1:{port}/cam.flv"]
)
def test_refused_source_is_down_keeps_retrying_and_never_blocks(url, readers):
    url = url.format(port=free_port())
    reader = readers(
        "dead", url, interval_s=1.0, open_timeout_s=2, read_timeout_s=2, backoff_initial_s=0.1, backoff_max_s=0.4
    )
    wait_for(lambda: reader.stats()["reconnects"] >= 3, 10, "retries")
    assert reader.state == "down"
    assert "Connection refused" in reader.stats()["last_error"]
    started = time.perf_counter()
    for _ in range(1000):
        assert reader.latest() is None
    assert time.perf_counter() - started < 0.5  # 1000 calls while the thread keeps retrying
    started = time.monotonic()
    reader.stop()
    assert time.monotonic() - started < 2


def test_file_played_as_live_keeps_real_time_and_loops(tmp_path, readers):
    path = make_video(tmp_path / "demo.mp4", seconds=2, fps=10, gop=5)
    reader = readers("demo", str(path), interval_s=0.5, loop=True)
    started = time.monotonic()
    frames = collect(reader, 3.5)
    elapsed = time.monotonic() - started
    pts = [f.extra["pts"] for f in frames]
    assert len(frames) >= 5
    # Real time: a 2 s file read in 3.5 s wrapped around once, so the pts go back to 0 once.
    assert sum(1 for a, b in zip(pts, pts[1:]) if b < a) == 1
    assert len(frames) <= elapsed / 0.5 + 2  # not faster than the interval
    assert reader.stats()["reconnects"] == 0  # restarting a file is not a reconnect
    assert all(abs(f.ts - time.time()) < 10 for f in frames)


def test_a_file_played_again_keeps_decoding_key_frames_only(tmp_path, readers):
    # 2 s, a key frame every 0.5 s: the first play decodes a GOP in full to learn the spacing;
    # the plays after it (and a reconnect of a live stream) know it already
    path = make_video(tmp_path / "loop.mp4", seconds=2, fps=10, gop=5)
    reader = readers("loop", str(path), interval_s=0.5, loop=True)
    collect(reader, 5.5)
    st = reader.sampler_stats
    assert st.packets >= 50 and st.samples >= 8  # two plays at least
    assert st.keyframes_only
    assert st.decoded - st.samples <= 5, f"{st.decoded} frames decoded for {st.samples} samples"


def test_a_file_played_again_is_rewound_not_reopened(tmp_path, readers, monkeypatch):
    import streams.live
    import streams.reader

    opened = []

    def counting_open(*a, **kw):  # the real opener, counted
        opened.append(a[0])
        return streams.reader.open_container(*a, **kw)

    monkeypatch.setattr(streams.live, "open_container", counting_open)
    path = make_video(tmp_path / "rewind.mp4", seconds=1, fps=10, gop=5)
    reader = readers("rewind", str(path), interval_s=0.5, loop=True)
    frames = collect(reader, 3.6)
    pts = [f.extra["pts"] for f in frames]
    assert sum(1 for a, b in zip(pts, pts[1:]) if b < a) >= 2  # three plays at least
    assert opened == [str(path)]  # opening probes the stream again: once is enough
    assert reader.stats()["reconnects"] == 0 and reader.state == "live"


def test_file_without_loop_ends_down(tmp_path, readers):
    path = make_video(tmp_path / "short.mp4", seconds=1)
    rec = Recorder()
    reader = readers("short", str(path), interval_s=0.5, on_state=rec)
    wait_for(lambda: not reader.running, 5, "the end of the file")
    assert rec.events[-1][1:] == ("down", "end of file")
    assert reader.stats()["samples"] == 2


def test_latest_keeps_only_the_newest_and_counts_the_rest(tmp_path, readers):
    path = make_video(tmp_path / "fast.mp4", seconds=2, fps=10, gop=2)
    reader = readers("busy", str(path), interval_s=0.2)  # a consumer that never looks
    wait_for(lambda: not reader.running, 5, "the end of the file")
    stats, sampled = reader.stats(), reader.sampler_stats
    # 10 due key frames, one kept: the newest. While the slot was full and fresh, due key
    # frames were held undecoded, each replacing the last; the file's end decoded the last.
    assert stats["dropped"] == 9 and stats["samples"] + sampled.superseded == 10
    assert sampled.held >= 3 and stats["samples"] <= 7  # a full slot saved decoding
    newest = reader.latest()
    assert newest.index == stats["samples"] - 1 and newest.extra["pts"] == pytest.approx(1.8)
    assert reader.latest() is None


def test_a_held_key_frame_is_decoded_as_soon_as_the_detector_takes_the_last_sample(tmp_path, readers):
    path = make_video(tmp_path / "live.mp4", seconds=4, fps=10, gop=5)
    reader = readers("slow-detector", str(path), interval_s=0.5, loop=True)
    wait_for(lambda: reader.sampler_stats.held >= 2, 10, "due key frames held while nobody takes samples")
    time.sleep(2.0)
    st = reader.sampler_stats
    # one due key frame in two is held while the sample waiting is fresh (under two intervals)
    assert st.samples <= 0.75 * (st.samples + st.superseded) + 1, "a full, fresh slot still made the reader decode"
    held = st.held
    wait_for(lambda: st.held > held, 2.0, "a key frame held just now")  # the next due one is 0.5 s away
    taken_at = time.time()
    first = reader.latest()
    assert taken_at - first.ts < 2 * 0.5 + 0.3
    # the reader's published count, not the sampler's: the sampler counts a sample when it is
    # decoded, a moment before the reader puts it in the slot
    published = reader.stats()["samples"]
    wait_for(lambda: reader.stats()["samples"] > published, 0.4, "the held key frame decoded")
    second = reader.latest()  # the held key frame, decoded once the slot was free
    assert second.extra["pts"] > first.extra["pts"] or second.extra["pts"] < 0.6  # (or the file looped)
    # stamped when its key frame came (before the slot was freed), not when it was decoded
    assert first.ts < second.ts < taken_at
    assert reader.stats()["state"] == "live"


def test_packets_that_never_decode_mean_stalled(tmp_path, readers):
    # Every key frame cut out: packets keep flowing, the decoder never has a picture.
    good = make_video(tmp_path / "good.mp4", seconds=3)
    broken = tmp_path / "no-idr.mkv"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(good), "-c", "copy",
         "-bsf:v", "filter_units=remove_types=5", str(broken)],
        check=True,
    )
    rec = Recorder()
    reader = readers("blind", str(broken), interval_s=0.5, loop=True, stall_timeout_s=1.0,
                     backoff_initial_s=0.2, backoff_max_s=0.5, on_state=rec)
    wait_for(lambda: reader.stats()["reconnects"] >= 2, 15, "restarts after stalls")
    assert rec.states[:2] == ["connecting", "stalled"]
    assert "nothing decoded" in reader.stats()["last_error"]
    assert reader.stats()["samples"] == 0


def test_watchdog_reports_a_call_stuck_past_every_timeout(tmp_path, readers):
    # Opening a FIFO nobody writes to blocks inside open(2), where FFmpeg's
    # interrupt callback cannot reach: only the watchdog can tell.
    fifo = tmp_path / "camera.fifo"
    os.mkfifo(fifo)
    rec = Recorder()
    reader = readers("wedged", str(fifo), interval_s=1.0, open_timeout_s=0.5, on_state=rec)
    try:
        wait_for(lambda: reader.state == "down", 6, "the watchdog")
        assert "opening blocked past its timeout" in reader.stats()["last_error"]
        assert rec.states == ["connecting", "down"]
        assert reader.latest() is None
    finally:
        reader.stop(timeout=0)  # ask it to finish once open(2) returns
        release_fifo_readers(fifo, reader)


def release_fifo_readers(fifo, reader):
    """Open and close the writing end until the reader thread has left open(2)."""
    deadline = time.monotonic() + 10
    while reader.running and time.monotonic() < deadline:
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as err:
            if err.errno != errno.ENXIO:  # ENXIO: no reader at this instant
                raise
        time.sleep(0.05)


# ---------------------------------------------------------------- long absences, resolution and clock changes


def test_backoff_stays_capped_however_many_failures():
    # A camera unreachable overnight fails thousands of times; 2**1024 does not fit a float.
    reader = LiveReader("night", "rtsp://127.0.0.1:1/x", backoff_initial_s=0.5, backoff_max_s=30)
    delays = [reader._backoff(n) for n in (1, 2, 3, 7, 100, 1025, 50_000)]
    assert 0.25 <= delays[0] <= 0.5 and 0.5 <= delays[1] <= 1.0  # doubling from 0.5 s...
    assert all(15 <= d <= 30 for d in delays[-4:])  # ...to the cap, with jitter, for ever


def test_a_source_away_for_a_long_while_is_picked_up_again(rtsp_server, readers):
    # "Gone for an hour" scaled down: far longer than it takes the backoff to reach its cap.
    cap_s = 1.0
    reader = readers("mobile-9", rtsp_server.url, interval_s=0.5,
                     **{**FAST, "backoff_initial_s": 0.05, "backoff_max_s": cap_s})
    wait_for(lambda: reader.state == "live", 10, "live")
    rtsp_server.kill()
    wait_for(lambda: reader.state == "down", 5, "down")
    time.sleep(8)  # dozens of refused attempts: the backoff has sat at its cap for a while
    failures = reader.stats()["reconnects"]
    assert 6 <= failures <= 8 / (cap_s / 2) + 10  # retrying all along, but never faster than the capped pace
    rtsp_server.restart()
    back_at = time.monotonic()
    wait_for(lambda: reader.state == "live", cap_s + 8, "live again")
    # Back within one capped backoff (plus connecting and the first key frame).
    assert time.monotonic() - back_at < cap_s + 5
    assert collect(reader, 1.0), "no samples after coming back"


def ts_clip(path, size: str, seconds: int, offset_s: float = 0.0):
    """MPEG-TS of testsrc2 with timestamps starting at `offset_s`: TS files joined byte
    by byte are what a camera switching profiles or restarting its clock sends."""
    media_servers.require_ffmpeg()
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"testsrc2=size={size}:rate=10", "-t", str(seconds), "-c:v", "libx264",
                    "-preset", "ultrafast", "-g", "10", "-bf", "0", "-pix_fmt", "yuv420p",
                    "-output_ts_offset", str(offset_s), str(path)], check=True, timeout=60)
    return path.read_bytes()


def test_a_resolution_change_mid_stream_over_rtmp_is_followed_without_reconnecting(tmp_path, rtmp_server, readers):
    joined = tmp_path / "profiles.ts"
    # (the second profile's clock far ahead, so that FFmpeg takes each switch for a
    # discontinuity and keeps the published timestamps running smoothly)
    joined.write_bytes(ts_clip(tmp_path / "sd.ts", "320x240", 3) + ts_clip(tmp_path / "hd.ts", "640x360", 3, 3600))
    publisher = media_servers.Publisher(rtmp_server.url("switch"), tmp_path / "publish.log")
    publisher._spawn(["ffmpeg", "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(joined),
                      "-c", "copy", "-f", "flv", rtmp_server.url("switch")], stdout=subprocess.DEVNULL)
    rtmp_server.publishers.append(publisher)
    rec = Recorder()
    reader = readers("switch", rtmp_server.url("switch"), interval_s=0.5, on_state=rec, **FAST)
    wait_for(lambda: reader.state == "live", 15, "live")
    reconnects = reader.stats()["reconnects"]  # (the publisher may have come after the first attempt)
    frames = collect(reader, 8)  # more than one full turn of both sizes
    sizes = [f.source_size for f in frames]
    assert {(320, 240), (640, 360)} <= set(sizes), sizes
    assert {f.image.shape for f in frames} == {(240, 320, 3), (360, 640, 3)}  # each at its own size
    assert reader.stats()["reconnects"] == reconnects and reader.state == "live", (rec.events, reader.stats())
    assert any("resolution changed" in detail for _, state, detail in rec.events if state == "live")


def test_clock_jumps_in_a_stream_neither_stall_nor_stop_the_reader(tmp_path, readers):
    # Timestamps that leap an hour ahead, then start again from zero, in one stream.
    jumpy = tmp_path / "jumpy.ts"
    jumpy.write_bytes(ts_clip(tmp_path / "a.ts", "320x240", 3) + ts_clip(tmp_path / "b.ts", "320x240", 3, 3600)
                      + ts_clip(tmp_path / "c.ts", "320x240", 3))
    rec = Recorder()
    reader = readers("jumpy", str(jumpy), interval_s=0.5, on_state=rec)
    started, frames = time.monotonic(), []
    while reader.running and time.monotonic() - started < 20:
        frame = reader.latest()
        if frame is not None:
            frames.append(frame)
        time.sleep(0.02)
    elapsed = time.monotonic() - started
    pts = [f.extra["pts"] for f in frames]
    assert any(p >= 3600 for p in pts) and pts[-1] < 10, pts  # it went through both jumps
    # Played at camera pace through the jumps: not an hour's wait, not a burst.
    assert 7 <= elapsed <= 12
    assert 14 <= reader.stats()["samples"] <= 20  # one per 0.5 s of the 9 s of pictures
    assert reader.stats()["reconnects"] == 0 and rec.states == ["connecting", "live", "down"]
