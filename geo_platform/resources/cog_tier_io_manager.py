"""Tier storage: puts each COG in its tier's container and hands downstream a reference."""

from dataclasses import dataclass

import dagster as dg

from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.raster.cog import LocalCog
from geo_platform.lib.raster.tiers import TIER_SPECS, Tier, TierRef, tier_blob_key
from geo_platform.resources.blob_store import SHA256_METADATA, BlobStore


@dataclass(frozen=True)
class TierSkipped:
    """A selected tier that was not written for this raster, and why."""

    reason: str
    # Not applicable means any earlier COG at this path is stale (the source changed
    # type) and is removed; "not requested" leaves what is stored alone.
    applicable: bool


def tier_of(asset_key: dg.AssetKey) -> Tier:
    return Tier(asset_key.path[-1].removeprefix("cog_"))


class CogTierIOManager(dg.ConfigurableIOManager):
    """Stores ``LocalCog`` outputs at ``<tier container>/<tier_blob_key(blob key)>``.

    Paths are pure functions of the partition's blob key, so a re-run overwrites the
    same blob. Inputs load as :class:`TierRef` (href, size, checksum), or None when the
    tier is not stored for that raster: pixels never travel through Dagster.
    """

    blob_store: BlobStore

    def handle_output(self, context: dg.OutputContext, obj: LocalCog | TierSkipped) -> None:
        tier = tier_of(context.asset_key)
        container, key = TIER_SPECS[tier].container, tier_blob_key(tier, context.partition_key)
        if isinstance(obj, TierSkipped):
            if not obj.applicable:
                self.blob_store.delete(container, key)
            return
        info = self.blob_store.upload_file(
            obj.path, container, key, metadata={SHA256_METADATA: obj.sha256}, consume=True
        )
        context.add_output_metadata(
            {
                "href": dg.MetadataValue.path(self.blob_store.href(container, key)),
                "container": container,
                "blob_key": key,
                "sha256": obj.sha256,
                "etag": info.etag,
            }
        )

    def load_input(self, context: dg.InputContext) -> TierRef | None:
        tier = tier_of(context.asset_key)
        container, key = TIER_SPECS[tier].container, tier_blob_key(tier, context.partition_key)
        try:
            info = self.blob_store.info(container, key)
        except FileNotFoundError:
            return None
        sha256 = info.metadata.get(SHA256_METADATA)
        if sha256 is None:
            with self.blob_store.local_file(container, key) as path:
                sha256 = sha256_file(path)
        return TierRef(
            tier=tier,
            href=self.blob_store.href(container, key),
            gdal_path=self.blob_store.gdal_path(container, key),
            size_bytes=info.size,
            sha256=sha256,
        )
