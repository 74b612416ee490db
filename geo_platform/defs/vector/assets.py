"""Vector assets: a bronze vector file becomes warehouse tables (one per layer), their
STAC items, and a PMTiles archive of vector tiles per table."""

import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pyarrow as pa

from geo_platform.defs.bronze import SOURCE_ETAG, bronze_source
from geo_platform.defs.run_worker import run_scratch_folder
from geo_platform.defs.vector.partitions import vector_partitions
from geo_platform.errors import ConfigurationError, InvalidInputError
from geo_platform.lib.collections_config import load_collections_config
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.stac.ids import collection_id
from geo_platform.lib.stac.validation import validate_item
from geo_platform.lib.tables import TableSpec
from geo_platform.lib.vector.config import vector_options
from geo_platform.lib.vector.item import VECTOR_COLLECTION, build_vector_item, vector_collection
from geo_platform.lib.vector.load import (
    VECTOR_SCHEMA,
    LayerResult,
    aspatial_layers,
    load_layer,
    source_layers,
)
from geo_platform.lib.vector.names import GEOMETRY_COLUMN
from geo_platform.lib.vector.tiles import write_pmtiles
from geo_platform.resources.blob_store import BRONZE, SHA256_METADATA, BlobInfo, BlobStore
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.resources.warehouse import GeometryCheck, Warehouse
from geo_platform.settings import get_platform_settings, get_vector_settings

SILVER = "silver"
BRONZE_VECTOR = dg.AssetKey("bronze_vector")
# Set by `geo-platform ingest`: the local file being uploaded into bronze, as
# "<sha256>:<size>:<mtime_ns>:<path>". The load reads it there if it is unchanged.
LOCAL_COPY_TAG = "geo_platform/local_copy"
# Uploads into bronze that `geo-platform ingest` runs beside the load, in this process.
PENDING_UPLOADS: dict[str, Future[Any]] = {}
# How long a load that read a local copy waits for bronze to hold the same content when
# the upload runs in another process.
_BRONZE_WAIT_SECONDS = 900
_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)
_CHECKS = {
    "row_count": "stored rows = source features minus the reported drops, for every table",
    "geometries_valid": "every stored geometry is valid (ST_IsValid)",
    "srid": "every table's geometries are in the configured CRS",
}


def export_key(blob_key: str, table: str, suffix: str) -> str:
    """Where a table's GeoParquet (or PMTiles) goes in silver: a pure function of the key."""
    return f"{blob_key}/{table}{suffix}"


def local_copy_tag(path: Path, sha256: str) -> str:
    stat = path.stat()
    return f"{sha256}:{stat.st_size}:{stat.st_mtime_ns}:{path.resolve()}"


def _local_copy(context: dg.AssetExecutionContext) -> tuple[Path, str] | None:
    """The ingest's local file and its SHA-256, if the tag names one that is unchanged."""
    tag = context.run.tags.get(LOCAL_COPY_TAG)
    if not tag:
        return None
    sha256, size, mtime_ns, path = tag.split(":", 3)
    try:
        stat = Path(path).stat()
    except OSError:
        return None
    if (stat.st_size, stat.st_mtime_ns) != (int(size), int(mtime_ns)):
        return None
    return Path(path), sha256


@contextmanager
def _source(
    context: dg.AssetExecutionContext, blob_store: BlobStore, key: str, scratch: Path
) -> Iterator[tuple[Path, str | None]]:
    """The file to read: the ingest's local copy, else the bronze blob (downloaded if
    the store is remote); and its SHA-256 when known without reading it."""
    local = _local_copy(context)
    if local is not None:
        context.log.info(f"{BRONZE}/{key}: reading the ingest's local copy {local[0]}")
        yield local
        return
    blob = blob_store.info(BRONZE, key)
    with blob_store.local_file(BRONZE, key, scratch=scratch) as path:
        yield path, blob.metadata.get(SHA256_METADATA)


def _bronze_blob(blob_store: BlobStore, key: str, sha256: str) -> BlobInfo:
    """The bronze blob, once it holds the content that was loaded (its upload may still
    be running beside a load that read the local copy)."""
    pending = PENDING_UPLOADS.get(key)
    if pending is not None:
        try:
            pending.result()
        except OSError as e:
            # The same failed upload would answer a retry of this run.
            raise dg.Failure(
                f"{BRONZE}/{key}: cannot copy the file into bronze: {e}", allow_retries=False
            ) from None
    deadline = time.monotonic() + _BRONZE_WAIT_SECONDS
    while True:
        try:
            blob = blob_store.info(BRONZE, key)
        except FileNotFoundError:
            blob = None
        if blob is not None and blob.metadata.get(SHA256_METADATA, sha256) == sha256:
            return blob
        if time.monotonic() > deadline:
            raise dg.Failure(f"{BRONZE}/{key} does not hold the file that was loaded")
        time.sleep(0.2)


bronze_vector = bronze_source(BRONZE_VECTOR, vector_partitions, "vector")


def invalid_input_failure(error: InvalidInputError) -> dg.Failure:
    """Bad input fails its partition with a clear message and is never retried."""
    return dg.Failure(
        description=str(error),
        metadata={"source": error.source, "problem": error.problem},
        allow_retries=False,
    )


def _options(key: str):
    config = load_collections_config(get_platform_settings().collections_path)
    return vector_options(collection_id(key), get_vector_settings(), config)


@dg.asset(
    partitions_def=vector_partitions,
    deps=[BRONZE_VECTOR],
    group_name="vector",
    kinds={"postgis", "duckdb", "geoparquet"},
    check_specs=[
        dg.AssetCheckSpec(name, asset="vector_table", description=d) for name, d in _CHECKS.items()
    ],
    retry_policy=_RETRY,
)
def vector_table(
    context: dg.AssetExecutionContext,
    blob_store: BlobStore,
    warehouse: dg.ResourceParam[Warehouse],
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Loads every layer of a bronze vector file (GeoJSON, zipped Shapefile, GeoPackage,
    GeoParquet, FlatGeobuf) into its own table in schema ``vector``: streamed in Arrow
    batches, reprojected, repaired, staged and swapped in, with a GeoParquet copy in silver."""
    key = context.partition_key
    try:
        options, _ = _options(key)
        with (
            run_scratch_folder(context) as workdir,
            _source(context, blob_store, key, workdir) as (path, known_sha256),
        ):
            sha256 = known_sha256 or sha256_file(path)
            layers = source_layers(path, key, workdir / "layers", options.zip_limits)
            if not layers:
                raise InvalidInputError(key, "no layer with geometry in this file")
            skipped = aspatial_layers(path, key)
            results: list[LayerResult] = []
            found: dict[str, GeometryCheck] = {}
            # Each GeoParquet export is complete once its rows are in: its bytes go to
            # silver while the warehouse indexes and checks them, and become the blob
            # only once the table is swapped in (a failed swap commits nothing).
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="export") as uploads:
                staged: list[Future[StagedExport]] = []

                def write(spec: TableSpec, batches: Iterator[pa.RecordBatch]) -> int:
                    # ``export_path``: the layer's, which load_layer writes beside the load.
                    def then_stage() -> Iterator[pa.RecordBatch]:
                        yield from batches
                        staged.append(
                            uploads.submit(_stage_export, blob_store, key, spec.name, export_path)
                        )

                    # Swapped in only once bronze holds the file that was loaded: a failed
                    # copy into bronze fails the load and leaves the old table.
                    rows, found[spec.name] = warehouse.replace_table_checked(
                        spec,
                        then_stage(),
                        before_swap=lambda: _bronze_blob(blob_store, key, sha256),
                    )
                    return rows

                for layer in layers:
                    export_path = workdir / f"{len(results)}.parquet"
                    result = load_layer(layer, key, options, export_path, write)
                    context.log.info(
                        f"{BRONZE}/{key}: {result.rows:,} rows into {VECTOR_SCHEMA}.{result.table}"
                        f" in {result.seconds:.1f} s"
                    )
                    results.append(result)
                records = [
                    {**r.record(), "export": e.result().commit()}
                    for r, e in zip(results, staged, strict=True)
                ]
        blob = _bronze_blob(blob_store, key, sha256)
    except InvalidInputError as e:
        raise invalid_input_failure(e) from None
    except ConfigurationError as e:
        raise dg.Failure(f"{BRONZE}/{key}: {e}", allow_retries=False) from None
    except FileNotFoundError:
        raise dg.Failure(f"{BRONZE}/{key}: blob not found", allow_retries=False) from None
    stale = warehouse.record_layers(key, sha256, records)
    yield dg.MaterializeResult(
        metadata=_metadata(records, stale, skipped, warehouse, sha256, blob.etag)
    )
    yield from _checks(found, records, options.policy.srid())


@dataclass
class StagedExport:
    """A table's GeoParquet copy sent to silver, not yet the blob there."""

    href: str
    sha256: str
    commit_upload: Callable[[], BlobInfo]

    def commit(self) -> dict:
        """Make it the blob; what the table's record says of it."""
        info = self.commit_upload()
        return {"href": self.href, "size": info.size, "sha256": self.sha256}


def _stage_export(blob_store: BlobStore, key: str, table: str, path: Path) -> StagedExport:
    target = export_key(key, table, ".parquet")
    digest = sha256_file(path)
    commit = blob_store.stage_file(path, SILVER, target)
    return StagedExport(blob_store.href(SILVER, target), digest, commit)


def _metadata(
    records: list[dict],
    stale: list[str],
    skipped: list[str],
    warehouse: Warehouse,
    sha256: str,
    etag: str,
) -> dict:
    rows = [
        "| table | layer | rows | source | repaired | dropped | nulls | types |",
        "|---|---|---|---|---|---|---|---|",
    ]
    renamed = ["| table | source field | column | why |", "|---|---|---|---|"]
    for r in records:
        rows.append(
            f"| {r['table']} | {r['layer'] or ''} | {r['rows']:,} | {r['source_rows']:,} | "
            f"{r['repaired']} | {r['dropped']} | {r['nulls']} | {', '.join(r['geometry_types'])} |"
        )
        renamed += [
            f"| {r['table']} | `{c['source']}` | `{c['name']}` | {c['why']} |"
            for c in r["columns"]
            if c["why"]
        ]
    return {
        "warehouse": warehouse.location,
        "tables": ", ".join(f"{VECTOR_SCHEMA}.{r['table']}" for r in records),
        "rows": dg.MetadataValue.int(sum(r["rows"] for r in records)),
        "source_features": dg.MetadataValue.int(sum(r["source_rows"] for r in records)),
        "repaired": dg.MetadataValue.int(sum(r["repaired"] for r in records)),
        "dropped": dg.MetadataValue.int(sum(r["dropped"] for r in records)),
        "null_geometries": dg.MetadataValue.int(sum(r["nulls"] for r in records)),
        "linearized": dg.MetadataValue.int(sum(r["linearized"] for r in records)),
        "layers": dg.MetadataValue.md("\n".join(rows)),
        "renamed_columns": dg.MetadataValue.md("\n".join(renamed) if len(renamed) > 2 else "none"),
        "dropped_tables": ", ".join(stale) or "none",
        "skipped_layers": ", ".join(f"{s} (no geometry)" for s in skipped) or "none",
        "sha256": sha256,
        SOURCE_ETAG: etag,
        "records": dg.MetadataValue.json(
            [{k: v for k, v in r.items() if k != "footprint"} for r in records]
        ),
    }


def _checks(
    found: dict[str, GeometryCheck], records: list[dict], srid: int
) -> Iterator[dg.AssetCheckResult]:
    counts = {
        r["table"]: (found[r["table"]].rows, r["source_rows"] - r["dropped"]) for r in records
    }
    yield dg.AssetCheckResult(
        check_name="row_count",
        passed=all(stored == expected for stored, expected in counts.values()),
        metadata={
            t: f"{stored:,} stored, {expected:,} expected"
            for t, (stored, expected) in counts.items()
        },
    )
    yield dg.AssetCheckResult(
        check_name="geometries_valid",
        passed=all(c.invalid == 0 for c in found.values()),
        metadata={t: f"{c.invalid} invalid of {c.rows:,}" for t, c in found.items()},
    )
    yield dg.AssetCheckResult(
        check_name="srid",
        passed=all(c.srids in ((srid,), ()) for c in found.values()),
        metadata={"expected": srid, **{t: str(list(c.srids)) for t, c in found.items()}},
    )


@dg.asset(
    partitions_def=vector_partitions,
    deps=[vector_table],
    group_name="vector",
    kinds={"stac"},
    check_specs=[
        dg.AssetCheckSpec(
            "item_valid", asset="vector_item", description="every item validates offline"
        )
    ],
    retry_policy=_RETRY,
)
def vector_item(
    context: dg.AssetExecutionContext,
    blob_store: BlobStore,
    warehouse: dg.ResourceParam[Warehouse],
    stac_catalog: dg.ResourceParam[StacCatalog],
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """One STAC item per table of the file (table extension: columns, row count; footprint;
    the GeoParquet export as its data asset), upserted into the ``vectors`` collection."""
    key = context.partition_key
    layers = warehouse.layers(key)
    if not layers:
        raise dg.Failure(f"{BRONZE}/{key}: no table loaded yet; materialize vector_table first")
    loaded_at = blob_store.info(BRONZE, key).last_modified
    items = [
        build_vector_item(
            key,
            layer["record"],
            source_sha256=layer["source_sha256"],
            loaded_at=loaded_at,
            table_location=f"{warehouse.location}#{VECTOR_SCHEMA}.{layer['table']}",
        )
        for layer in layers
    ]
    if stac_catalog.get_collection(VECTOR_COLLECTION) is None:
        stac_catalog.upsert_collection(vector_collection())
    stac_catalog.upsert_items(items)
    problems = [f"{i['id']}: {p}" for i in items for p in validate_item(i)]
    yield dg.MaterializeResult(
        metadata={"collection": VECTOR_COLLECTION, "items": ", ".join(i["id"] for i in items)}
    )
    yield dg.AssetCheckResult(
        check_name="item_valid",
        passed=not problems,
        metadata={"problems": "; ".join(problems) or "none"},
    )


@dg.asset(
    partitions_def=vector_partitions,
    deps=[vector_table],
    group_name="vector",
    kinds={"pmtiles"},
    retry_policy=_RETRY,
    # Tiles follow each new load when the automation sensor runs (dagster dev).
    automation_condition=dg.AutomationCondition.eager(),
)
def vector_tiles(
    context: dg.AssetExecutionContext,
    blob_store: BlobStore,
    warehouse: dg.ResourceParam[Warehouse],
) -> dg.MaterializeResult:
    """Mapbox Vector Tiles of every table of the file over the collection's zoom range
    (default 0-10), made by the warehouse's ST_AsMVT, in one PMTiles archive per table
    in silver."""
    key = context.partition_key
    try:
        _, tile_options = _options(key)
    except ConfigurationError as e:
        raise dg.Failure(f"{BRONZE}/{key}: {e}", allow_retries=False) from None
    layers = warehouse.layers(key)
    if not layers:
        raise dg.Failure(f"{BRONZE}/{key}: no table loaded yet; materialize vector_table first")
    rows = ["| table | tiles | bytes | per zoom | archive |", "|---|---|---|---|---|"]
    total = 0
    for layer in layers:
        record = layer["record"]
        table = layer["table"]
        if not record.get("bbox"):
            rows.append(f"| {table} | 0 | 0 | no geometry | |")
            continue
        tiles = [
            (z, x, y, data)
            for z in range(tile_options.min_zoom, tile_options.max_zoom + 1)
            for x, y, data in warehouse.mvt_tiles(
                VECTOR_SCHEMA, table, GEOMETRY_COLUMN, record["srid"], z, tile_options
            )
        ]
        if not tiles:
            rows.append(f"| {table} | 0 | 0 | nothing drawable | |")
            continue
        with run_scratch_folder(context) as tmp:
            path = tmp / "tiles.pmtiles"
            summary = write_pmtiles(
                path,
                tiles,
                bounds=tuple(record["bbox"]),
                metadata={
                    "name": table,
                    "vector_layers": [
                        {
                            "id": tile_options.layer,
                            "fields": {c["name"]: c["type"] for c in record["columns"]},
                            "minzoom": tile_options.min_zoom,
                            "maxzoom": tile_options.max_zoom,
                        }
                    ],
                },
            )
            target = export_key(key, table, ".pmtiles")
            blob_store.upload_file(path, SILVER, target, consume=True)
        total += summary.tiles
        per_zoom = ", ".join(f"z{z}: {n}" for z, n in sorted(summary.tiles_per_zoom.items()))
        rows.append(
            f"| {table} | {summary.tiles:,} | {summary.bytes:,} | {per_zoom} | "
            f"{blob_store.href(SILVER, target)} |"
        )
    return dg.MaterializeResult(
        metadata={
            "tiles": dg.MetadataValue.int(total),
            "zooms": f"{tile_options.min_zoom}-{tile_options.max_zoom}",
            "archives": dg.MetadataValue.md("\n".join(rows)),
        }
    )
