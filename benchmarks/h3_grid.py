"""The global resolution-5 H3 grid (2,016,842 cells) made and loaded by the platform into
each warehouse, vs a bare script of the h3 package's own calls writing GeoParquet."""

import json
import shutil
import subprocess
import sys
import warnings

import harness as h

CELLS = {"3": 41_162, "5": 2_016_842, "6": 14_117_882}


def bare(resolution: str, out: str) -> None:
    """The grid with no platform around it: what a user of h3 and shapely would write."""
    import antimeridian
    import h3
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    import shapely

    res, types = int(resolution), set()
    columns = {"h3_index": pa.string(), "resolution": pa.int32(), "parent": pa.string(),
               "base_cell": pa.int32(), "is_pentagon": pa.bool_(), "area_km2": pa.float64(),
               "geom": pa.binary()}  # fmt: skip
    with pq.ParquetWriter(out, pa.schema(columns), compression="zstd") as writer:
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
            writer.write_table(pa.table([
                cells, np.full(len(cells), res, np.int32),
                [h3.cell_to_parent(c, res - 1) if res else None for c in cells],
                np.full(len(cells), h3.get_base_cell_number(root), np.int32),
                [h3.is_pentagon(c) for c in cells], [h3.cell_area(c, "km^2") for c in cells],
                shapely.to_wkb(polygons),
            ], schema=pa.schema(columns)))  # fmt: skip
        kinds = sorted({"3": "Polygon", "6": "MultiPolygon"}[t] for t in types)
        geom = {"encoding": "WKB", "geometry_types": kinds}
        geo = {"version": "1.1.0", "primary_column": "geom", "columns": {"geom": geom}}
        writer.add_key_value_metadata({"geo": json.dumps(geo)})


def main() -> None:
    # --quick: resolution 3 (41,162 cells); --extra: runs done again when others disturbed them.
    args = h.options(__doc__, resolution=5, repeat=2, extra=2, quick=False)
    resolution, scratch = "3" if args.quick else str(args.resolution), h.DATA / "h3_grid"
    shutil.rmtree(scratch, ignore_errors=True)
    command, steps = [h.GEO_PLATFORM, "h3-grid"], {}
    try:
        with h.production(scratch / "production", h3_max_resolution="6") as production:
            envs = {
                "DuckDB": h.platform_env(data_dir=str(scratch / "embedded"), h3_max_resolution="6")
            }
            envs["PostGIS"] = production
            for env in envs.values():  # the platform exists: instance, catalog, h3.grid
                subprocess.run([*command, "0"], env=env, check=True, capture_output=True)

            def platform(name: str) -> h.Run:
                result = h.run([*command, resolution], envs[name])
                steps[result] = sum(h.step_seconds(envs[name]).values())
                return result

            bare = [sys.executable, __file__, "--bare", resolution, scratch / "bare.parquet"]
            sides = {"bare h3 + shapely": lambda: h.run(bare)}
            sides |= {f"platform, {n}": lambda n=n: platform(n) for n in envs}
            runs = h.rounds(sides, args.repeat, args.extra)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    rows = h.versus(runs, "<= 1.25")
    for row, side in zip(rows, runs.values(), strict=True):
        fastest = min(side, key=lambda r: r.wall_s)
        if fastest in steps:
            row |= {"step s": steps[fastest], "outside the step s": fastest.wall_s - steps[fastest]}
        if resolution in CELLS:
            row["s per million cells"] = row["best s"] / CELLS[resolution] * 1e6
    h.table(rows)
    h.write(
        "h3_grid",
        {"resolution": int(resolution), "cells": CELLS.get(resolution), "sides": rows},
        args.quick,
    )


if __name__ == "__main__":
    bare(*sys.argv[2:4]) if sys.argv[1:2] == ["--bare"] else main()
