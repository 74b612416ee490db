"""Rasters too big to handle whole, and rasters reprojected on the way in.

``prepared_source`` gives what a raster's tiers are made from: the download itself, or
its warp to the collection's target CRS (``lib.raster.reproject``), which the lossless
checks then compare the tiers with. ``process_tiled`` makes a big raster's outputs: each
tile (``lib.raster.tiling``) in every planned tier, checked, with an item of its own
recording its window of the source; the mosaic VRT over the tiles (``lib.raster.vrt``)
with the raster's own item, recording its tiles.

Tiles follow the tiers' discipline: every file is named after its own checksum, the new
items are stored before anything old is removed, then tile items and files that no new
item points at are deleted (``remove_old_tiles``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp

from geo_platform.lib.hashing import multihash_sha256, sha256_file
from geo_platform.lib.raster.cog import LocalCog, write_cog_tiers
from geo_platform.lib.raster.options import RasterOptions
from geo_platform.lib.raster.reproject import plan_warp, write_warped
from geo_platform.lib.raster.thumbnail import thumbnail_markdown
from geo_platform.lib.raster.tiers import TIER_SPECS, Tier, TierRef
from geo_platform.lib.raster.tiling import (
    Tile,
    is_tile_output,
    mosaic_file_name,
    needs_tiling,
    source_as_vrt,
    tile_file_name,
    tile_grid,
    tile_item_id,
    tiles_prefix,
    window_vrt,
)
from geo_platform.lib.raster.validate import RasterInfo
from geo_platform.lib.raster.vrt import MEDIA_TYPE as VRT_MEDIA_TYPE
from geo_platform.lib.raster.vrt import mosaic_vrt
from geo_platform.lib.stac.ids import collection_id, item_id
from geo_platform.lib.stac.item import build_item
from geo_platform.lib.stac.validation import validate_item
from geo_platform.resources.blob_store import SHA256_METADATA, BlobStore
from geo_platform.resources.stac_catalog import StacCatalog
from geo_platform.settings import LimitSettings, PriceSettings, TilingSettings

SOURCE_SHA256_METADATA = "source_sha256"
MADE_WITH_METADATA = "made_with"
# Which tier the mosaic (and the raster's statistics) read, in order of preference.
MOSAIC_TIER_ORDER = (Tier.ANALYSIS, Tier.ARCHIVE, Tier.VISUALIZATION)
MOSAIC_ASSET = "mosaic"

# (tier, path) -> the check outcomes of one written tier, given the source it must match.
TierCheck = Callable[[str | Path, Tier, Path], list[Any]]


@contextmanager
def prepared_source(
    source: Path,
    options: RasterOptions,
    *,
    scratch: Path,
    name: str,
    limits: LimitSettings,
    tiling: TilingSettings,
    threads: int | str,
) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """The file the tiers are made from, and the warp that made it (None: the source
    itself, already in the target CRS or with none asked for)."""
    if options.target_crs is None:
        yield source, None
        return
    with rasterio.open(source) as src:
        if src.crs == CRS.from_user_input(options.target_crs):
            yield source, None
            return
        paletted = src.colorinterp[0] == ColorInterp.palette
        plan = plan_warp(
            src,
            options.target_crs,
            options.resampling_for(paletted),
            name=name,
            max_pixels=limits.max_pixels,
        )
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="warp-") as tmp:
        with rasterio.Env(GDAL_CACHEMAX=tiling.gdal_cachemax_mb):
            warped = write_warped(source, plan, Path(tmp) / "warped.tif", threads=threads)
        yield warped, plan.made_with()


def is_big(info_or_path: RasterInfo | Path, tiling: TilingSettings) -> bool:
    if isinstance(info_or_path, RasterInfo):
        width, height = info_or_path.width, info_or_path.height
    else:
        with rasterio.open(info_or_path) as src:
            width, height = src.width, src.height
    return needs_tiling(width, height, tiling.threshold_pixels)


class TiledResult:
    """What ``process_tiled`` made: per tier, the stored tiles' refs and metadata; the
    checks (one per tier and check, over every tile); the items; or why it failed."""

    def __init__(self) -> None:
        self.tier_refs: dict[Tier, TierRef] = {}
        self.tier_metadata: dict[Tier, dict[str, Any]] = {}
        self.checks: list[Any] = []
        self.item: dict[str, Any] | None = None
        self.tile_items: list[dict[str, Any]] = []
        self.error: str | None = None


def process_tiled(
    key: str,
    source: Path,
    info: RasterInfo,
    tiers: Sequence[Tier],
    *,
    store: BlobStore,
    scratch: Path,
    tiling: TilingSettings,
    prices: PriceSettings,
    threads: int | str,
    check: TierCheck,
    make_items: bool,
    made_with: dict[str, Any] | None,
    modified: Any,
    check_outcome: Callable[[str, str, bool, dict[str, str]], Any],
    resampling: str | None = None,
) -> TiledResult:
    """Cut ``source`` (the download, or its warp) into tiles, write and check each tile's
    tiers (overviews with the collection's ``resampling``, else chosen per raster), build
    the items and store what passed; nothing is stored if any tile fails. ``check`` runs
    every check (they all gate); the caller picks which ones to report."""
    name = f"bronze/{key}"
    result = TiledResult()
    with rasterio.open(source) as src:
        tiles = tile_grid(src.width, src.height, tiling.tile_size)
    scratch.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=scratch, prefix="tiles-") as tmp_name,
        rasterio.Env(GDAL_CACHEMAX=tiling.gdal_cachemax_mb),
    ):
        tmp = Path(tmp_name)
        out = tmp / "out"
        out.mkdir()
        template = source_as_vrt(source, tmp / "source.vrt")
        written: dict[Tile, dict[Tier, LocalCog]] = {}
        findings: dict[tuple[str, str], list[tuple[str, Any]]] = {}
        # Each tile is checked while the next one is encoded: encoding leaves a core idle
        # now and then (reading, overviews), checking is mostly decoding.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tile-check") as checker:
            checking: list[tuple[Tile, Path, Future[dict[Tier, list[Any]]]]] = []
            for tile in tiles:
                window = window_vrt(template, tile, tmp / f"{tile.name}.vrt")
                cogs = write_cog_tiers(
                    window, tiers, out, name=f"{name} (tile {tile.name})", stem=tile.name,
                    threads=threads, resampling=resampling,
                )  # fmt: skip
                renamed = {}
                for tier, cog in cogs.items():
                    final = cog.path.with_name(tile_file_name(tile, tier, cog.sha256))
                    cog.path.rename(final)
                    renamed[tier] = LocalCog(tier, final, cog.size_bytes, cog.sha256)
                written[tile] = renamed
                checking.append((tile, window, checker.submit(_check_tile, check, window, renamed)))
            for tile, window, future in checking:
                for outcomes in future.result().values():
                    for outcome in outcomes:
                        findings.setdefault((outcome.asset, outcome.name), []).append(
                            (tile.name, outcome)
                        )
                window.unlink()
        failed = _summarize_checks(findings, result, check_outcome)
        if failed:
            result.error = f"{name}: {'; '.join(failed)}: no tile is stored and no item is written"
            return result
        mosaic_tier = next(t for t in MOSAIC_TIER_ORDER if t in tiers)
        local_mosaic = mosaic_vrt(
            template, [(t, written[t][mosaic_tier].path.name) for t in tiles], out / "mosaic.vrt"
        )
        mosaic_sha = sha256_file(local_mosaic)
        mosaic_path = local_mosaic.rename(out / mosaic_file_name(mosaic_sha))
        prefix = tiles_prefix(key)
        mosaic_container = TIER_SPECS[mosaic_tier].container

        def href(tier: Tier, file_name: str) -> str:
            return store.href(TIER_SPECS[tier].container, prefix + file_name)

        lineage: dict[str, dict[str, Any]] = {
            tile.name: {
                "window": tile.window,
                "item_id": tile_item_id(item_id(key), tile),
                **{
                    tier.value: {"href": href(tier, cog.path.name), "sha256": cog.sha256}
                    for tier, cog in written[tile].items()
                },
            }
            for tile in tiles
        }
        if make_items:
            result.tile_items = [
                _tile_item(key, tile, written[tile], href, info, made_with, modified)
                for tile in tiles
            ]
            result.item = _mosaic_item(
                key,
                mosaic_path,
                href(mosaic_tier, mosaic_path.name),
                tiles,
                tiers,
                info,
                made_with,
                modified,
                tiling.tile_size,
            )
            problems = [
                f"{item['id']}: {problem}"
                for item in (result.item, *result.tile_items)
                for problem in validate_item(item)
            ]
            if problems:
                result.item, result.tile_items = None, []
                result.error = f"{name}: its STAC items do not validate: {'; '.join(problems)}"
                return result
        thumbnails = {
            tier: thumbnail_markdown(
                mosaic_vrt(
                    template,
                    [(t, written[t][tier].path.name) for t in tiles],
                    out / f"thumbnail-{tier.value}.vrt",
                )
            )
            for tier in tiers
        }
        metadata = {SOURCE_SHA256_METADATA: info.sha256}
        for tile in tiles:
            for tier, cog in written[tile].items():
                store.upload_file(
                    cog.path,
                    TIER_SPECS[tier].container,
                    prefix + cog.path.name,
                    metadata={SHA256_METADATA: cog.sha256, **metadata},
                    consume=True,
                )
        store.upload_file(
            mosaic_path,
            mosaic_container,
            prefix + mosaic_path.name,
            metadata={SHA256_METADATA: mosaic_sha, **metadata},
            consume=True,
        )
        for tier in tiers:
            spec = TIER_SPECS[tier]
            size = sum(written[t][tier].size_bytes for t in tiles)
            result.tier_refs[tier] = TierRef(
                tier=tier,
                href=href(tier, mosaic_path.name)
                if tier is mosaic_tier
                else store.href(spec.container, prefix.rstrip("/")),
                gdal_path=store.gdal_path(mosaic_container, prefix + mosaic_path.name),
                size_bytes=size,
                sha256=mosaic_sha,
                source_sha256=info.sha256,
            )
            result.tier_metadata[tier] = {
                "tier": tier.value,
                "size_bytes": size,
                "compression_ratio": round(info.size_bytes / size, 3),
                "storage_class": spec.storage_class,
                f"cost_per_month_{prices.currency.lower()}": round(
                    prices.monthly_cost(size, spec.storage_class), 8
                ),
                "href": result.tier_refs[tier].href,
                "container": spec.container,
                "blob_key": prefix,
                "source_sha256": info.sha256,
                "tiles": len(tiles),
                "tile_size": tiling.tile_size,
                "mosaic": href(mosaic_tier, mosaic_path.name),
                "tile_lineage": {
                    t: {"window": v["window"], "item_id": v["item_id"], **v[tier.value]}
                    for t, v in lineage.items()
                },
                "thumbnail": thumbnails[tier],
                **({"reprojection": made_with} if made_with else {}),
            }
    return result


def _check_tile(
    check: TierCheck, window: Path, cogs: dict[Tier, LocalCog]
) -> dict[Tier, list[Any]]:
    return {tier: check(window, tier, cog.path) for tier, cog in cogs.items()}


def _summarize_checks(
    findings: dict[tuple[str, str], list[tuple[str, Any]]],
    result: TiledResult,
    check_outcome: Callable[[str, str, bool, dict[str, str]], Any],
) -> list[str]:
    """One check outcome per tier and check over all tiles; what failed, by tile."""
    failed = []
    for (asset, check_name), by_tile in findings.items():
        bad = [(tile, o) for tile, o in by_tile if not o.passed]
        problems = "; ".join(
            f"{tile}: {o.metadata.get('problems') or o.metadata.get('errors')}" for tile, o in bad
        )
        result.checks.append(
            check_outcome(
                asset,
                check_name,
                not bad,
                {"tiles": str(len(by_tile)), "failed_tiles": problems or "none"},
            )
        )
        if bad:
            failed.append(f"{asset} failed {check_name} in tile(s) {', '.join(t for t, _ in bad)}")
    return failed


def _lineage_properties(
    key: str, info: RasterInfo, made_with: dict[str, Any] | None
) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "geo_platform:source": key,
        "geo_platform:source_checksum": multihash_sha256(info.sha256),
    }
    if made_with:
        properties["geo_platform:reprojection"] = made_with
    return properties


def _tile_item(
    key: str,
    tile: Tile,
    cogs: dict[Tier, LocalCog],
    href: Callable[[Tier, str], str],
    info: RasterInfo,
    made_with: dict[str, Any] | None,
    modified: Any,
) -> dict[str, Any]:
    refs = [
        TierRef(
            tier, href(tier, cog.path.name), str(cog.path), cog.size_bytes, cog.sha256, info.sha256
        )
        for tier, cog in cogs.items()
    ]
    read_from = next(cogs[t] for t in MOSAIC_TIER_ORDER if t in cogs)
    item = build_item(
        str(read_from.path), key, refs, source_sha256=info.sha256, fallback_datetime=modified
    )
    item["id"] = tile_item_id(item_id(key), tile)
    item["properties"].update(_lineage_properties(key, info, made_with))
    item["properties"].update(
        {
            # The tile's pixels are these of the source (or of its warp, if any).
            "geo_platform:source_window": tile.window,
            "geo_platform:tile": tile.name,
            "geo_platform:mosaic_item": item_id(key),
        }
    )
    return item


def _mosaic_item(
    key: str,
    mosaic_path: Path,
    mosaic_href: str,
    tiles: Sequence[Tile],
    tiers: Sequence[Tier],
    info: RasterInfo,
    made_with: dict[str, Any] | None,
    modified: Any,
    tile_size: int,
) -> dict[str, Any]:
    item = build_item(
        str(mosaic_path), key, [], source_sha256=info.sha256, fallback_datetime=modified
    )
    properties = item["properties"]
    properties.update(_lineage_properties(key, info, made_with))
    properties["geo_platform:tiers"] = [t.value for t in Tier if t in tiers]
    properties["geo_platform:tiling"] = {
        "tile_size": tile_size,
        "rows": max(t.row for t in tiles) + 1,
        "columns": max(t.col for t in tiles) + 1,
    }
    properties["geo_platform:tiles"] = [tile_item_id(item_id(key), t) for t in tiles]
    item["assets"][MOSAIC_ASSET] = {
        "href": mosaic_href,
        "type": VRT_MEDIA_TYPE,
        "roles": ["data", "mosaic"],
        "title": "mosaic of the tiles (GDAL VRT)",
        "file:size": mosaic_path.stat().st_size,
        "file:checksum": multihash_sha256(sha256_file(mosaic_path)),
    }
    return item


def remove_old_tiles(
    store: BlobStore,
    key: str,
    items: Sequence[dict[str, Any]],
    catalog: StacCatalog | None,
) -> None:
    """Once ``items`` (the raster's new item and its tile items, or none) are stored:
    delete the tile items they no longer include, then every tile file and mosaic of
    ``bronze/<key>`` that none of them (nor the stored copies) points at."""
    prefix = tiles_prefix(key)
    containers = dict.fromkeys(spec.container for spec in TIER_SPECS.values())
    blobs = [
        (container, blob)
        for container in containers
        for blob in store.list_blobs(container, prefix)
        if is_tile_output(key, blob.key)
    ]
    is_tiled = any(item["id"] != item_id(key) for item in items)
    if not blobs and not is_tiled:
        return
    current_ids = {item["id"] for item in items}
    collection = collection_id(key)
    stored = []
    if catalog is not None:
        tile_ids = {i for i in catalog.item_ids(collection) if i.startswith(f"{item_id(key)}!")}
        for stale in sorted(tile_ids - current_ids):
            catalog.delete_item(collection, stale)
        stored = [
            found for i in current_ids if (found := catalog.get_item(collection, i)) is not None
        ]
    hrefs = {
        asset.get("href") for item in (*items, *stored) for asset in item.get("assets", {}).values()
    }
    for container, blob in blobs:
        if store.href(container, blob.key) not in hrefs:
            store.delete(container, blob.key)
