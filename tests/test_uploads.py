"""The upload area (streams/uploads.py) on a real file system, with real videos.

Chunks land only at the part's current size; a client that breaks off mid-chunk
leaves what arrived, and the next client asks for the offset and finishes; size
and SHA-256 are checked; H.264/H.265 MP4/MOV that decodes to its end is accepted
and everything else refused with a message a person can act on; hostile names
and oversized bodies are refused, and nothing is ever written outside the root.
"""
from __future__ import annotations

import hashlib
import os
import threading
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streams.telemetry import TelemetrySample, write_srt
from streams.uploads import UploadArea, UploadError, clean_name, sha256_of, validate_srt, validate_video

SAMPLES = Path(__file__).resolve().parents[1] / "sample_videos"
DRONE = SAMPLES / "drone_illegal_construction.mp4"
DRONE_SRT = SAMPLES / "drone_illegal_construction.SRT"


def make_clip(path: Path, codec: str = "libx264", seconds: float = 4.0, fps: int = 10, options=None,
              container_options=None) -> Path:
    """A real encoded clip: a moving gradient, so every frame differs."""
    with av.open(str(path), "w", options=container_options or {}) as out:
        stream = out.add_stream(codec, rate=fps, options=options or {})
        stream.width, stream.height, stream.pix_fmt = 160, 96, "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i in range(int(seconds * fps)):
            img = np.zeros((96, 160, 3), np.uint8)
            img[:, :, 0] = (np.arange(160) + 7 * i) % 256
            img[:, :, 1] = (np.arange(96)[:, None] * 2 + 3 * i) % 256
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


@pytest.fixture
def area(tmp_path) -> UploadArea:
    return UploadArea(tmp_path / "uploads", max_bytes=8 << 20, chunk_max_bytes=1 << 20, srt_max_bytes=1 << 20)


def new_upload(area: UploadArea, parts=("video",)) -> str:
    upload_id = area.new_id()
    area.create(upload_id, parts)
    return upload_id


def send(area: UploadArea, upload_id: str, part: str, data: bytes, chunk: int = 300_000) -> None:
    offset = area.offset(upload_id, part)
    while offset < len(data):
        offset = area.write_chunk(upload_id, part, offset, len(data), data[offset:offset + chunk]).offset


def files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() or p.is_symlink()}


# ---------------------------------------------------------------------------------- chunks


def test_chunks_at_their_offsets_rebuild_the_file(area):
    data = DRONE.read_bytes()
    upload_id = new_upload(area)
    assert area.offset(upload_id, "video") == 0
    results = []
    offset = 0
    while offset < len(data):
        r = area.write_chunk(upload_id, "video", offset, len(data), data[offset:offset + 700_001])
        results.append(r)
        offset = r.offset
    assert [r.complete for r in results] == [False] * (len(results) - 1) + [True]
    assert sum(r.written for r in results) == len(data) == area.offset(upload_id, "video")
    assert area.path(upload_id, "video").read_bytes() == data
    area.verify(upload_id, "video", len(data), hashlib.sha256(data).hexdigest())  # no error


def test_a_chunk_not_at_the_current_offset_is_refused_with_the_offset(area):
    data = os.urandom(50_000)
    upload_id = new_upload(area)
    area.write_chunk(upload_id, "video", 0, len(data), data[:20_000])
    for wrong in (0, 10_000, 30_000):  # a repeat, an overlap, a gap
        with pytest.raises(UploadError) as err:
            area.write_chunk(upload_id, "video", wrong, len(data), data[wrong:wrong + 10_000])
        assert err.value.kind == "offset" and err.value.offset == 20_000
        assert "continue from 20000" in str(err.value)
    assert area.path(upload_id, "video").read_bytes() == data[:20_000]  # untouched


def test_an_interrupted_upload_resumes_where_it_stopped(area):
    """A client dies mid-chunk; a new one asks for the offset and sends only the rest."""
    data = DRONE.read_bytes()
    upload_id = new_upload(area)
    area.write_chunk(upload_id, "video", 0, len(data), data[:600_000])

    def dropping_link():  # the second chunk: 250 kB arrive, then the connection breaks
        yield data[600_000:700_000]
        yield data[700_000:850_000]
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        area.write_chunk(upload_id, "video", 600_000, len(data), dropping_link())
    # What arrived is kept: the new client continues from there, not from 600 000 or 0.
    resumed_at = area.offset(upload_id, "video")
    assert resumed_at == 850_000
    sent_again = 0
    offset = resumed_at
    while offset < len(data):
        r = area.write_chunk(upload_id, "video", offset, len(data), data[offset:offset + 500_000])
        sent_again += r.written
        offset = r.offset
    assert sent_again == len(data) - 850_000
    area.verify(upload_id, "video", len(data), hashlib.sha256(data).hexdigest())
    assert sha256_of(area.path(upload_id, "video")) == hashlib.sha256(data).hexdigest()


def test_two_writers_of_one_part_do_not_interleave(area):
    upload_id = new_upload(area)
    total = 100_000
    started, release = threading.Event(), threading.Event()

    def slow_body():
        yield b"a" * 10_000
        started.set()
        release.wait(5)
        yield b"b" * 10_000

    first = threading.Thread(target=lambda: area.write_chunk(upload_id, "video", 0, total, slow_body()))
    first.start()
    assert started.wait(5)
    with pytest.raises(UploadError) as err:
        area.write_chunk(upload_id, "video", 0, total, b"x" * 1000)
    assert err.value.kind == "busy"
    release.set()
    first.join(5)
    assert area.path(upload_id, "video").read_bytes() == b"a" * 10_000 + b"b" * 10_000


def test_size_and_hash_are_checked_when_finishing(area):
    data = os.urandom(40_000)
    upload_id = new_upload(area)
    area.write_chunk(upload_id, "video", 0, len(data), data[:30_000])
    with pytest.raises(UploadError) as err:  # not all there yet
        area.verify(upload_id, "video", len(data), hashlib.sha256(data).hexdigest())
    assert err.value.kind == "offset" and err.value.offset == 30_000
    # the last chunk arrives altered on the way: the size is right, the hash is not
    area.write_chunk(upload_id, "video", 30_000, len(data), bytes(10_000))
    with pytest.raises(UploadError) as err:
        area.verify(upload_id, "video", len(data), hashlib.sha256(data).hexdigest())
    assert err.value.kind == "integrity" and "SHA-256" in str(err.value)
    assert area.offset(upload_id, "video") == len(data)  # kept for inspection


# ---------------------------------------------------------------------------------- content


def test_the_drone_sample_and_other_h264_h265_mp4_mov_are_accepted(tmp_path):
    info = validate_video(DRONE)
    assert (info.codec, info.width, info.height, info.duration_s) == ("h264", 960, 540, 40.0)
    assert validate_video(make_clip(tmp_path / "a.mov", "libx264")).codec == "h264"
    hevc = make_clip(tmp_path / "b.mp4", "libx265", options={"x265-params": "log-level=none"})
    assert validate_video(hevc).codec == "hevc"
    track = validate_srt(DRONE_SRT, info.duration_s)
    assert len(track) == 400 and track.position_at(20.0) is not None


@pytest.mark.parametrize("case, expect", [
    ("mpeg4", "the video codec is mpeg4; only H.264 or H.265"),
    ("matroska", "the container is Matroska"),
    ("text", "not a media file"),
    ("empty", "not a media file"),
])
def test_wrong_types_are_refused_clearly(tmp_path, case, expect):
    path = tmp_path / "flight.mp4"
    if case == "mpeg4":
        make_clip(path, "mpeg4")
    elif case == "matroska":
        path = make_clip(tmp_path / "flight.mkv", "libx264")
    elif case == "text":
        path.write_text("this is not a video\n" * 100)
    else:
        path.write_bytes(b"")
    with pytest.raises(UploadError) as err:
        validate_video(path, "DJI_0042.MP4")
    assert err.value.kind == "media"
    assert str(err.value).startswith("DJI_0042.MP4: ") and expect in str(err.value)


@pytest.mark.parametrize("faststart", [False, True], ids=["index-at-end", "index-at-front"])
def test_a_truncated_mp4_is_refused(tmp_path, faststart):
    full = tmp_path / "full.mp4"
    if faststart:
        with av.open(str(DRONE)) as src, av.open(str(full), "w", options={"movflags": "faststart"}) as out:
            stream = out.add_stream_from_template(src.streams.video[0])
            for packet in src.demux(src.streams.video[0]):
                if packet.dts is not None:
                    packet.stream = stream
                    out.mux(packet)
    else:
        full.write_bytes(DRONE.read_bytes())
    validate_video(full)  # whole: fine
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    with pytest.raises(UploadError) as err:
        validate_video(cut, "flight.mp4")
    assert err.value.kind == "media"
    message = str(err.value)
    assert "cut off" in message, message


def test_an_srt_of_another_length_is_refused(tmp_path):
    short = write_srt([TelemetrySample(t, 30.612 + t * 1e-5, 114.295) for t in range(20)], tmp_path / "other.SRT")
    with pytest.raises(UploadError) as err:
        validate_srt(short, 40.0, "DJI_0042.SRT")
    message = str(err.value)
    assert err.value.kind == "media" and message.startswith("DJI_0042.SRT: telemetry does not match the video")
    assert "20.0 s" in message and "40.0 s" in message
    junk = tmp_path / "junk.SRT"
    junk.write_bytes(b"\x00\x01binary")
    with pytest.raises(UploadError, match="not an SRT file"):
        validate_srt(junk, 40.0, "junk.SRT")


# ---------------------------------------------------------------------------------- hostile input


@pytest.mark.parametrize("name, expect", [
    ("../../x.mp4", "plain name without folders"),
    ("..\\..\\x.mp4", "plain name without folders"),
    ("/etc/passwd.mp4", "plain name without folders"),
    ("C:flight.mp4", "plain name without folders"),
    ("..", "plain name without folders"),
    ("a" * 5000 + ".mp4", "5004 characters long; at most 255"),
    (b"DJI_\xff\xfe.mp4", "not valid UTF-8"),
    ("DJI_\udcff.mp4", "not valid UTF-8"),  # undecodable bytes smuggled in a str
    ("DJI\x00.mp4", "control characters"),
    ("DJI\n.mp4", "control characters"),
    ("   ", "empty"),
    ("flight.avi", "must be an MP4 or MOV file"),
    ("flight.mp4.exe", "must be an MP4 or MOV file"),
])
def test_hostile_or_wrong_names_are_refused(name, expect):
    with pytest.raises(UploadError) as err:
        clean_name(name, "video")
    assert err.value.kind == "name" and expect in str(err.value), str(err.value)


def test_good_names_are_kept_as_given():
    assert clean_name("DJI_0042.MP4") == "DJI_0042.MP4"
    assert clean_name("  城关 飞行 1.mov ") == "城关 飞行 1.mov"
    assert clean_name("DJI_0042.SRT".encode(), "srt") == "DJI_0042.SRT"
    with pytest.raises(UploadError, match="must be an SRT file"):
        clean_name("DJI_0042.txt", "srt")


def test_nothing_is_written_outside_the_upload_area(tmp_path, area):
    outside_before = files_under(tmp_path) - files_under(area.root)
    data = os.urandom(5000)
    upload_id = new_upload(area, ("video", "srt"))
    for bad_id in ("../../x", "..", "../uploads/" + upload_id, "/etc", "a" * 5000, "0" * 31 + "\udcff", "\x00" * 32):
        with pytest.raises(UploadError) as err:
            area.write_chunk(bad_id, "video", 0, len(data), data)
        assert err.value.kind == "missing"
    for bad_part in ("../../x", "../" + upload_id, "video/../../../x", "telemetry.srt"):
        with pytest.raises(UploadError):
            area.write_chunk(upload_id, bad_part, 0, len(data), data)
    for rel in ("../../x", "/etc/passwd", f"{upload_id}/../../x", f"{upload_id}/video/../../../y"):
        with pytest.raises(UploadError):
            area.resolve(rel)
    # a link planted inside the area that points out of it is not followed
    (area.root / upload_id / "video").unlink()
    (area.root / upload_id / "video").symlink_to(tmp_path / "escaped")
    with pytest.raises(UploadError):
        area.write_chunk(upload_id, "video", 0, len(data), data)
    assert not (tmp_path / "escaped").exists()

    assert files_under(tmp_path) - files_under(area.root) == outside_before
    inside = {p.relative_to(area.root).as_posix() for p in files_under(area.root)}
    assert inside == {f"{upload_id}/video", f"{upload_id}/telemetry.srt"}


def test_oversized_uploads_and_chunks_are_refused_before_writing(area):
    with pytest.raises(UploadError) as err:
        area.check_size("video", area.max_bytes + 1)
    assert err.value.kind == "too_large" and "8 MiB allowed" in str(err.value)
    assert area.check_size("video", area.max_bytes) == area.max_bytes
    with pytest.raises(UploadError, match="1 MiB allowed"):
        area.check_size("srt", (1 << 20) + 1)

    total = 3 << 20
    upload_id = new_upload(area)
    area.write_chunk(upload_id, "video", 0, total, b"k" * 1000)
    # announced too large: refused before a byte is read
    body_read = []

    def body():
        body_read.append(True)
        yield b"x" * 10

    with pytest.raises(UploadError) as err:
        area.write_chunk(upload_id, "video", 1000, total, body(), length=(1 << 20) + 1)
    assert err.value.kind == "too_large" and "chunks are at most 1 MiB" in str(err.value)
    assert body_read == [] and area.offset(upload_id, "video") == 1000

    # not announced, but more arrives than may: refused at the limit, the chunk taken back
    written_sizes = []

    def endless():
        while True:
            written_sizes.append(area.path(upload_id, "video").stat().st_size)
            yield b"y" * 65536

    with pytest.raises(UploadError) as err:
        area.write_chunk(upload_id, "video", 1000, total, endless())
    assert err.value.kind == "too_large"
    assert max(written_sizes) <= 1000 + (1 << 20)  # never a byte beyond the limit on disk
    assert area.offset(upload_id, "video") == 1000

    # past the declared size of the file
    small = new_upload(area)
    with pytest.raises(UploadError, match="only 100 bytes of the declared 100 remain"):
        area.write_chunk(small, "video", 0, 100, b"z" * 101)
    assert area.offset(small, "video") == 0


def test_an_uploaded_flights_cases_name_the_file_the_pilot_and_the_flight_time(tmp_path):
    """Not the upload id: the description names what an analyst knows the flight by."""
    from datetime import datetime, timezone

    from cases.flights import FlightView
    from cases.taxonomy import Taxonomy
    from core.settings import CaseSettings
    from workers.uploads import flight_seen_by

    flight = FlightView.model_validate({
        "id": "1f8739e3053c4be0a0f1", "owner": "pilot-li", "state": "processing", "kind": "drone",
        "video_name": "DJI_0042.MP4", "video_size": 1, "video_sha256": "0" * 64, "srt_name": "DJI_0042.SRT",
        "srt_size": 1, "srt_sha256": "0" * 64, "lat": None, "lon": None, "site_grid": None, "codec": None,
        "width": None, "height": None, "fps": None, "duration_s": None, "progress": 0.0, "attempts": 1,
        "worker": None, "error": None, "warnings": [], "result": {}, "case_ids": [],
        "created_at": datetime(2026, 11, 29, 2, 5, tzinfo=timezone.utc), "updated_at": datetime.now(timezone.utc),
        "uploaded_at": None, "started_at": None, "finished_at": None})
    srt = write_srt([TelemetrySample(t, 30.612, 114.295, 120.0, 100.0, datetime(2026, 11, 28, 16, 40, t))
                     for t in range(3)], tmp_path / "DJI_0042.SRT", dialect="mini")
    cases = CaseSettings()
    taxonomy = Taxonomy.load(cases.codes_file, cases.categories_file)
    text = taxonomy.describe("illegal_construction", "drone", "upload-1f8739e3053c4be0a0f1",
                             seen_by=flight_seen_by(flight, srt))
    assert text.startswith("无人机航拍 DJI_0042.MP4（飞手 pilot-li，2026-11-28 16:40 飞行）发现疑似私搭乱建。")
    assert "drone flight DJI_0042.MP4 (pilot pilot-li, flown 2026-11-28 16:40)" in text
    assert "upload-" not in text and "1f8739e3053c" not in text
    # without a clock in the telemetry: when it was uploaded, in China time
    assert flight_seen_by(flight, None)[0] == "无人机航拍 DJI_0042.MP4（飞手 pilot-li，2026-11-29 10:05 上传）"
