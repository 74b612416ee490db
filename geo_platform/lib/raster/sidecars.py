"""Files GDAL reads beside a raster: its georeferencing, masks, overviews and statistics.

A PNG's position lives in its world file, a GeoTIFF's mask may be a ``.msk``: a raster
copied or downloaded without them is a different raster. GDAL finds them by name next
to the file, so they travel with it into bronze and back out of it.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

# Appended to the raster's whole name (``a.tif.aux.xml``).
_FULL_NAME_SUFFIXES = (".aux.xml", ".msk", ".ovr", ".wld", ".prj")
# Replacing the raster's extension (``a.wld``, ``a.tfw``, ``a.pgw``...).
_STEM_SUFFIXES = (".wld", ".prj", ".tfw", ".tifw", ".pgw", ".pngw", ".jgw", ".jpgw", ".j2w", ".gfw")


def sidecar_names(name: str) -> set[str]:
    """Every sidecar name GDAL may look for beside a raster called ``name``."""
    stem = PurePosixPath(name).stem
    names = {name + suffix for suffix in _FULL_NAME_SUFFIXES}
    for suffix in _STEM_SUFFIXES:
        names.update({stem + suffix, stem + suffix.upper()})
    names.update({name + suffix.upper() for suffix in _FULL_NAME_SUFFIXES})
    names.discard(name)
    return names


def is_sidecar_of(raster_key: str, key: str) -> bool:
    """Whether blob ``key`` is one of the sidecars of ``raster_key`` (same folder)."""
    raster, candidate = PurePosixPath(raster_key), PurePosixPath(key)
    return raster.parent == candidate.parent and candidate.name in sidecar_names(raster.name)


def sidecar_prefix(raster_key: str) -> str:
    """A listing prefix that covers every sidecar of ``raster_key``."""
    path = PurePosixPath(raster_key)
    parent = "" if str(path.parent) == "." else f"{path.parent}/"
    return f"{parent}{path.stem}."


def local_sidecars(path: Path) -> list[Path]:
    """The sidecars next to a local raster file, in name order."""
    names = sidecar_names(path.name)
    return sorted(p for p in path.parent.glob(f"{path.stem}.*") if p.name in names and p.is_file())
