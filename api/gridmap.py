"""The unit grid as an inline SVG map: the cells around a case, its own cell marked.

Offline by design (a command centre's network rarely reaches map tiles): the city's
own grid polygons are the map. Coordinates are metres east and south of a fixed
origin (the grid's centre), on a local equirectangular projection: within a
county-level city, a metre or two off at most, which is far finer than a cell.
The SVG element carries the origin and scales so a click can be turned back into
latitude and longitude in the browser.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from cases.grid import GridIndex

M_PER_DEG_LAT = 110_574.0
M_PER_DEG_LON_EQUATOR = 111_320.0


@dataclass(frozen=True)
class Cell:
    code: str
    path: str  # SVG path data
    label_x: float
    label_y: float
    marked: bool


@dataclass(frozen=True)
class GridMap:
    cells: list[Cell]
    view_box: str
    lat0: float
    lon0: float
    kx: float  # metres per degree of longitude at lat0
    ky: float  # metres per degree of latitude
    marker: tuple[float, float] | None  # the case's point, in map metres
    cell_size: float  # a typical cell's width, for sizing labels and the marker

    def project(self, lat: float, lon: float) -> tuple[float, float]:
        return (lon - self.lon0) * self.kx, -(lat - self.lat0) * self.ky


@lru_cache(maxsize=4)
def _origin(grid: GridIndex) -> tuple[float, float, tuple]:
    """The grid's centre, and every cell's code and bounds (computed once per grid)."""
    bounds = [(code, grid.polygon(code).bounds) for code in grid.codes]
    minx = min(b[0] for _, b in bounds)
    miny = min(b[1] for _, b in bounds)
    maxx = max(b[2] for _, b in bounds)
    maxy = max(b[3] for _, b in bounds)
    return (miny + maxy) / 2, (minx + maxx) / 2, tuple(bounds)


def grid_map(grid: GridIndex, lat: float | None, lon: float | None, cell: str | None,
             radius_m: float = 650.0) -> GridMap:
    """The cells within ``radius_m`` of the point (or of ``cell``'s centre when there
    is no point; the whole grid when there is neither), ``cell`` marked."""
    lat0, lon0, bounds = _origin(grid)
    kx, ky = M_PER_DEG_LON_EQUATOR * math.cos(math.radians(lat0)), M_PER_DEG_LAT
    gm = GridMap([], "", lat0, lon0, kx, ky, None, 0.0)
    centre = (lat, lon) if lat is not None and lon is not None else None
    if centre is None and cell is not None and cell in grid:
        centre = grid.cell_center(cell)
    if centre is not None:
        cx, cy = gm.project(*centre)
        x1, y1, x2, y2 = cx - radius_m, cy - radius_m, cx + radius_m, cy + radius_m
    else:  # nowhere to centre on: the whole city (north is up, so the top edge is the largest latitude)
        x1, y2 = gm.project(min(b[1] for _, b in bounds), min(b[0] for _, b in bounds))
        x2, y1 = gm.project(max(b[3] for _, b in bounds), max(b[2] for _, b in bounds))
    cells = []
    widths = []
    for code, (bx1, by1, bx2, by2) in bounds:
        (px1, py2), (px2, py1) = gm.project(by1, bx1), gm.project(by2, bx2)
        if px2 < x1 or px1 > x2 or py2 < y1 or py1 > y2:
            continue
        polys = getattr(grid.polygon(code), "geoms", [grid.polygon(code)])
        parts = []
        for poly in polys:
            pts = [gm.project(y, x) for x, y in poly.exterior.coords]
            parts.append("M" + "L".join(f"{x:.1f} {y:.1f}" for x, y in pts) + "Z")
        label = grid.cell_center(code)
        lx, ly = gm.project(*label)
        cells.append(Cell(code, "".join(parts), round(lx, 1), round(ly, 1), code == cell))
        widths.append(px2 - px1)
    marker = gm.project(lat, lon) if lat is not None and lon is not None else None
    size = sorted(widths)[len(widths) // 2] if widths else 200.0
    return GridMap(cells, f"{x1:.0f} {y1:.0f} {x2 - x1:.0f} {y2 - y1:.0f}", lat0, lon0, kx, ky,
                   (round(marker[0], 1), round(marker[1], 1)) if marker else None, size)


# ---------------------------------------------------------------------------- camera and basemap


@dataclass(frozen=True)
class Camera:
    x: float
    y: float
    r: float  # the glyph's size, in map metres
    cone: str | None  # SVG path of the view: a wedge along the heading, None without a heading
    heading: float | None


def camera(gm: GridMap, lat: float, lon: float, heading: float | None, hfov_deg: float | None = None,
           reach_m: float | None = None) -> Camera:
    """A camera at (lat, lon) on the map, with a wedge of its view when its heading is known
    (degrees clockwise from north; ``hfov_deg`` wide, 60 when unknown; ``reach_m`` long)."""
    x, y = gm.project(lat, lon)
    reach = reach_m or gm.cell_size * 0.8
    cone = None
    if heading is not None:
        half = (hfov_deg or 60.0) / 2
        pts = []
        for a in (heading - half, heading, heading + half):
            rad = math.radians(a)  # north is up (-y), east is right (+x)
            pts.append((x + reach * math.sin(rad), y - reach * math.cos(rad)))
        (ax, ay), (mx, my), (bx, by) = pts
        cone = f"M{x:.1f} {y:.1f}L{ax:.1f} {ay:.1f}Q{mx:.1f} {my:.1f} {bx:.1f} {by:.1f}Z"
    return Camera(round(x, 1), round(y, 1), round(gm.cell_size / 16, 1), cone, heading)


@dataclass(frozen=True)
class Tile:
    href: str
    x: float
    y: float
    width: float
    height: float


def tiles(gm: GridMap, url: str | None, max_tiles: int = 30, max_zoom: int = 19) -> list[Tile]:
    """The basemap tiles (XYZ, Web Mercator, WGS84/CGCS2000 coordinates) that cover the map's
    view, at the finest zoom with at most ``max_tiles`` of them; none without a ``url``
    (``https://tiles.example/{z}/{x}/{y}.png``), so nothing is fetched unless a city serves tiles."""
    if not url:
        return []
    x1, y1, w, h = (float(v) for v in gm.view_box.split())
    west, east = gm.lon0 + x1 / gm.kx, gm.lon0 + (x1 + w) / gm.kx
    north, south = gm.lat0 - y1 / gm.ky, gm.lat0 - (y1 + h) / gm.ky
    for z in range(max_zoom, -1, -1):
        tx1, ty1 = _tile_xy(north, west, z)
        tx2, ty2 = _tile_xy(south, east, z)
        if (tx2 - tx1 + 1) * (ty2 - ty1 + 1) <= max_tiles:
            break
    out = []
    for ty in range(ty1, ty2 + 1):
        for tx in range(tx1, tx2 + 1):
            (lat_n, lon_w), (lat_s, lon_e) = _tile_corner(tx, ty, z), _tile_corner(tx + 1, ty + 1, z)
            (px1, py1), (px2, py2) = gm.project(lat_n, lon_w), gm.project(lat_s, lon_e)
            href = url.replace("{z}", str(z)).replace("{x}", str(tx)).replace("{y}", str(ty))
            out.append(Tile(href, round(px1, 1), round(py1, 1), round(px2 - px1, 1), round(py2 - py1, 1)))
    return out


def _tile_xy(lat: float, lon: float, z: int) -> tuple[int, int]:
    n = 2 ** z
    x = int((lon + 180.0) / 360.0 * n)
    y = int((1.0 - math.asinh(math.tan(math.radians(lat))) / math.pi) / 2.0 * n)
    return min(max(x, 0), n - 1), min(max(y, 0), n - 1)


def _tile_corner(x: int, y: int, z: int) -> tuple[float, float]:
    """The north-west corner (lat, lon) of tile (x, y) at zoom z."""
    n = 2 ** z
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * y / n)))), x / n * 360.0 - 180.0
