"""Read vector layers as a stream of bounded Arrow batches, never a whole file in memory.

GDAL formats go through pyogrio's Arrow stream; GeoParquet through pyarrow (pyogrio's
wheels have no Parquet driver). Every batch has the same columns: ``FID`` (int64), the
source's fields by their own names, and ``WKB`` (ISO WKB, null where the feature has no
geometry). Curved geometries, which GEOS cannot read, are re-read through pyogrio's
feature reader, which hands them over linearized by GDAL.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyogrio.errors
import pyproj
from pyogrio.raw import open_arrow
from pyogrio.raw import read as read_features

from geo_platform.errors import InvalidInputError
from geo_platform.lib.vector.formats import VectorFormat

FID = "__fid"
WKB = "__wkb"
_GEOARROW_WKB = b"geoarrow.wkb"


@dataclass
class Layer:
    """One layer of a source: what GDAL (or pyarrow) opens, and its name in table names."""

    path: Path
    layer: str | None  # what the reader opens; None: the file's only layer
    label: str | None  # the layer in the table name; None for single-layer formats
    format: VectorFormat


@dataclass
class LayerInfo:
    crs: pyproj.CRS | None
    declared_type: str  # GDAL's name: "Polygon", "LineString Z", "Unknown", ...
    fields: list[str]
    field_types: list[pa.DataType]
    feature_count: int | None
    # (batch of FIDs) -> their geometries as linearized WKB, for curves GEOS can't read.
    relinearize: object = field(default=None, repr=False)


def list_layers(path: Path, fmt: VectorFormat, *, name: str) -> list[tuple[str, str]]:
    """``(layer, declared geometry type)`` of every layer GDAL sees in ``path``."""
    if fmt is VectorFormat.GEOPARQUET:
        return [("", "Unknown")]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            layers = pyogrio.list_layers(path)
    except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as e:
        raise InvalidInputError(
            name, f"not a readable {fmt.value} file ({_gdal_message(e)})"
        ) from None
    return [(str(layer), str(kind) if kind is not None else "None") for layer, kind in layers]


def _gdal_message(error: Exception) -> str:
    return str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__


@contextmanager
def open_layer(
    layer: Layer, *, batch_size: int, name: str
) -> Iterator[tuple[LayerInfo, Iterator[pa.RecordBatch]]]:
    """The layer's description and its batches (``FID``, fields, ``WKB``)."""
    if layer.format is VectorFormat.GEOPARQUET:
        yield from _open_geoparquet(layer.path, batch_size, name)
        return
    with ExitStack() as stack:
        try:
            with warnings.catch_warnings():
                # pyogrio warns that M is "not supported" by its own feature reader; the
                # Arrow stream keeps M, and so do we.
                warnings.simplefilter("ignore", UserWarning)
                meta, reader = stack.enter_context(
                    open_arrow(
                        layer.path,
                        layer=layer.layer,
                        batch_size=batch_size,
                        return_fids=True,
                        use_pyarrow=True,
                    )
                )
        except (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError) as e:
            raise InvalidInputError(
                name, f"not a readable {layer.format.value} file ({_gdal_message(e)})"
            ) from None
        # By position: the FID comes first, and may share its name with a field (GeoJSON
        # "id" is both); the geometry is the geoarrow.wkb column.
        positions = _field_positions(reader.schema)
        fields = [reader.schema.field(i).name for i in positions]
        info = LayerInfo(
            crs=_crs(meta.get("crs"), name),
            declared_type=str(meta.get("geometry_type") or "Unknown"),
            fields=fields,
            field_types=[reader.schema.field(i).type for i in positions],
            feature_count=None,
            relinearize=lambda fids: _relinearize(layer, fids),
        )
        yield info, _gdal_batches(reader, positions, fields, name)


def _crs(value: str | None, name: str) -> pyproj.CRS | None:
    if not value:
        return None
    try:
        return pyproj.CRS.from_user_input(value)
    except pyproj.exceptions.CRSError as e:
        raise InvalidInputError(name, f"its CRS is not one PROJ knows ({e})") from None


def _geometry_position(schema: pa.Schema) -> int | None:
    return next(
        (
            i
            for i, f in enumerate(schema)
            if (f.metadata or {}).get(b"ARROW:extension:name") == _GEOARROW_WKB
        ),
        None,
    )


def _field_positions(schema: pa.Schema) -> list[int]:
    geometry = _geometry_position(schema)
    return [i for i in range(1, len(schema)) if i != geometry]


def _gdal_batches(
    reader: pa.RecordBatchReader, positions: list[int], fields: list[str], name: str
) -> Iterator[pa.RecordBatch]:
    geometry = _geometry_position(reader.schema)
    while True:
        try:
            batch = reader.read_next_batch()
        except StopIteration:
            return
        except (OSError, pa.ArrowException) as e:
            raise InvalidInputError(name, f"reading failed ({_gdal_message(e)})") from None
        columns = [batch.column(0).cast(pa.int64())]
        columns += [batch.column(i) for i in positions]
        if geometry is None:
            wkb = pa.nulls(batch.num_rows, pa.binary())
        else:
            wkb = batch.column(geometry)
            wkb = wkb if wkb.type == pa.binary() else wkb.cast(pa.binary())
        columns.append(wkb)
        yield pa.RecordBatch.from_arrays(columns, names=[FID, *fields, WKB])


def _relinearize(layer: Layer, fids: list[int]) -> list[bytes | None]:
    """GDAL's linear approximation of the given features' geometries (curves)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        _, read_fids, geometries, _ = read_features(
            layer.path, layer=layer.layer, fids=fids, columns=[], return_fids=True
        )
    by_fid = dict(zip(read_fids.tolist(), geometries, strict=True))
    return [by_fid.get(fid) for fid in fids]


def _open_geoparquet(
    path: Path, batch_size: int, name: str
) -> Iterator[tuple[LayerInfo, Iterator[pa.RecordBatch]]]:
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise InvalidInputError(name, f"not a readable Parquet file ({e})") from None
    geo = _geo_metadata(parquet.schema_arrow.metadata or {}, name)
    primary = geo["primary_column"]
    column = geo["columns"].get(primary) or {}
    if str(column.get("encoding", "WKB")).upper() != "WKB":
        raise InvalidInputError(
            name, f"GeoParquet encoding {column.get('encoding')!r} is not supported (only WKB)"
        )
    # GeoParquet: an absent crs means OGC:CRS84; an explicit null means unknown.
    raw_crs = column.get("crs", "OGC:CRS84")
    crs = (
        None
        if raw_crs is None
        else _crs(json.dumps(raw_crs) if isinstance(raw_crs, dict) else raw_crs, name)
    )
    fields = [n for n in parquet.schema_arrow.names if n != primary]
    types = column.get("geometry_types") or []
    info = LayerInfo(
        crs=crs,
        declared_type=types[0] if len(types) == 1 else "Unknown",
        fields=fields,
        field_types=[parquet.schema_arrow.field(f).type for f in fields],
        feature_count=parquet.metadata.num_rows,
    )

    def batches() -> Iterator[pa.RecordBatch]:
        start = 0
        try:
            for batch in parquet.iter_batches(batch_size=batch_size):
                fid = pa.array(range(start, start + batch.num_rows), pa.int64())
                start += batch.num_rows
                wkb = batch.column(primary)
                if wkb.type != pa.binary():
                    wkb = wkb.cast(pa.binary())
                columns = [fid, *(batch.column(f) for f in fields), wkb]
                yield pa.RecordBatch.from_arrays(columns, names=[FID, *fields, WKB])
        except (OSError, pa.ArrowException) as e:
            raise InvalidInputError(name, f"reading failed ({e})") from None

    yield info, batches()


def _geo_metadata(metadata: dict[bytes, bytes], name: str) -> dict:
    raw = metadata.get(b"geo")
    if raw is None:
        raise InvalidInputError(name, "a Parquet file without GeoParquet 'geo' metadata")
    try:
        geo = json.loads(raw)
        geo["columns"]
        geo["primary_column"]
    except (ValueError, KeyError, TypeError):
        raise InvalidInputError(name, "its GeoParquet 'geo' metadata is malformed") from None
    return geo
