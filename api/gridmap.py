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
