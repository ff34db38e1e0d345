import importlib.util
import json
import math
import re
from collections import Counter, defaultdict

import pytest
import shapely
from shapely.geometry import box

from cases.grid import GridError, GridIndex
from db_fixtures import CONFIG, grid  # noqa: F401  (fixture)


def load_make_grid():
    spec = importlib.util.spec_from_file_location("make_grid", CONFIG / "make_grid.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def km2(geom) -> float:
    # Degrees to km² near the city: a metre-accurate equirectangular scale.
    lat = geom.centroid.y
    return geom.area * 110.9 * 110.9 * math.cos(math.radians(lat))


def test_committed_grid_is_what_the_generator_makes():
    assert (CONFIG / "grid.geojson").read_text(encoding="utf-8") == load_make_grid().geojson()


def test_945_cells_with_county_street_community_cell_codes(grid):
    assert len(grid) == 945
    assert all(re.fullmatch(r"420117\d{8}", c) for c in grid.codes)
    streets = {c[:9] for c in grid.codes}
    communities = Counter(c[:12] for c in grid.codes)
    assert len(streets) == 6 and len(communities) == 54
    assert all(12 <= n <= 20 for n in communities.values())
    by_community = defaultdict(list)
    for c in grid.codes:
        by_community[c[:12]].append(int(c[12:]))
    assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_community.values())


def test_cells_tile_about_44_km2_around_the_centre_without_gaps_or_overlaps(grid):
    polygons = [grid.polygon(c) for c in grid.codes]
    union = shapely.union_all(polygons)
    assert 43.0 < km2(union) < 45.0
    assert union.geom_type == "Polygon" and not list(union.interiors)  # no holes: no gaps
    assert sum(km2(p) for p in polygons) == pytest.approx(km2(union), rel=1e-6)  # no overlaps
    assert union.centroid.y == pytest.approx(30.60, abs=0.005)
    assert union.centroid.x == pytest.approx(114.30, abs=0.005)


def test_coordinates_are_rounded_to_six_decimals():
    text = (CONFIG / "grid.geojson").read_text(encoding="utf-8")
    assert not re.search(r"\.\d{7,}", text)
    assert len(text) < 250_000


def test_every_cell_centre_is_found_in_its_own_cell(grid):
    assert all(grid.cell_at(*grid.cell_center(c)) == c for c in grid.codes)


def test_points_outside_the_city_have_no_cell(grid):
    minx, miny, maxx, maxy = shapely.union_all([grid.polygon(c) for c in grid.codes]).bounds
    assert grid.cell_at(maxy + 0.0001, (minx + maxx) / 2) is None
    assert grid.cell_at((miny + maxy) / 2, minx - 0.0001) is None
    assert grid.cell_at(39.9, 116.4) is None


def test_the_city_edge_belongs_to_the_city(grid):
    code = grid.codes[0]
    (nw_lon, nw_lat), (sw_lon, sw_lat) = grid.polygon(code).exterior.coords[:2]
    # The west edge is straight: its midpoint is exactly on the first cell's border.
    assert grid.cell_at((nw_lat + sw_lat) / 2, nw_lon) == code


def test_a_shared_corner_goes_to_the_smallest_code(grid):
    code = "42011700100508"  # a cell in the middle of street 001, community 005
    assert code in grid
    lon, lat = grid.polygon(code).exterior.coords[0]  # its NW corner, shared by four cells
    sharing = [c for c in grid.codes if (lon, lat) in grid.polygon(c).exterior.coords]
    assert len(sharing) == 4
    assert grid.cell_at(lat, lon) == min(sharing) == "42011700100503"  # the cell up and to the left


def test_a_shared_edge_is_decided_by_code_not_by_order():
    west, east = box(114.0, 30.0, 114.001, 30.001), box(114.001, 30.0, 114.002, 30.001)
    for cells in ({"42011700100102": east, "42011700100101": west}, {"42011700100101": west, "42011700100102": east}):
        index = GridIndex(cells)
        assert index.cell_at(30.0005, 114.001) == "42011700100101"
        assert index.cell_at(30.0005, 114.0015) == "42011700100102"


def test_cell_center_of_an_unknown_code(grid):
    with pytest.raises(GridError, match="no grid cell '42011799999999'"):
        grid.cell_center("42011799999999")


def test_cell_center_of_a_concave_cell_is_inside_it():
    ring = [(0, 0), (0.003, 0), (0.003, 0.003), (0.002, 0.003), (0.002, 0.001), (0.001, 0.001), (0.001, 0.003),
            (0, 0.003), (0, 0)]  # a U, whose centroid lies in the gap
    index = GridIndex({"420117001001001": shapely.Polygon(ring)})
    lat, lon = index.cell_center("420117001001001")
    assert index.cell_at(lat, lon) == "420117001001001"


def feature(code, coords):
    return {"type": "Feature", "properties": {"code": code}, "geometry": {"type": "Polygon", "coordinates": [coords]}}


SQUARE = [[114.0, 30.0], [114.001, 30.0], [114.001, 30.001], [114.0, 30.001], [114.0, 30.0]]


def write_grid(tmp_path, features):
    path = tmp_path / "grid.geojson"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}), encoding="utf-8")
    return path


def test_numeric_codes_from_shapefile_conversions_are_accepted(tmp_path):
    index = GridIndex.from_geojson(write_grid(tmp_path, [feature(42011700100101, SQUARE)]))
    assert index.codes == ["42011700100101"]


@pytest.mark.parametrize(
    "features, message",
    [
        ([feature("4201170010010", SQUARE)], "feature #1: property 'code' must be 14 or 15 digits"),
        ([feature("42011700100101", SQUARE)] * 2, "feature #2: code 42011700100101 appears twice"),
        ([feature("42011700100101", [[500000, 3380000], [500200, 3380000], [500200, 3380200], [500000, 3380000]])],
         "not lon/lat degrees; reproject"),
        ([{"type": "Feature", "properties": {"code": "42011700100101"},
           "geometry": {"type": "Point", "coordinates": [114.0, 30.0]}}], "must be a Polygon or MultiPolygon"),
        ([feature("42011700100101", [[114.0, 30.0], [114.001, 30.001], [114.001, 30.0], [114.0, 30.001], [114.0, 30.0]])],
         "polygon is invalid"),
        ([], "at least one cell"),
    ],
)
def test_bad_grid_files(tmp_path, features, message):
    with pytest.raises(GridError, match=message):
        GridIndex.from_geojson(write_grid(tmp_path, features))


def test_unreadable_grid_files(tmp_path):
    with pytest.raises(GridError, match="grid file not found"):
        GridIndex.from_geojson(tmp_path / "none.geojson")
    (tmp_path / "bad.geojson").write_text("{", encoding="utf-8")
    with pytest.raises(GridError, match="not valid JSON"):
        GridIndex.from_geojson(tmp_path / "bad.geojson")
    (tmp_path / "list.geojson").write_text("[]", encoding="utf-8")
    with pytest.raises(GridError, match="expected a GeoJSON FeatureCollection"):
        GridIndex.from_geojson(tmp_path / "list.geojson")


def test_a_basemap_is_fetched_only_when_the_city_serves_one_and_its_tiles_cover_the_map(grid, tmp_path):
    from api.gridmap import _tile_corner, grid_map, tiles
    from core.settings import load_settings
    from streams.sources import ConfigError

    gm = grid_map(grid, 30.6000, 114.3000, grid.cell_at(30.6000, 114.3000))
    assert tiles(gm, None) == []  # the default: the grid alone, nothing to fetch

    url = "https://tiles.city.example/wgs84/{z}/{x}/{y}.png"
    got = tiles(gm, url, max_tiles=30)
    assert 1 <= len(got) <= 30
    z = {t.href.split("/")[4] for t in got}
    assert len(z) == 1 and int(z.pop()) >= 15  # about 1.3 km across: street-level tiles
    # together the tiles cover the whole view box
    x1, y1, w, h = (float(v) for v in gm.view_box.split())
    assert min(t.x for t in got) <= x1 and min(t.y for t in got) <= y1
    assert max(t.x + t.width for t in got) >= x1 + w and max(t.y + t.height for t in got) >= y1 + h
    # a tile's corner is where the XYZ scheme puts it (zoom 1, tile 1/0: the north-east quarter from 0, 0)
    assert _tile_corner(1, 1, 1) == pytest.approx((0.0, 0.0))
    city = tiles(grid_map(grid, None, None, None), url, max_tiles=30)
    assert 1 <= len(city) <= 30  # the whole city: a coarser zoom, still a handful of tiles

    settings = tmp_path / "patrol.yaml"
    settings.write_text(f"ui: {{map_tiles_url: '{url}'}}\n")
    assert load_settings(settings).ui.map_tiles_url == url
    settings.write_text("ui: {map_tiles_url: 'https://tiles.city.example/tile.png'}\n")
    with pytest.raises(ConfigError, match="ui.map_tiles_url"):
        load_settings(settings)
