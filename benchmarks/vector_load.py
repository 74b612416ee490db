"""``geo-platform ingest`` of 1,000,000 polygons into PostGIS and DuckDB vs ``ogr2ogr -f
PostgreSQL``, from GeoJSON, GeoPackage and GeoParquet (Debian's ogr2ogr reads no Parquet)."""

import itertools
import json
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
    angles = np.append(np.linspace(0, 2 * np.pi, 7)[:-1], 0)  # a closed hexagon
    xy = [x[:, None] + r[:, None] * np.cos(angles), y[:, None] + r[:, None] * np.sin(angles)]
    geometry = shapely.to_wkb(shapely.polygons(np.stack(xy, -1)))
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
    formats = "geojson,gpkg,parquet"
    args = h.options(__doc__, features=1_000_000, formats=formats, repeat=1, postgis_only=False)
    rows = []
    with h.scratch("vector_load") as folder:
        envs = {"PostGIS": h.platform_env("production", folder / "production")}
        pg = get_postgres_settings().dsn(envs["PostGIS"]["GEO_PLATFORM_PG_DATABASE"])
        if not args.postgis_only:
            envs["DuckDB"] = h.platform_env("embedded", folder / "embedded")
        for env in envs.values():  # a first, untimed ingest: the instance and schemas
            h.ingest_setup(env, source=h.REAL / "vectors" / "curve.gpkg")
        for fmt in args.formats.split(","):
            path = polygons(args.features, fmt)
            # Each run into a table or collection of its own: a run done again does it all again.
            sides = {"ogr2ogr": partial(load, path, fmt, f"PG:{pg}")} if fmt != "parquet" else {}
            sides |= {
                f"ingest, {name}": partial(load, path, fmt, env) for name, env in envs.items()
            }
            runs = h.rounds(sides, args.repeat, args.retries)  # ratios: ogr2ogr's seconds / ours
            rows += [{"format": fmt} | r for r in h.versus(runs, ">= 1.0" * ("ogr2ogr" in runs))]
    h.table(rows)
    h.write("vector_load", {"features": args.features, "sides": rows}, args.smoke)


if __name__ == "__main__":
    main()
