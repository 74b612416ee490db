"""Raster assets: validation, the three COG tiers and the STAC item of each bronze raster.

One subsettable multi-asset runs them over every partition of its run (a range of
keys: runs cover many rasters), with each raster isolated from the others: a bad file
fails its own partition, with its reason, while the rest of the batch materializes.
What happens to a raster is ``geo_platform.processing.raster``; this module reports it.
"""

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg
from pydantic import Field

from geo_platform.defs.bronze import DATA_VERSION_TAG, SOURCE_ETAG, bronze_source
from geo_platform.defs.run_worker import run_scratch_folder
from geo_platform.lib.collections_config import load_collections_config
from geo_platform.lib.raster.tiers import TIER_SPECS, Tier
from geo_platform.processing.raster import (
    ITEM_VALID,
    LOSSLESS,
    VALID_COG,
    RasterContext,
    RasterOutcome,
    RasterPlan,
    process_rasters,
)
from geo_platform.resources.blob_store import BRONZE, BlobStore
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.settings import (
    get_limit_settings,
    get_platform_settings,
    get_price_settings,
    get_run_settings,
    get_tiling_settings,
)

from .partitions import raster_partitions

BRONZE_RASTER = dg.AssetKey("bronze_raster")
VALIDATION = dg.AssetKey("raster_validation")
TIER_ASSETS = {tier: dg.AssetKey(f"cog_{tier.value}") for tier in Tier}
STAC_ITEM = dg.AssetKey("stac_item")
RASTER_ASSETS = [VALIDATION, *TIER_ASSETS.values(), STAC_ITEM]
# A validation's data version is the blob version (ETag) it was made from; a blob version
# that failed as invalid input is recorded as an observation of the validation whose data
# version has this prefix.
INVALID_VERSION_PREFIX = "invalid:"
# Partition keys of the failed rasters and their reasons, on the step's Failure.
FAILED_RASTERS = "failed_rasters"
# What the raster assets are made with: change it when a change of code or settings
# changes their outputs, and Dagster shows every raster made before as stale.
RASTER_CODE_VERSION = "2026.12.3"
# A validation's data version is ``<etag>+<made_with>`` when the raster's outputs depend on
# more than the blob (its collection's reprojection, ``RasterOptions.made_with``):
# reconcile reruns a raster whose collection settings changed, and Dagster shows what
# depends on it as stale. (Dagster indexes only the data version among such tags.)
MADE_WITH_SEPARATOR = "+"

_TIER_DESCRIPTIONS = {
    Tier.VISUALIZATION: "JPEG q85 (YCbCr) COG for display; 3-band uint8 RGB only. "
    "Container: silver.",
    Tier.ANALYSIS: "Lossless DEFLATE COG (predictor 2, 3 for floats). Container: silver.",
    Tier.ARCHIVE: "Lossless LZW COG, cheap to write, cool storage. Container: archive.",
}


bronze_raster = bronze_source(BRONZE_RASTER, raster_partitions, "raster")


def _specs() -> list[dg.AssetSpec]:
    common: dict[str, Any] = {
        "partitions_def": raster_partitions,
        "skippable": True,
        "code_version": RASTER_CODE_VERSION,
    }
    return [
        dg.AssetSpec(
            VALIDATION,
            description="Checks that a bronze blob is a georeferenced raster within the "
            "configured limits (CRS, transform, bands, dtype, size) and decides which COG "
            "tiers apply to it.",
            deps=[BRONZE_RASTER],
            group_name="raster",
            kinds={"gdal", "raster"},
            **common,
        ),
        *(
            dg.AssetSpec(
                key,
                description=_TIER_DESCRIPTIONS[tier],
                deps=[VALIDATION],
                group_name="raster",
                kinds={"cog", "gdal"},
                **common,
            )
            for tier, key in TIER_ASSETS.items()
        ),
        dg.AssetSpec(
            STAC_ITEM,
            description="The raster's STAC item (rio-stac), one asset per stored tier of "
            "the current source, upserted into the catalog.",
            deps=list(TIER_ASSETS.values()),
            group_name="stac",
            kinds={"stac"},
            **common,
        ),
    ]


def _check_specs() -> list[dg.AssetCheckSpec]:
    specs = []
    for tier, key in TIER_ASSETS.items():
        specs.append(
            dg.AssetCheckSpec(
                VALID_COG,
                asset=key,
                description="rio-cogeo validates the COG; a tier that fails is not stored "
                "and the raster gets no new item.",
                blocking=True,
            )
        )
        if TIER_SPECS[tier].lossless:
            specs.append(
                dg.AssetCheckSpec(
                    LOSSLESS,
                    asset=key,
                    description="pixels, mask, nodata, scale/offset and colormap equal the "
                    "source; a tier that fails is not stored and the raster gets no new item.",
                    blocking=True,
                )
            )
    specs.append(
        dg.AssetCheckSpec(
            ITEM_VALID,
            asset=STAC_ITEM,
            description="validates offline against STAC and the schema of each extension "
            "it declares; an item that fails is not written (the previous one stays).",
            blocking=True,
        )
    )
    return specs


class RasterRunConfig(dg.Config):
    output_tier: str | None = Field(
        default=None,
        description="visualization | analysis | archive | both | all. Overrides the "
        "collection's output_tier (collections file); default all.",
    )


# Read when the definitions load: a backfill policy is fixed with them.
RUN_BATCH_SIZE = get_run_settings().batch_size


@dg.multi_asset(
    specs=_specs(),
    check_specs=_check_specs(),
    can_subset=True,
    # Backfills from the UI: as many rasters a run as the sensor's and ingest's runs.
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=RUN_BATCH_SIZE),
    name="raster_pipeline",
)
def raster_pipeline(
    context: dg.AssetExecutionContext,
    config: RasterRunConfig,
    blob_store: BlobStore,
    stac_catalog: dg.ResourceParam[StacCatalog],
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.AssetObservation]:
    """Validates each raster of the run, writes its selected COG tiers, checks them and
    upserts its STAC item; reports each raster as it finishes."""
    keys = context.partition_keys
    platform, runs = get_platform_settings(), get_run_settings()
    plan = _plan(context, config, load_collections_config(platform.collections_path))
    workers = min(runs.workers, len(keys))
    cpus = os.cpu_count() or 1
    failed: dict[str, str] = {}
    transient = False
    with run_scratch_folder(context) as scratch:
        ctx = RasterContext(
            blob_store=blob_store,
            limits=get_limit_settings(),
            prices=get_price_settings(),
            scratch=scratch,
            tiling=get_tiling_settings(),
            # One raster: GDAL's threads on every core; several: the cores shared out.
            threads="ALL_CPUS" if workers == 1 else max(1, cpus // workers),
        )
        for outcome in process_rasters(
            keys,
            plan,
            ctx,
            stac_catalog,
            workers=workers,
            item_batch_size=runs.item_batch_size,
        ):
            if outcome.cataloged is None:
                yield from _events(outcome, context, plan)
            else:
                yield from _item_events(outcome, plan)
            if outcome.error:
                failed[outcome.key] = outcome.error
                transient = transient or outcome.transient
                context.log.error(outcome.error)
    if failed:
        raise dg.Failure(
            description=_failure_summary(failed, len(keys)),
            metadata={FAILED_RASTERS: dg.MetadataValue.json(failed)},
            # Bad input gives the same answer every time; only a lost service is retried.
            allow_retries=transient,
        )


def _plan(
    context: dg.AssetExecutionContext, config: RasterRunConfig, collections: dict[str, dict]
) -> RasterPlan:
    selected = context.selected_asset_keys
    return RasterPlan(
        tiers=tuple(tier for tier, key in TIER_ASSETS.items() if key in selected),
        item=STAC_ITEM in selected,
        checks=frozenset(
            (key.asset_key.to_user_string(), key.name) for key in context.selected_asset_check_keys
        ),
        output_tier=config.output_tier,
        collections=collections,
    )


def _events(
    outcome: RasterOutcome, context: dg.AssetExecutionContext, plan: RasterPlan
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.AssetObservation]:
    """A processed raster: its validation, tiers and checks (its item comes later)."""
    key = outcome.key
    info = outcome.info
    yield from _failure_events(outcome)
    if info is not None and VALIDATION in context.selected_asset_keys:
        yield dg.AssetMaterialization(
            VALIDATION,
            partition=key,
            tags={DATA_VERSION_TAG: validation_version(outcome.source_etag, outcome.made_with)},
            metadata={
                "size": f"{info.width} x {info.height} x {info.count} {info.dtype}",
                "crs": info.crs,
                "nodata": str(info.nodata),
                "mask": info.has_mask or info.has_alpha,
                "source_bytes": info.size_bytes,
                "sha256": info.sha256,
                SOURCE_ETAG: outcome.source_etag or "",
                "tiers_applicable": ", ".join(t for t, ok in info.applicable.items() if ok),
                **{f"skip_{tier}": reason for tier, reason in info.reasons.items()},
            },
        )
    for tier, tier_outcome in outcome.tiers.items():
        if tier_outcome.ref is not None:
            metadata = dict(tier_outcome.metadata)
            metadata["href"] = dg.MetadataValue.path(metadata["href"])
            metadata["thumbnail"] = dg.MetadataValue.md(metadata["thumbnail"])
            yield dg.AssetMaterialization(TIER_ASSETS[tier], partition=key, metadata=metadata)
        elif tier_outcome.skipped:
            context.log.info(f"{BRONZE}/{key}: {tier.value} skipped: {tier_outcome.skipped}")
    # An item still to be written has its checks reported after it (_item_events).
    yield from _check_events(outcome, lambda asset: outcome.item is None or asset != STAC_ITEM)


def _check_events(
    outcome: RasterOutcome, of: Callable[[dg.AssetKey], bool]
) -> Iterator[dg.AssetCheckEvaluation]:
    for check in outcome.checks:
        asset = dg.AssetKey(check.asset)
        if not of(asset):
            continue
        yield dg.AssetCheckEvaluation(
            asset_key=asset,
            check_name=check.name,
            passed=check.passed,
            metadata=dict(check.metadata),
            partition=outcome.key,
        )


def _item_events(
    outcome: RasterOutcome, plan: RasterPlan
) -> Iterator[dg.AssetMaterialization | dg.AssetCheckEvaluation | dg.AssetObservation]:
    """A raster whose item's write is done: the item, or why it is not in the catalog."""
    key = outcome.key
    yield from _failure_events(outcome)
    item = outcome.item
    if item is not None and plan.item:
        yield dg.AssetMaterialization(
            STAC_ITEM,
            partition=key,
            metadata={
                "item_id": item["id"],
                "collection": item["collection"],
                "tiers": ", ".join(item["properties"]["geo_platform:tiers"]),
                "datetime": str(item["properties"].get("datetime")),
                "datetime_source": str(item["properties"].get("geo_platform:datetime_source")),
                "gsd": str(item["properties"].get("gsd", "none (geographic CRS)")),
                "bbox": json.dumps([round(v, 6) for v in item["bbox"]]),
                # A tiled raster: its item is the mosaic's; each tile has an item of its own.
                **({"tile_items": len(outcome.tile_items)} if outcome.tile_items else {}),
            },
        )
    yield from _check_events(outcome, lambda asset: asset == STAC_ITEM)


def _failure_events(outcome: RasterOutcome) -> Iterator[dg.AssetObservation]:
    if outcome.error and not outcome.transient and outcome.source_etag:
        # The version stays failed until the blob changes: reconcile leaves it alone,
        # and the UI shows why on the validation's partition.
        yield dg.AssetObservation(
            VALIDATION,
            partition=outcome.key,
            tags={DATA_VERSION_TAG: INVALID_VERSION_PREFIX + outcome.source_etag},
            metadata={"error": outcome.error},
        )


def validation_version(etag: str | None, made_with: str) -> str:
    if not made_with:
        return etag or ""
    return f"{etag or ''}{MADE_WITH_SEPARATOR}{made_with}"


def _failure_summary(failed: dict[str, str], total: int) -> str:
    shown = list(failed.values())[:10]
    more = f"\n... and {len(failed) - len(shown)} more" if len(failed) > len(shown) else ""
    return f"{len(failed)} of {total} rasters failed:\n" + "\n".join(shown) + more
