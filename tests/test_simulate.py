"""The simulated city: camera-cost media, its registry, and every transport read by the
product's own reader (real ffmpeg, real GStreamer RTSP server, real nginx-rtmp)."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bench.camera_media import PROFILES, measure, prepare
from bench.simulate import (CITY_MIX, CitySimulation, SimulationError, plan, rtmp_unavailable, rtsp_unavailable,
                              scaled_mix)
from streams.live import LiveReader
from streams.reader import probe
from streams.sources import load_registry, parse_registry
from tests.media_servers import require_ffmpeg

ROOT = Path(__file__).resolve().parents[1]
CLIPS = {  # the sample clips' names and orientation, as short test-pattern stand-ins
    "fixed_street_vending": "960x540",
    "fixed_illegal_construction": "960x540",
    "vehicle_street_vending": "960x540",
    "drone_illegal_construction": "960x540",
    "mobile_street_vending": "540x960",
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory) -> Path:
    """Three-second clips named like the samples (prepared media stays quick to make)."""
    require_ffmpeg()
    d = tmp_path_factory.mktemp("samples")
    for name, size in CLIPS.items():
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc2=size={size}:rate=10", "-t", "3", "-c:v", "libx264", "-preset", "ultrafast",
                        "-pix_fmt", "yuv420p", str(d / f"{name}.mp4")], check=True, timeout=60)
    shutil.copy(ROOT / "sample_videos" / "fixed_street_vending.zones.yaml", d)
    return d


@pytest.fixture(scope="module")
def city(samples, tmp_path_factory) -> CitySimulation:
    sim = CitySimulation(plan({"fixed": 2, "vehicle": 1, "drone": 1, "mobile": 2}, samples),
                         cache_dir=tmp_path_factory.mktemp("cache"))
    sim.prepare()
    return sim


def test_scaled_mix_keeps_the_city_proportions():
    assert scaled_mix(254) == CITY_MIX
    for total in (1, 4, 10, 37, 100, 508):
        mix = scaled_mix(total)
        assert sum(mix.values()) == total
        assert mix["mobile"] >= mix["fixed"] >= mix["vehicle"]
    assert scaled_mix(10) == {"fixed": 2, "vehicle": 1, "drone": 1, "mobile": 6}
    assert scaled_mix(2) == {"fixed": 1, "vehicle": 0, "drone": 0, "mobile": 1}
    assert scaled_mix(1) == {"fixed": 0, "vehicle": 0, "drone": 0, "mobile": 1}
    assert scaled_mix(508) == {k: 2 * v for k, v in CITY_MIX.items()}
    assert scaled_mix(30, {"mobile": 1}) == {"fixed": 0, "vehicle": 0, "drone": 0, "mobile": 30}
    with pytest.raises(ValueError):
        scaled_mix(-1)


def test_plan_is_deterministic_and_rejects_bad_input(samples, tmp_path):
    a = plan({"fixed": 3, "mobile": 2}, samples)
    b = plan({"fixed": 3, "mobile": 2}, samples)
    assert [(s.id, s.clip, s.lat, s.lon) for s in a] == [(s.id, s.clip, s.lat, s.lon) for s in b]
    assert [s.kind for s in a] == ["fixed"] * 3 + ["mobile"] * 2
    assert len({s.id for s in a}) == 5
    with pytest.raises(SimulationError, match="unknown source kind"):
        plan({"bus": 1}, samples)
    with pytest.raises(SimulationError, match="no fixed clip"):
        plan({"fixed": 1}, tmp_path)


@pytest.mark.slow
def test_prepared_media_costs_what_camera_video_costs(city):
    """Each profile's size, GOP and bitrate, measured from the file's packets: the
    texture and sensor noise make the encoder spend the camera's bitrate."""
    seen = {m["profile"]: m for m in city.media_table()}
    assert set(seen) == {"main1080", "sub360", "hd720", "drone1080"}
    for name, m in seen.items():
        p = PROFILES[name]
        portrait = "mobile" in m["path"]
        assert (m["width"], m["height"]) == p.size_for(portrait), name
        assert m["fps"] == 25
        assert m["gop_s"] == pytest.approx(p.gop_s, abs=0.05), name
        # constant bitrate: spent (not a flat picture coded in a trickle), and not exceeded
        assert 0.6 * p.kbps <= m["kbps"] <= 1.35 * p.kbps, (name, m["kbps"])


def test_media_are_cached_by_content(samples, tmp_path):
    clip = samples / "vehicle_street_vending.mp4"
    first = prepare(clip, "sub360", tmp_path)
    mtime = first.stat().st_mtime_ns
    assert prepare(clip, "sub360", tmp_path) == first and first.stat().st_mtime_ns == mtime
    other = prepare(samples / "fixed_street_vending.mp4", "sub360", tmp_path)
    assert other != first
    assert not list(tmp_path.glob("*.part.mp4"))
    assert measure(first).width == 640


@pytest.mark.slow
def test_file_transport_registry_validates_and_reads_at_the_stated_sizes(city, tmp_path):
    with city.serve("file") as served:
        path = served.write_registry(tmp_path / "registry.yaml")
    reg = load_registry(path)
    assert len(reg) == 6
    by_kind = {}
    for s in reg:
        by_kind.setdefault(s.kind, []).append(s)
        info = probe(s.url)
        expected = {"fixed": (1920, 1080), "vehicle": (1280, 720), "drone": (1920, 1080), "mobile": (720, 1280)}
        assert (info.width, info.height) == expected[s.kind], s.id
    for s in by_kind["fixed"]:
        assert s.sub_url and (probe(s.sub_url).width, probe(s.sub_url).height) == (640, 360)
        assert s.lat is not None
    assert by_kind["fixed"][0].zones and by_kind["fixed"][0].zones[0].role == "no_vending"
    assert all(s.sub_url is None for k in ("vehicle", "drone", "mobile") for s in by_kind[k])
    assert by_kind["drone"][0].srt is None or Path(by_kind["drone"][0].srt).is_file()


def _first_sample(reader: LiveReader, timeout_s: float = 20.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        f = reader.latest()
        if f is not None:
            return f
        time.sleep(0.05)
    raise AssertionError(f"no sample from {reader.url}: {reader.stats()}")


@pytest.mark.slow
@pytest.mark.media
def test_rtsp_transport_serves_endless_real_time_streams(city, tmp_path):
    why = rtsp_unavailable()
    if why:
        pytest.skip(why)
    with city.serve("rtsp") as served:
        reg = parse_registry(served.registry())
        fixed = next(s for s in reg if s.kind == "fixed")
        mobile = next(s for s in reg if s.kind == "mobile")
        assert fixed.url.startswith("rtsp://") and fixed.sub_url.endswith("_sub")
        readers = [LiveReader("sub", fixed.sub_url, interval_s=1.0).start(),
                   LiveReader("mobile", mobile.url, interval_s=1.0).start()]
        try:
            sub, mob = (_first_sample(r) for r in readers)
            assert sub.source_size == (640, 360) and mob.source_size == (720, 1280)
            # The clips last 3 s: after 6 s the streams must still be live, their
            # timestamps still growing (a loop, not a restart), at real-time pace.
            t0 = time.monotonic()
            time.sleep(6.0)
            readers[1].latest()  # a sample waiting this long may be up to two intervals old: take a fresh one
            late = _first_sample(readers[1])
            elapsed = time.monotonic() - t0
            assert late.extra["pts"] > 4.0
            assert late.extra["pts"] - mob.extra["pts"] <= elapsed + 2.5  # no faster than real time (+ start burst)
            for r in readers:
                st = r.stats()
                assert st["state"] == "live" and st["reconnects"] == 0, st
        finally:
            for r in readers:
                r.stop()
        assert not served.failed()
    assert all(p.poll() is not None for p in served.children) or not served.children


@pytest.mark.slow
@pytest.mark.media
def test_rtmp_transport_publishes_every_stream(samples, city):
    why = rtmp_unavailable()
    if why:
        pytest.skip(why)
    sim = CitySimulation(plan({"mobile": 1, "fixed": 1}, samples), cache_dir=city.cache_dir)
    with sim.serve("rtmp") as served:
        children = list(served.children)
        assert len(children) == 1 + 3  # nginx + main and sub of the fixed camera + the phone
        reg = parse_registry(served.registry())
        mobile = next(s for s in reg if s.kind == "mobile")
        reader = LiveReader("m", mobile.url, interval_s=1.0).start()
        try:
            f = _first_sample(reader)
            assert f.source_size == (720, 1280)
        finally:
            reader.stop()
    assert all(p.poll() is not None for p in children)


@pytest.mark.slow
def test_cli_writes_a_registry_and_rejects_bad_counts(samples, city, tmp_path):
    out = tmp_path / "reg.yaml"
    cmd = [sys.executable, "-m", "patrol.cli", "simulate", "--fixed", "1", "--mobile", "1", "--transport", "file",
           "--samples", str(samples), "--cache", str(city.cache_dir), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "640x360" in r.stdout and "1920x1080" in r.stdout and "720x1280" in r.stdout
    raw = yaml.safe_load(out.read_text())
    assert [s["kind"] for s in raw["sources"]] == ["fixed", "mobile"]
    assert len(load_registry(out)) == 2
    bad = subprocess.run(cmd[:5] + ["-1"] + cmd[6:], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert bad.returncode == 2 and "negative" in bad.stderr
