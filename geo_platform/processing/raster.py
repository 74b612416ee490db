"""What happens to a bronze raster: validation, COG tiers, their checks, storage, item.

``process_raster`` does it for one blob key and returns everything a user should see
(``RasterOutcome``), a bad input included: it never raises for one. ``process_rasters``
does it for a batch on a bounded pool of worker processes (one raster alone: a thread,
its GDAL work on every core), writes the items to the catalog in batches, and yields
each outcome as soon as its raster is done, and an outcome with an item once more when
the item is stored or its write failed (``cataloged``): what the run reports of a raster
does not wait for the batch its item is written in.

Processes rather than threads: for small rasters most of the work per raster is Python
(footprint, item, checks, previews), which threads run one at a time under the GIL,
while the run's own thread records Dagster's events. A worker process that dies (GDAL
crashing on a hostile file) takes only the rasters it held: each is run again alone in
a fresh process, and the one that kills it again fails with that reason.

Checks gate publication: a tier that fails ``valid_cog`` or ``lossless`` is not stored,
and a raster with such a tier, or whose item does not validate, gets no new item (the
previous one, if any, stays).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing
import os
import tempfile
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import (
    FIRST_COMPLETED,
    Executor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import rasterio
from rio_cogeo.cogeo import cog_validate
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from geo_platform.errors import (
    BlobChangedError,
    GeoPlatformError,
    InvalidInputError,
    TransientError,
)
from geo_platform.lib.collections_config import configured_resampling, requested_tiers
from geo_platform.lib.hashing import sha256_file
from geo_platform.lib.partition_keys import output_stem
from geo_platform.lib.raster.cog import LocalCog, write_cog_tiers
from geo_platform.lib.raster.compare import compare_pixels
from geo_platform.lib.raster.describe import describe_cog
from geo_platform.lib.raster.options import raster_options
from geo_platform.lib.raster.thumbnail import previews, thumbnail_png
from geo_platform.lib.raster.tiers import (
    THUMBNAIL_CONTAINER,
    TIER_SPECS,
    Tier,
    TierRef,
    is_thumbnail_version,
    is_tier_version,
    thumbnail_blob_key,
    thumbnail_versions_prefix,
    tier_blob_key,
)
from geo_platform.lib.raster.tiling import is_tile_output
from geo_platform.lib.raster.validate import RasterInfo, check_file_size, validate_raster
from geo_platform.lib.stac.collection import extend_collection, new_collection
from geo_platform.lib.stac.ids import collection_id, item_id
from geo_platform.lib.stac.item import ThumbnailRef, build_item
from geo_platform.lib.stac.validation import validate_item
from geo_platform.processing.stac_documents import collection_href, publish_collection
from geo_platform.processing.tiles import (
    MADE_WITH_METADATA,
    is_big,
    prepared_source,
    process_tiled,
    remove_old_tiles,
)
from geo_platform.resources.blob_store import BRONZE, SHA256_METADATA, BlobInfo, BlobStore
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.settings import LimitSettings, PriceSettings, TilingSettings

# Tier blobs record the checksum of the source they were made from: an item only
# publishes tiers of the source version it describes.
SOURCE_SHA256_METADATA = "source_sha256"
# And how their overviews were resampled (the item says it too).
RESAMPLING_METADATA = "overview_resampling"
VALID_COG = "valid_cog"
LOSSLESS = "lossless"
ITEM_VALID = "item_valid"
# Statistics and footprint come from the cheapest stored tier to read.
_READ_ORDER = (Tier.ANALYSIS, Tier.ARCHIVE, Tier.VISUALIZATION)
# The thumbnail from what looks most like the picture (the visualization is RGB).
_THUMBNAIL_ORDER = (Tier.VISUALIZATION, Tier.ANALYSIS, Tier.ARCHIVE)
# A transient failure (network, lock) of one raster is retried this often, with backoff.
_ATTEMPTS = 3


@dataclass(frozen=True)
class RasterPlan:
    """What a run asks of each raster: the assets and checks it selected."""

    tiers: tuple[Tier, ...]
    item: bool
    checks: frozenset[tuple[str, str]]  # (asset name, check name)
    output_tier: str | None = None
    collections: dict[str, dict] = field(default_factory=dict)

    def check_selected(self, asset: str, check: str) -> bool:
        return (asset, check) in self.checks


@dataclass(frozen=True)
class CheckOutcome:
    asset: str
    name: str
    passed: bool
    metadata: dict[str, str]


@dataclass
class TierOutcome:
    """A selected tier of one raster: stored (``ref``) or skipped with the reason."""

    tier: Tier
    ref: TierRef | None = None
    skipped: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class RasterOutcome:
    key: str
    source_etag: str | None = None
    info: RasterInfo | None = None
    tiers: dict[Tier, TierOutcome] = field(default_factory=dict)
    checks: list[CheckOutcome] = field(default_factory=list)
    item: dict[str, Any] | None = None
    # Why the raster failed (None: it did not); transient failures are worth retrying.
    error: str | None = None
    transient: bool = False
    # A tiled raster's tile items, written with its own item (``processing.tiles``).
    tile_items: list[dict[str, Any]] = field(default_factory=list)
    # What its outputs depend on besides the source (the collection's reprojection).
    made_with: str = ""
    # How many stored outputs (tier, thumbnail, tile versions) the raster had before this
    # run wrote any (None: not looked); with none, there is nothing to remove afterwards.
    previous_outputs: int | None = None
    # Its item's write: None while not done, True once stored, False if it failed.
    cataloged: bool | None = None

    def fail(self, error: str, *, transient: bool = False) -> RasterOutcome:
        self.error, self.transient = error, transient
        return self


@dataclass(frozen=True)
class RasterContext:
    """The backends and settings every raster of a run shares."""

    blob_store: BlobStore
    limits: LimitSettings
    prices: PriceSettings
    scratch: Path
    threads: int | str = "ALL_CPUS"
    tiling: TilingSettings = field(default_factory=TilingSettings)


def process_raster(
    key: str,
    plan: RasterPlan,
    ctx: RasterContext,
    previous_outputs: int | None = None,
    listed: tuple[BlobInfo, list[str]] | None = None,
) -> RasterOutcome:
    """Validate ``bronze/<key>``, write and check the planned tiers, store the good ones
    and build the item; transient errors are retried. Never raises for a bad raster.
    ``previous_outputs``: how many outputs it had stored before, when already counted;
    ``listed``: its ``info_and_sidecars``, when the run listed them for all its rasters."""
    retrying = Retrying(
        stop=stop_after_attempt(_ATTEMPTS),
        wait=wait_exponential(multiplier=0.5, max=5),
        retry=retry_if_exception_type(TransientError),
        reraise=True,
    )
    name = f"{BRONZE}/{key}"
    # Kept across attempts and failures: a failed raster still names the version it saw.
    outcome = RasterOutcome(key)
    try:
        for attempt in retrying:
            with attempt:
                fresh = RasterOutcome(key, previous_outputs=previous_outputs)
                try:
                    return _process(fresh, plan, ctx, seen=outcome, listed=listed)
                except BlobChangedError:
                    listed = None  # replaced since the run listed it: the new version
                    raise
    except InvalidInputError as e:
        return outcome.fail(str(e))
    except FileNotFoundError:
        return outcome.fail(f"{name}: blob not found")
    except TransientError as e:
        return outcome.fail(f"{name}: {e}", transient=True)
    except (GeoPlatformError, OSError, rasterio.errors.RasterioError) as e:
        return outcome.fail(f"{name}: {type(e).__name__}: {e}")
    raise AssertionError("unreachable: Retrying returns or raises")


def _process(
    outcome: RasterOutcome,
    plan: RasterPlan,
    ctx: RasterContext,
    *,
    seen: RasterOutcome,
    listed: tuple[BlobInfo, list[str]] | None,
) -> RasterOutcome:
    store = ctx.blob_store
    key = outcome.key
    blob, sidecars = listed or store.info_and_sidecars(BRONZE, key)
    outcome.source_etag = seen.source_etag = blob.etag
    name = f"{BRONZE}/{key}"
    check_file_size(blob.size, name, ctx.limits)
    # Downloaded once (with the sidecars GDAL reads beside it): every tier reads this copy.
    with (
        ExitStack() as stack,
        # The version whose ETag its events record, not one that replaced it since.
        store.local_file(
            BRONZE, key, sidecars=sidecars, scratch=ctx.scratch, etag=blob.etag
        ) as source,
    ):
        info = validate_raster(
            source, ctx.limits, name=name, sha256=blob.metadata.get(SHA256_METADATA)
        )
        outcome.info = info
        if outcome.previous_outputs is None:
            # Listed here, on a worker, rather than by the run's one thread after the item.
            outcome.previous_outputs = len(stored_outputs(store, key))
        requested = requested_tiers(collection_id(key), plan.output_tier, plan.collections)
        to_write = []
        for tier in plan.tiers:
            if not info.applicable[tier.value]:
                # A tier stored for an earlier version of the source is stale now: it is
                # removed once the new item, without it, is stored (remove_old_versions).
                outcome.tiers[tier] = TierOutcome(tier, skipped=info.reasons[tier.value])
            elif tier not in requested:
                wanted = ", ".join(t.value for t in requested)
                reason = f"not requested (output_tier gives {wanted})"
                outcome.tiers[tier] = TierOutcome(tier, skipped=reason)
            else:
                to_write.append(tier)
        ctx.scratch.mkdir(parents=True, exist_ok=True)
        # Lossless tiers first: each is checked while the next one is encoded.
        to_write.sort(key=lambda tier: not TIER_SPECS[tier].lossless)
        # The download itself: the source's own datetime is read from it, not the warp.
        bronze_copy = source
        # A collection's target CRS: the tiers are made from (and checked against) the warp.
        options = raster_options(collection_id(key), plan.collections)
        outcome.made_with = seen.made_with = options.made_with()
        # From here on ``source`` is the file the tiers are made from and checked against.
        source, warp = stack.enter_context(  # noqa: PLW2901
            prepared_source(
                source, options, scratch=ctx.scratch, name=name, limits=ctx.limits,
                tiling=ctx.tiling, threads=ctx.threads,
            )
        )  # fmt: skip
        if to_write and is_big(source, ctx.tiling):
            return _tiled(outcome, plan, ctx, source, info, to_write, warp, blob.last_modified)
        with tempfile.TemporaryDirectory(dir=ctx.scratch, prefix="cog-") as tmp:
            cogs = (
                write_cog_tiers(
                    source,
                    to_write,
                    tmp,
                    name=name,
                    threads=ctx.threads,
                    check=partial(_check_tier, source),
                    resampling=configured_resampling(collection_id(key), plan.collections),
                )
                if to_write
                else {}
            )
            failed = {}
            for tier, cog in cogs.items():
                # Every gate runs; the UI hears of the selected ones.
                outcome.checks.extend(c for c in cog.check if plan.check_selected(c.asset, c.name))
                if problem := next((c.name for c in cog.check if not c.passed), None):
                    failed[tier] = problem
            written = {
                tier: _tier_ref(store, key, cog, info)
                for tier, cog in cogs.items()
                if tier not in failed
            }
            # Each tier's preview for the UI, and the item's thumbnail when it comes from
            # a tier just written: one read of the tier's overviews for both.
            picture = next((t for t in _THUMBNAIL_ORDER if t in written), None)
            pictures = {
                tier: previews(cogs[tier].path, png=plan.item and tier == picture)
                for tier in written
            }
            if plan.item and not failed:
                outcome.item = _item(
                    key, plan, ctx, info, written, requested, blob.last_modified, warp,
                    outcome.made_with, bronze_copy, Path(tmp),
                    {t: png for t, (_, png) in pictures.items() if png is not None},
                )  # fmt: skip
            for tier, ref in written.items():
                outcome.tiers[tier] = _store_tier(
                    store, key, cogs[tier], ref, info, ctx.prices, outcome.made_with,
                    crs=str(warp["target_crs"]) if warp else info.crs,
                    thumbnail=pictures[tier][0],
                )  # fmt: skip
    if failed:
        which = "; ".join(f"cog_{tier.value} failed {check}" for tier, check in failed.items())
        return outcome.fail(f"{name}: {which}: the tier is not stored and no item is written")
    if outcome.item is not None:
        problems = validate_item(outcome.item)
        if plan.check_selected("stac_item", ITEM_VALID):
            outcome.checks.append(
                CheckOutcome("stac_item", ITEM_VALID, not problems, _problems(problems))
            )
        if problems:
            outcome.item = None
            return outcome.fail(f"{name}: its STAC item does not validate: {'; '.join(problems)}")
    return outcome


def _tiled(
    outcome: RasterOutcome,
    plan: RasterPlan,
    ctx: RasterContext,
    source: Path,
    info: RasterInfo,
    to_write: list[Tier],
    warp: dict[str, Any] | None,
    modified: Any,
) -> RasterOutcome:
    """A raster over the tiling threshold: its tiles, mosaic and items (processing.tiles)."""
    result = process_tiled(
        outcome.key,
        source,
        info,
        to_write,
        store=ctx.blob_store,
        scratch=ctx.scratch,
        tiling=ctx.tiling,
        prices=ctx.prices,
        threads=ctx.threads,
        check=_check_tier,
        make_items=plan.item,
        made_with=warp,
        modified=modified,
        check_outcome=CheckOutcome,
        resampling=configured_resampling(collection_id(outcome.key), plan.collections),
    )
    # Every gate ran over every tile; the UI hears of the selected ones.
    outcome.checks.extend(c for c in result.checks if plan.check_selected(c.asset, c.name))
    if result.error:
        return outcome.fail(result.error)
    for tier, ref in result.tier_refs.items():
        outcome.tiers[tier] = TierOutcome(tier, ref=ref, metadata=result.tier_metadata[tier])
    outcome.item, outcome.tile_items = result.item, result.tile_items
    if outcome.item is not None and plan.check_selected("stac_item", ITEM_VALID):
        outcome.checks.append(CheckOutcome("stac_item", ITEM_VALID, True, _problems([])))
    return outcome


def _check_tier(source: str | Path, tier: Tier, path: Path) -> list[CheckOutcome]:
    """The checks of one written tier, selected or not: they gate its publication (a run
    that selects a tier without its checks must not publish an unchecked file)."""
    asset = f"cog_{tier.value}"
    is_valid, errors, warnings = cog_validate(str(path), quiet=True)
    metadata = {
        "errors": "; ".join(errors) or "none",
        "warnings": "; ".join(warnings) or "none",
    }
    checks = [CheckOutcome(asset, VALID_COG, bool(is_valid), metadata)]
    if TIER_SPECS[tier].lossless:
        comparison = compare_pixels(source, path)
        metadata = _problems(list(comparison.problems))
        checks.append(CheckOutcome(asset, LOSSLESS, comparison.identical, metadata))
    return checks


def _problems(problems: list[str]) -> dict[str, str]:
    return {"problems": "; ".join(problems) or "none"}


def _tier_ref(store: BlobStore, key: str, cog: LocalCog, info: RasterInfo) -> TierRef:
    """Where the tier will be stored, read from the local file until then."""
    container = TIER_SPECS[cog.tier].container
    blob_key = tier_blob_key(cog.tier, key, cog.sha256)
    return TierRef(
        tier=cog.tier,
        href=store.href(container, blob_key),
        gdal_path=str(cog.path),
        size_bytes=cog.size_bytes,
        sha256=cog.sha256,
        source_sha256=info.sha256,
        overview_resampling=cog.resampling.name,
    )


def _store_tier(
    store: BlobStore,
    key: str,
    cog: LocalCog,
    ref: TierRef,
    info: RasterInfo,
    prices: PriceSettings,
    made_with: str = "",
    *,
    crs: str | None = None,
    thumbnail: str,
) -> TierOutcome:
    spec = TIER_SPECS[cog.tier]
    blob_key = tier_blob_key(cog.tier, key, cog.sha256)
    # Read before the file is handed to the store (which may move it).
    # A reprojected tier's CRS is the collection's target, not the source's.
    described = describe_cog(cog.path, info.size_bytes, crs or info.crs)
    stored = store.upload_file(
        cog.path,
        spec.container,
        blob_key,
        metadata={
            SHA256_METADATA: cog.sha256,
            SOURCE_SHA256_METADATA: info.sha256,
            # Only when there is one: the metadata of tiers made before stays valid.
            **({MADE_WITH_METADATA: made_with} if made_with else {}),
            RESAMPLING_METADATA: cog.resampling.name,
        },
        consume=True,
    )
    metadata: dict[str, Any] = {
        "tier": cog.tier.value,
        **described,
        "overview_resampling": f"{cog.resampling.name} ({cog.resampling.reason})",
        "storage_class": spec.storage_class,
        f"cost_per_month_{prices.currency.lower()}": round(
            prices.monthly_cost(cog.size_bytes, spec.storage_class), 8
        ),
        "href": ref.href,
        "container": spec.container,
        "blob_key": blob_key,
        "sha256": cog.sha256,
        "source_sha256": info.sha256,
        "etag": stored.etag,
        "thumbnail": thumbnail,
    }
    stored_ref = TierRef(
        tier=cog.tier,
        href=ref.href,
        gdal_path=store.gdal_path(spec.container, blob_key),
        size_bytes=cog.size_bytes,
        sha256=cog.sha256,
        source_sha256=info.sha256,
        overview_resampling=cog.resampling.name,
    )
    return TierOutcome(cog.tier, ref=stored_ref, metadata=metadata)


_OUTPUT_CONTAINERS = tuple(
    dict.fromkeys([*(spec.container for spec in TIER_SPECS.values()), THUMBNAIL_CONTAINER])
)
# A batch's outputs are counted from one listing under its keys' common prefix unless that
# prefix holds more blobs than this (each raster then lists its own).
_LISTED_AT_MOST = (1000, 20)  # (blobs, and blobs per key on top)


def stored_outputs(store: BlobStore, key: str) -> list[tuple[str, str]]:
    """(container, blob key) of every stored output of ``bronze/<key>``: tier, thumbnail,
    tile and mosaic versions, all named after its stem (one listing per container)."""
    return [
        (container, blob.key)
        for container in _OUTPUT_CONTAINERS
        for blob in store.list_blobs(container, output_stem(key))
        if _is_output_of(key, blob.key)
    ]


def count_stored_outputs(store: BlobStore, keys: list[str]) -> dict[str, int] | None:
    """``len(stored_outputs(store, key))`` of each key, from one listing per container
    under the keys' common prefix: for a batch of new rasters, two requests rather than
    two per raster. None when that prefix holds too many other blobs to be worth it, or
    the listing fails (each raster then lists its own, with its own retries)."""
    try:
        return _count_stored_outputs(store, keys)
    except (TransientError, OSError):
        return None


def list_sources(store: BlobStore, keys: list[str]) -> dict[str, tuple[BlobInfo, list[str]]]:
    """``store.info_and_sidecars(BRONZE, key)`` of the keys the store lists at once, in
    fewer requests than one per key; none if that listing fails (each raster then lists
    its own, with its own retries). A blob replaced after this listing is read again by
    its worker (``local_file`` checks the ETag)."""
    try:
        return store.infos_and_sidecars(BRONZE, keys)
    except (TransientError, OSError):
        return {}


def _count_stored_outputs(store: BlobStore, keys: list[str]) -> dict[str, int] | None:
    stems = {output_stem(key): key for key in keys}
    # Character by character, as blob listings match prefixes (``a/r0`` covers ``a/r01``).
    prefix = os.path.commonprefix(list(stems))  # noqa: RUF071
    budget = _LISTED_AT_MOST[0] + _LISTED_AT_MOST[1] * len(keys)
    counts = dict.fromkeys(keys, 0)
    for container in _OUTPUT_CONTAINERS:
        for listed, blob in enumerate(store.list_blobs(container, prefix)):
            if listed >= budget:
                return None
            # Outputs are named ``<stem>.<...>`` or ``<stem>,tiles/<...>``.
            for end in (i for i, char in enumerate(blob.key) if char in ".,"):
                key = stems.get(blob.key[:end])
                if key is not None and _is_output_of(key, blob.key):
                    counts[key] += 1
                    break
    return counts


def _is_output_of(key: str, name: str) -> bool:
    return (
        any(is_tier_version(tier, key, name) for tier in TIER_SPECS)
        or is_thumbnail_version(key, name)
        or is_tile_output(key, name)
    )


def tier_versions(store: BlobStore, key: str) -> dict[Tier, list[BlobInfo]]:
    """The stored versions of each tier of ``bronze/<key>``, oldest first: one listing per
    container (visualization and analysis share ``silver``)."""
    versions: dict[Tier, list[BlobInfo]] = {tier: [] for tier in TIER_SPECS}
    for container in dict.fromkeys(spec.container for spec in TIER_SPECS.values()):
        for blob in store.list_blobs(container, f"{output_stem(key)}."):
            for tier, spec in TIER_SPECS.items():
                if spec.container == container and is_tier_version(tier, key, blob.key):
                    versions[tier].append(blob)
    for found in versions.values():
        found.sort(key=lambda blob: blob.last_modified)
    return versions


def stored_tier(
    store: BlobStore, key: str, tier: Tier, source_sha256: str, made_with: str = ""
) -> TierRef | None:
    """The newest version of the tier that an earlier run made from this source version
    with the same collection settings (``made_with``), or None."""
    container = TIER_SPECS[tier].container
    for info in reversed(tier_versions(store, key)[tier]):
        if info.metadata.get(SOURCE_SHA256_METADATA) != source_sha256:
            continue
        if info.metadata.get(MADE_WITH_METADATA, "") != made_with:
            continue
        sha256 = info.metadata.get(SHA256_METADATA)
        if sha256 is None:
            with store.local_file(container, info.key) as path:
                sha256 = sha256_file(path)
        return TierRef(
            tier=tier,
            href=store.href(container, info.key),
            gdal_path=store.gdal_path(container, info.key),
            size_bytes=info.size,
            sha256=sha256,
            source_sha256=source_sha256,
            overview_resampling=info.metadata.get(RESAMPLING_METADATA),
        )
    return None


def remove_old_versions(
    store: BlobStore, key: str, item: dict[str, Any], catalog: StacCatalog | None = None
) -> None:
    """Once ``item`` is stored: remove every stored tier version of ``bronze/<key>`` that
    it does not point at (earlier versions, tiers that no longer apply or were dropped),
    nor the item in ``catalog`` does (another process may have stored its own since)."""
    current = _hrefs(item)
    stale = [
        (TIER_SPECS[tier].container, blob.key)
        for tier, versions in tier_versions(store, key).items()
        for blob in versions
    ] + [(THUMBNAIL_CONTAINER, blob.key) for blob in thumbnail_versions(store, key)]
    stale = [(c, k) for c, k in stale if store.href(c, k) not in current]
    # The stored item is read only when something would go: usually nothing does (a new
    # raster, an unchanged tier), and a catalog read per raster is most of this step.
    if stale and catalog is not None:
        if stored := catalog.get_item(item["collection"], item["id"]):
            current |= _hrefs(stored)
    for container, blob_key in stale:
        if store.href(container, blob_key) not in current:
            store.delete(container, blob_key)


def _hrefs(item: dict[str, Any]) -> set[str]:
    return {asset.get("href") for asset in item.get("assets", {}).values()}


def _item(
    key: str,
    plan: RasterPlan,
    ctx: RasterContext,
    info: RasterInfo,
    written: dict[Tier, TierRef],
    requested: tuple[Tier, ...],
    modified: Any,
    warp: dict[str, Any] | None,
    made_with: str,
    source: Path,
    tmp: Path,
    pictures: dict[Tier, bytes],
) -> dict[str, Any] | None:
    """The item over the tiers of this source version that the collection asks for:
    those just written, and those stored by earlier runs from the same source; with a
    thumbnail, stored beside the tiers."""
    refs = dict(written)
    for tier in requested:
        if tier not in refs and info.applicable[tier.value]:
            ref = stored_tier(ctx.blob_store, key, tier, info.sha256, made_with)
            if ref is not None:
                refs[tier] = ref
    if not refs:
        return None
    read_from = next(refs[t] for t in _READ_ORDER if t in refs)
    picture = next(refs[t] for t in _THUMBNAIL_ORDER if t in refs)
    # GDAL reads a stored tier in place (a file, or /vsiaz/ with the store's credentials).
    with rasterio.Env(**ctx.blob_store.gdal_env()):
        png = pictures.get(picture.tier) or thumbnail_png(picture.gdal_path)
        thumbnail = _store_thumbnail(ctx.blob_store, key, png, tmp)
        item = build_item(
            read_from.gdal_path,
            key,
            refs.values(),
            source_sha256=info.sha256,
            fallback_datetime=modified,
            source_path=str(source),
            thumbnail=thumbnail,
            overview_resampling=read_from.overview_resampling,
            collection_href=collection_href(ctx.blob_store, collection_id(key)),
        )
    # Tiling's own: the reprojection the tiers were made with.
    if warp:
        item["properties"]["geo_platform:reprojection"] = warp
    return item


def _store_thumbnail(store: BlobStore, key: str, picture: bytes, tmp: Path) -> ThumbnailRef:
    """A ~256 px PNG of a tier, stored under its own checksum (an unchanged picture
    keeps its name)."""
    png = tmp / "thumbnail.png"
    png.write_bytes(picture)
    sha256 = hashlib.sha256(picture).hexdigest()
    size = len(picture)
    blob_key = thumbnail_blob_key(key, sha256)
    store.upload_file(
        png, THUMBNAIL_CONTAINER, blob_key, metadata={SHA256_METADATA: sha256}, consume=True
    )
    return ThumbnailRef(store.href(THUMBNAIL_CONTAINER, blob_key), size, sha256)


def thumbnail_versions(store: BlobStore, key: str) -> list[BlobInfo]:
    """The stored versions of the thumbnail of ``bronze/<key>``."""
    return [
        blob
        for blob in store.list_blobs(THUMBNAIL_CONTAINER, thumbnail_versions_prefix(key))
        if is_thumbnail_version(key, blob.key)
    ]


def process_rasters(
    keys: Iterable[str],
    plan: RasterPlan,
    ctx: RasterContext,
    catalog: StacCatalog,
    *,
    workers: int,
    item_batch_size: int,
) -> Iterator[RasterOutcome]:
    """``process_raster`` for every key on ``workers`` worker processes (a thread when
    ``workers`` is 1), at most eight rasters per worker in flight. Each outcome is yielded
    as soon as its raster is done; items are written to ``catalog`` in batches, and an
    outcome with an item is yielded again once the write is done (``cataloged`` True, or
    False with the write's error)."""
    pending: list[RasterOutcome] = []
    last_write = time.monotonic()
    writer = _ItemWriter(catalog, ctx.blob_store, ctx.scratch)
    keys = list(keys)
    previous = count_stored_outputs(ctx.blob_store, keys) if len(keys) > 1 else None
    listed = list_sources(ctx.blob_store, keys) if len(keys) > 1 else {}
    with _RasterWorkers(plan, ctx, workers, previous, listed) as pool:
        for outcome in pool.outcomes(keys, in_flight=workers * 8):
            # Reported now, while the workers go on: the run's one thread records the
            # raster's events beside their work, not all of a batch's after its write.
            yield outcome
            if outcome.item is None:
                continue
            pending.append(outcome)
            # Small batches while rasters are slow, so that items appear as they are made.
            if len(pending) >= item_batch_size or time.monotonic() - last_write > 5:
                yield from writer.write(pending)
                pending, last_write = [], time.monotonic()
        yield from writer.write(pending)


class _RasterWorkers:
    """Runs ``process_raster`` on a thread (one worker) or on worker processes started
    from a fork server that has this module imported (a worker starts in ~50 ms)."""

    def __init__(
        self,
        plan: RasterPlan,
        ctx: RasterContext,
        workers: int,
        previous: dict[str, int] | None = None,
        listed: dict[str, tuple[BlobInfo, list[str]]] | None = None,
    ) -> None:
        self.plan, self.ctx, self.workers = plan, ctx, workers
        # Stored outputs counted and sources listed for the whole batch (a key missing:
        # the worker lists its own).
        self.previous = previous or {}
        self.listed = listed or {}
        self.pool: Executor | None = None

    def __enter__(self) -> _RasterWorkers:
        self.pool = self._new_pool(self.workers)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)

    def _new_pool(self, workers: int) -> Executor:
        if workers <= 1 and self.pool is None:
            return ThreadPoolExecutor(max_workers=1, thread_name_prefix="raster")
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        store = self.ctx.blob_store
        # The store is rebuilt from its settings in the worker: its SDK clients do not pickle.
        without_store = replace(self.ctx, blob_store=None)  # type: ignore[arg-type]
        start = partial(
            _start_worker, dict(os.environ), without_store, type(store), store.model_dump()
        )
        return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=start)

    def _submit(self, key: str) -> Future[RasterOutcome]:
        assert self.pool is not None
        previous, listed = self.previous.get(key), self.listed.get(key)
        if isinstance(self.pool, ThreadPoolExecutor):
            return self.pool.submit(process_raster, key, self.plan, self.ctx, previous, listed)
        try:
            return self.pool.submit(_process_in_worker, key, self.plan, previous, listed)
        except BrokenProcessPool:
            self.pool.shutdown(wait=False, cancel_futures=True)
            self.pool = self._new_pool(self.workers)
            return self.pool.submit(_process_in_worker, key, self.plan, previous, listed)

    def outcomes(self, keys: Iterable[str], *, in_flight: int) -> Iterator[RasterOutcome]:
        """The outcome of every key, in completion order, ``in_flight`` at a time."""
        iterator = iter(keys)
        running: dict[Future[RasterOutcome], str] = {}
        while True:
            while len(running) < in_flight and (key := next(iterator, None)) is not None:
                running[self._submit(key)] = key
            if not running:
                return
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                key = running.pop(future)
                try:
                    yield future.result()
                except BrokenProcessPool:
                    yield self._alone(key)

    def _alone(self, key: str) -> RasterOutcome:
        """A raster whose worker process died, run again in a process of its own."""
        with self._new_pool(1) as pool:
            try:
                previous, listed = self.previous.get(key), self.listed.get(key)
                return pool.submit(_process_in_worker, key, self.plan, previous, listed).result()
            except BrokenProcessPool:
                return RasterOutcome(key).fail(
                    f"{BRONZE}/{key}: the process working on it died (GDAL crashed on it, "
                    "or the machine ran out of memory)"
                )


# The context of the rasters a worker process runs (set by ``_start_worker``).
_WORKER_CONTEXT: dict[str, RasterContext] = {}


def _start_worker(
    environment: dict[str, str], ctx: RasterContext, store_type: type, store_settings: dict
) -> None:
    # The fork server started with the environment of the run that first needed it.
    os.environ.clear()
    os.environ.update(environment)
    _WORKER_CONTEXT["ctx"] = replace(ctx, blob_store=store_type(**store_settings))


def _process_in_worker(
    key: str, plan: RasterPlan, previous: int | None, listed: tuple[BlobInfo, list[str]] | None
) -> RasterOutcome:
    return process_raster(key, plan, _WORKER_CONTEXT["ctx"], previous, listed)


def _extended(
    collection_id: str,
    items: list[dict[str, Any]],
    bbox: tuple[float, ...] | None,
    current: dict[str, Any] | None,
) -> dict[str, Any]:
    extended = extend_collection(current or new_collection(collection_id), items)
    if bbox is not None:
        extended["extent"]["spatial"]["bbox"] = [list(bbox)]
    return extended


class _ItemWriter:
    """Writes items in batches: creates missing collections, retries transient errors,
    and falls back to one item at a time when a batch is refused."""

    def __init__(self, catalog: StacCatalog, store: BlobStore, scratch: Path) -> None:
        self.catalog = catalog
        self.store = store
        self.scratch = scratch
        self.known_collections: set[str] = set()

    def write(self, outcomes: list[RasterOutcome]) -> Iterator[RasterOutcome]:
        if not outcomes:
            return
        try:
            self._write(
                [i for o in outcomes if o.item is not None for i in (o.item, *o.tile_items)]
            )
        except InvalidInputError as e:
            if len(outcomes) > 1:
                for outcome in outcomes:
                    yield from self.write([outcome])
                return
            self._fail(outcomes[0], f"the catalog refused its item: {e.problem}")
            yield outcomes[0]
            return
        except TransientError as e:
            for outcome in outcomes:
                self._fail(outcome, f"the catalog write failed: {e}", transient=True)
            yield from outcomes
            return
        for outcome in outcomes:
            if outcome.item is not None:
                self._remove_old_versions(outcome)
                outcome.cataloged = True
            yield outcome

    def _remove_old_versions(self, outcome: RasterOutcome) -> None:
        assert outcome.item is not None
        if outcome.previous_outputs == 0:
            # Nothing was stored before this run (a new raster): nothing to look for. A
            # version another process stored meanwhile is left over at worst, and removed
            # by the raster's next run; readers only ever follow the items.
            return
        try:
            remove_old_versions(self.store, outcome.key, outcome.item, self.catalog)
            remove_old_tiles(
                self.store, outcome.key, [outcome.item, *outcome.tile_items], self.catalog
            )
        except (OSError, TransientError) as e:
            # The new item is stored and whole: old files are only left over, and the
            # next run of this raster removes them.
            logging.getLogger(__name__).warning(
                f"{BRONZE}/{outcome.key}: old tier versions not removed yet: {e}"
            )

    def _write(self, items: list[dict[str, Any]]) -> None:
        retrying = Retrying(
            stop=stop_after_attempt(_ATTEMPTS),
            wait=wait_exponential(multiplier=0.5, max=5),
            retry=retry_if_exception_type(TransientError),
            reraise=True,
        )
        by_collection: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            by_collection.setdefault(item["collection"], []).append(item)
        for attempt in retrying:
            with attempt:
                for collection in by_collection.keys() - self.known_collections:
                    if self.catalog.get_collection(collection) is None:
                        self.catalog.upsert_collection(new_collection(collection))
                    self.known_collections.add(collection)
                self.catalog.upsert_items(items)
                # Summaries grow as items are written; the spatial extent is the catalog's
                # own aggregate (one SQL query): a union grown batch by batch depends on
                # the order of the batches once boxes reach round the antimeridian.
                for collection, written in by_collection.items():
                    bbox = self.catalog.collection_bbox(collection)
                    updated = self.catalog.update_collection(
                        collection, partial(_extended, collection, written, bbox)
                    )
                    publish_collection(self.store, updated, self.scratch)

    @staticmethod
    def _fail(outcome: RasterOutcome, reason: str, *, transient: bool = False) -> None:
        outcome.item, outcome.cataloged = None, False
        outcome.fail(f"{BRONZE}/{outcome.key}: {reason}", transient=transient)


def remove_raster(key: str, store: BlobStore, catalog: StacCatalog) -> bool:
    """Remove what the platform made of ``bronze/<key>`` (its tiers and its item) once the
    blob is gone; False, touching nothing, if the blob is back."""
    if store.exists(BRONZE, key):
        return False
    # The item first: it never points at a removed file.
    catalog.delete_item(collection_id(key), item_id(key))
    remove_old_tiles(store, key, [], catalog)
    for tier, versions in tier_versions(store, key).items():
        for blob in versions:
            store.delete(TIER_SPECS[tier].container, blob.key)
    for blob in thumbnail_versions(store, key):
        store.delete(THUMBNAIL_CONTAINER, blob.key)
    return True
