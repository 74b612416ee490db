"""Bounding boxes on the globe: a west greater than the east crosses the antimeridian
(RFC 7946 §5.2). Plain arithmetic, cheap to import."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

Bbox = tuple[float, float, float, float]


# SQL over a relation ``boxes (w, s, e, n)``: the boxes' longitude arcs (two for a box that
# crosses the antimeridian) merged where they meet, one row (west, south, east, north) per
# merged arc. A handful of rows whatever the number of boxes, and ``union_bbox`` of them is
# ``union_bbox`` of all the boxes: the database does the work, over its own rows.
MERGED_ARCS_SQL = """
arcs AS (
    SELECT w AS lo, CASE WHEN w <= e THEN e ELSE 180.0 END AS hi, s, n FROM boxes
    UNION ALL
    SELECT -180.0, e, s, n FROM boxes WHERE w > e
),
marked AS (
    SELECT lo, hi, s, n,
        CASE WHEN lo <= max(hi) OVER (
            ORDER BY lo, hi ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING
        ) THEN 0 ELSE 1 END AS starts
    FROM arcs
),
merged AS (
    -- The arc that starts a merged arc sorts first among arcs with its west.
    SELECT lo, hi, s, n,
        sum(starts) OVER (ORDER BY lo, starts DESC, hi ROWS UNBOUNDED PRECEDING) AS arc
    FROM marked
)
SELECT min(lo), min(s), max(hi), max(n) FROM merged GROUP BY arc
"""


def union_bbox(bboxes: Iterable[Sequence[float]]) -> list[float] | None:
    """The smallest bbox covering ``bboxes`` on the globe: longitudes are arcs of a circle,
    so the union crosses the antimeridian (west > east) when that is shorter."""
    arcs, south, north = [], math.inf, -math.inf
    for box in bboxes:
        west, s, east, n = (box[0], box[1], box[3], box[4]) if len(box) == 6 else box
        south, north = min(south, s), max(north, n)
        arcs += [(west, 180.0), (-180.0, east)] if west > east else [(west, east)]
    if not arcs:
        return None
    arcs.sort()
    # Merge the arcs along the line, then find the widest gap between them on the circle.
    merged = [list(arcs[0])]
    for start, end in arcs[1:]:
        if start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    gaps = [(merged[i + 1][0] - merged[i][1], i) for i in range(len(merged) - 1)]
    wrap = merged[0][0] + 360.0 - merged[-1][1]
    widest, index = max(gaps, default=(-1.0, -1))
    if wrap >= widest:
        west, east = merged[0][0], merged[-1][1]
    else:
        west, east = merged[index + 1][0], merged[index][1]
    return [float(west), float(south), float(east), float(north)]


def split_bbox(bbox: Bbox) -> list[Bbox]:
    """A bbox as the boxes it covers: two when it crosses the antimeridian (W > E)."""
    west, south, east, north = bbox
    if west <= east:
        return [bbox]
    return [(west, south, 180.0, north), (-180.0, south, east, north)]
