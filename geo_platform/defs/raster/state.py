"""What the instance recorded about each raster partition, read in bulk."""

import dagster as dg

from geo_platform.defs.bronze import DATA_VERSION_TAG
from geo_platform.defs.raster.assets import INVALID_VERSION_PREFIX, MADE_WITH_SEPARATOR, VALIDATION
from geo_platform.lib.reconcile import RasterState

# Partitions per query: one statement each, with the keys as parameters.
_CHUNK = 5000


def raster_state(instance: dg.DagsterInstance, keys: list[str]) -> RasterState:
    """The blob version each key's latest validation was made from, and the versions
    that failed as invalid input."""
    state = RasterState()
    storage = instance.event_log_storage
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        for event_type, into in (
            (dg.DagsterEventType.ASSET_MATERIALIZATION, state.materialized),
            (dg.DagsterEventType.ASSET_OBSERVATION, state.failed),
        ):
            found = storage.get_latest_tags_by_partition(
                VALIDATION, event_type, [DATA_VERSION_TAG], chunk
            )
            for key, tags in found.items():
                version = tags.get(DATA_VERSION_TAG, "")
                if event_type is dg.DagsterEventType.ASSET_OBSERVATION:
                    if version.startswith(INVALID_VERSION_PREFIX):
                        into[key] = version.removeprefix(INVALID_VERSION_PREFIX)
                elif version:
                    etag, _, made_with = version.partition(MADE_WITH_SEPARATOR)
                    into[key] = etag
                    state.made_with[key] = made_with
    return state
