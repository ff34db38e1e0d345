"""The decoding and sampling core, on real H.264 files made by ffmpeg."""
from __future__ import annotations

import subprocess

import av
import numpy as np
import pytest

from media_servers import free_port, make_video, require_ffmpeg
from streams.reader import (
    SampleStats,
    SourceError,
    container_options,
    iter_file_samples,
    open_container,
    probe,
    redact,
    sample_size,
)


def samples(path, interval_s, **kw):
    stats = SampleStats()
    frames = list(iter_file_samples(path, interval_s, stats=stats, **kw))
    return frames, stats


def packet_positions(path):
    """(byte offset, is key) of every video packet, in file order."""
    with av.open(str(path)) as c:
        return [(p.pos, p.is_keyframe) for p in c.demux(c.streams.video[0]) if p.size]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """6 s, 10 fps, a key frame every 10 frames (1 s): 60 packets, 6 of them key."""
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", seconds=6, fps=10, gop=10)


@pytest.mark.parametrize(
    "src, expected",
    [
        ((1920, 1080), (640, 360)),
        ((1280, 720), (640, 360)),
        ((720, 1280), (360, 640)),  # portrait phone video
        ((704, 576), (640, 524)),  # D1: aspect kept, height rounded to even
        ((320, 240), (320, 240)),  # never upscaled
        ((321, 241), (320, 240)),  # odd sides: even, and still not upscaled
    ],
)
def test_sample_size_keeps_aspect_with_even_sides(src, expected):
    assert sample_size(*src, max_side=640) == expected


def test_sample_size_rejects_empty_video():
    with pytest.raises(ValueError):
        sample_size(0, 360)


def test_samples_fall_on_the_interval(clip):
    frames, stats = samples(clip, 0.5, keyframes_only=False)
    assert [f.ts for f in frames] == pytest.approx([i * 0.5 for i in range(12)], abs=1e-6)
    assert [f.index for f in frames] == list(range(12))
    assert stats.sent == stats.decoded == 60  # everything decoded, only 12 converted
    assert stats.samples == 12


def test_interval_not_a_multiple_of_the_frame_time(clip):
    frames, _ = samples(clip, 0.35, keyframes_only=False)
    ts = [f.ts for f in frames]
    # Due at 0, .35, .70, 1.05, ...: each sample is the first 10-fps frame at or after its due time.
    assert ts[:5] == pytest.approx([0.0, 0.4, 0.7, 1.1, 1.4])
    assert len(ts) == 17  # due times up to the last frame (5.9 s)
    assert all(0.3 - 1e-6 <= b - a <= 0.4 + 1e-6 for a, b in zip(ts, ts[1:]))


def test_sample_pixels_and_sizes(tmp_path):
    path = make_video(tmp_path / "hd.mp4", seconds=2, size="1280x720")
    frames, _ = samples(path, 1.0)
    assert len(frames) == 2
    f = frames[0]
    assert f.image.shape == (360, 640, 3) and f.image.dtype == np.uint8
    assert f.source_size == (1280, 720)
    assert f.scale == (2.0, 2.0)
    assert f.source_id == "file"
    assert f.image.std() > 10  # a real picture, not a blank buffer


def test_max_side_and_source_id(clip):
    frames, _ = samples(clip, 2.0, max_side=160, source_id="drone-1")
    assert {f.image.shape for f in frames} == {(120, 160, 3)}
    assert {f.source_id for f in frames} == {"drone-1"}


def test_gop_within_interval_drops_non_key_packets_before_decoding(clip):
    frames, stats = samples(clip, 1.0)  # auto: GOP 1 s <= interval 1 s
    assert stats.keyframes_only and stats.gop_s == pytest.approx(1.0)
    # The first GOP is decoded whole while its length is measured; after that only
    # the 5 key frames go to the decoder.
    assert stats.packets == 60
    assert stats.sent == 10 + 5
    assert [f.ts for f in frames] == pytest.approx([0, 1, 2, 3, 4, 5])
    assert all(f.keyframe for f in frames)


def test_held_key_frames_are_not_decoded_and_the_newest_is_released(clip):
    from streams.reader import Sampler

    with av.open(str(clip)) as c:
        stream = c.streams.video[0]
        sampler = Sampler(stream, 1.0, keyframes_only=True)
        out = []
        for packet in c.demux(stream):
            if packet.size == 0:
                continue
            out += sampler.push(packet, hold=len(out) > 0)  # the first sample is never taken
        stats = sampler.stats
        assert len(out) == 1 and stats.decoded == 1  # key frames at 1..5 s: held, not decoded
        assert stats.held == 5 and stats.superseded == 4
        (newest,) = sampler.release()
        assert newest.t == pytest.approx(5.0) and newest.keyframe and stats.decoded == 2
        assert sampler.release() == []


def test_forced_keyframes_only_decodes_just_the_due_key_frames(clip):
    frames, stats = samples(clip, 2.0, keyframes_only=True)
    assert [f.ts for f in frames] == pytest.approx([0, 2, 4])
    assert stats.sent == stats.decoded == 3  # key frames at 1, 3, 5 s are not even decoded


def test_gop_longer_than_interval_decodes_everything(tmp_path):
    path = make_video(tmp_path / "longgop.mp4", seconds=6, gop=20)  # a key frame every 2 s
    frames, stats = samples(path, 1.0)
    assert not stats.keyframes_only
    assert stats.sent == stats.decoded == 60
    assert [f.ts for f in frames] == pytest.approx([0, 1, 2, 3, 4, 5])
    assert [f.keyframe for f in frames] == [True, False] * 3


def test_keyframes_only_with_b_frames_is_not_delayed(tmp_path):
    path = make_video(tmp_path / "bframes.mp4", seconds=4, gop=10, bframes=2)
    frames, stats = samples(path, 1.0, keyframes_only=True)
    assert [f.ts for f in frames] == pytest.approx([0, 1, 2, 3])
    assert stats.sent == stats.decoded == 4


def test_probe(clip):
    info = probe(str(clip))
    assert (info.width, info.height, info.codec) == (320, 240, "h264")
    assert info.fps == pytest.approx(10)
    assert info.duration_s == pytest.approx(6.0, abs=0.1)


def test_corrupt_packets_are_counted_and_skipped(tmp_path):
    path = make_video(tmp_path / "damaged.mp4", seconds=6)
    non_key = [pos for pos, key in packet_positions(path) if not key]
    with open(path, "r+b") as f:
        for pos in non_key[20:23]:  # three packets in the third second
            f.seek(pos)
            f.write(b"\xff\xff\xff\xff")  # an impossible NAL length
    frames, stats = samples(path, 0.5, keyframes_only=False)
    assert stats.corrupt == 3
    assert frames[-1].ts == pytest.approx(5.5)  # reading went on to the end
    assert len(frames) == 12


def one_line_error(path, interval_s=1.0) -> str:
    with pytest.raises(SourceError) as err:
        list(iter_file_samples(path, interval_s))
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_file(tmp_path):
    message = one_line_error(tmp_path / "nope.mp4")
    assert message == f"cannot open {tmp_path / 'nope.mp4'}: No such file or directory"


def test_not_a_media_file(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("these are not the frames you are looking for\n" * 50)
    assert "not a readable video" in one_line_error(path)


def test_directory(tmp_path):
    assert "is a directory" in one_line_error(tmp_path)


def test_file_without_video(tmp_path):
    require_ffmpeg()
    path = tmp_path / "audio.m4a"
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "lavfi", "-i", "sine", "-t", "1", str(path)], check=True
    )
    assert one_line_error(path) == f"{path} has no video stream"


def test_file_cut_before_its_index(tmp_path):
    full = make_video(tmp_path / "full.mp4", seconds=4)  # index (moov) at the end
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    assert "not a readable video" in one_line_error(cut)


def test_file_cut_mid_stream_yields_what_it_has_then_says_so(tmp_path):
    full = make_video(tmp_path / "full.mp4", seconds=6, faststart=True)  # index first
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    got = []
    with pytest.raises(SourceError, match=r"is truncated: its video stops at \d+\.\d s of 6\.0 s"):
        for frame in iter_file_samples(cut, 0.5):
            got.append(frame)
    assert 1 <= len(got) < 12


def test_container_options_per_protocol():
    rtsp = container_options("rtsp://cam/1", 5)
    assert rtsp["rtsp_transport"] == "tcp" and rtsp["timeout"] == "5000000"
    assert container_options("rtsp://cam/1", 2, transport="udp")["rtsp_transport"] == "udp"
    for url in ("rtmp://gw/live/1", "http://gw/live/1.flv", "https://gw/hls/1.m3u8"):
        opts = container_options(url, 3)
        assert opts["rw_timeout"] == "3000000"
        assert "timeout" not in opts  # for rtmp it would mean "listen as a server"
    assert container_options("/data/clip.mp4", 5) == {}
    with pytest.raises(ValueError):
        container_options("rtsp://cam/1", 5, transport="sctp")


@pytest.mark.parametrize("url", ["rtsp://127.0.0.1:{port}/cam", "rtmp://127.0.0.1:{port}/live/cam"])
def test_refused_connection_is_one_clear_line(url):
    url = url.format(port=free_port())
    with pytest.raises(SourceError) as err:
        open_container(url, timeout_s=2)
    assert str(err.value) == f"cannot open {url}: Connection refused"


def test_passwords_stay_out_of_messages():
    assert redact("rtsp://admin:s3cret@10.0.0.9:554/ch1") == "rtsp://admin:***@10.0.0.9:554/ch1"
    assert redact("rtsp://10.0.0.9/ch1") == "rtsp://10.0.0.9/ch1"



@pytest.mark.parametrize("codec", ["libx264", "libx265"])
def test_key_frames_decoded_alone_may_skip_the_deblocking_filter(tmp_path, codec):
    """Without the loop filter a lone key frame decodes a little cheaper; nothing is decoded
    from it, so the picture is only slightly blockier, and never drifts."""
    from streams.reader import Sampler

    require_ffmpeg()
    path = tmp_path / f"deblocked-{codec}.mp4"
    # (the media helpers' ultrafast preset turns the encoder's deblocking off; this one keeps it)
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "testsrc2=size=640x360:rate=10", "-vf", "noise=alls=20:allf=t", "-t", "3", "-c:v", codec,
                    "-preset", "veryfast", "-crf", "36", "-g", "10", "-keyint_min", "10", "-sc_threshold", "0",
                    "-pix_fmt", "yuv420p", str(path)],
                   check=True, timeout=120)

    def decode(deblock: bool):
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            sampler = Sampler(stream, 1.0, max_side=640, keyframes_only=True, deblock=deblock)
            out = [s for p in c.demux(stream) for s in sampler.push(p)]
            return out, sampler.stats

    plain, plain_stats = decode(True)
    fast, fast_stats = decode(False)
    assert [s.t for s in plain] == pytest.approx([0, 1, 2])
    assert [s.t for s in fast] == pytest.approx([s.t for s in plain])
    assert fast_stats.sent == plain_stats.sent == 3 and fast_stats.corrupt == 0
    for a, b in zip(plain, fast):
        diff = np.abs(a.image.astype(np.int16) - b.image.astype(np.int16))
        assert diff.max() > 0  # the filter really was skipped...
        assert diff.mean() < 4.0  # ...and the picture is the same one
