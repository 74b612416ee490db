"""``geo-platform ingest`` of 1,000,000 polygons into PostGIS and DuckDB vs ``ogr2ogr -f
PostgreSQL``, from GeoJSON, GeoPackage and GeoParquet (Debian's ogr2ogr reads no Parquet)."""

import itertools
import json
import shutil
from functools import partial
from pathlib import Path

import harness as h
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import shapely

from geo_platform.settings import get_postgres_settings

_numbers = itertools.count()
OGR2OGR = "-gt 65536 -lco GEOMETRY_NAME=geom -lco SPATIAL_INDEX=GIST --config PG_USE_COPY YES"


def polygons(n: int, fmt: str):
    """``n`` 7-vertex polygons over Europe with three attributes, generated once per format."""
    path = h.DATA / "vector" / f"polygons_{n}.{fmt}"
    if path.exists():
        return path
    rng = np.random.default_rng(42)
    x, y, r = rng.uniform(-10, 30, n), rng.uniform(35, 60, n), rng.uniform(0.001, 0.01, n)
    angles = np.linspace(0, 2 * np.pi, 7)[:-1]
    ring = np.stack(
        [x[:, None] + r[:, None] * np.cos(angles), y[:, None] + r[:, None] * np.sin(angles)], -1
    )
    geometry = shapely.to_wkb(shapely.polygons(np.concatenate([ring, ring[:, :1]], axis=1)))
    table = pa.table({
        "id": pa.array(np.arange(n), pa.int64()), "name": [f"parcel {i}" for i in range(n)],
        "value": rng.random(n), "geometry": pa.array(geometry, pa.binary()),
    })  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        geo = {"encoding": "WKB", "geometry_types": ["Polygon"]}
        meta = {"version": "1.1.0", "primary_column": "geometry", "columns": {"geometry": geo}}
        pq.write_table(table.replace_schema_metadata({"geo": json.dumps(meta)}), path)
    else:
        driver = {"gpkg": "GPKG", "geojson": "GeoJSON"}[fmt]
        pyogrio.write_arrow(table, path, driver=driver, geometry_name="geometry",
                            geometry_type="Polygon", crs="EPSG:4326")  # fmt: skip
    return path


def load(path: Path, fmt: str, into: str | dict[str, str]) -> h.Run:
    name = f"b{fmt}{next(_numbers)}"
    if isinstance(into, str):  # ogr2ogr into the database of this libpq string
        cmd = ["ogr2ogr", "-f", "PostgreSQL", into, path, "-nln", name, *OGR2OGR.split()]
        return h.run(cmd, warm=path)
    return h.run([h.GEO_PLATFORM, "ingest", "--collection", name, path], into, warm=path)


def main() -> None:
    args = h.options(
        __doc__, features=1_000_000, formats="geojson,gpkg,parquet", repeat=1, postgis_only=False
    )
    data = h.DATA / "vector_load"
    shutil.rmtree(data, ignore_errors=True)
    with h.production(data / "production") as production:
        embedded = h.platform_env(data_dir=str(data / "embedded"))
        pg = get_postgres_settings().dsn(production["GEO_PLATFORM_PG_DATABASE"])
        # A first, untimed ingest creates the instance and schemas on both profiles.
        for env in (production, embedded):
            h.ingest_setup(env, source=h.REAL / "vectors" / "curve.gpkg")
        rows = []
        for fmt in args.formats.split(","):
            path = polygons(args.features, fmt)
            # Each run into a table or collection of its own: a run done again does it all again.
            sides = {"ogr2ogr": partial(load, path, fmt, f"PG:{pg}")} if fmt != "parquet" else {}
            sides["ingest, PostGIS"] = partial(load, path, fmt, production)
            if not args.postgis_only:
                sides["ingest, DuckDB"] = partial(load, path, fmt, embedded)
            runs = h.rounds(sides, args.repeat)  # ratios: features/s, ogr2ogr's seconds / ours
            rows += [{"format": fmt} | r for r in h.versus(runs, ">= 1.0" * ("ogr2ogr" in runs))]
    shutil.rmtree(data)
    h.table(rows)
    quick = args.features != 1_000_000 or args.formats != "geojson,gpkg,parquet"
    quick = quick or args.postgis_only
    h.write("vector_load", {"features": args.features, "sides": rows}, quick)


if __name__ == "__main__":
    main()
