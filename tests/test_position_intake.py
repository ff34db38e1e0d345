"""Live positions end to end: the intake over HTTP, a worker placing a live RTSP vehicle
stream's case by them, and recorded footage placed by its GPX or NMEA track.

Real parts throughout: the API app, a real Redis, GStreamer's RTSP server playing the
vehicle sample, the default model, the case builder and store.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import media_servers
from api.app import create_app
from auth_helpers import token_headers
from cases.grid import GridIndex
from core.settings import Settings
from core.wiring import Parts
from streams.crs import gcj02_to_bd09, wgs84_to_gcj02
from streams.frame import GeoPoint
from streams.geo import ahead, metres
from streams.positions import Fix
from streams.sources import parse_registry
from test_bus import wait_for
from test_upload_api import redis_url  # noqa: F401  (fixture: the Redis server, else an embedded one)
from vision.events import Event
from vision.pipeline import Pipeline
from workers.bus import EVENTS, Bus
from workers.case_builder import CaseBuilderService
from workers.patrol import PatrolWorker

REPO = Path(__file__).resolve().parents[1]
VEHICLE_CLIP = REPO / "sample_videos" / "vehicle_street_vending.mp4"
GRID = GridIndex.from_geojson(REPO / "config" / "grid.geojson")
START = GeoPoint(30.6005, 114.2905)  # inside the city's grid
SPEED = 8.0  # m/s, due east

REGISTRY = {"sources": [
    {"id": "vehicle-01", "kind": "vehicle", "url": "rtsp://127.0.0.1:1/unused", "device_id": "34020000001320000101"},
    {"id": "drone-01", "kind": "drone", "url": "rtsp://127.0.0.1:1/unused"},
    {"id": "fixed-01", "kind": "fixed", "url": "rtsp://127.0.0.1:1/unused", "lat": 30.6, "lon": 114.3},
]}


@pytest.fixture
def parts(tmp_path):
    p = Parts(Settings(data_dir=tmp_path / "data"), db_url=f"sqlite:///{tmp_path / 'cases.db'}")
    yield p
    p.store.close()


@pytest.fixture
def api(parts, redis_url):
    bus = Bus.connect(redis_url)
    app = create_app(parts, bus=bus, registry=parse_registry(REGISTRY))
    with TestClient(app, headers=token_headers(parts, "telemetry")) as client:
        yield client, bus
    bus.r.close()


def stream_fixes(bus) -> list[tuple[str, Fix]]:
    from workers.bus import fix_from_fields
    return [fix_from_fields(f) for _, f in bus.read_positions("0")]


def test_positions_are_taken_converted_and_bad_ones_refused_with_reasons(api, parts):
    client, bus = api
    now = time.time()
    east = ahead(START, 90.0, 8.0)
    r = client.post("/api/v1/positions", json={"positions": [
        {"source_id": "vehicle-01", "t": now - 1, "lat": START.lat, "lon": START.lon, "heading": 90, "speed": 8},
        {"source_id": "vehicle-01", "t": now, "lat": east.lat, "lon": east.lon, "accuracy_m": 5},
    ]})
    assert r.status_code == 202, r.text
    assert r.json() == {"accepted": 2, "flagged": [], "rejected": []}
    fixes = stream_fixes(bus)
    assert [sid for sid, _ in fixes] == ["vehicle-01", "vehicle-01"]
    assert (fixes[0][1].heading, fixes[0][1].speed, fixes[1][1].accuracy_m) == (90.0, 8.0, 5.0)

    # a phone map app's GCJ-02 and BD-09 arrive as WGS84
    gcj = wgs84_to_gcj02(east.lat, east.lon)
    bd = gcj02_to_bd09(*gcj)
    assert client.post("/api/v1/positions", json={"crs": "gcj02", "positions": [
        {"source_id": "vehicle-01", "t": now + 0.5, "lat": gcj[0], "lon": gcj[1]},
        {"source_id": "vehicle-01", "t": now + 1, "lat": bd[0], "lon": bd[1], "crs": "bd09"}]}).status_code == 202
    for _, fix in stream_fixes(bus)[2:]:
        assert metres(fix.point, east) < 0.01

    # refused, each with its reason, while the good one in the same batch is kept
    r = client.post("/api/v1/positions", json=[
        {"source_id": "vehicle-77", "t": now, "lat": START.lat, "lon": START.lon},
        {"source_id": "vehicle-01", "t": now, "lat": 39.9, "lon": 116.4},
        {"source_id": "vehicle-01", "t": now + 600, "lat": START.lat, "lon": START.lon},
        {"source_id": "fixed-01", "t": now, "lat": START.lat, "lon": START.lon},
        {"source_id": "drone-01", "t": now, "lat": START.lat, "lon": START.lon, "height_m": 80, "pitch": -60},
    ])
    assert r.status_code == 422
    body = r.json()
    assert body["accepted"] == 1
    errors = {e["index"]: e["error"] for e in body["rejected"]}
    assert errors[0].startswith("unknown source 'vehicle-77'")
    assert "outside the city" in errors[1]
    assert "in the future" in errors[2]
    assert "fixed camera" in errors[3]
    assert stream_fixes(bus)[-1][0] == "drone-01"

    # a jump faster than a vehicle moves is kept, flagged, and said
    far = ahead(east, 0.0, 3000.0)
    r = client.post("/api/v1/positions", json=[{"source_id": "vehicle-01", "t": now + 2, "lat": far.lat, "lon": far.lon}])
    assert r.status_code == 202
    [flag] = r.json()["flagged"]
    assert flag["source_id"] == "vehicle-01" and "m/s" in flag["reason"]

    # malformed input: a clear 4xx that does not echo the body back
    assert client.post("/api/v1/positions", content=b"{not json", headers={"Content-Type": "application/json"}
                       ).status_code == 400
    r = client.post("/api/v1/positions", json=[{"source_id": "vehicle-01", "t": now, "lat": 123.0, "lon": "x" * 5000}])
    assert r.status_code == 422 and len(r.text) < 2000
    # only telemetry tokens may report positions
    assert TestClient(client.app).post("/api/v1/positions", json=[]).status_code == 401
    assert client.post("/api/v1/positions", json=[], headers=token_headers(parts, "platform")).status_code == 403


def test_a_gb28181_mobile_position_notification_is_taken_as_xml(api):
    client, bus = api
    local = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(time.time() + 8 * 3600))  # the gateway's China time
    xml = (f'<?xml version="1.0" encoding="GB2312"?>\n<Notify>\n<CmdType>MobilePosition</CmdType>\n<SN>7</SN>\n'
           f'<DeviceID>34020000001320000101</DeviceID>\n<Time>{local}</Time>\n<Longitude>{START.lon}</Longitude>\n'
           f'<Latitude>{START.lat}</Latitude>\n<Speed>28.8</Speed>\n<Direction>90</Direction>\n</Notify>\n')
    r = client.post("/api/v1/positions", content=xml.encode("gb2312"),
                    headers={"Content-Type": "Application/MANSCDP+xml"})
    assert r.status_code == 202, r.text
    [(sid, fix)] = stream_fixes(bus)
    assert sid == "vehicle-01" and abs(fix.t - time.time()) < 5
    assert fix.speed == pytest.approx(8.0) and fix.heading == 90.0
    r = client.post("/api/v1/positions", content=b"<Notify><CmdType>Catalog</CmdType></Notify>",
                    headers={"Content-Type": "text/xml"})
    assert r.status_code == 400 and "not a MobilePosition" in r.json()["detail"]


# ---------------------------------------------------------------- a live vehicle's case, placed

def where(t: float, t0: float) -> GeoPoint:
    """The test vehicle's true place at wall-clock ``t``: east from START at SPEED since ``t0``."""
    return ahead(START, 90.0, SPEED * (t - t0))


@pytest.mark.slow  # the real model over 25 s of a live stream
def test_a_live_vehicle_stream_gets_its_case_where_the_vehicle_was(parts, redis_url, tmp_path):
    """RTSP video from a patrol vehicle, its positions posted to the intake as it drives: the
    vending case lands in the grid cell of the vehicle's place at the event's time, within 10 m."""
    media_servers.require_rtsp()
    clip = tmp_path / "drive.mp4"  # from just before the stall comes into view
    subprocess.run(["ffmpeg", "-v", "error", "-ss", "8", "-i", str(VEHICLE_CLIP), "-t", "24", "-c", "copy", str(clip)],
                   check=True)
    registry = parse_registry({"sources": [
        {"id": "vehicle-01", "kind": "vehicle", "url": "rtsp://placeholder/", "policy": {"interval_s": 1.0}}]})
    bus = Bus.connect(redis_url)
    app = create_app(parts, bus=bus, registry=registry)
    stop = threading.Event()
    t0 = time.time()

    def drive(client: TestClient):
        while not stop.is_set():  # a fix every half second, as a vehicle's GPS sends them
            now = time.time()
            p = where(now, t0)
            r = client.post("/api/v1/positions", json=[{"source_id": "vehicle-01", "t": now, "lat": p.lat, "lon": p.lon}])
            assert r.status_code == 202, r.text
            stop.wait(0.5)

    with media_servers.rtsp_server(file=clip) as server, \
            TestClient(app, headers=token_headers(parts, "telemetry")) as client:
        registry.sources[0].url = server.url
        worker = PatrolWorker(bus, Pipeline(parts.detector, parts.rules), list(registry), worker_id="w-test",
                              state_every_s=0.5, reader_options={"open_timeout_s": 5, "read_timeout_s": 5})
        builder = CaseBuilderService(bus, parts.builder, registry, consumer="builder-test")
        threads = [threading.Thread(target=drive, args=(client,), daemon=True),
                   threading.Thread(target=worker.run, args=(stop,), daemon=True),
                   threading.Thread(target=builder.run, args=(stop,), kwargs={"block_ms": 200}, daemon=True)]
        for th in threads:
            th.start()
        try:
            wait_for(lambda: parts.store.list_cases(event_type="street_vending").items, 60, "a street-vending case")
            state = wait_for(lambda: bus.source_states().get("vehicle-01", {}).get("fix"), 10, "the source's fix")
        finally:
            stop.set()
            for th in threads:
                th.join(15)
            bus.r.close()

    opened = next(e for e in (Event.from_message(f) for _, f in Bus.connect(redis_url).r.xrange(EVENTS))
                  if e.event_type == "street_vending")
    truth = where(opened.evidence_ts, t0)
    [case] = parts.store.list_cases(event_type="street_vending").items
    assert metres(GeoPoint(case.lat, case.lon), truth) < 10, (case.lat, case.lon, truth, case.trace)
    assert case.grid == GRID.cell_at(truth.lat, truth.lon)
    assert any(line.startswith("place: the camera's position; camera position: ") for line in case.trace)
    assert abs(state["lat"] - where(state["t"], t0).lat) < 1e-6 and state["suspect"] is False


# ---------------------------------------------------------------- recorded footage with a track

def gpx_track(start: float, seconds: int = 40, every_s: int = 2) -> str:
    points = []
    for i in range(0, seconds + 1, every_s):
        p = ahead(START, 90.0, SPEED * i)
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + i))
        points.append(f'<trkpt lat="{p.lat:.7f}" lon="{p.lon:.7f}"><time>{when}</time></trkpt>')
    return ('<?xml version="1.0"?><gpx version="1.1" xmlns="http://www.topografix.com/GPX/1/1"><trk><trkseg>'
            + "".join(points) + "</trkseg></trk></gpx>")


def nmea_track(start: float, seconds: int = 40) -> str:
    lines = []
    for i in range(seconds + 1):
        p = ahead(START, 90.0, SPEED * i)
        hhmmss = time.strftime("%H%M%S", time.gmtime(start + i))
        day = time.strftime("%d%m%y", time.gmtime(start + i))
        lat = f"{int(p.lat):02d}{(p.lat - int(p.lat)) * 60:07.4f}"
        lon = f"{int(p.lon):03d}{(p.lon - int(p.lon)) * 60:07.4f}"
        body = f"GPRMC,{hhmmss}.00,A,{lat},N,{lon},E,{SPEED / 0.514444:.1f},90.0,{day},,,A"
        check = 0
        for ch in body:
            check ^= ord(ch)
        lines.append(f"${body}*{check:02X}")
    return "\n".join(lines) + "\n"


def analyze(*args: str) -> list[dict]:
    out = subprocess.run([sys.executable, "-m", "patrol.cli", "analyze", str(VEHICLE_CLIP), "--kind", "vehicle",
                          "--json", *args], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    return [json.loads(line) for line in out.stdout.splitlines()]


def on_track_during(case: dict) -> float:
    """The case's distance from the track at the nearest moment of its event."""
    return min(metres(GeoPoint(case["lat"], case["lon"]), ahead(START, 90.0, SPEED * (case["start"] + k * 0.1)))
               for k in range(int((case["end"] - case["start"]) * 10) + 1))


@pytest.mark.slow  # the real model over the 40 s clip, twice
@pytest.mark.parametrize("kind", ["gpx", "nmea"])
def test_analyze_with_a_gpx_or_nmea_track_places_the_case(tmp_path, kind):
    start = 1796261400.0  # 2026-12-03 09:30 China time
    track = tmp_path / f"drive.{kind}"
    track.write_text(gpx_track(start) if kind == "gpx" else nmea_track(start))
    [case] = [c for c in analyze("--track", str(track), "--start", "2026-12-03T09:30:00",
                                 "--evidence", str(tmp_path / "ev")) if c["event_type"] == "street_vending"]
    assert on_track_during(case) < 10
    assert case["grid"] == GRID.cell_at(case["lat"], case["lon"]) and case["grid"] is not None
    assert any(line.startswith("place: ") for line in case["trace"])


@pytest.mark.slow  # the real model over the 40 s clip
def test_a_track_that_stops_early_leaves_the_place_unknown_and_says_so(tmp_path):
    track = tmp_path / "short.csv"
    track.write_text("t,lat,lon\n0,30.6005,114.2905\n2,30.6005,114.2907\n")  # the GPS died after 2 s
    [case] = [c for c in analyze("--track", str(track), "--max-fix-age", "4", "--evidence", str(tmp_path / "ev"))
              if c["event_type"] == "street_vending"]
    assert case["lat"] is None and case["grid"] is None
    assert any(line.startswith("place: position unknown: the newest fix was") for line in case["trace"]), case["trace"]


def test_analyze_refuses_a_track_it_cannot_line_up(tmp_path):
    track = tmp_path / "drive.gpx"
    track.write_text(gpx_track(1796261400.0))
    out = subprocess.run([sys.executable, "-m", "patrol.cli", "analyze", str(VEHICLE_CLIP), "--kind", "vehicle",
                          "--track", str(track)], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 2
    assert "give --start" in out.stderr  # the sample clip carries no creation time


@pytest.mark.slow  # the real model over the drone clip
def test_a_drone_case_is_placed_on_the_ground_under_its_box(tmp_path):
    """The sample flight's telemetry, given a height of 80 m and a gimbal looking east 45° down:
    the shed is placed on the ground east of the drone, inside the strip its picture covers
    (27 to 240 m out with an 84° lens on a 16:9 picture), not at the drone."""
    from streams.telemetry import parse_srt, write_srt
    from dataclasses import replace

    flight = parse_srt(REPO / "sample_videos" / "drone_illegal_construction.SRT")
    srt = write_srt([replace(s, rel_alt=80.0, gimbal_pitch=-45.0, gimbal_yaw=90.0) for s in flight.samples],
                    tmp_path / "oblique.SRT", dialect="mini")
    out = subprocess.run([sys.executable, "-m", "patrol.cli", "analyze",
                          str(REPO / "sample_videos" / "drone_illegal_construction.mp4"), "--kind", "drone",
                          "--srt", str(srt), "--hfov", "84", "--json", "--evidence", str(tmp_path / "ev")],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stderr
    [case] = [c for c in map(json.loads, out.stdout.splitlines()) if c["event_type"] == "illegal_construction"]
    under = [GeoPoint(s.lat, s.lon) for s in flight.samples if case["start"] <= s.t <= case["end"]]
    spot = GeoPoint(case["lat"], case["lon"])
    nearest = min(under, key=lambda p: metres(p, spot))
    east = metres(GeoPoint(nearest.lat, spot.lon), nearest) * (1 if spot.lon > nearest.lon else -1)
    assert 20 < east < 240, (east, case["trace"])  # (27 m is the bottom edge; the path is sampled)
    assert metres(GeoPoint(spot.lat, nearest.lon), nearest) < 30  # hardly north or south of the path
    assert any("on the ground under the box" in line for line in case["trace"])
