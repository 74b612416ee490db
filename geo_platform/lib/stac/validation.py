"""Validate items offline: pystac's bundled core schemas and the fields we promise.

Extension schemas live on the web and are not fetched: the fields geo_platform
writes for them are checked here directly instead.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import pystac
from jsonschema import Draft7Validator
from pystac.validation.local_validator import VERSION, get_local_schema_cache
from referencing import Registry, Resource

# pystac's from_dict is not thread-safe (shared extension hooks): "dictionary changed
# size during iteration" when rasters of one run validate their items at once.
_PYSTAC_LOCK = threading.Lock()
_ITEM_SCHEMA = f"https://schemas.stacspec.org/v{VERSION}/item-spec/json-schema/item.json"


@cache
def _item_validator() -> Draft7Validator:
    """Built once per process: the registry of pystac's bundled schemas takes ~50 ms."""
    schemas = get_local_schema_cache()
    registry: Registry = Registry().with_resources(
        (uri, Resource.from_contents(schema)) for uri, schema in schemas.items()
    )
    return Draft7Validator(schemas[_ITEM_SCHEMA], registry=registry)


def validate_item(item: dict[str, Any]) -> list[str]:
    """Every problem found in ``item``; an empty list means valid."""
    problems: list[str] = []
    validator = _item_validator()
    for error in sorted(validator.iter_errors(item), key=lambda e: list(e.path)):
        where = "/".join(str(p) for p in error.path) or "(item)"
        problems.append(f"schema: {where}: {error.message[:200]}")
    try:
        with _PYSTAC_LOCK:
            pystac.Item.from_dict(item, preserve_dict=True)
    except Exception as e:  # noqa: BLE001 - pystac raises many types for malformed items
        problems.append(f"pystac: {e}")
    for key, asset in item.get("assets", {}).items():
        size = asset.get("file:size")
        if not isinstance(size, int) or size <= 0:
            problems.append(f"asset {key}: file:size must be a positive integer, got {size!r}")
        checksum = asset.get("file:checksum", "")
        if not (isinstance(checksum, str) and checksum.startswith("1220") and len(checksum) == 68):
            problems.append(f"asset {key}: file:checksum is not a sha2-256 multihash")
    props = item.get("properties", {})
    if not {"proj:code", "proj:epsg", "proj:wkt2", "proj:projjson"} & props.keys():
        problems.append("properties: no proj:code, proj:epsg, proj:wkt2 or proj:projjson")
    return problems
