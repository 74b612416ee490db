"""Zipped shapefiles, extracted safely: no entry may leave the folder (zip slip), and
no archive may expand past its limits (zip bomb), whatever its headers claim."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from geo_platform.errors import InvalidInputError

# The parts of a shapefile worth extracting; anything else in the archive is left alone.
SHAPEFILE_PARTS = (".shp", ".shx", ".dbf", ".prj", ".cpg")
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class ZipLimits:
    max_total_bytes: int  # uncompressed bytes of every extracted entry together
    max_ratio: float  # uncompressed / compressed, for entries over ratio_floor_bytes
    ratio_floor_bytes: int = 8 * 1024 * 1024


def _safe_name(name: str) -> PurePosixPath | None:
    """The entry's relative path, or None if it could land outside the target folder."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    return path


def extract_shapefiles(archive: Path, target: Path, limits: ZipLimits, *, name: str) -> list[Path]:
    """Extract the shapefile parts of ``archive`` into ``target``; the ``.shp`` paths, sorted.

    Any entry whose name escapes the folder fails the whole archive before anything is
    written; sizes are checked against the headers first and against the bytes actually
    inflated while extracting, so a lying header cannot get past them.
    """
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as e:
        raise InvalidInputError(name, f"not a readable zip archive ({e})") from None
    with zf:
        entries = [info for info in zf.infolist() if not info.is_dir()]
        for info in entries:
            if _safe_name(info.filename) is None:
                raise InvalidInputError(
                    name, f"zip entry {info.filename!r} points outside the archive (zip slip)"
                )
        wanted = [e for e in entries if e.filename.lower().endswith(SHAPEFILE_PARTS)]
        if not any(e.filename.lower().endswith(".shp") for e in wanted):
            raise InvalidInputError(name, "the zip archive holds no .shp file")
        _check_declared(wanted, limits, name)
        written = 0
        for info in wanted:
            relative = _safe_name(info.filename)
            assert relative is not None
            destination = target.joinpath(*relative.parts)
            destination.parent.mkdir(parents=True, exist_ok=True)
            written += _inflate(zf, info, destination, limits.max_total_bytes - written, name)
    return sorted(p for p in target.rglob("*") if p.suffix.lower() == ".shp")


def _check_declared(entries: list[zipfile.ZipInfo], limits: ZipLimits, name: str) -> None:
    total = sum(e.file_size for e in entries)
    if total > limits.max_total_bytes:
        raise InvalidInputError(
            name,
            f"the zip archive expands to {total:,} bytes, over the limit of "
            f"{limits.max_total_bytes:,} (zip bomb?)",
        )
    for e in entries:
        ratio = e.file_size / max(e.compress_size, 1)
        if e.file_size > limits.ratio_floor_bytes and ratio > limits.max_ratio:
            raise InvalidInputError(
                name,
                f"zip entry {e.filename!r} expands {ratio:,.0f}x (limit {limits.max_ratio:,.0f}x): "
                "refused as a zip bomb",
            )


def _inflate(
    zf: zipfile.ZipFile, info: zipfile.ZipInfo, destination: Path, budget: int, name: str
) -> int:
    """Copy one entry, stopping as soon as it inflates past its header or the budget."""
    allowed = min(info.file_size, budget)
    size = 0
    try:
        with zf.open(info) as src, open(destination, "wb") as dst:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                if size > allowed:
                    raise InvalidInputError(
                        name,
                        f"zip entry {info.filename!r} inflates past its declared size or the "
                        "archive's limit: refused as a zip bomb",
                    )
                dst.write(chunk)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        destination.unlink(missing_ok=True)
        raise InvalidInputError(name, f"zip entry {info.filename!r} is unreadable ({e})") from None
    except InvalidInputError:
        destination.unlink(missing_ok=True)
        raise
    return size
