"""One grid partition on its way into a warehouse table and a GeoParquet file at once,
with the figures its asset checks read: cells, pentagons, area, validity."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from geo_platform.lib.tables import TableSpec
from geo_platform.lib.vector.geometry import GeometryStats
from geo_platform.lib.vector.load import GeoParquetExport

WriteRows = Callable[[Iterable[pa.RecordBatch]], int]


@dataclass
class GridStats:
    """What a partition held, counted as it streamed past."""

    rows: int = 0
    pentagons: int = 0
    area_km2: float = 0.0
    invalid: int = 0
    # Cells stored as MultiPolygons (split at the antimeridian).
    split: int = 0
    geometry: GeometryStats = field(default_factory=GeometryStats)

    def add(self, batch: pa.RecordBatch, spec: TableSpec) -> None:
        assert spec.geometry is not None
        geoms = shapely.from_wkb(batch.column(spec.geometry.name).to_numpy(zero_copy_only=False))
        types = shapely.get_type_id(geoms)
        self.rows += batch.num_rows
        if "is_pentagon" in batch.schema.names:
            self.pentagons += int(np.sum(batch.column("is_pentagon").to_numpy(False)))
        if "area_km2" in batch.schema.names:
            self.area_km2 += float(np.sum(batch.column("area_km2").to_numpy(False)))
        self.invalid += int(np.sum(~shapely.is_valid(geoms)))
        self.split += int(np.sum(types == shapely.GeometryType.MULTIPOLYGON))
        self.geometry.types.update(Counter(str(int(t)) for t in types))
        self._grow(shapely.total_bounds(geoms))

    def _grow(self, box: np.ndarray) -> None:
        if np.isnan(box).any():
            return
        old = self.geometry.bounds
        new = (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
        self.geometry.bounds = (
            new
            if old is None
            else (
                min(old[0], new[0]),
                min(old[1], new[1]),
                max(old[2], new[2]),
                max(old[3], new[3]),
            )
        )


def load_cells(
    spec: TableSpec,
    batches: Iterable[pa.RecordBatch],
    write: WriteRows,
    export_path: Path,
) -> tuple[int, GridStats]:
    """Stream ``batches`` through ``write`` (a warehouse load) and into a GeoParquet file
    at ``export_path``; returns the rows written and the figures of what passed."""
    assert spec.geometry is not None
    stats = GridStats()

    def counted() -> Iterator[pa.RecordBatch]:
        for batch in batches:
            stats.add(batch, spec)
            yield batch

    crs = pyproj.CRS.from_epsg(spec.geometry.srid)
    with GeoParquetExport(export_path, spec, crs) as export:
        rows = write(export.tee(counted()))
        export.finish(stats.geometry)
    return rows, stats
