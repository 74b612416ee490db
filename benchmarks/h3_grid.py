"""The global resolution-5 H3 grid (2,016,842 cells) made and loaded by the platform into
each warehouse, vs a bare script of the h3 package's own calls writing GeoParquet."""

import json
import subprocess
import sys
import warnings
from functools import partial

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
            lonlat = np.array([v for b in boundaries for v in b])[:, ::-1]
            owner, lon = np.repeat(np.arange(len(cells)), counts), lonlat[:, 0]
            polygons = shapely.polygons(shapely.linearrings(lonlat, indices=owner))
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
    args = h.options(__doc__, resolution=5, quick=False, repeat=2)  # --quick: resolution 3
    resolution, grid = "3" if args.quick else str(args.resolution), [h.GEO_PLATFORM, "h3-grid"]
    with h.scratch("h3_grid") as folder:
        bare = [sys.executable, __file__, "--bare", resolution, folder / "bare.parquet"]
        sides = {"bare h3 + shapely": partial(h.run, bare)}
        for name, profile in (("DuckDB", "embedded"), ("PostGIS", "production")):
            env = h.platform_env(profile, folder / profile, h3_max_resolution="6")
            # The platform exists: instance, catalog, h3.grid.
            subprocess.run([*grid, "0"], env=env, check=True, capture_output=True)
            command = [*grid, resolution]
            sides[f"platform, {name}"] = lambda c=command, e=env: h.with_steps(h.run(c, e), e)
        rows = h.versus(h.rounds(sides, args.repeat, args.retries), "<= 1.25")
    for row in rows if resolution in CELLS else []:
        row["s per million cells"] = row["best s"] / CELLS[resolution] * 1e6
    h.table(rows)
    figures = {"resolution": int(resolution), "cells": CELLS.get(resolution), "sides": rows}
    h.write("h3_grid", figures, args.smoke)


if __name__ == "__main__":
    bare(*sys.argv[2:4]) if sys.argv[1:2] == ["--bare"] else main()
