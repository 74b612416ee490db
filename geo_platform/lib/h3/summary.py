"""Per-cell statistics of rasters (read window by window) and of vector features."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import h3
import numpy as np
import pyarrow as pa
import rasterio
import shapely
from pyproj import CRS, Geod, Transformer
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from geo_platform.lib.h3.grid import H3_SCHEMA, cell_polygons, check_resolution
from geo_platform.lib.tables import GeometryColumn, TableSpec

# Features' areas and lengths on the WGS84 ellipsoid.
WGS84 = Geod(ellps="WGS84")

RASTER_SUMMARY_SPEC = TableSpec(
    schema=H3_SCHEMA,
    name="raster_summary",
    columns=(
        ("collection", pa.string()),
        ("band", pa.int32()),
        ("h3_index", pa.string()),
        ("resolution", pa.int32()),
        ("pixels", pa.int64()),
        ("count", pa.int64()),
        ("nodata_share", pa.float64()),
        ("min", pa.float64()),
        ("max", pa.float64()),
        ("mean", pa.float64()),
    ),
    geometry=GeometryColumn("geom", 4326),
    indexes=("h3_index",),
)

VECTOR_SUMMARY_SPEC = TableSpec(
    schema=H3_SCHEMA,
    name="vector_summary",
    columns=(
        ("source_table", pa.string()),
        ("h3_index", pa.string()),
        ("resolution", pa.int32()),
        ("features", pa.int64()),
        ("area_km2", pa.float64()),
        ("length_km", pa.float64()),
    ),
    geometry=GeometryColumn("geom", 4326),
    indexes=("h3_index",),
)


@dataclass
class PixelStats:
    """Running statistics of one band in one cell."""

    pixels: int = 0
    count: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf


@dataclass
class RasterSummary:
    """(band, cell) -> statistics, merged over windows and rasters."""

    resolution: int
    cells: dict[tuple[int, str], PixelStats] = field(default_factory=dict)

    def add_raster(self, path: str, window_size: int = 1024) -> None:
        """Every pixel of ``path`` (a local path or a GDAL path), window by window: its
        centre gives its cell; masked (nodata, mask band) and NaN pixels count as nodata."""
        with rasterio.open(path) as src:
            if src.crs is None:
                raise ValueError(f"{path}: the raster has no CRS")
            to_lonlat = Transformer.from_crs(src.crs, CRS.from_epsg(4326), always_xy=True)
            bands = [
                b
                for b, interp in zip(src.indexes, src.colorinterp, strict=True)
                if interp is not ColorInterp.alpha
            ]
            for row in range(0, src.height, window_size):
                for col in range(0, src.width, window_size):
                    window = Window(
                        col,
                        row,
                        min(window_size, src.width - col),
                        min(window_size, src.height - row),
                    )
                    self._add_window(src, window, bands, to_lonlat)

    def _add_window(
        self,
        src: rasterio.DatasetReader,
        window: Window,
        bands: list[int],
        to_lonlat: Transformer,
    ) -> None:
        rows, cols = np.mgrid[
            window.row_off : window.row_off + window.height,
            window.col_off : window.col_off + window.width,
        ]
        xs, ys = src.transform * (cols.ravel() + 0.5, rows.ravel() + 0.5)
        lons, lats = to_lonlat.transform(xs, ys, errcheck=False)
        on_globe = np.isfinite(lons) & np.isfinite(lats)
        res = self.resolution
        cells = np.array(
            [
                h3.latlng_to_cell(lat, lon, res) if ok else ""
                for lat, lon, ok in zip(
                    lats.tolist(), lons.tolist(), on_globe.tolist(), strict=True
                )
            ]
        )
        names, inverse = np.unique(cells, return_inverse=True)
        data = src.read(bands, window=window, masked=True)
        for band, values in zip(bands, data, strict=True):
            flat = values.astype("float64").filled(np.nan).ravel()
            valid = np.isfinite(flat)
            pixels = np.bincount(inverse, minlength=len(names))
            count = np.bincount(inverse, weights=valid, minlength=len(names))
            total = np.bincount(inverse, weights=np.where(valid, flat, 0.0), minlength=len(names))
            low = np.full(len(names), np.inf)
            high = np.full(len(names), -np.inf)
            np.minimum.at(low, inverse[valid], flat[valid])
            np.maximum.at(high, inverse[valid], flat[valid])
            for i, name in enumerate(names.tolist()):
                if not name:
                    continue
                stats = self.cells.setdefault((band, name), PixelStats())
                stats.pixels += int(pixels[i])
                stats.count += int(count[i])
                stats.total += float(total[i])
                stats.low = min(stats.low, float(low[i]))
                stats.high = max(stats.high, float(high[i]))

    def batches(self, collection: str, batch_rows: int = 50_000) -> Iterator[pa.RecordBatch]:
        """Rows of ``RASTER_SUMMARY_SPEC``."""
        keys = sorted(self.cells)
        for start in range(0, len(keys), batch_rows):
            part = keys[start : start + batch_rows]
            stats = [self.cells[k] for k in part]
            names = [cell for _, cell in part]
            arrays = [
                pa.array([collection] * len(part), pa.string()),
                pa.array([band for band, _ in part], pa.int32()),
                pa.array(names, pa.string()),
                pa.array([self.resolution] * len(part), pa.int32()),
                pa.array([s.pixels for s in stats], pa.int64()),
                pa.array([s.count for s in stats], pa.int64()),
                pa.array([1 - s.count / s.pixels for s in stats], pa.float64()),
                pa.array([s.low if s.count else None for s in stats], pa.float64()),
                pa.array([s.high if s.count else None for s in stats], pa.float64()),
                pa.array([s.total / s.count if s.count else None for s in stats], pa.float64()),
                pa.array(shapely.to_wkb(cell_polygons(names)), pa.binary()),
            ]
            yield pa.RecordBatch.from_arrays(arrays, schema=RASTER_SUMMARY_SPEC.arrow_schema())


@dataclass
class CellMeasure:
    features: int = 0
    area_km2: float = 0.0
    length_km: float = 0.0


# Longitude bands features are cut into before H3 fills them: h3 reads a polygon wider
# than 180° as one crossing the antimeridian.
_LONGITUDE_BANDS = [(-180.0, -90.0), (-90.0, 0.0), (0.0, 90.0), (90.0, 180.0)]


def _candidate_cells(part: shapely.Geometry, resolution: int) -> set[str]:
    """Cells that may meet ``part`` (a piece within one longitude band)."""
    kind = shapely.get_type_id(part)
    if kind in (shapely.GeometryType.POINT, shapely.GeometryType.MULTIPOINT):
        return {h3.latlng_to_cell(p.y, p.x, resolution) for p in getattr(part, "geoms", [part])}
    if kind in (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON):
        shape = h3.geo_to_h3shape(shapely.geometry.mapping(part))
        return set(h3.h3shape_to_cells_experimental(shape, resolution, contain="overlap"))
    # Lines: the cells of points closer together than a cell's edge, and their neighbours.
    edge_degrees = h3.average_hexagon_edge_length(resolution, "km") / 111.0 / 2
    coords = shapely.get_coordinates(shapely.segmentize(part, edge_degrees))
    found = {h3.latlng_to_cell(y, x, resolution) for x, y in coords}
    return {n for cell in found for n in h3.grid_disk(cell, 1)}


def _measure(geometry: shapely.Geometry) -> tuple[float, float]:
    """Geodesic area (km²) of the polygonal parts and length (km) of the linear parts."""
    area = length = 0.0
    for part in getattr(geometry, "geoms", [geometry]):
        kind = shapely.get_type_id(part)
        if kind in (shapely.GeometryType.POLYGON, shapely.GeometryType.MULTIPOLYGON):
            area += abs(WGS84.geometry_area_perimeter(part)[0]) / 1e6
        elif kind in (shapely.GeometryType.LINESTRING, shapely.GeometryType.MULTILINESTRING):
            length += WGS84.geometry_length(part) / 1e3
        elif kind == shapely.GeometryType.GEOMETRYCOLLECTION:
            a, b = _measure(part)
            area, length = area + a, length + b
    return area, length


def vector_cell_measures(
    geometries: Iterable[bytes | None], resolution: int
) -> dict[str, CellMeasure]:
    """cell -> features meeting it, and the area and length of their parts inside it
    (lon/lat features, clipped cell by cell)."""
    check_resolution(resolution)
    measures: dict[str, CellMeasure] = {}
    for wkb in geometries:
        if wkb is None:
            continue
        feature = shapely.from_wkb(wkb)
        if feature.is_empty:
            continue
        if not feature.is_valid:
            feature = shapely.make_valid(feature)
        candidates: set[str] = set()
        for west, east in _LONGITUDE_BANDS:
            part = shapely.clip_by_rect(feature, west, -90, east, 90)
            if not part.is_empty:
                candidates |= _candidate_cells(part, resolution)
        if not candidates:
            continue
        names = sorted(candidates)
        pieces = shapely.intersection(feature, cell_polygons(names))
        for name, piece in zip(names, pieces, strict=True):
            if piece.is_empty:
                continue
            area, length = _measure(piece)
            measure = measures.setdefault(name, CellMeasure())
            measure.features += 1
            measure.area_km2 += area
            measure.length_km += length
    return measures


def vector_summary_batches(
    measures: dict[str, CellMeasure], source_table: str, resolution: int
) -> Iterator[pa.RecordBatch]:
    names = sorted(measures)
    for start in range(0, max(len(names), 1), 50_000):
        part = names[start : start + 50_000]
        values = [measures[n] for n in part]
        yield pa.RecordBatch.from_arrays(
            [
                pa.array([source_table] * len(part), pa.string()),
                pa.array(part, pa.string()),
                pa.array([resolution] * len(part), pa.int32()),
                pa.array([m.features for m in values], pa.int64()),
                pa.array([m.area_km2 for m in values], pa.float64()),
                pa.array([m.length_km for m in values], pa.float64()),
                pa.array(shapely.to_wkb(cell_polygons(part)) if part else [], pa.binary()),
            ],
            schema=VECTOR_SUMMARY_SPEC.arrow_schema(),
        )
