"""STAC assets: the collections kept current. Items are written by the raster and vector
assets."""

import dagster as dg

from geo_platform.defs.raster.assets import STAC_ITEM
from geo_platform.lib.stac.collection import new_collection, summary_from_aggregate
from geo_platform.processing.stac_documents import publish_collection
from geo_platform.resources.blob_store import BlobStore
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.settings import get_price_settings

# Catalog writers take a slot of this pool: the production instance gives it one,
# so that summaries never race each other.
STAC_WRITER_POOL = "stac_writer"
# Named, not imported: the vector domain's modules stay out of the raster's imports.
VECTOR_ITEM = dg.AssetKey("vector_item")

# Eager, but not held back by missing partitions: one bad raster must not freeze
# its collection's summary.
_SUMMARY_CONDITION = dg.AutomationCondition.eager().without(
    ~dg.AutomationCondition.any_deps_missing()
)


@dg.asset(
    deps=[STAC_ITEM, VECTOR_ITEM],
    group_name="stac",
    kinds={"stac"},
    automation_condition=_SUMMARY_CONDITION,
    pool=STAC_WRITER_POOL,
)
def collection_summary(
    stac_catalog: dg.ResourceParam[StacCatalog], blob_store: BlobStore
) -> dg.MaterializeResult:
    """Every collection's extent and summaries recomputed from its items (aggregated by the
    catalog's database), with counts, bytes and storage cost per month for each tier;
    each collection's document published where its items' collection links point."""
    prices = get_price_settings()
    reports = {}
    collection_ids = {c["id"] for c in stac_catalog.list_collections()}
    for cid in sorted(collection_ids):
        base = stac_catalog.get_collection(cid) or new_collection(cid)
        aggregate = stac_catalog.collection_aggregate(cid)
        collection, report = summary_from_aggregate(base, aggregate, prices)
        stac_catalog.upsert_collection(collection)
        publish_collection(blob_store, collection)
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
