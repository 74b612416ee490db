"""Raster assets: validate a bronze blob, then write its COG tiers."""

import tempfile
from collections.abc import Iterator

import dagster as dg
from pydantic import Field
from rio_cogeo.cogeo import cog_validate

from geo_platform.errors import InvalidInputError
from geo_platform.lib.collections_config import load_collections_config, requested_tiers
from geo_platform.lib.raster.cog import LocalCog, write_cog_tiers
from geo_platform.lib.raster.compare import Comparison, compare_copies
from geo_platform.lib.raster.thumbnail import thumbnail_markdown
from geo_platform.lib.raster.tiers import TIER_SPECS, Tier
from geo_platform.lib.raster.validate import RasterInfo, validate_raster
from geo_platform.lib.stac.ids import collection_id
from geo_platform.resources.blob_store import BRONZE, SHA256_METADATA, BlobStore
from geo_platform.resources.cog_tier_io_manager import TierSkipped
from geo_platform.settings import get_limit_settings, get_platform_settings, get_price_settings

from .partitions import raster_partitions

TIER_ASSETS = {tier: dg.AssetKey(f"cog_{tier.value}") for tier in Tier}
_TIER_DESCRIPTIONS = {
    Tier.VISUALIZATION: "JPEG q85 (YCbCr) COG for display; 3-band uint8 RGB only. "
    "Container: silver.",
    Tier.ANALYSIS: "Lossless DEFLATE COG (predictor 2, 3 for floats). Container: silver.",
    Tier.ARCHIVE: "Lossless LZW COG, cheap to write, cool storage. Container: archive.",
}
# The bronze blob's ETag, recorded so that the sensor knows what was already ingested.
SOURCE_ETAG = "source_etag"
_RETRY = dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL)


def invalid_input_failure(error: InvalidInputError) -> dg.Failure:
    """Bad input fails its partition with a clear message and is never retried."""
    return dg.Failure(
        description=str(error),
        metadata={"source": error.source, "problem": error.problem},
        allow_retries=False,
    )


@dg.asset(
    partitions_def=raster_partitions,
    group_name="raster",
    kinds={"gdal", "raster"},
    retry_policy=_RETRY,
)
def raster_validation(context: dg.AssetExecutionContext, blob_store: BlobStore) -> RasterInfo:
    """Checks that a bronze blob is a georeferenced raster within the configured limits
    (CRS, transform, bands, dtype, size) and decides which COG tiers apply to it."""
    key = context.partition_key
    try:
        blob = blob_store.info(BRONZE, key)
        with blob_store.local_file(BRONZE, key) as path:
            info = validate_raster(
                path,
                get_limit_settings(),
                name=f"{BRONZE}/{key}",
                # Recorded by the upload (ingest); blobs landed otherwise are hashed here.
                sha256=blob.metadata.get(SHA256_METADATA),
            )
    except InvalidInputError as e:
        raise invalid_input_failure(e) from None
    except FileNotFoundError:
        raise dg.Failure(f"{BRONZE}/{key}: blob not found", allow_retries=False) from None
    context.add_output_metadata(
        {
            "size": f"{info.width} x {info.height} x {info.count} {info.dtype}",
            "crs": info.crs,
            "nodata": str(info.nodata),
            "mask": info.has_mask or info.has_alpha,
            "source_bytes": info.size_bytes,
            "sha256": info.sha256,
            SOURCE_ETAG: blob.etag,
            "tiers_applicable": ", ".join(t for t, ok in info.applicable.items() if ok),
            **{f"skip_{tier}": reason for tier, reason in info.reasons.items()},
        }
    )
    return info


class CogTierConfig(dg.Config):
    output_tier: str | None = Field(
        default=None,
        description="visualization | analysis | archive | both | all. Overrides the "
        "collection's output_tier (collections file); default all.",
    )


def _check_specs() -> list[dg.AssetCheckSpec]:
    specs = []
    for tier, key in TIER_ASSETS.items():
        specs.append(
            dg.AssetCheckSpec("valid_cog", asset=key, description="rio-cogeo validates the COG")
        )
        if TIER_SPECS[tier].lossless:
            specs.append(
                dg.AssetCheckSpec(
                    "lossless",
                    asset=key,
                    description="pixels, mask, nodata, scale/offset and colormap equal the source",
                )
            )
    return specs


@dg.multi_asset(
    outs={
        key.path[-1]: dg.AssetOut(
            key=key,
            # Every selected tier is always yielded (a COG or a TierSkipped). Optional
            # only because Dagster 1.13 otherwise demands unselected outputs that a
            # downstream asset in the same run reads (dagster-io/dagster#33648).
            is_required=False,
            io_manager_key="cog_tier_io_manager",
            group_name="raster",
            kinds={"cog", "gdal"},
            description=_TIER_DESCRIPTIONS[tier],
        )
        for tier, key in TIER_ASSETS.items()
    },
    partitions_def=raster_partitions,
    can_subset=True,
    check_specs=_check_specs(),
    retry_policy=_RETRY,
)
def cog_tiers(
    context: dg.AssetExecutionContext,
    config: CogTierConfig,
    raster_validation: RasterInfo,
    blob_store: BlobStore,
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Writes the selected COG tiers of one raster. Tiers that don't apply, or that the
    run's or collection's output_tier doesn't ask for, are skipped with the reason."""
    key = context.partition_key
    info = raster_validation
    selected = [t for t, k in TIER_ASSETS.items() if k in context.selected_asset_keys]
    collections = load_collections_config(get_platform_settings().collections_path)
    requested = requested_tiers(collection_id(key), config.output_tier, collections)
    to_write = [t for t in selected if t in requested and info.applicable[t.value]]
    prices = get_price_settings()
    with (
        tempfile.TemporaryDirectory(prefix="cog-") as tmp,
        blob_store.local_file(BRONZE, key) as src,
    ):
        try:
            cogs = write_cog_tiers(src, to_write, tmp, name=f"{BRONZE}/{key}") if to_write else {}
        except InvalidInputError as e:
            raise invalid_input_failure(e) from None
        # Checked and described before the tier IO manager takes the files over.
        comparisons = _lossless_comparisons(context, cogs, src)
        for tier in selected:
            output_name = TIER_ASSETS[tier].path[-1]
            if tier in cogs:
                cog = cogs[tier]
                checks = list(_tier_checks(context, tier, cog, comparisons.get(tier)))
                metadata = _tier_metadata(cog, info, prices)
                yield dg.Output(cog, output_name, metadata=metadata)
                yield from checks
            else:
                skipped = _skip_reason(tier, info, requested)
                context.log.info(f"{BRONZE}/{key}: {tier.value} skipped: {skipped.reason}")
                yield dg.Output(skipped, output_name, metadata={"skipped": skipped.reason})
                yield from _skipped_checks(context, tier, skipped.reason)


def _skip_reason(tier: Tier, info: RasterInfo, requested: tuple[Tier, ...]) -> TierSkipped:
    if not info.applicable[tier.value]:
        return TierSkipped(info.reasons[tier.value], applicable=False)
    wanted = ", ".join(t.value for t in requested)
    return TierSkipped(f"not requested (output_tier gives {wanted})", applicable=True)


def _tier_metadata(cog: LocalCog, info: RasterInfo, prices) -> dict:
    storage_class = TIER_SPECS[cog.tier].storage_class
    return {
        "tier": cog.tier.value,
        "size_bytes": dg.MetadataValue.int(cog.size_bytes),
        "compression_ratio": round(info.size_bytes / cog.size_bytes, 3),
        "storage_class": storage_class,
        f"cost_per_month_{prices.currency.lower()}": dg.MetadataValue.float(
            round(prices.monthly_cost(cog.size_bytes, storage_class), 8)
        ),
        "thumbnail": dg.MetadataValue.md(thumbnail_markdown(cog.path)),
    }


def _selected(context: dg.AssetExecutionContext, asset_key: dg.AssetKey, name: str) -> bool:
    return dg.AssetCheckKey(asset_key, name) in context.selected_asset_check_keys


def _lossless_comparisons(
    context: dg.AssetExecutionContext, cogs: dict[Tier, LocalCog], source
) -> dict[Tier, Comparison]:
    """The lossless tiers whose check is selected, compared with the source in one pass."""
    tiers = [
        tier
        for tier in cogs
        if TIER_SPECS[tier].lossless and _selected(context, TIER_ASSETS[tier], "lossless")
    ]
    comparisons = compare_copies(source, [cogs[tier].path for tier in tiers])
    return dict(zip(tiers, comparisons, strict=True))


def _tier_checks(
    context: dg.AssetExecutionContext, tier: Tier, cog: LocalCog, comparison: Comparison | None
) -> Iterator[dg.AssetCheckResult]:
    asset_key = TIER_ASSETS[tier]
    if _selected(context, asset_key, "valid_cog"):
        is_valid, errors, warnings = cog_validate(str(cog.path), quiet=True)
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name="valid_cog",
            passed=bool(is_valid),
            metadata={
                "errors": "; ".join(errors) or "none",
                "warnings": "; ".join(warnings) or "none",
            },
        )
    if comparison is not None:
        yield dg.AssetCheckResult(
            asset_key=asset_key,
            check_name="lossless",
            passed=comparison.identical,
            metadata={"problems": "; ".join(comparison.problems) or "none"},
        )


def _skipped_checks(
    context: dg.AssetExecutionContext, tier: Tier, reason: str
) -> Iterator[dg.AssetCheckResult]:
    asset_key = TIER_ASSETS[tier]
    names = ["valid_cog", "lossless"] if TIER_SPECS[tier].lossless else ["valid_cog"]
    for name in names:
        if _selected(context, asset_key, name):
            yield dg.AssetCheckResult(
                asset_key=asset_key,
                check_name=name,
                passed=True,
                description=f"nothing to check: tier skipped ({reason})",
            )
