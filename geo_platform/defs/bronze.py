"""Files in the bronze container as Dagster sees them: one observable source asset per
domain (rasters, vectors) whose data version is the blob's ETag, observed by the
domain's sensor and by ``geo-platform ingest``. A blob whose ETag was observed is taken
care of; one changed since its outputs were made shows them as stale."""

import dagster as dg

from geo_platform.resources.blob_store import BRONZE, BlobStore

# Data versions are the one tag Dagster indexes by partition (get_latest_tags_by_partition).
DATA_VERSION_TAG = "dagster/data_version"
# The bronze blob's ETag, recorded on what was made from it.
SOURCE_ETAG = "source_etag"


def bronze_source(
    key: dg.AssetKey, partitions_def: dg.DynamicPartitionsDefinition, kind: str
) -> dg.SourceAsset:
    """The observable source of a domain's bronze blobs: the ETag of every registered one."""

    @dg.observable_source_asset(
        key=key,
        partitions_def=partitions_def,
        group_name=kind,
        description=f"A {kind} blob in the bronze container, as uploaded. Its data version "
        f"is the blob's ETag, observed by the bronze sensor and by ingest: a {kind} whose "
        "blob changed since it was processed is stale.",
    )
    def observe(
        context: dg.AssetExecutionContext, blob_store: BlobStore
    ) -> dg.DataVersionsByPartition:
        registered = set(context.instance.get_dynamic_partitions(partitions_def.name or ""))
        return dg.DataVersionsByPartition(
            {
                blob.key: dg.DataVersion(blob.etag)
                for blob in blob_store.list_blobs(BRONZE)
                if blob.key in registered
            }
        )

    return observe


def observation(source: dg.AssetKey, key: str, etag: str) -> dg.AssetObservation:
    return dg.AssetObservation(source, partition=key, tags={DATA_VERSION_TAG: etag})


def latest_observed(
    instance: dg.DagsterInstance, source: dg.AssetKey, keys: list[str]
) -> dict[str, str]:
    """The data version (ETag) last observed for each of ``keys`` that has one."""
    if not keys:
        return {}
    tags = instance.event_log_storage.get_latest_tags_by_partition(
        source, dg.DagsterEventType.ASSET_OBSERVATION, [DATA_VERSION_TAG], keys
    )
    return {
        key: values[DATA_VERSION_TAG] for key, values in tags.items() if DATA_VERSION_TAG in values
    }
