"""DJI SRT telemetry: each dialect, GPS order, no fix, interpolation, truncation, errors, round trip."""
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from streams.telemetry import TelemetryError, TelemetrySample, Track, parse_srt, write_srt

DATA = Path(__file__).parent / "data" / "srt"


def srt(*bodies: str, step: float = 1.0) -> str:
    """SRT text with one cue per body, ``step`` seconds each."""
    def stamp(s: float) -> str:
        ms = round(s * 1000)
        return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    return "".join(f"{n}\n{stamp((n - 1) * step)} --> {stamp(n * step)}\n{body}\n\n" for n, body in enumerate(bodies, 1))


@pytest.mark.parametrize("name, dialect, count, duration, first", [
    ("air2s_mavic3.srt", "mavic3", 3, 0.1,
     dict(lat=41.424724, lon=2.234156, alt=117.0, rel_alt=None, wallclock=datetime(2022, 8, 7, 13, 40, 40, 774808))),
    ("mini4.srt", "mini", 2, 0.066,
     dict(lat=-22.724555, lon=-47.602414, alt=549.679, rel_alt=0.3, wallclock=datetime(2024, 1, 18, 10, 23, 26, 397000))),
    ("mavic2.srt", "mavic2", 2, 0.083,
     dict(lat=31.251327, lon=121.473918, alt=52.3, wallclock=datetime(2023, 7, 15, 11, 55, 16, 320933))),
    ("mavic_pro.srt", "mavic_pro", 4, 4.0,
     dict(lat=37.2673, lon=113.5462, alt=None, rel_alt=35.2, wallclock=datetime(2017, 7, 29, 15, 18, 50))),
    ("mavic_mini.srt", "mavic_mini", 2, 2.0, dict(lat=37.2665, lon=111.7893, alt=None, rel_alt=35.0, wallclock=None)),
    ("phantom4_rtk.srt", "p4rtk", 2, 2.0, dict(lat=37.2659, lon=111.7901, rel_alt=76.19, gimbal_pitch=-90.0)),
    ("m300.srt", "m300", 3, 3.0,
     dict(lat=37.2668, lon=111.7895, rel_alt=80.3, wallclock=datetime(2022, 6, 21, 16, 6, 17))),
])
def test_each_dialect_reads_position_altitude_and_time(name, dialect, count, duration, first):
    track = parse_srt(DATA / name)
    assert track.dialect == dialect
    assert len(track) == count
    assert track.duration == pytest.approx(duration)
    assert not any("truncated" in w for w in track.warnings)
    for key, expected in first.items():
        got = getattr(track[0], key)
        assert got == (pytest.approx(expected) if isinstance(expected, float) else expected), key


def test_cue_times_per_frame_and_per_second():
    assert [s.t for s in parse_srt(DATA / "air2s_mavic3.srt")] == pytest.approx([0.0, 0.033, 0.066])
    assert [(s.t, s.end) for s in parse_srt(DATA / "m300.srt")] == [(0.0, 1.0), (1.0, 2.0), (2.0, 3.0)]


def test_crlf_bom_and_blank_line_variations():
    # The sample files carry these on purpose; make sure they still do.
    assert b"\r\n" in (DATA / "air2s_mavic3.srt").read_bytes()
    assert (DATA / "mini4.srt").read_bytes().startswith(b"\xef\xbb\xbf")
    text = (DATA / "mavic_pro.srt").read_text()
    assert "\n\n\n2\n" in text and "Fnum:2.2 \n4\n" in text
    lf = parse_srt(text)
    assert len(lf) == 4
    assert parse_srt(text.replace("\n", "\r")).samples == lf.samples  # old Mac line ends


def test_gimbal_pitch_of_each_cue():
    assert [s.gimbal_pitch for s in parse_srt(DATA / "phantom4_rtk.srt")] == [-90.0, -45.5]


def test_input_as_path_str_text_or_bytes():
    path = DATA / "m300.srt"
    expected = parse_srt(path).samples
    assert parse_srt(str(path)).samples == expected
    assert parse_srt(path.read_text()).samples == expected
    assert parse_srt(path.read_bytes()).samples == expected


# ------------------------------------------------------------------------------ GPS order

def test_ambiguous_pair_follows_the_models_order():
    # Barcelona: both values are plausible latitudes and outside China, so the model decides.
    mavic_pro = parse_srt(srt("GPS(2.2341,41.4247,14) BAROMETER:35.2"))  # lon first
    m300 = parse_srt(srt("GPS(40.7128,-74.0060,0.0M) BAROMETER:10.0M"))  # lat first
    assert (mavic_pro[0].lat, mavic_pro[0].lon) == (41.4247, 2.2341)
    assert (m300[0].lat, m300[0].lon) == (40.7128, -74.006)
    assert mavic_pro.warnings == m300.warnings == []


def test_value_beyond_90_is_the_longitude_whatever_the_model():
    track = parse_srt(srt("GPS(-122.4194,37.7749,0.0M) BAROMETER:20.0M"))  # M300 writes lat first
    assert (track[0].lat, track[0].lon) == (37.7749, -122.4194)
    assert any("not in the m300 order" in w for w in track.warnings)


@pytest.mark.parametrize("body", [
    "GPS(75.9892,39.4704,0.0M) BAROMETER:20.0M",  # M300 firmware writing lon first
    "GPS(39.4704,75.9892,12) BAROMETER:20.0",  # Mavic Pro writing lat first
])
def test_china_box_settles_pairs_below_90(body):
    # Kashgar: lon 75.99 and lat 39.47 are both below 90; only one reading lies in China.
    track = parse_srt(srt(body))
    assert (track[0].lat, track[0].lon) == (39.4704, 75.9892)
    assert any("order" in w for w in track.warnings)


# ------------------------------------------------------------------------------ no fix

def test_zero_zero_is_kept_as_no_fix_and_never_used():
    track = parse_srt(DATA / "mavic_pro.srt")
    lost = track[2]
    assert not lost.has_fix and lost.lat is None and lost.lon is None
    assert lost.rel_alt == 36.9 and lost.wallclock == datetime(2017, 7, 29, 15, 18, 52)  # the rest is kept
    assert any("without a GPS fix" in w for w in track.warnings)
    assert track.position_at(1.5) == track.position_at(1.0)  # cue 2 holds its own fix until it ends
    assert track.position_at(2.0) is None
    assert track.position_at(2.9) is None  # not bridged to cue 4, 0.1 s away
    for step in range(-10, 50):
        p = track.position_at(step / 10)
        assert p is None or (37.26 < p.lat < 37.27 and 113.5 < p.lon < 113.6)


def test_out_of_range_coordinates_are_no_fix():
    track = parse_srt(srt("[latitude: 95.000000] [longitude: 2.234156] [altitude: 117.000000]",
                          "[latitude: 41.424724] [longitude: 2.234156] [altitude: 117.000000]"))
    assert not track[0].has_fix and track[1].has_fix
    assert any("out of range" in w for w in track.warnings)


def test_a_flight_without_any_fix_is_a_track_that_gives_no_position():
    track = parse_srt(srt("GPS(0.0,0.0,0) BAROMETER:1.0", "GPS(0.0,0.0,0) BAROMETER:1.2"))
    assert len(track) == 2 and track.position_at(0.5) is None
    assert any("no cue has a GPS fix" in w for w in track.warnings)


# ------------------------------------------------------------------------------ interpolation

def test_position_is_interpolated_between_fixes():
    m300 = parse_srt(DATA / "m300.srt")
    mid = m300.position_at(0.5)
    assert (mid.lat, mid.lon) == (pytest.approx(37.2669), pytest.approx(111.7896))
    assert mid.alt is None  # only a barometer height: no absolute altitude to give
    at_cue = m300.position_at(1.0)
    assert (at_cue.lat, at_cue.lon) == (37.267, 111.7897)

    air2s = parse_srt(DATA / "air2s_mavic3.srt")
    p = air2s.position_at(0.0495)
    assert (p.lat, p.lon, p.alt) == (pytest.approx(41.424733), pytest.approx(2.234171), pytest.approx(117.15))


def test_position_outside_the_track():
    track = parse_srt(DATA / "m300.srt")  # cues cover 0-3 s
    assert track.position_at(-0.4).lat == 37.2668
    assert track.position_at(-1.0) is None
    assert track.position_at(3.4).lat == 37.2672
    assert track.position_at(3.6) is None
    assert track.position_at(3.6, tolerance_s=1.0).lat == 37.2672


def test_empty_track_has_no_position():
    assert Track(()).position_at(0.0) is None and Track(()).duration == 0.0


def test_interpolation_crosses_the_antimeridian_the_short_way():
    track = Track((TelemetrySample(0.0, -16.0, 179.9), TelemetrySample(1.0, -16.0, -179.9)))
    assert abs(track.position_at(0.5).lon) == pytest.approx(180.0)


def test_cues_out_of_order_are_sorted():
    text = srt("GPS(37.2670,111.7897,0.0M) BAROMETER:80.6M", "GPS(37.2668,111.7895,0.0M) BAROMETER:80.3M")
    text = text.replace("00:00:00,000 --> 00:00:01,000", "X").replace("00:00:01,000 --> 00:00:02,000", "00:00:00,000 --> 00:00:01,000").replace("X", "00:00:01,000 --> 00:00:02,000")
    track = parse_srt(text)
    assert [s.lat for s in track] == [37.2668, 37.267]
    assert any("out of time order" in w for w in track.warnings)


# ------------------------------------------------------------------------------ truncation

def test_truncated_last_cue_is_dropped_with_a_warning():
    track = parse_srt(DATA / "truncated.srt")
    assert len(track) == 2
    assert track[1].lon == 2.234166 and track[1].alt == 117.1
    assert track.warnings == ["truncated file: cue 3 at 0.066 s is incomplete and was skipped; "
                              "the 2 complete cues before it are kept"]


def test_truncated_line_based_dialect():
    text = (DATA / "mavic_pro.srt").read_text()
    cut = text[: text.index("BAROMETER:37.5") + len("BAROMETER:37")]  # "37.5" cut to "37", ISO line lost
    track = parse_srt(cut)
    assert len(track) == 3 and any("truncated" in w for w in track.warnings)


def test_file_cut_in_the_next_cue_header_keeps_every_cue():
    text = (DATA / "air2s_mavic3.srt").read_text() + "4\n00:00:00,1"
    track = parse_srt(text)
    assert len(track) == 3 and track[2].alt == 117.2
    assert any("ends inside the header of cue 4" in w for w in track.warnings)


def test_file_cut_inside_its_only_cue_is_an_error():
    text = (DATA / "truncated.srt").read_text()
    with pytest.raises(TelemetryError, match="truncated file with no complete cue"):
        parse_srt(text[text.index("3\n00:00:00,066"):])


# ------------------------------------------------------------------------------ errors

def test_duration_mismatch_is_reported():
    track = parse_srt(DATA / "m300.srt")
    track.check_against(3.0)
    track.check_against(4.9)
    with pytest.raises(TelemetryError) as err:
        track.check_against(60.0)
    message = str(err.value)
    assert "3.0 s" in message and "60.0 s" in message and "\n" not in message


@pytest.mark.parametrize("content, message", [
    (b"", "empty file"),
    (b"\xef\xbb\xbf\r\n\r\n", "empty file"),
    (b"hello\nthis is a shopping list\n", "not an SRT file"),
    (b"\x00\x00\x00\x18ftypmp42\x00\x00", "not an SRT file"),
    (b"1\n00:00:01,000 --> 00:00:02,000\nWhere are you going?\n\n", "no GPS position in any"),
])
def test_bad_files_give_one_line_errors(tmp_path, content, message):
    path = tmp_path / "flight.SRT"
    path.write_bytes(content)
    with pytest.raises(TelemetryError, match=message) as err:
        parse_srt(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_missing_file_is_a_telemetry_error(tmp_path):
    with pytest.raises(TelemetryError, match="cannot read"):
        parse_srt(tmp_path / "nope.SRT")


# ------------------------------------------------------------------------------ writing

def test_write_parse_round_trip_per_frame(tmp_path):
    start = datetime(2024, 5, 1, 9, 30, 0)
    samples = [TelemetrySample(i / 30, 30.0 + i * 1e-5, 120.0 + i * 2e-5, 80.0 + i * 0.1,
                               wallclock=start + timedelta(microseconds=33_367 * i), gimbal_pitch=-45.0)
               for i in range(90)]
    samples[10] = replace(samples[10], lat=None, lon=None)  # a lost fix survives as one
    path = write_srt(samples, tmp_path / "clip.SRT")

    track = parse_srt(path)
    assert track.dialect == "mavic3" and len(track) == 90
    assert track.duration == pytest.approx(3.0)
    for wrote, read in zip(samples, track):
        assert read.t == pytest.approx(wrote.t, abs=5e-4)
        assert read.has_fix == wrote.has_fix
        if wrote.has_fix:
            assert (read.lat, read.lon) == (pytest.approx(wrote.lat, abs=1e-6), pytest.approx(wrote.lon, abs=1e-6))
        assert read.alt == pytest.approx(wrote.alt, abs=1e-6)
        assert read.wallclock == wrote.wallclock and read.gimbal_pitch == wrote.gimbal_pitch
    # Rewriting what was read changes nothing.
    assert write_srt(track, tmp_path / "again.SRT").read_bytes() == path.read_bytes()


def test_write_parse_round_trip_per_second_mini(tmp_path):
    samples = [TelemetrySample(float(i), 22.5 + i * 1e-4, 114.05, 60.0 + i, rel_alt=50.0 + i,
                               wallclock=datetime(2024, 5, 1, 9, 30, i, 250_000)) for i in range(5)]
    track = parse_srt(write_srt(samples, tmp_path / "clip.SRT", dialect="mini"))
    assert track.dialect == "mini" and track.warnings == []
    assert [(s.t, s.end) for s in track] == [(float(i), i + 1.0) for i in range(5)]
    assert [(s.alt, s.rel_alt, s.wallclock) for s in track] == [(s.alt, s.rel_alt, s.wallclock) for s in samples]
    track.check_against(5.0)


def test_write_refuses_what_it_would_lose_or_garble(tmp_path):
    with pytest.raises(ValueError, match="rel_alt"):
        write_srt([TelemetrySample(0.0, 30.0, 120.0, 80.0, rel_alt=50.0)], tmp_path / "a.SRT")
    with pytest.raises(ValueError, match="time order"):
        write_srt([TelemetrySample(1.0, 30.0, 120.0), TelemetrySample(0.0, 30.0, 120.0)], tmp_path / "b.SRT")
    with pytest.raises(ValueError, match="dialect"):
        write_srt([TelemetrySample(0.0, 30.0, 120.0)], tmp_path / "c.SRT", dialect="m300")
