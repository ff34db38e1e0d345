"""Generate the example city's unit grid (单元网格) as config/grid.geojson.

A fictional county-level city (county code 420117) centred near 30.60 N 114.30 E:
27 x 35 = 945 cells of about 216 m, about 44 km² in all. Cells are grouped the way
real grids are: 6 streets (街道), each cut into 9 communities (社区) of 12-20 cells,
so a code reads 420117 + street 001-006 + community 001-009 + cell 01-20.

Interior lattice points are nudged by a seeded jitter so cells are irregular
quadrilaterals like surveyed ones (neighbours share the nudged points, so the
cells still tile without gaps or overlaps). The output is deterministic.

    python config/make_grid.py [OUT]
"""
from __future__ import annotations

import json
import math
import random
import sys
from pathlib import Path

COUNTY = "420117"
CENTER_LAT, CENTER_LON = 30.60, 114.30
ROWS, COLS = 27, 35
CELL_M = 216.0  # 945 cells of 216 m squared make about 44 km²
JITTER = 0.15  # of a cell side, for interior lattice points
SEED = 420117
STREET_ROWS = (0, 14, 27)  # street boundaries on the lattice, north to south
STREET_COLS = (0, 12, 24, 35)  # and west to east
COMMUNITY_SPLIT = (3, 3)  # each street is cut into 3 x 3 communities
M_PER_DEG_LAT = 110_900.0


def _chunks(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """Split [lo, hi) into ``parts`` nearly equal ranges."""
    edges = [lo + round(i * (hi - lo) / parts) for i in range(parts + 1)]
    return list(zip(edges, edges[1:]))


def lattice() -> list[list[tuple[float, float]]]:
    """(lon, lat) of every lattice point, row 0 at the north edge."""
    rng = random.Random(SEED)
    m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(CENTER_LAT))
    north = CENTER_LAT + ROWS * CELL_M / 2 / M_PER_DEG_LAT
    west = CENTER_LON - COLS * CELL_M / 2 / m_per_deg_lon
    points = []
    for r in range(ROWS + 1):
        row = []
        for c in range(COLS + 1):
            dy = dx = 0.0
            if 0 < r < ROWS and 0 < c < COLS:  # keep the city's outline straight
                dy, dx = (rng.uniform(-JITTER, JITTER) * CELL_M for _ in range(2))
            lat = north - (r * CELL_M + dy) / M_PER_DEG_LAT
            lon = west + (c * CELL_M + dx) / m_per_deg_lon
            row.append((round(lon, 6), round(lat, 6)))
        points.append(row)
    return points


def cells() -> list[tuple[str, list[tuple[float, float]]]]:
    """(code, closed ring) for every cell, in code order."""
    pts = lattice()
    out = []
    streets = [(rs, cs) for rs in zip(STREET_ROWS, STREET_ROWS[1:]) for cs in zip(STREET_COLS, STREET_COLS[1:])]
    for s, ((r0, r1), (c0, c1)) in enumerate(streets, start=1):
        communities = [
            (rr, cc) for rr in _chunks(r0, r1, COMMUNITY_SPLIT[0]) for cc in _chunks(c0, c1, COMMUNITY_SPLIT[1])
        ]
        for m, ((cr0, cr1), (cc0, cc1)) in enumerate(communities, start=1):
            seq = 0
            for r in range(cr0, cr1):
                for c in range(cc0, cc1):
                    seq += 1
                    # counter-clockwise (NW, SW, SE, NE), as RFC 7946 asks of exterior rings
                    ring = [pts[r][c], pts[r + 1][c], pts[r + 1][c + 1], pts[r][c + 1], pts[r][c]]
                    out.append((f"{COUNTY}{s:03d}{m:03d}{seq:02d}", ring))
    return out


def geojson() -> str:
    # One feature per line: small, and a diff shows which cells changed.
    features = [
        json.dumps(
            {"type": "Feature", "properties": {"code": code},
             "geometry": {"type": "Polygon", "coordinates": [ring]}},
            separators=(",", ":"),
        )
        for code, ring in cells()
    ]
    return '{"type":"FeatureCollection","features":[\n' + ",\n".join(features) + "\n]}\n"


def main(argv: list[str]) -> None:
    out = Path(argv[1]) if len(argv) > 1 else Path(__file__).with_name("grid.geojson")
    out.write_text(geojson(), encoding="utf-8")
    print(f"wrote {len(cells())} cells to {out}")


if __name__ == "__main__":
    main(sys.argv)
