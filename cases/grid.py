"""Unit-grid lookup (单元网格): which cell a WGS84 point lies in.

Cells come as GeoJSON polygons in lon/lat (WGS84; CGCS2000 agrees to a metre),
each with a 14- or 15-digit ``code`` property. Lookups go through an STRtree, so
the 945 cells of a city cost a few microseconds per point.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from shapely import STRtree
from shapely.geometry import MultiPolygon, Point, Polygon, shape
from shapely.geometry.base import BaseGeometry

GRID_CODE = re.compile(r"[0-9]{14,15}")


class GridError(ValueError):
    """The grid file is wrong, or a code names no cell."""


class GridIndex:
    def __init__(self, cells: dict[str, BaseGeometry]):
        if not cells:
            raise GridError("a grid needs at least one cell")
        self._codes = sorted(cells)
        self._polygons = [cells[c] for c in self._codes]
        self._by_code = dict(zip(self._codes, self._polygons))
        self._tree = STRtree(self._polygons)

    @classmethod
    def from_geojson(cls, path: str | Path) -> "GridIndex":
        path = Path(path)
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise GridError(f"{path}: grid file not found") from None
        except json.JSONDecodeError as err:
            raise GridError(f"{path}: not valid JSON: {err}") from None
        if not isinstance(raw, dict) or raw.get("type") != "FeatureCollection":
            raise GridError(f"{path}: expected a GeoJSON FeatureCollection")
        cells: dict[str, BaseGeometry] = {}
        for i, feature in enumerate(raw.get("features") or [], start=1):
            code, geom = _cell(feature, f"{path}: feature #{i}")
            if code in cells:
                raise GridError(f"{path}: feature #{i}: code {code} appears twice")
            cells[code] = geom
        return cls(cells)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(min lat, min lon, max lat, max lon) of all cells."""
        minx, miny, maxx, maxy = _total_bounds(self._polygons)
        return miny, minx, maxy, maxx

    def cell_at(self, lat: float, lon: float) -> str | None:
        """The cell containing the point, or None outside the grid.

        A point on a shared edge or corner lies in several cells; it is given to
        the smallest code, so the answer never depends on the index's order.
        """
        hits = self._tree.query(Point(lon, lat), predicate="intersects")
        return self._codes[min(hits)] if len(hits) else None  # codes are sorted: min index = min code

    def cell_center(self, code: str) -> tuple[float, float]:
        """(lat, lon) of a point inside the cell: its centroid, or a guaranteed
        interior point when the cell is too concave for the centroid to be in it."""
        poly = self.polygon(code)
        point = poly.centroid
        if not poly.contains(point):
            point = poly.representative_point()
        return point.y, point.x

    def polygon(self, code: str) -> BaseGeometry:
        try:
            return self._by_code[code]
        except KeyError:
            raise GridError(f"no grid cell {code!r}") from None

    @property
    def codes(self) -> list[str]:
        return list(self._codes)

    def __len__(self) -> int:
        return len(self._codes)

    def __contains__(self, code: object) -> bool:
        return code in self._by_code


def _total_bounds(polygons) -> tuple[float, float, float, float]:
    boxes = [p.bounds for p in polygons]
    return min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes)


def _cell(feature, where: str) -> tuple[str, BaseGeometry]:
    props = (feature or {}).get("properties") or {}
    code = props.get("code")
    if isinstance(code, int):  # shapefile conversions often write codes as numbers
        code = str(code)
    if not isinstance(code, str) or not GRID_CODE.fullmatch(code):
        raise GridError(f"{where}: property 'code' must be 14 or 15 digits, got {code!r}")
    try:
        geom = shape(feature["geometry"])
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise GridError(f"{where} (cell {code}): unreadable geometry: {err}") from None
    if not isinstance(geom, (Polygon, MultiPolygon)) or geom.is_empty:
        raise GridError(f"{where} (cell {code}): geometry must be a Polygon or MultiPolygon")
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx <= maxx <= 180 and -90 <= miny <= maxy <= 90):
        raise GridError(
            f"{where} (cell {code}): coordinates are not lon/lat degrees; "
            "reproject the grid to WGS84/CGCS2000 using the city's .prj"
        )
    if not geom.is_valid:
        raise GridError(f"{where} (cell {code}): polygon is invalid (self-intersecting?)")
    return code, geom
