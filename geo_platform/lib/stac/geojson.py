"""Item geometries a catalog accepts: one rule for every catalog, reject, never repair.

A geometry is stored only if it is GeoJSON (RFC 7946) that both PostGIS and GEOS read
the same way, and on which every search can run:

- one of the seven GeoJSON types, not empty, coordinates nested as the type says;
- every position two or three finite numbers, longitude in [-180, 180], latitude in
  [-90, 90] (EPSG:4326, no wrapping);
- a LineString has at least 2 positions; a polygon ring at least 4, its last the same
  as its first (closed);
- valid as OGC simple features (GEOS ``is_valid``): no self-intersecting ring (a
  bow-tie), no hole outside its shell, no overlapping parts of a MultiPolygon.

A geometry that breaks a rule is rejected with the reason, never repaired: a repaired
footprint (``make_valid`` splits a bow-tie in two) would no longer be what the item's
producer published, and two catalogs repairing differently would answer searches
differently. The first four rules are plain Python (:func:`geometry_problem`, per item);
validity needs GEOS and runs per batch (:func:`invalid_geometry_reasons`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import orjson

GEOMETRY_TYPES = (
    "Point",
    "MultiPoint",
    "LineString",
    "MultiLineString",
    "Polygon",
    "MultiPolygon",
    "GeometryCollection",
)
# How many arrays deep each type's coordinates are around its positions.
_DEPTH = {
    "Point": 0,
    "MultiPoint": 1,
    "LineString": 1,
    "MultiLineString": 2,
    "Polygon": 2,
    "MultiPolygon": 3,
}


class _Problem(Exception):
    """Why a geometry breaks the rule (raised inside the walk, returned as text)."""


def geometry_problem(geometry: Any) -> str | None:
    """Why ``geometry`` (a parsed GeoJSON object) cannot be stored, or None.

    Everything but GEOS validity; cheap: a few microseconds for a footprint of a few
    positions.
    """
    try:
        _check_geometry(geometry, nested=False)
    except _Problem as problem:
        return f"has an invalid geometry: {problem}"
    return None


def _check_geometry(geometry: Any, *, nested: bool) -> None:
    if not isinstance(geometry, dict):
        raise _Problem("not a GeoJSON geometry object")
    kind = geometry.get("type")
    if kind not in GEOMETRY_TYPES:
        shown = repr(kind)[:60] if isinstance(kind, str) else type(kind).__name__
        raise _Problem(f"type {shown} is not one of {', '.join(GEOMETRY_TYPES)}")
    if kind == "GeometryCollection":
        parts = geometry.get("geometries")
        if not isinstance(parts, list) or not parts:
            raise _Problem("GeometryCollection without geometries (empty)")
        for part in parts:
            _check_geometry(part, nested=True)
        return
    coordinates = geometry.get("coordinates")
    depth = _DEPTH[kind]
    if depth == 0:
        _check_position(coordinates)
    elif kind in ("MultiPoint", "LineString"):
        _check_positions(coordinates, 2 if kind == "LineString" else 1, kind)
    elif kind == "MultiLineString":
        for line in _parts(coordinates, kind):
            _check_positions(line, 2, "LineString")
    elif kind == "Polygon":
        _check_polygon(coordinates)
    else:
        for polygon in _parts(coordinates, kind):
            _check_polygon(polygon)


def _parts(value: Any, kind: str) -> list[Any]:
    if not isinstance(value, list):
        raise _Problem(f"{kind} coordinates are not an array")
    if not value:
        raise _Problem(f"{kind} without coordinates (empty)")
    return value


def _check_polygon(rings: Any) -> None:
    for ring in _parts(rings, "Polygon"):
        _check_positions(ring, 4, "polygon ring")
        if ring[0] != ring[-1]:
            raise _Problem(
                f"polygon ring not closed: it starts at {_shown(ring[0])} "
                f"and ends at {_shown(ring[-1])}"
            )


def _check_positions(positions: Any, least: int, what: str) -> None:
    if type(positions) is not list:
        raise _Problem(f"{what} coordinates are not an array")
    if len(positions) < least:
        raise _Problem(f"{what} with {len(positions)} positions (at least {least})")
    for position in positions:
        _check_position(position)


def _check_position(position: Any) -> None:
    # Runs once per position of every item loaded: plain comparisons, no calls.
    if type(position) is not list or not 2 <= len(position) <= 3:
        raise _Problem(f"position {_shown(position)} is not [longitude, latitude(, height)]")
    lon, lat = position[0], position[1]
    # bool is an int to Python, and true is no coordinate; NaN fails every comparison.
    if type(lon) not in _NUMBERS or type(lat) not in _NUMBERS:
        raise _Problem(f"position {_shown(position)} holds something other than numbers")
    if not -180 <= lon <= 180:
        raise _Problem(f"longitude {lon} outside [-180, 180] in position {_shown(position)}")
    if not -90 <= lat <= 90:
        raise _Problem(f"latitude {lat} outside [-90, 90] in position {_shown(position)}")
    if len(position) == 3 and (type(position[2]) not in _NUMBERS or not math.isfinite(position[2])):
        raise _Problem(f"position {_shown(position)} has a height that is not a finite number")


_NUMBERS = (float, int)


def _shown(value: Any) -> str:
    """A position (or whatever stands in its place) for a message, never long."""
    text = orjson.dumps(value).decode()
    return text if len(text) <= 80 else text[:77] + "..."


def invalid_geometry_reasons(geometries: Sequence[dict[str, Any]]) -> list[str | None]:
    """For each geometry that passed :func:`geometry_problem`, why GEOS finds it invalid
    (e.g. ``Self-intersection[0.5 0.5]``), or None. One GEOS call for the whole batch."""
    import shapely

    reasons: list[str | None] = [None] * len(geometries)
    if not geometries:
        return reasons
    built = shapes(geometries)
    # None (unreadable) is not valid either.
    for index in (~shapely.is_valid(built)).nonzero()[0].tolist():
        shape = built[index]
        reason = shapely.is_valid_reason(shape) if shape is not None else "unreadable"
        reasons[index] = f"has an invalid geometry: {reason} (not repaired)"
    return reasons


def shapes(geometries: Sequence[dict[str, Any]]) -> Any:
    """GEOS geometries (a numpy array) of GeoJSON geometries that passed
    :func:`geometry_problem`, in two dimensions; None where GEOS cannot read one.

    Polygons and multipolygons, nearly every footprint, are built from flat coordinate
    arrays in one call (``from_geojson`` took 8 times as long); the rest are read from
    GeoJSON.
    """
    import numpy as np

    built = np.empty(len(geometries), dtype=object)
    by_kind: dict[str, list[int]] = {"Polygon": [], "MultiPolygon": []}
    others: list[int] = []
    for index, geometry in enumerate(geometries):
        by_kind.get(geometry["type"], others).append(index)
    for kind, indexes in by_kind.items():
        if indexes:
            chosen = [geometries[index] for index in indexes]
            built[indexes] = _polygonal(chosen, multi=kind == "MultiPolygon")
    for index in others:
        built[index] = _from_geojson(geometries[index])
    return built


def _polygonal(geometries: list[dict[str, Any]], *, multi: bool) -> Any:
    """Polygons (or multipolygons) of checked GeoJSON, built by GEOS from flat arrays."""
    import numpy as np
    import shapely

    coordinates: list[list[float]] = []
    rings, polygons, parts = [0], [0], [0]
    for geometry in geometries:
        for polygon in geometry["coordinates"] if multi else [geometry["coordinates"]]:
            for ring in polygon:
                coordinates += ring
                rings.append(len(coordinates))
            polygons.append(len(rings) - 1)
        parts.append(len(polygons) - 1)
    try:
        flat = np.array(coordinates, dtype=np.float64)
    except ValueError:  # some positions with a height, some without
        flat = np.array([position[:2] for position in coordinates], dtype=np.float64)
    offsets = (np.array(rings), np.array(polygons))
    if multi:
        return shapely.from_ragged_array(
            shapely.GeometryType.MULTIPOLYGON, flat[:, :2], (*offsets, np.array(parts))
        )
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, flat[:, :2], offsets)


def _from_geojson(geometry: dict[str, Any]) -> Any:
    import shapely

    try:
        return shapely.force_2d(shapely.from_geojson(orjson.dumps(geometry)))
    except shapely.errors.GEOSException:
        return None
