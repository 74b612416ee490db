"""Load one vector file: every layer into its own table, with a GeoParquet copy.

Reading, geometry work and the warehouse's writing overlap: one thread reads (GDAL),
another prepares batches (GEOS, pyarrow), a third writes them to the GeoParquet copy,
while the warehouse writes the current one (all four release the GIL in their C parts),
with at most ``PREFETCH`` batches in flight between two stages.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyproj
import shapely
from shapely.geometry import mapping

from geo_platform.errors import InvalidInputError
from geo_platform.lib.tables import GeometryColumn, TableSpec, storage_type, to_storage
from geo_platform.lib.vector.archive import ZipLimits, extract_shapefiles
from geo_platform.lib.vector.formats import MULTI_LAYER, VectorFormat, vector_format, vector_suffix
from geo_platform.lib.vector.geometry import (
    GeometryPolicy,
    GeometryProcessor,
    GeometryStats,
    type_names,
)
from geo_platform.lib.vector.names import (
    FID_COLUMN,
    GEOMETRY_COLUMN,
    ColumnName,
    column_names,
    table_name,
)
from geo_platform.lib.vector.read import FID, WKB, Layer, LayerInfo, list_layers, open_layer

VECTOR_SCHEMA = "vector"
PREFETCH = 2
WriteTable = Callable[[TableSpec, Iterator[pa.RecordBatch]], int]


@dataclass(frozen=True)
class VectorOptions:
    policy: GeometryPolicy = field(default_factory=GeometryPolicy)
    batch_size: int = 16_384
    # For sources that carry no CRS (a shapefile without .prj): what they are in.
    source_crs: str | None = None
    zip_limits: ZipLimits = field(
        default_factory=lambda: ZipLimits(max_total_bytes=20 * 1024**3, max_ratio=500.0)
    )


@dataclass
class LayerResult:
    """What loading one layer did: a user reads these in the materialization."""

    table: str
    layer: str | None
    source_rows: int
    rows: int
    stats: GeometryStats
    columns: list[ColumnName]
    column_types: dict[str, str]
    srid: int
    export_path: Path
    seconds: float

    @property
    def geometry_types(self) -> list[str]:
        return type_names(self.stats.types)

    def footprint_wgs84(self) -> tuple[dict | None, list[float] | None]:
        """GeoJSON footprint (convex hull) and bbox in longitude/latitude."""
        hull = self.stats.hull
        if hull is None or hull.is_empty:
            return None, None
        if self.srid != 4326:
            transformer = pyproj.Transformer.from_crs(self.srid, 4326, always_xy=True)
            length = max(hull.length, 1.0) / 200
            hull = shapely.transform(
                shapely.segmentize(hull, length),
                lambda c: np.column_stack(transformer.transform(c[:, 0], c[:, 1])),
            )
        hull = shapely.set_precision(shapely.force_2d(hull), 1e-7)
        return mapping(hull), [round(v, 7) for v in hull.bounds]

    def record(self) -> dict:
        """The registry row: everything later steps (item, tiles, checks) need."""
        footprint, bbox = self.footprint_wgs84()
        return {
            "table": self.table,
            "layer": self.layer,
            "source_rows": self.source_rows,
            "rows": self.rows,
            "nulls": self.stats.nulls,
            "empty": self.stats.empty,
            "repaired": self.stats.repaired,
            "dropped": self.stats.dropped,
            "drop_reasons": dict(self.stats.drop_reasons),
            "linearized": self.stats.linearized,
            "promoted_to_multi": self.stats.promoted,
            "m_dropped": self.stats.m_dropped,
            "geometry_types": self.geometry_types,
            "srid": self.srid,
            "columns": [
                {
                    "source": c.source,
                    "name": c.name,
                    "type": self.column_types[c.name],
                    "why": c.why,
                }
                for c in self.columns
            ],
            "bbox": bbox,
            "footprint": footprint,
        }


def source_layers(path: Path, blob_key: str, workdir: Path, limits: ZipLimits) -> list[Layer]:
    """The layers of a vector file (a zip is extracted into ``workdir`` first)."""
    name = blob_key
    fmt = vector_format(blob_key)
    if fmt is None:
        raise InvalidInputError(name, "not a vector file name (.geojson, .gpkg, .zip, ...)")
    if path.stat().st_size == 0:
        raise InvalidInputError(name, "the file is empty (0 bytes)")
    if fmt is VectorFormat.SHAPEFILE_ZIP:
        shapefiles = extract_shapefiles(path, workdir, limits, name=name)
        return [
            Layer(shp, None, shp.relative_to(workdir).with_suffix("").as_posix(), fmt)
            for shp in shapefiles
        ]
    if fmt is VectorFormat.GEOPACKAGE:
        return [
            Layer(path, layer, layer, fmt)
            for layer, kind in list_layers(path, fmt, name=name)
            if kind != "None"  # attribute-only tables: no geometry to load
        ]
    # Not opened here: GDAL reads a whole GeoJSON file to open it (for its schema), and
    # open_layer, which does, refuses an unreadable file as clearly.
    return [Layer(path, None, None, fmt)]


def aspatial_layers(path: Path, blob_key: str) -> list[str]:
    """GeoPackage tables without geometry, which are not loaded (reported instead)."""
    if vector_format(blob_key) is not VectorFormat.GEOPACKAGE:
        return []
    return [
        layer
        for layer, kind in list_layers(path, VectorFormat.GEOPACKAGE, name=blob_key)
        if kind == "None"
    ]


def layer_table_name(blob_key: str, layer: Layer) -> str:
    suffix = vector_suffix(blob_key) or ""
    label = layer.label if layer.format in MULTI_LAYER else None
    return table_name(blob_key, label, suffix)


def load_layer(
    layer: Layer,
    blob_key: str,
    options: VectorOptions,
    export_path: Path,
    write_table: WriteTable,
) -> LayerResult:
    """Stream one layer into its table (through ``write_table``) and a GeoParquet file."""
    name = blob_key if layer.label is None else f"{blob_key} (layer {layer.label})"
    started = time.perf_counter()
    table = layer_table_name(blob_key, layer)
    srid = options.policy.srid()
    with open_layer(layer, batch_size=options.batch_size, name=name) as (info, batches):
        source_crs = _source_crs(info, options, name)
        try:
            processor = GeometryProcessor(
                source_crs=source_crs,
                policy=options.policy,
                declared_type=info.declared_type,
                relinearize=info.relinearize,  # type: ignore[arg-type]
            )
        except pyproj.exceptions.ProjError as e:
            raise InvalidInputError(
                name,
                f"its CRS ({source_crs.name}) cannot be transformed to "
                f"{options.policy.target_crs}: {str(e).split(':')[-1].strip()}",
            ) from None
        mapping_ = column_names(info.fields)
        spec, kinds = _table_spec(table, info, mapping_, srid)
        # Three stages on their own threads: GDAL parses, GEOS repairs, the database writes.
        prepared = _prepared(_prefetched(batches), processor, mapping_, kinds, spec)
        target = options.policy.target()
        with GeoParquetExport(export_path, spec, target, processor.stats) as export:
            rows = write_table(spec, _prefetched(export.tee(prepared)))
    stats = processor.stats
    return LayerResult(
        table=table,
        layer=layer.label,
        source_rows=stats.features,
        rows=rows,
        stats=stats,
        columns=mapping_,
        column_types={n: str(k) for n, k in spec.columns},
        srid=srid,
        export_path=export_path,
        seconds=time.perf_counter() - started,
    )


def _source_crs(info: LayerInfo, options: VectorOptions, name: str) -> pyproj.CRS:
    if info.crs is not None:
        return info.crs
    if options.source_crs:
        return pyproj.CRS.from_user_input(options.source_crs)
    raise InvalidInputError(
        name,
        "the layer has no coordinate reference system (a shapefile without .prj?): "
        "set source_crs for its collection in the collections file",
    )


def _table_spec(
    table: str, info: LayerInfo, mapping_: list[ColumnName], srid: int
) -> tuple[TableSpec, list[pa.DataType]]:
    kinds = [storage_type(k) for k in info.field_types]
    columns = (
        (FID_COLUMN, pa.int64()),
        *((c.name, k) for c, k in zip(mapping_, kinds, strict=True)),
    )
    spec = TableSpec(
        schema=VECTOR_SCHEMA,
        name=table,
        columns=tuple(columns),
        primary_key=(FID_COLUMN,),
        geometry=GeometryColumn(GEOMETRY_COLUMN, srid),
    )
    return spec, kinds


def _prepared(
    batches: Iterator[pa.RecordBatch],
    processor: GeometryProcessor,
    mapping_: list[ColumnName],
    kinds: list[pa.DataType],
    spec: TableSpec,
) -> Iterator[pa.RecordBatch]:
    schema = spec.arrow_schema()
    for batch in batches:
        wkb, keep = processor.process(batch.column(WKB), batch.column(FID))
        arrays = [batch.column(FID)]
        arrays += [
            to_storage(batch.column(c.source), kind)
            for c, kind in zip(mapping_, kinds, strict=True)
        ]
        arrays.append(wkb)
        out = pa.RecordBatch.from_arrays(arrays, schema=schema)
        if not keep.all():
            out = out.filter(pa.array(keep))
        yield out


def _prefetched(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """``batches`` produced in a background thread, at most PREFETCH ahead."""
    slots: queue.Queue = queue.Queue(maxsize=PREFETCH)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for batch in batches:
                if stop.is_set():
                    return
                slots.put(batch)
            slots.put(done)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            slots.put(e)

    worker = threading.Thread(target=produce, name="vector-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():
            try:
                slots.get(timeout=0.1)
            except queue.Empty:
                pass
        worker.join()


class GeoParquetExport:
    """The stored rows as GeoParquet 1.1, written batch by batch beside the load and
    complete (closed) once the last batch has passed: ``write_table`` may hand the file
    on (an upload) while the warehouse still indexes the rows."""

    def __init__(self, path: Path, spec: TableSpec, crs: pyproj.CRS, stats: GeometryStats):
        self.path = path
        self.spec = spec
        self.crs = crs
        self.stats = stats  # filled in while the batches pass
        self.writer: pq.ParquetWriter | None = None

    def __enter__(self) -> GeoParquetExport:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Without the stored Arrow schema, readers take the schema's metadata from the
        # file's key-value metadata, where `geo` (with types and bbox) is added at the end.
        # No dictionary for columns of unique values (the key, the WKB), and no min/max of
        # WKB bytes, which says nothing of where a geometry is (the bbox in `geo` does):
        # both cost CPU beside the load and, for the dictionary, bytes.
        names = [name for name, _ in self.spec.columns]  # all but the geometry
        self.writer = pq.ParquetWriter(
            self.path,
            self.spec.arrow_schema(),
            compression="zstd",
            store_schema=False,
            use_dictionary=[n for n in names if n != FID_COLUMN],
            write_statistics=names,
        )
        return self

    def tee(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        """``batches`` passed on as they come, each also written to the file on a thread
        of its own (Parquet encoding and zstd release the GIL): the stage that prepares
        the batches does not wait for the file, at most ``PREFETCH`` batches behind."""
        assert self.writer is not None
        writer = self.writer
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="geoparquet") as pool:
            pending: deque[Future[None]] = deque()
            for batch in batches:
                pending.append(pool.submit(writer.write_batch, batch))
                while len(pending) > PREFETCH:
                    pending.popleft().result()
                yield batch
            while pending:
                pending.popleft().result()
        self._finish()
        self.writer.close()
        self.writer = None

    def _finish(self) -> None:
        stats = self.stats
        assert self.writer is not None and self.spec.geometry is not None
        column: dict = {
            "encoding": "WKB",
            "geometry_types": type_names(stats.types),
            "crs": self.crs.to_json_dict(),
        }
        if stats.bounds is not None:
            column["bbox"] = list(stats.bounds)
        geo = {
            "version": "1.1.0",
            "primary_column": self.spec.geometry.name,
            "columns": {self.spec.geometry.name: column},
        }
        self.writer.add_key_value_metadata({"geo": json.dumps(geo)})

    def __exit__(self, *exc: object) -> None:
        if self.writer is not None:
            self.writer.close()
