"""One grid partition on its way into a warehouse table and a GeoParquet file at once,
with the figures its asset checks read: cells, pentagons, area, validity."""

from __future__ import annotations

import multiprocessing
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyproj
import shapely

from geo_platform.lib.h3.grid import GRID_SPEC, group_rows
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

    def add(self, batch: pa.RecordBatch, spec: TableSpec, geoms: np.ndarray | None = None) -> None:
        """Count ``batch`` in; ``geoms``: its geometries, when at hand, not read again."""
        assert spec.geometry is not None
        if geoms is None:
            column = batch.column(spec.geometry.name)
            geoms = shapely.from_wkb(column.to_numpy(zero_copy_only=False))
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

    def merge(self, other: GridStats) -> None:
        self.rows += other.rows
        self.pentagons += other.pentagons
        self.area_km2 += other.area_km2
        self.invalid += other.invalid
        self.split += other.split
        self.geometry.types.update(other.geometry.types)
        if other.geometry.bounds is not None:
            self._grow(np.array(other.geometry.bounds))

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
    batches: Iterable[pa.RecordBatch | tuple[pa.RecordBatch, GridStats]],
    write: WriteRows,
    export_path: Path,
) -> tuple[int, GridStats]:
    """Stream ``batches`` (or batches already counted, with their figures) through
    ``write`` (a warehouse load) and into a GeoParquet file at ``export_path``; returns
    the rows written and the figures of what passed."""
    assert spec.geometry is not None
    stats = GridStats()

    def counted() -> Iterator[pa.RecordBatch]:
        for item in batches:
            if isinstance(item, tuple):
                batch, figures = item
                stats.merge(figures)
            else:
                batch = item
                stats.add(batch, spec)
            yield batch

    crs = pyproj.CRS.from_epsg(spec.geometry.srid)
    with GeoParquetExport(export_path, spec, crs, stats.geometry) as export:
        rows = write(export.tee(counted()))
    return rows, stats


def counted_batch(group: Sequence[str], resolution: int) -> tuple[pa.RecordBatch, GridStats]:
    """One batch of grid rows with its figures: a worker's unit of work."""
    batch, polygons = group_rows(group, resolution)
    stats = GridStats()
    stats.add(batch, GRID_SPEC, polygons)
    return batch, stats


Job = tuple[int, list[list[str]]]  # a resolution and its groups of ancestors, in order


class GridProducer:
    """The batches of a run's partitions (``jobs``), made ahead by ``workers`` processes
    and handed out job by job, in order. At most ``workers + ahead`` batches are made or
    waiting at once: memory stays bounded whatever the number of partitions."""

    def __init__(self, jobs: Sequence[Job], workers: int, ahead: int = 2) -> None:
        self.tasks = deque(
            (index, resolution, group)
            for index, (resolution, groups) in enumerate(jobs)
            for group in groups
        )
        self.limit = workers + ahead
        self.pool: ProcessPoolExecutor | None = None
        if workers > 1:
            context = multiprocessing.get_context("forkserver")
            # The workers fork from a server that has imported h3, shapely and pyarrow once.
            context.set_forkserver_preload([__name__])
            self.pool = ProcessPoolExecutor(workers, mp_context=context)
        self.made: deque[tuple[int, Future]] = deque()

    def __enter__(self) -> GridProducer:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def _top_up(self) -> None:
        while self.pool is not None and self.tasks and len(self.made) < self.limit:
            index, resolution, group = self.tasks.popleft()
            self.made.append((index, self.pool.submit(counted_batch, group, resolution)))

    def batches(self, index: int) -> Iterator[tuple[pa.RecordBatch, GridStats]]:
        """The batches of job ``index`` (the jobs before it done or dropped)."""
        self.drop_before(index)
        while True:
            self._top_up()
            if self.made and self.made[0][0] == index:
                yield self.made.popleft()[1].result()
            elif self.pool is None and self.tasks and self.tasks[0][0] == index:
                _, resolution, group = self.tasks.popleft()
                yield counted_batch(group, resolution)
            else:
                return

    def drop_before(self, index: int) -> None:
        """Forget what is left of the jobs before ``index`` (a partition that failed)."""
        while self.made and self.made[0][0] < index:
            self.made.popleft()[1].cancel()
        while self.tasks and self.tasks[0][0] < index:
            self.tasks.popleft()
