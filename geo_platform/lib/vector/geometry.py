"""Geometry rules for one batch: linearize, Z/M, reproject, repair, promote to multi.

Stored geometries follow one rule whatever the source: polygons are MultiPolygons and
lines MultiLineStrings (so that a layer mixing both kinds, as GeoJSON may, has one kind);
points stay points, except in a layer declared MultiPoint. Invalid geometries are made
valid (GEOS MakeValid) keeping only parts of their own dimension; one that repairs to
nothing is dropped and counted. Null geometries are kept as nulls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyproj
import shapely
from shapely.errors import GEOSException

from geo_platform.errors import ConfigurationError

# GEOS type ids (shapely.get_type_id).
_POINT, _LINESTRING, _LINEARRING, _POLYGON = 0, 1, 2, 3
_MULTIPOINT, _MULTILINESTRING, _MULTIPOLYGON, _COLLECTION = 4, 5, 6, 7
_ANGLES = np.linspace(0, 2 * np.pi, 32, endpoint=False)
_DIRECTIONS = list(zip(np.cos(_ANGLES).tolist(), np.sin(_ANGLES).tolist(), strict=True))
_DIMENSION_OF_TYPE = {0: 0, 4: 0, 1: 1, 2: 1, 5: 1, 3: 2, 6: 2}


@dataclass(frozen=True)
class GeometryPolicy:
    """What a collection asks of its geometries."""

    target_crs: str = "EPSG:4326"
    keep_z: bool = True
    keep_m: bool = True

    def __post_init__(self) -> None:
        if self.keep_m and not self.keep_z:
            # GEOS cannot drop Z while keeping M; say so rather than store something else.
            raise ConfigurationError("keep_m needs keep_z: measured geometries keep Z too")

    def target(self) -> pyproj.CRS:
        return pyproj.CRS.from_user_input(self.target_crs)

    def srid(self) -> int:
        epsg = self.target().to_epsg()
        if epsg is None:
            raise ConfigurationError(f"target CRS {self.target_crs!r} has no EPSG code")
        return epsg


def layer_family(declared_type: str) -> str:
    """``polygon``, ``line``, ``multipoint``, ``point`` or ``mixed`` from GDAL's type name."""
    kind = declared_type.lower()
    if "polygon" in kind or "surface" in kind:
        return "polygon"
    if "line" in kind or "curve" in kind:
        return "line"
    if "multipoint" in kind:
        return "multipoint"
    if "point" in kind:
        return "point"
    return "mixed"


@dataclass
class GeometryStats:
    """Counts a user sees in the materialization, and the extent of what was kept."""

    features: int = 0
    nulls: int = 0
    empty: int = 0
    repaired: int = 0
    dropped: int = 0
    linearized: int = 0
    promoted: int = 0
    m_dropped: int = 0
    types: Counter[str] = field(default_factory=Counter)
    drop_reasons: Counter[str] = field(default_factory=Counter)
    bounds: tuple[float, float, float, float] | None = None
    hull: shapely.Geometry | None = None

    def add_bounds(self, geoms: np.ndarray) -> None:
        """Grow the bbox and the footprint: the convex hull of the features' bbox corners
        that lie furthest in 32 directions (cheap on a million features; within 0.5% of
        the true hull's extent)."""
        b = shapely.bounds(geoms)
        b = b[~np.isnan(b).any(axis=1)]
        if not len(b):
            return
        box = (
            float(b[:, 0].min()),
            float(b[:, 1].min()),
            float(b[:, 2].max()),
            float(b[:, 3].max()),
        )
        if self.bounds is not None:
            box = (
                min(box[0], self.bounds[0]),
                min(box[1], self.bounds[1]),
                max(box[2], self.bounds[2]),
                max(box[3], self.bounds[3]),
            )
        self.bounds = box
        corners = np.concatenate([b[:, [0, 1]], b[:, [0, 3]], b[:, [2, 1]], b[:, [2, 3]]])
        picks = {int(np.argmax(corners[:, 0] * dx + corners[:, 1] * dy)) for dx, dy in _DIRECTIONS}
        extreme = corners[sorted(picks)]
        if self.hull is not None:
            extreme = np.concatenate([extreme, shapely.get_coordinates(self.hull)])
        self.hull = shapely.convex_hull(shapely.multipoints(extreme))


class GeometryProcessor:
    """Applies a policy to batches of one layer; accumulates its stats."""

    def __init__(
        self,
        *,
        source_crs: pyproj.CRS,
        policy: GeometryPolicy,
        declared_type: str,
        relinearize: Callable[[list[int]], list[bytes | None]] | None = None,
    ) -> None:
        self.policy = policy
        self.family = layer_family(declared_type)
        self.relinearize = relinearize
        target = policy.target()
        self.transformer = (
            None
            if source_crs.equals(target, ignore_axis_order=True)
            else pyproj.Transformer.from_crs(source_crs, target, always_xy=True)
        )
        self.stats = GeometryStats()

    def process(self, wkb: pa.Array, fids: pa.Array) -> tuple[pa.Array, np.ndarray]:
        """ISO WKB of the stored geometries, and which rows are kept (False: dropped)."""
        n = len(wkb)
        self.stats.features += n
        linearized = self.stats.linearized
        geoms, unreadable = self._parse(wkb, fids)
        rewritten = unreadable.any() or self.stats.linearized > linearized
        keep = ~unreadable
        if unreadable.any():
            self.stats.dropped += int(unreadable.sum())
            self.stats.drop_reasons["unreadable geometry"] += int(unreadable.sum())
        null = shapely.is_missing(geoms)
        self.stats.nulls += int((null & keep).sum())
        present = ~null
        fast = None if rewritten else self._as_is(wkb, geoms, present)
        if fast is not None:
            out, kinds = fast
            self._count(geoms[present], kinds[present])
            return out, keep
        if present.any():
            geoms[present] = self._dimensions(geoms[present])
            if self.transformer is not None:
                geoms[present] = self._reproject(geoms[present])
                # Points the target CRS cannot hold come back infinite: drop, and say so.
                bounds = shapely.bounds(geoms[present])
                lost = np.zeros(n, dtype=bool)
                lost[present] = np.isinf(bounds).any(axis=1)
                if lost.any():
                    keep[lost] = False
                    present &= ~lost
                    self.stats.dropped += int(lost.sum())
                    self.stats.drop_reasons["outside the target CRS"] += int(lost.sum())
            repaired, failed = self._repair(geoms, present)
            self.stats.repaired += repaired
            if failed.any():
                keep[failed] = False
                self.stats.dropped += int(failed.sum())
                self.stats.drop_reasons["repaired to nothing"] += int(failed.sum())
            geoms[present & keep] = self._promote(geoms[present & keep])
            kept = geoms[present & keep]
            self._count(kept, shapely.get_type_id(kept))
        dimension = 4 if self.policy.keep_m else 3 if self.policy.keep_z else 2
        out = shapely.to_wkb(geoms, flavor="iso", output_dimension=dimension)
        return pa.array(out, type=pa.binary()), keep

    def _count(self, kept: np.ndarray, kinds: np.ndarray) -> None:
        self.stats.empty += int(shapely.is_empty(kept).sum())
        values, counts = np.unique(kinds, return_counts=True)
        self.stats.types.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))
        self.stats.add_bounds(kept)

    def _as_is(
        self, wkb: pa.Array, geoms: np.ndarray, present: np.ndarray
    ) -> tuple[pa.Array, np.ndarray] | None:
        """The source's own WKB, promoted to multi byte by byte, and the stored type ids,
        when nothing else would change (no reprojection, Z/M kept, every geometry valid,
        little-endian ISO WKB); None when the batch needs the full path. Writing WKB
        anew costs more than everything else done to a batch of valid polygons."""
        if self.transformer is not None or not self.policy.keep_m:
            return None
        wkb = wkb.cast(pa.binary())
        types = _iso_types(wkb, present)
        if types is None or not shapely.is_valid(geoms[present]).all():
            return None
        n = len(wkb)
        kinds = np.full(n, -1, dtype=np.int64)
        kinds[present] = shapely.get_type_id(geoms[present])
        promote = (kinds == _POLYGON) | (kinds == _LINESTRING)
        if self.family == "multipoint":
            promote |= kinds == _POINT
        if shapely.is_empty(geoms[promote]).any():
            return None
        count = int(promote.sum())
        if not count:
            return wkb, kinds
        # A multi geometry of one part: byte order, the multi type (single + 3 in every
        # ISO Z/M variant), one part, then the part itself.
        prefix = np.zeros((count, 9), dtype=np.uint8)
        prefix[:, 0] = 1
        multi_types = types[promote[present]] + 3
        prefix[:, 1:5] = multi_types.astype("<u4").view(np.uint8).reshape(-1, 4)
        prefix[:, 5] = 1
        prefix_offsets = np.zeros(n + 1, dtype=np.int32)
        np.cumsum(np.where(promote, 9, 0), out=prefix_offsets[1:])
        prefixes = pa.Array.from_buffers(
            pa.binary(), n, [None, pa.py_buffer(prefix_offsets), pa.py_buffer(prefix.tobytes())]
        )
        out = pc.binary_join_element_wise(prefixes, wkb, pa.scalar(b"", pa.binary()))
        # GEOS type ids (not WKB codes): Point 0 -> 4, LineString 1 -> 5, Polygon 3 -> 6.
        kinds[promote] = np.where(kinds[promote] == _POLYGON, _MULTIPOLYGON, kinds[promote] + 4)
        self.stats.promoted += count
        return out, kinds

    def _parse(self, wkb: pa.Array, fids: pa.Array) -> tuple[np.ndarray, np.ndarray]:
        """Geometries (None for null or unreadable ones) and which were unreadable."""
        values = wkb.to_numpy(zero_copy_only=False)
        unreadable = np.zeros(len(values), dtype=bool)
        try:
            return shapely.from_wkb(values), unreadable
        except (GEOSException, NotImplementedError):
            pass
        # Curves (or a damaged geometry) somewhere in the batch: one at a time.
        out = np.empty(len(values), dtype=object)
        curved: list[int] = []
        for i, value in enumerate(values):
            try:
                out[i] = shapely.from_wkb(value) if value is not None else None
            except (GEOSException, NotImplementedError):
                curved.append(i)
        if curved:
            linear = self._linearized([int(fids[i].as_py()) for i in curved])
            for i, value in zip(curved, linear, strict=True):
                try:
                    out[i] = shapely.from_wkb(value) if value is not None else None
                except (GEOSException, NotImplementedError):
                    out[i] = None
                unreadable[i] = out[i] is None
                self.stats.linearized += int(out[i] is not None)
        return out, unreadable

    def _linearized(self, fids: list[int]) -> list[bytes | None]:
        if self.relinearize is None:
            return [None] * len(fids)
        return self.relinearize(fids)

    def _dimensions(self, geoms: np.ndarray) -> np.ndarray:
        if not self.policy.keep_z:
            return shapely.force_2d(geoms)
        if not self.policy.keep_m:
            # XYM keeps nothing of M in a 3D WKB: make it 2D first.
            only_m = shapely.has_m(geoms) & ~shapely.has_z(geoms)
            if only_m.any():
                geoms = geoms.copy()
                geoms[only_m] = shapely.force_2d(geoms[only_m])
        return geoms

    def _reproject(self, geoms: np.ndarray) -> np.ndarray:
        transformer = self.transformer
        assert transformer is not None
        has_m = shapely.has_m(geoms)
        if has_m.any():
            # shapely's transform loses M (it returns NaN): keep Z, drop M, and say so.
            self.stats.m_dropped += int(has_m.sum())
            geoms = geoms.copy()
            geoms[has_m] = shapely.from_wkb(shapely.to_wkb(geoms[has_m], output_dimension=3))
        has_z = shapely.has_z(geoms)
        out = geoms.copy()

        def xy(coords: np.ndarray) -> np.ndarray:
            return np.column_stack(transformer.transform(coords[:, 0], coords[:, 1]))

        def xyz(coords: np.ndarray) -> np.ndarray:
            return np.column_stack(transformer.transform(coords[:, 0], coords[:, 1], coords[:, 2]))

        if (~has_z).any():
            out[~has_z] = shapely.transform(geoms[~has_z], xy)
        if has_z.any():
            out[has_z] = shapely.transform(geoms[has_z], xyz, include_z=True)
        return out

    def _repair(self, geoms: np.ndarray, present: np.ndarray) -> tuple[int, np.ndarray]:
        """Make invalid geometries valid in place; (how many, which repaired to nothing)."""
        failed = np.zeros(len(geoms), dtype=bool)
        idx = np.flatnonzero(present)
        invalid = idx[~shapely.is_valid(geoms[idx])]
        for i in invalid:
            fixed = _keep_dimension(shapely.make_valid(geoms[i]), _dimension(geoms[i]))
            if fixed is None:
                failed[i] = True
            else:
                geoms[i] = fixed
        return len(invalid) - int(failed.sum()), failed

    def _promote(self, geoms: np.ndarray) -> np.ndarray:
        kinds = shapely.get_type_id(geoms)
        targets = [(_POLYGON, shapely.multipolygons), (_LINESTRING, shapely.multilinestrings)]
        if self.family == "multipoint":
            targets.append((_POINT, shapely.multipoints))
        out = geoms
        for kind, make in targets:
            single = kinds == kind
            count = int(single.sum())
            if count:
                out = out.copy() if out is geoms else out
                # One multi geometry per single one, made in one vectorized call.
                out[single] = make(geoms[single], indices=np.arange(count))
                self.stats.promoted += count
        return out


_TYPE_NAMES = {
    0: "Point",
    1: "LineString",
    2: "LinearRing",
    3: "Polygon",
    4: "MultiPoint",
    5: "MultiLineString",
    6: "MultiPolygon",
    7: "GeometryCollection",
}


def _iso_types(wkb: pa.Array, present: np.ndarray) -> np.ndarray | None:
    """The ISO WKB type codes of the present values, or None unless every one of them
    is little-endian ISO WKB (not EWKB, whose flags GEOS would have to rewrite)."""
    n = len(wkb)
    offsets = np.frombuffer(wkb.buffers()[1], dtype=np.int32)[wkb.offset : wkb.offset + n + 1]
    starts = offsets[:-1][present]
    data = wkb.buffers()[2]
    if data is None or not len(starts):
        return None
    header = np.frombuffer(data, dtype=np.uint8)[starts[:, None] + np.arange(5)]
    types = np.ascontiguousarray(header[:, 1:]).view("<u4").ravel()
    if (header[:, 0] != 1).any() or (types >= 4000).any():
        return None
    return types


def type_names(counter: Counter) -> list[str]:
    return sorted(_TYPE_NAMES.get(int(k), str(k)) for k in counter)


def _dimension(geom: shapely.Geometry) -> int:
    return int(shapely.get_dimensions(geom))


def _flat_parts(geom: shapely.Geometry) -> list[shapely.Geometry]:
    kind = int(shapely.get_type_id(geom))
    if kind in (_MULTIPOINT, _MULTILINESTRING, _MULTIPOLYGON, _COLLECTION):
        return [p for part in shapely.get_parts(geom) for p in _flat_parts(part)]
    return [geom]


def _keep_dimension(geom: shapely.Geometry, dimension: int) -> shapely.Geometry | None:
    """The parts of ``geom`` of the given dimension (MakeValid can add lower ones)."""
    parts = [
        p
        for p in _flat_parts(geom)
        if _DIMENSION_OF_TYPE.get(int(shapely.get_type_id(p)), -1) == dimension and not p.is_empty
    ]
    if not parts:
        return None
    if len(parts) == 1:
        return parts[0]
    if dimension == 2:
        multi = shapely.multipolygons(parts)
        return multi if multi.is_valid else shapely.union_all(parts)
    return shapely.multilinestrings(parts) if dimension == 1 else shapely.multipoints(parts)
