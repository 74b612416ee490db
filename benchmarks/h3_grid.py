"""The global resolution-5 H3 grid (2,016,842 cells) made and loaded by the platform into
each warehouse, vs a bare script of the h3 package's own calls writing GeoParquet.

.venv/bin/python benchmarks/h3_grid.py [--resolution 5] [--repeat 2] [--extra 2] [--quick]

Every side is a whole command in a fresh process. Bare: per resolution-0 cell, h3's
``cell_to_children``, then per cell ``cell_to_boundary``, ``cell_to_parent``,
``is_pentagon`` and ``cell_area``, the polygons made by shapely's vectorised constructors
(antimeridian cells split by the ``antimeridian`` package, as the platform does), the same
columns written to one GeoParquet file (zstd). Platform: ``geo-platform h3-grid 5``, one
Dagster run over the resolution's 122 partitions, into h3.grid with the GeoParquet
exports, STAC items and checks, on a platform set up beforehand (untimed: instance,
catalog, resolution 0): embedded (DuckDB), and production (PostGIS, pgSTAC, Azurite) in
scratch databases dropped at the end. Target: the platform within 1.25x of the bare
script, end to end. ``--quick``: resolution 3 (41,162 cells), a smoke test.
"""

import os
import shutil
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

import dagster as dg
import harness as h
import psycopg
from azure.storage.blob import BlobServiceClient
from psycopg import sql

from geo_platform.settings import AZURITE_CONNECTION_STRING

PG = {"host": "127.0.0.1", "port": "5432", "user": "geo_platform", "password": "geo_platform"}


def bare(resolution: str, out: str) -> None:
    """The grid with no platform around it: what a user of h3 and shapely would write."""
    import json

    import antimeridian
    import h3
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    res = int(resolution)
    schema = pa.schema(
        [
            ("h3_index", pa.string()),
            ("resolution", pa.int32()),
            ("parent", pa.string()),
            ("base_cell", pa.int32()),
            ("is_pentagon", pa.bool_()),
            ("area_km2", pa.float64()),
            ("geom", pa.binary()),
        ]
    )
    types: set[str] = set()
    with pq.ParquetWriter(out, schema, compression="zstd", store_schema=False) as writer:
        for root in sorted(h3.get_res0_cells()):
            cells = h3.cell_to_children(root, res)
            boundaries = [h3.cell_to_boundary(c) for c in cells]
            counts = np.array([len(b) for b in boundaries])
            latlng = np.array([v for b in boundaries for v in b])
            lon, lat = latlng[:, 1], latlng[:, 0]
            owner = np.repeat(np.arange(len(cells)), counts)
            polygons = shapely.polygons(
                shapely.linearrings(np.column_stack([lon, lat]), indices=owner)
            )
            starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
            span = np.maximum.reduceat(lon, starts) - np.minimum.reduceat(lon, starts)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for i in np.nonzero(span > 180)[0]:
                    polygons[i] = antimeridian.fix_polygon(polygons[i])
            types.update(shapely.get_type_id(polygons).astype(str))
            table = pa.table(
                [
                    pa.array(cells),
                    pa.array(np.full(len(cells), res, np.int32)),
                    pa.array([h3.cell_to_parent(c, res - 1) if res else None for c in cells]),
                    pa.array(np.full(len(cells), h3.get_base_cell_number(root), np.int32)),
                    pa.array([h3.is_pentagon(c) for c in cells]),
                    pa.array([h3.cell_area(c, "km^2") for c in cells]),
                    pa.array(shapely.to_wkb(polygons), pa.binary()),
                ],
                schema=schema,
            )
            writer.write_table(table)
        names = {"3": "Polygon", "6": "MultiPolygon"}
        geo = {
            "version": "1.1.0",
            "primary_column": "geom",
            "columns": {
                "geom": {"encoding": "WKB", "geometry_types": sorted(names[t] for t in types)}
            },
        }
        writer.add_key_value_metadata({"geo": json.dumps(geo)})


def step_seconds(env: dict[str, str]) -> float:
    """Seconds of the newest run's one step (the rest of a command is start-up and run
    bookkeeping)."""
    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("GEO_PLATFORM_")})
    # What the production dagster.yaml reads (the platform's commands set them themselves).
    os.environ.update({f"GEO_PLATFORM_PG_{k.upper()}": v for k, v in PG.items()})
    suffix = "_production" if env["GEO_PLATFORM_PROFILE"] == "production" else ""
    home = Path(env["GEO_PLATFORM_DATA_DIR"]) / f"dagster_home{suffix}"
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            (run,) = instance.get_runs(limit=1)
            stats = instance.get_run_step_stats(run.run_id)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return sum(s.end_time - s.start_time for s in stats)


def main() -> None:
    args = h.options(__doc__, resolution=5, repeat=2, extra=2, quick=False)
    resolution = "3" if args.quick else str(args.resolution)
    scratch = h.DATA / "h3_grid"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    admin = psycopg.connect(dbname="geo_platform", autocommit=True, **PG)
    tag = uuid.uuid4().hex[:6]
    databases = [f"bench_h3_{tag}", f"bench_h3_dagster_{tag}"]
    prefix = f"b{tag}-"
    envs = {
        "embedded": h.platform_env(data_dir=str(scratch / "embedded"), h3_max_resolution="6"),
        "production": h.platform_env(
            "production",
            data_dir=str(scratch / "production"),
            h3_max_resolution="6",
            pg_database=databases[0],
            pg_dagster_database=databases[1],
            azure_container_prefix=prefix,
        ),
    }
    for env in envs.values():
        env.pop("DAGSTER_HOME", None)
    command = [h.BIN / "geo-platform", "h3-grid"]
    steps: dict[str, dict[h.Run, float]] = {name: {} for name in envs}
    try:
        for name in databases:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = "postgresql://{user}:{password}@{host}:{port}/".format(**PG) + databases[0]
        subprocess.run(
            [h.BIN / "pypgstac", "migrate", "--dsn", dsn], check=True, capture_output=True
        )
        for env in envs.values():  # the platform exists: instance, catalog, h3.grid
            subprocess.run([*command, "0"], env=env, check=True, capture_output=True)

        def platform(profile: str):
            def side() -> h.Run:
                result = h.run([*command, resolution], envs[profile])
                steps[profile][result] = step_seconds(envs[profile])
                return result

            return side

        def reference() -> h.Run:
            return h.run([sys.executable, __file__, "--bare", resolution, scratch / "bare.parquet"])

        runs = h.rounds(
            {
                "bare h3 + shapely": reference,
                "platform, DuckDB": platform("embedded"),
                "platform, PostGIS": platform("production"),
            },
            args.repeat,
            # Runs done again when others disturbed them: on a shared machine, 0.
            args.extra,
        )
    finally:
        service = BlobServiceClient.from_connection_string(AZURITE_CONNECTION_STRING)
        for container in service.list_containers(name_starts_with=prefix):
            service.delete_container(container.name)
        for name in databases:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            admin.execute(drop.format(sql.Identifier(name)))
        shutil.rmtree(scratch, ignore_errors=True)
    cells = {"3": 41_162, "5": 2_016_842, "6": 14_117_882}.get(resolution)
    base = h.summary(runs["bare h3 + shapely"])
    rows = [{"side": "bare h3 + shapely"} | base]
    figures: dict = {"resolution": int(resolution), "cells": cells, "bare": base}
    for side, profile in (("platform, DuckDB", "embedded"), ("platform, PostGIS", "production")):
        ours = h.summary(runs[side])
        ours["ratio best (<= 1.25)"] = ours["best s"] / base["best s"]
        ours["ratio median (<= 1.25)"] = ours["median s"] / base["median s"]
        fastest = min(runs[side], key=lambda r: r.wall_s)
        ours["step s"] = steps[profile][fastest]
        ours["outside the step s"] = fastest.wall_s - steps[profile][fastest]
        rows.append({"side": side} | ours)
        figures[profile] = ours
    for row in rows:
        if cells:
            row["s per million cells"] = row["best s"] / cells * 1e6
    h.table(rows)
    h.write("h3_grid", figures, args.quick)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--bare"]:
        bare(*sys.argv[2:4])
    else:
        main()
