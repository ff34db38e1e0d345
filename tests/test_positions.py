"""Where moving sources are: coordinate systems, tracks, placing samples and detections.

Pure parts, tested on their own; the intake over HTTP and a worker placing a live stream's
case are in test_position_intake.py.
"""
from __future__ import annotations

import math

import pytest

from streams.crs import bd09_to_gcj02, gcj02_to_bd09, gcj02_to_wgs84, to_wgs84, wgs84_to_gcj02
from streams.frame import CameraPose, GeoPoint
from streams.geo import ahead, bearing, metres, place
from streams.position_reports import CityArea, Intake, PositionIn, parse_mobile_position
from streams.positions import Fix, FixTrack
from streams.sources import parse_registry
from streams.telemetry import parse_srt
from streams.tracks import TrackError, align, parse_csv, parse_gpx, parse_nmea, read_track

# Published pairs (googollee/eviltransform's tests, MIT): WGS84 -> GCJ-02.
GCJ_PAIRS = [  # wgs lat, wgs lon, gcj lat, gcj lon
    (31.1774276, 121.5272106, 31.17530398364597, 121.531541859215),  # Shanghai
    (22.543847, 113.912316, 22.540796131694766, 113.9171764808363),  # Shenzhen
    (39.911954, 116.377817, 39.91334545536069, 116.38404722455657),  # Beijing
]
# Baidu's coordinate-conversion service (geoconv v1, from=1 to=5), the example of its documentation:
# WGS84 -> BD-09.
BD_PAIRS = [  # bd lat, bd lon, wgs lat, wgs lon
    (29.579084062553, 114.23074871003, 29.575429778924, 114.21892734521),
]


@pytest.mark.parametrize("wlat, wlon, glat, glon", GCJ_PAIRS)
def test_gcj02_converts_both_ways_on_published_pairs(wlat, wlon, glat, glon):
    assert wgs84_to_gcj02(wlat, wlon) == pytest.approx((glat, glon), abs=1e-9)
    back = to_wgs84(glat, glon, "gcj02")
    assert metres(GeoPoint(*back), GeoPoint(wlat, wlon)) < 0.01  # the inverse is exact to a centimetre
    # and the shift itself is hundreds of metres: converting matters
    assert metres(GeoPoint(glat, glon), GeoPoint(wlat, wlon)) > 100


@pytest.mark.parametrize("blat, blon, wlat, wlon", BD_PAIRS)
def test_bd09_converts_to_wgs84_on_published_pairs(blat, blon, wlat, wlon):
    got = GeoPoint(*to_wgs84(blat, blon, "bd09"))
    # Baidu's service meets the public formula to half a metre; the shift itself is over a kilometre
    assert metres(got, GeoPoint(wlat, wlon)) < 1.0
    assert metres(GeoPoint(blat, blon), GeoPoint(wlat, wlon)) > 1000


def test_conversions_round_trip_and_leave_the_world_outside_china_alone():
    lat, lon = 30.6000, 114.3000
    assert metres(GeoPoint(*to_wgs84(*gcj02_to_bd09(*wgs84_to_gcj02(lat, lon)), "bd09")), GeoPoint(lat, lon)) < 0.01
    assert bd09_to_gcj02(*gcj02_to_bd09(lat, lon)) == pytest.approx((lat, lon), abs=1e-6)
    assert gcj02_to_wgs84(48.8566, 2.3522) == (48.8566, 2.3522)  # Paris has no GCJ-02 shift
    with pytest.raises(ValueError, match="unknown coordinate system 'utm'"):
        to_wgs84(lat, lon, "utm")


def test_geometry_helpers_agree_with_each_other():
    a = GeoPoint(30.6, 114.3)
    b = ahead(a, 90.0, 100.0)
    assert metres(a, b) == pytest.approx(100.0, abs=0.05)
    assert bearing(a, b) == pytest.approx(90.0, abs=0.01)
    assert bearing(b, a) == pytest.approx(270.0, abs=0.01)


# ----------------------------------------------------------------------- a source's track

def _line(t0=1000.0, n=10, every_s=1.0, speed=10.0, heading=None):
    """Fixes of a source driving due east at ``speed`` m/s from (30.6, 114.3)."""
    start = GeoPoint(30.6, 114.3)
    return [Fix(t0 + i * every_s, *_xy(ahead(start, 90.0, speed * i * every_s)), heading=heading) for i in range(n)]


def _xy(p: GeoPoint):
    return p.lat, p.lon


def test_a_sample_between_fixes_is_interpolated_and_after_the_newest_carried_forward():
    track = FixTrack(max_age_s=10)
    for fix in _line():
        track.add(fix)
    start = GeoPoint(30.6, 114.3)
    mid = track.at(1002.5)
    assert metres(mid.point, ahead(start, 90.0, 25.0)) < 0.1
    assert mid.heading == pytest.approx(90.0, abs=0.1)  # from the direction of travel
    assert "interpolated" in mid.how
    later = track.at(1009 + 0.8)  # 0.8 s after the newest fix, still moving at 10 m/s
    assert metres(later.point, ahead(start, 90.0, 98.0)) < 0.5
    assert "carried 8 m forward" in later.how


def test_an_old_fix_makes_the_place_unknown_never_a_stale_place():
    track = FixTrack(max_age_s=10)
    for fix in _line(n=3):
        track.add(fix)
    gone = track.at(1002 + 30)
    assert gone.point is None
    assert gone.how == "position unknown: the newest fix was 30 s before the sample (older than 10 s is not used)"
    assert FixTrack().at(5.0).point is None


def test_a_jump_is_flagged_and_unused_until_the_next_fix_confirms_it():
    track = FixTrack(max_age_s=10, max_speed_mps=42)
    for fix in _line(n=3):
        track.add(fix)
    far = ahead(GeoPoint(30.6, 114.3), 0.0, 5000.0)
    jumped = track.add(Fix(1003.0, far.lat, far.lon))
    assert jumped.suspect.startswith("jump of 5") and "more than 42 m/s" in jumped.suspect
    assert metres(track.at(1003.0).point, GeoPoint(30.6, 114.3)) < 40  # still placed by the old track
    # the next fix agrees with the jumped one: the receiver re-acquired, the track follows it
    near_far = ahead(far, 90.0, 5.0)
    confirmed = track.add(Fix(1004.0, near_far.lat, near_far.lon))
    assert confirmed.suspect is None
    assert metres(track.at(1004.0).point, near_far) < 0.1


def test_the_intakes_memory_of_a_source_judges_the_next_report_alike():
    first = FixTrack()
    for fix in _line(n=3):
        first.add(fix)
    again = FixTrack()
    mem = first.memory()
    again.add(Fix(**mem["trusted"]))
    far = ahead(GeoPoint(30.6, 114.3), 0.0, 3000.0)
    assert again.add(Fix(1003.0, far.lat, far.lon)).suspect is not None


# ----------------------------------------------------------------------- placing a detection

def test_a_drone_box_lands_on_the_ground_under_it():
    drone = GeoPoint(30.6, 114.3)
    nadir = CameraPose(heading=0.0, pitch=-90.0, height_m=100.0, hfov_deg=90.0)
    # straight down, box in the middle: the point under the drone
    assert metres(place(drone, nadir, (0.5, 0.5), aspect=1.0).point, drone) < 0.01
    # at the right edge of a 90-degree picture 100 m up: 100 m east of it (heading north)
    east = place(drone, nadir, (1.0, 0.5), aspect=1.0).point
    assert metres(east, ahead(drone, 90.0, 100.0)) < 0.5
    # looking east 45 degrees down, box in the middle: 100 m east
    oblique = CameraPose(heading=90.0, pitch=-45.0, height_m=100.0, hfov_deg=60.0)
    spot = place(drone, oblique, (0.5, 0.5))
    assert metres(spot.point, ahead(drone, 90.0, 100.0)) < 0.5
    assert "100 m at 90° from the drone" in spot.how
    # a box above the horizon cannot be on the ground: the drone's own position, said so
    level = CameraPose(heading=90.0, pitch=0.0, height_m=100.0, hfov_deg=60.0)
    sky = place(drone, level, (0.5, 0.2))
    assert sky.point == drone and "horizon" in sky.how


def test_a_vehicle_camera_places_its_view_ahead_and_without_telemetry_stays_at_the_camera():
    car = GeoPoint(30.6, 114.3)
    ahead_15 = place(car, CameraPose(heading=45.0, offset_m=15.0), (0.5, 0.8))
    assert metres(ahead_15.point, ahead(car, 45.0, 15.0)) < 0.01
    assert place(car, CameraPose(offset_m=15.0), (0.5, 0.8)).point == car  # no heading: no direction to go
    assert place(car, None).how == "the camera's position"


# ----------------------------------------------------------------------- recorded tracks

GPX = """<?xml version="1.0" encoding="UTF-8"?>
<gpx version="1.1" creator="phone" xmlns="http://www.topografix.com/GPX/1/1">
 <trk><trkseg>
  <trkpt lat="30.600000" lon="114.300000"><ele>25.0</ele><time>2026-12-03T01:30:00Z</time></trkpt>
  <trkpt lat="30.600000" lon="114.301000"><ele>25.5</ele><time>2026-12-03T01:30:10Z</time></trkpt>
 </trkseg></trk>
</gpx>"""


def _nmea(body: str) -> str:
    check = 0
    for ch in body:
        check ^= ord(ch)
    return f"${body}*{check:02X}"


NMEA = "\n".join([
    _nmea("GPGGA,013000.00,3036.0000,N,11418.0000,E,1,08,0.9,25.0,M,0.0,M,,"),
    _nmea("GPRMC,013000.00,A,3036.0000,N,11418.0000,E,19.4,90.0,031226,,,A"),
    _nmea("GPRMC,013010.00,A,3036.0000,N,11418.0600,E,19.4,90.0,031226,,,A"),
    _nmea("GPRMC,013011.00,V,,,,,,,031226,,,N"),  # no fix: not a position
    "$GPRMC,013012.00,A,3036.0000,N,11418.0700,E,19.4,90.0,031226,,,A*00",  # bad checksum
])


def test_gpx_nmea_and_csv_tracks_read_alike(tmp_path):
    gpx = parse_gpx(GPX)
    assert [(f.lat, f.lon, f.alt) for f in gpx] == [(30.6, 114.3, 25.0), (30.6, 114.301, 25.5)]
    assert gpx[1].t - gpx[0].t == 10.0
    nmea = parse_nmea(NMEA)
    assert len(nmea) == 2
    assert nmea[0].t == gpx[0].t  # both UTC 01:30:00 on 3 December 2026
    assert (nmea[0].lat, nmea[0].lon) == pytest.approx((30.6, 114.3))
    assert nmea[0].alt == 25.0 and nmea[0].heading == 90.0 and nmea[0].speed == pytest.approx(9.98, abs=0.01)
    csv_fixes = parse_csv("t,lat,lon\n0,30.6,114.3\n10,30.6,114.301\n")
    assert [f.t for f in csv_fixes] == [0.0, 10.0]
    (tmp_path / "walk.gpx").write_text(GPX)
    (tmp_path / "drive.nmea").write_text(NMEA)
    assert len(read_track(tmp_path / "walk.gpx")) == 2 and len(read_track(tmp_path / "drive.nmea")) == 2


def test_track_times_line_up_with_the_video_and_bad_tracks_say_why(tmp_path):
    gpx = parse_gpx(GPX)
    aligned = align(gpx, gpx[0].t - 5.0)  # the video began 5 s before the first point
    assert [f.t for f in aligned] == [5.0, 15.0]
    with pytest.raises(TrackError, match="give --start"):
        align(gpx, None)
    (tmp_path / "x.csv").write_text("when,where\n1,2\n")
    with pytest.raises(TrackError, match="no column t, lat, lon"):
        read_track(tmp_path / "x.csv")
    (tmp_path / "broken.gpx").write_text(GPX[:200])
    with pytest.raises(TrackError, match="not valid GPX"):
        read_track(tmp_path / "broken.gpx")
    with pytest.raises(TrackError, match="not found"):
        read_track(tmp_path / "missing.gpx")


def test_srt_gimbal_yaw_and_focal_length_reach_the_telemetry():
    srt = ("1\n00:00:00,000 --> 00:00:00,033\n<font size=\"28\">SrtCnt : 1, DiffTime : 33ms\n"
           "2024-01-18 10:23:26.397\n[iso : 150] [focal_len : 240] [latitude: 30.600000] [longitude: 114.300000] "
           "[rel_alt: 80.000 abs_alt: 110.000] [gb_yaw: -90.0 gb_pitch: -45.0 gb_roll: 0.0] </font>\n")
    sample = parse_srt(srt)[0]
    assert (sample.gimbal_yaw, sample.gimbal_pitch, sample.rel_alt, sample.focal_mm) == (270.0, -45.0, 80.0, 24.0)
    assert sample.hfov_deg == pytest.approx(73.74, abs=0.01)  # 24 mm on a 36 mm wide frame


# ----------------------------------------------------------------------- reports from senders

REGISTRY = parse_registry({"sources": [
    {"id": "vehicle-01", "kind": "vehicle", "url": "rtsp://gw/v1", "device_id": "34020000001320000101"},
    {"id": "fixed-01", "kind": "fixed", "url": "rtsp://gw/f1", "lat": 30.6, "lon": 114.3},
]})
MOBILE_POSITION = """<?xml version="1.0" encoding="GB2312"?>
<Notify>
<CmdType>MobilePosition</CmdType>
<SN>17</SN>
<DeviceID>34020000001320000101</DeviceID>
<Time>2026-12-03T09:30:00</Time>
<Longitude>114.3</Longitude>
<Latitude>30.6</Latitude>
<Speed>36.0</Speed>
<Direction>270</Direction>
<Altitude>25</Altitude>
</Notify>
""".encode("gb2312")


def test_a_gb28181_mobile_position_reads_as_a_position_of_its_source():
    [item] = parse_mobile_position(MOBILE_POSITION)
    report = PositionIn(**item)
    assert report.t == pytest.approx(1796261400.0)  # 09:30 China time = 01:30 UTC
    assert (report.lat, report.lon, report.heading, report.alt) == (30.6, 114.3, 270.0, 25.0)
    assert report.speed == pytest.approx(10.0)  # 36 km/h
    with pytest.raises(ValueError, match="not a MobilePosition"):
        parse_mobile_position(b"<Notify><CmdType>Keepalive</CmdType></Notify>")
    with pytest.raises(ValueError, match="not valid XML"):
        parse_mobile_position(b"<Notify>")


def test_the_intake_refuses_what_it_cannot_place_and_converts_what_it_can():
    area = CityArea(30.57, 114.26, 30.63, 114.34, margin_km=30)
    intake = Intake(REGISTRY, area, future_s=60, max_age_s=86400)
    now = 1796261400.0
    gcj = wgs84_to_gcj02(30.6, 114.3)
    items = [
        PositionIn(source_id="34020000001320000101", t=now, lat=gcj[0], lon=gcj[1], crs="gcj02"),  # by device code
        PositionIn(source_id="vehicle-99", t=now, lat=30.6, lon=114.3),
        PositionIn(source_id="fixed-01", t=now, lat=30.6, lon=114.3),
        PositionIn(source_id="vehicle-01", t=now, lat=39.9, lon=116.4),  # Beijing
        PositionIn(source_id="vehicle-01", t=now + 3600, lat=30.6, lon=114.3),
        PositionIn(source_id="vehicle-01", t=now - 3 * 86400, lat=30.6, lon=114.3),
        PositionIn(source_id="vehicle-01", t=now, lat=30.6, lon=114.3),
    ]
    out = intake.check(items, now)
    assert [sid for sid, _ in out.accepted] == ["vehicle-01", "vehicle-01"]
    assert metres(out.accepted[0][1].point, GeoPoint(30.6, 114.3)) < 0.01  # GCJ-02 turned into WGS84
    reasons = {r["index"]: r["error"] for r in out.rejected}
    assert reasons[1].startswith("unknown source 'vehicle-99'")
    assert "fixed camera" in reasons[2]
    assert "more than 30 km outside the city" in reasons[3]
    assert "3600 s in the future" in reasons[4]
    assert "72 h old" in reasons[5]
    assert math.isclose(area.box[0], 30.57)
