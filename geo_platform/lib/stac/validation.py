"""Validate items offline: the core schemas pystac bundles, and the schema of every
extension an item declares, bundled here (``schemas/``: projection, raster, file,
table and the PROJJSON schema projection refers to). Nothing is fetched: an item that
declares an extension whose schema is not bundled fails validation.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

from jsonschema import Draft7Validator
from pystac.validation.local_validator import VERSION, get_local_schema_cache
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from geo_platform.lib.stac.geojson import geometry_problem

_ITEM_SCHEMA = f"https://schemas.stacspec.org/v{VERSION}/item-spec/json-schema/item.json"


@cache
def _registry() -> Registry:
    """pystac's core schemas and ours, built once per process (~50 ms)."""
    schemas = dict(get_local_schema_cache())
    schemas.update(bundled_schemas())
    return Registry().with_resources(
        (uri, Resource.from_contents(schema, default_specification=DRAFT7))
        for uri, schema in schemas.items()
    )


@cache
def bundled_schemas() -> dict[str, dict[str, Any]]:
    """The extension schemas shipped in this package, by their ``$id`` (no ``#``)."""
    found = {}
    for entry in resources.files("geo_platform.lib.stac").joinpath("schemas").iterdir():
        if entry.name.endswith(".json"):
            schema = json.loads(entry.read_text())
            found[schema["$id"].rstrip("#")] = schema
    return found


@cache
def _validator(uri: str) -> Draft7Validator:
    registry = _registry()
    return Draft7Validator(registry.contents(uri), registry=registry)


# What the schemas see in place of a geometry of each type: the same shape, one part.
_STAND_INS: dict[str, Any] = {
    "Point": [0.0, 0.0],
    "MultiPoint": [[0.0, 0.0]],
    "LineString": [[0.0, 0.0], [1.0, 1.0]],
    "MultiLineString": [[[0.0, 0.0], [1.0, 1.0]]],
    "Polygon": [[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]],
    "MultiPolygon": [[[[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]]],
}


def validate_item(item: dict[str, Any]) -> list[str]:
    """Every problem found in ``item`` against the core item schema and each extension
    schema it declares; an empty list means valid.

    The geometry is checked by the catalogs' own rule (``geojson.geometry_problem``:
    GeoJSON's structure, closed rings, coordinates in range), stricter than the
    schema's GeoJSON definitions, which see a stand-in of the same type: jsonschema
    walking every vertex of a footprint through their ``oneOf`` took 90% of the time.
    """
    problems = []
    geometry = item.get("geometry")
    if isinstance(geometry, dict) and geometry.get("type") in _STAND_INS:
        if (problem := geometry_problem(geometry)) is not None:
            problems.append(f"schema: geometry: {problem}")
        item = {**item, "geometry": {**geometry, "coordinates": _STAND_INS[geometry["type"]]}}
    problems += _schema_problems(_ITEM_SCHEMA, item, "schema")
    for uri in item.get("stac_extensions", []):
        if uri.rstrip("#") not in bundled_schemas():
            problems.append(f"extension {uri}: no bundled schema, it cannot be validated")
            continue
        name = uri.split("/")[-3] if uri.count("/") >= 3 else uri
        problems.extend(_schema_problems(uri.rstrip("#"), item, name))
    return problems


def _schema_problems(uri: str, item: dict[str, Any], label: str) -> list[str]:
    errors = _validator(uri).iter_errors(item)
    problems = []
    for error in sorted(errors, key=lambda e: [str(p) for p in e.path]):
        # anyOf/oneOf errors say little alone; their closest sub-error says what is wrong.
        detail = min(error.context or [error], key=lambda e: -len(e.path))
        where = "/".join(str(p) for p in detail.path) or "(item)"
        problems.append(f"{label}: {where}: {detail.message[:200]}")
    return problems
