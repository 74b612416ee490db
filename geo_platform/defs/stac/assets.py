"""STAC assets: one item per raster, and the collections kept current."""

import dagster as dg
import rasterio

from geo_platform.defs.raster.assets import TIER_ASSETS
from geo_platform.defs.raster.partitions import raster_partitions
from geo_platform.lib.raster.tiers import Tier, TierRef
from geo_platform.lib.raster.validate import RasterInfo
from geo_platform.lib.stac.collection import new_collection, summarize_collection
from geo_platform.lib.stac.item import build_item
from geo_platform.lib.stac.validation import validate_item
from geo_platform.resources.blob_store import BRONZE, BlobStore
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.settings import get_price_settings

# Catalog writers take a slot of this pool: the production instance gives it one,
# so loads into a pgSTAC collection never race each other.
STAC_WRITER_POOL = "stac_writer"
# Statistics and footprint come from the cheapest stored tier to read.
_READ_ORDER = (Tier.ANALYSIS, Tier.ARCHIVE, Tier.VISUALIZATION)


@dg.asset(
    partitions_def=raster_partitions,
    group_name="stac",
    kinds={"stac"},
    ins={key.path[-1]: dg.AssetIn(key=key) for key in TIER_ASSETS.values()},
    check_specs=[
        dg.AssetCheckSpec(
            "item_valid", asset="stac_item", description="validates against STAC offline"
        )
    ],
    retry_policy=dg.RetryPolicy(max_retries=2, delay=2, backoff=dg.Backoff.EXPONENTIAL),
    pool=STAC_WRITER_POOL,
)
def stac_item(
    context: dg.AssetExecutionContext,
    raster_validation: RasterInfo,
    cog_visualization: TierRef | None,
    cog_analysis: TierRef | None,
    cog_archive: TierRef | None,
    blob_store: BlobStore,
    stac_catalog: dg.ResourceParam[StacCatalog],
):
    """The raster's STAC item (rio-stac), one asset per stored tier, upserted into the catalog."""
    key = context.partition_key
    refs = {ref.tier: ref for ref in (cog_visualization, cog_analysis, cog_archive) if ref}
    if not refs:
        raise dg.Failure(f"{BRONZE}/{key}: no COG tier is stored yet; materialize a tier first")
    read_from = next(refs[t] for t in _READ_ORDER if t in refs)
    source = blob_store.info(BRONZE, key)
    # GDAL reads the stored tier in place (a file, or /vsiaz/ with the store's credentials).
    with rasterio.Env(**blob_store.gdal_env()):
        item = build_item(
            read_from.gdal_path,
            key,
            refs.values(),
            source_sha256=raster_validation.sha256,
            fallback_datetime=source.last_modified,
        )
    collection = item["collection"]
    if stac_catalog.get_collection(collection) is None:
        stac_catalog.upsert_collection(new_collection(collection))
    stac_catalog.upsert_items([item])
    problems = validate_item(item)
    yield dg.MaterializeResult(
        metadata={
            "item_id": item["id"],
            "collection": collection,
            "tiers": ", ".join(item["assets"]),
            "datetime": item["properties"]["datetime"],
            "bbox": str([round(v, 6) for v in item["bbox"]]),
        }
    )
    yield dg.AssetCheckResult(
        check_name="item_valid",
        passed=not problems,
        metadata={"problems": "; ".join(problems) or "none"},
    )


# Eager, but not held back by missing partitions: one bad raster must not freeze
# its collection's summary.
_SUMMARY_CONDITION = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)


@dg.asset(
    deps=[stac_item],
    group_name="stac",
    kinds={"stac"},
    automation_condition=_SUMMARY_CONDITION,
    pool=STAC_WRITER_POOL,
)
def collection_summary(stac_catalog: dg.ResourceParam[StacCatalog]) -> dg.MaterializeResult:
    """Every collection's extent and summaries recomputed from its items, with counts,
    bytes and storage cost per month for each tier."""
    prices = get_price_settings()
    reports = {}
    collection_ids = {c["id"] for c in stac_catalog.list_collections()}
    for cid in sorted(collection_ids):
        items = stac_catalog.search(collections=[cid], limit=None)
        base = stac_catalog.get_collection(cid) or new_collection(cid)
        collection, report = summarize_collection(base, items, prices)
        stac_catalog.upsert_collection(collection)
        reports[cid] = report
    cost_key = f"cost_per_month_{prices.currency.lower()}"
    rows = ["| collection | tier | items | bytes | cost/month |", "|---|---|---|---|---|"]
    for cid, report in reports.items():
        for tier, figures in report["tiers"].items():
            rows.append(
                f"| {cid} | {tier} | {figures['items']} | {figures['bytes']:,} | "
                f"{figures[cost_key]:.6f} |"
            )
    total = sum(f[cost_key] for r in reports.values() for f in r["tiers"].values())
    return dg.MaterializeResult(
        metadata={
            "collections": len(reports),
            "items": sum(r["items"] for r in reports.values()),
            f"total_{cost_key}": dg.MetadataValue.float(round(total, 6)),
            "storage": dg.MetadataValue.md("\n".join(rows)),
            "report": dg.MetadataValue.json(reports),
        }
    )
