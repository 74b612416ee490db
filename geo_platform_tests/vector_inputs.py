"""Generated vector inputs, good and hostile, written into a folder of the test's own."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

REAL_VECTORS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "vectors"


def feature(geometry: dict | None, **properties) -> dict:
    return {"type": "Feature", "properties": properties, "geometry": geometry}


def square(x: float, y: float, size: float = 1.0) -> dict:
    ring = [[x, y], [x + size, y], [x + size, y + size], [x, y + size], [x, y]]
    return {"type": "Polygon", "coordinates": [ring]}


def write_geojson(path: Path, features: list[dict]) -> Path:
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


def self_intersecting(path: Path) -> Path:
    """Three bow-ties (repairable), one polygon that collapses to nothing, two fine squares."""
    bowtie = {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}
    collapsed = {"type": "Polygon", "coordinates": [[[5, 5], [6, 6], [5, 5], [5, 5]]]}
    return write_geojson(
        path,
        [
            feature(bowtie, name="bow 1"),
            feature(bowtie, name="bow 2"),
            feature(bowtie, name="bow 3"),
            feature(collapsed, name="flat"),
            feature(square(10, 10), name="ok 1"),
            feature(square(12, 10), name="ok 2"),
        ],
    )


def mixed_types(path: Path) -> Path:
    """Polygons, multipolygons, a line, a point and a null geometry in one layer."""
    multi = {"type": "MultiPolygon", "coordinates": [square(3, 3)["coordinates"]]}
    line = {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}
    point = {"type": "Point", "coordinates": [7, 7]}
    return write_geojson(
        path,
        [
            feature(square(0, 0), kind="polygon"),
            feature(multi, kind="multipolygon"),
            feature(line, kind="line"),
            feature(point, kind="point"),
            feature(None, kind="nothing"),
        ],
    )


def awkward_columns(path: Path) -> Path:
    """Column names a database would choke on."""
    props = {
        "select": 1,
        '"quoted"': "q",
        "x" * 200: 2,
        "Name": "upper",
        "name": "lower",
        "geom": "not the geometry",
        "2nd": 3,
    }
    return write_geojson(path, [feature(square(0, 0), **props)])


def newline_delimited(path: Path, count: int = 5) -> Path:
    lines = [json.dumps(feature(square(i, 0), n=i)) for i in range(count)]
    path.write_text("\n".join(lines) + "\n")
    return path


def malformed_json(path: Path) -> Path:
    path.write_text('{"type": "FeatureCollection", "features": [{"type": "Feat')
    return path


def empty_file(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def shapefile_zip(path: Path, *, with_prj: bool = True, inner: str = "") -> Path:
    """The real Natural Earth shapefile, zipped (optionally without its .prj)."""
    source = REAL_VECTORS / "naturalearth_lowres"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for part in sorted(source.iterdir()):
            if part.suffix == ".prj" and not with_prj:
                continue
            zf.write(part, inner + part.name)
    return path


def zip_without_shp(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("readme.txt", "no shapefile here")
        zf.write(REAL_VECTORS / "naturalearth_lowres" / "naturalearth_lowres.dbf", "table.dbf")
    return path


def zip_slip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for part in sorted((REAL_VECTORS / "naturalearth_lowres").iterdir()):
            zf.write(part, part.name)
        zf.writestr("../../evil.shp", b"\x00" * 100)
    return path


def zip_bomb(path: Path, size: int = 64 * 1024 * 1024) -> Path:
    """A 64 MB .dbf of zeros in ~64 kB: a thousandfold expansion."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for part in sorted((REAL_VECTORS / "naturalearth_lowres").iterdir()):
            if part.suffix != ".dbf":
                zf.write(part, part.name)
        with zf.open("naturalearth_lowres.dbf", "w", force_zip64=True) as entry:
            chunk = b"\x00" * (1024 * 1024)
            for _ in range(size // len(chunk)):
                entry.write(chunk)
    return path


def copy_real(name: str, target: Path) -> Path:
    shutil.copy2(REAL_VECTORS / name, target)
    return target
