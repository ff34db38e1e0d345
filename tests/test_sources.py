"""The source registry: valid files load; every mistake stops the start with a
message naming the source (its id or #index) and the field."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from streams.sources import DEFAULT_INTERVAL_S, ConfigError, load_registry, parse_registry

CONFIG = Path(__file__).resolve().parents[1] / "config"

GOOD = {"id": "cam-2", "kind": "fixed", "url": "rtsp://gw.example:554/rtp/2_main"}
ZONE = {"name": "pavement", "role": "no_vending", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]]}


def write(tmp_path: Path, raw, name: str = "sources.yaml") -> Path:
    path = tmp_path / name
    path.write_text(raw if isinstance(raw, str) else yaml.safe_dump(raw, allow_unicode=True), encoding="utf-8")
    return path


def registry_error(tmp_path: Path, second: dict) -> str:
    """Load a registry whose second source is ``second``; return the error message."""
    first = {"id": "cam-1", "kind": "fixed", "url": "rtsp://gw.example:554/rtp/1_main"}
    with pytest.raises(ConfigError) as err:
        load_registry(write(tmp_path, {"sources": [first, second]}))
    return str(err.value)


# ---------------------------------------------------------------- valid registries


def test_the_demo_registry_loads_with_its_zones_and_files():
    reg = load_registry(CONFIG / "demo_sources.yaml")
    assert len(reg) == 7
    east = reg.get("fixed-east-gate")
    assert east.kind == "fixed" and east.grid == "42011700200818" and (east.lat, east.lon) == (30.6, 114.3)
    assert [(z.name, z.role) for z in east.zones] == [("East Gate pavement", "no_vending")]
    # relative paths are resolved against the registry file, so they work from any directory
    assert Path(east.url).is_file() and Path(east.url).is_absolute()
    drone = reg.get("drone-01")
    assert drone.location == "telemetry" and Path(drone.srt).is_file()
    assert reg.get("fixed-site-7").zones_with("permitted_construction")[0].name == "Permitted site No.7"


def test_the_city_registry_has_254_sources_of_four_kinds():
    reg = load_registry(CONFIG / "city_sources.yaml")
    assert len(reg) == 254
    assert Counter(s.kind for s in reg) == {"fixed": 50, "vehicle": 3, "drone": 1, "mobile": 200}
    assert len({s.id for s in reg}) == 254
    assert all(s.is_live for s in reg)


def test_defaults_follow_the_kind():
    reg = parse_registry({"sources": [
        {"id": "f", "kind": "fixed", "url": "rtsp://a/b"},
        {"id": "m", "kind": "mobile", "url": "http://gw/live/m.live.flv"},
        {"id": "d", "kind": "drone", "url": "rtmp://gw/live/d"},
        {"id": "p", "kind": "fixed", "url": "rtsp://a/c", "policy": {"interval_s": 5, "gate": False}},
    ]})
    assert reg.get("f").policy.interval_s == DEFAULT_INTERVAL_S["fixed"]
    assert reg.get("m").policy.interval_s == DEFAULT_INTERVAL_S["mobile"]
    assert reg.get("d").location == "telemetry"  # a drone without a fixed position follows its telemetry
    assert (reg.get("p").policy.interval_s, reg.get("p").policy.gate) == (5, False)


@pytest.mark.parametrize("url", [
    "rtsp://gw:554/rtp/1", "rtmp://gw/live/1", "http://gw/live/1.live.flv", "https://gw/hls/1/hls.m3u8",
    "file:///data/flight.mp4", "recordings/flight.mp4",
])
def test_every_url_the_media_gateway_exports_is_accepted(url):
    reg = parse_registry({"sources": [{"id": "s", "kind": "mobile", "url": url}]})
    assert len(reg) == 1


# ---------------------------------------------------------------- invalid registries


@pytest.mark.parametrize("change, field, words", [
    ({"kind": "satellite"}, "kind", ["fixed", "mobile"]),
    ({"url": "ftp://gw.example/cam"}, "url", ["ftp://", "scheme"]),
    ({"grid": "4201170020"}, "grid", ["14 digits"]),
    ({"zones": [dict(ZONE, polygon=[[0, 0.5], [1.5, 0.5], [1, 1]])]}, "zones.0.polygon", ["1.5", "0-1"]),
    ({"zones": [dict(ZONE, polygon=[[0, 0.5], [1, 0.5]])]}, "zones.0.polygon", ["3 points"]),
    ({"zones": [dict(ZONE, role="no_vendng")]}, "zones.0.role", ["no_vending"]),
    ({"zonez": [ZONE]}, "zonez", ["not permitted"]),
    ({"lat": 30.6}, "lon", ["lat"]),
    ({"lon": 114.3}, "lat", ["lon"]),
    ({"lat": 130.0, "lon": 114.3}, "lat", ["90"]),
    ({"id": "cam 2"}, "id", ["letters"]),
    ({"policy": {"interval_s": 0}}, "policy.interval_s", ["greater than 0"]),
])
def test_a_bad_field_is_reported_with_the_source_and_the_field(tmp_path, change, field, words):
    entry = dict(GOOD, **change)
    msg = registry_error(tmp_path, entry)
    assert "sources.yaml" in msg
    assert "source #2" in msg and repr(entry["id"]) in msg  # both the index and the id
    assert f"'{field}'" in msg
    for w in words:
        assert w in msg
    assert "\n" not in msg


def test_a_missing_required_field_is_named(tmp_path):
    msg = registry_error(tmp_path, {"id": "cam-2", "url": "rtsp://a/b"})
    assert "source #2 (id 'cam-2')" in msg and "'kind'" in msg and "required" in msg


def test_a_source_without_an_id_is_named_by_its_index(tmp_path):
    msg = registry_error(tmp_path, {"kind": "fixed", "url": "rtsp://a/b"})
    assert "source #2" in msg and "'id'" in msg


def test_a_duplicate_id_names_both_sources(tmp_path):
    msg = registry_error(tmp_path, dict(GOOD, id="cam-1"))
    assert "'cam-1'" in msg and "'id'" in msg
    assert "source #1" in msg and "source #2" in msg


def test_every_bad_source_is_reported_at_once(tmp_path):
    # an operator fixing a registry of 254 cameras should see all mistakes in one go
    msg = registry_error(tmp_path, dict(GOOD, kind="satellite", grid="12"))
    assert "'kind'" in msg and "'grid'" in msg


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nowhere\.yaml.*not found"):
        load_registry(tmp_path / "nowhere.yaml")


def test_a_directory_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_registry(tmp_path)


def test_invalid_yaml_is_a_one_line_config_error_with_the_line(tmp_path):
    path = write(tmp_path, "sources:\n  - id: cam-1\n    kind: [fixed\n    url: rtsp://a/b\n")
    with pytest.raises(ConfigError) as err:
        load_registry(path)
    msg = str(err.value)
    assert "sources.yaml" in msg and "not valid YAML" in msg and "line " in msg
    assert "\n" not in msg


@pytest.mark.parametrize("text", ["", "- id: cam-1\n", "cameras: []\n"])
def test_a_file_without_a_sources_list_is_a_config_error(tmp_path, text):
    with pytest.raises(ConfigError, match="'sources' list"):
        load_registry(write(tmp_path, text))
