"""Find the bad files of an image collection before a run, so that none can stop it.

Each file is opened (header: size, mode, format; the pixel-count guard), then decoded at the
smallest scale the format allows (JPEG draft at 1/8 still reads the whole stream, so truncation
shows). Files are checked in a thread pool (Pillow releases the GIL while decoding) and the
result can be cached in a JSON file keyed by each file's size and modification time.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnkit.data.decode import DEFAULT_MAX_PIXELS, BadImageError, ImageHeader, open_checked

_CACHE_VERSION = 1
# A format held by at most this fraction of a collection, while one format holds at least
# DOMINANT_FRACTION, is an outlier: e.g. a GIF "image not found" placeholder among JPEG photos.
OUTLIER_FRACTION = 0.01
DOMINANT_FRACTION = 0.95


@dataclass(frozen=True)
class BadFile:
    """A file left out of a dataset, and why (shown to the user as `path: reason`)."""

    path: str
    reason: str


@dataclass
class ScanResult:
    """Header of every good file (by path), the bad files in the order given, and the suspects:
    readable files in a format almost absent from the collection (kept unless dropped)."""

    headers: dict[str, ImageHeader] = field(default_factory=dict)
    bad: list[BadFile] = field(default_factory=list)
    suspects: list[BadFile] = field(default_factory=list)

    @property
    def bad_paths(self) -> set[str]:
        return {bad.path for bad in self.bad}


def default_workers() -> int:
    """Threads for scanning: the CPU count, at most 8 (file reads and decodes, GIL released)."""
    return max(1, min(8, os.cpu_count() or 1))


def check_image_file(path: str | os.PathLike[str], *, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageHeader:
    """The header of a usable image file; raises `BadImageError` with the reason otherwise."""
    name = os.fspath(path)
    with open_checked(name, max_pixels=max_pixels) as image:
        header = ImageHeader(image.width, image.height, image.mode, image.format or "unknown")
        try:
            if image.format == "JPEG":
                image.draft(image.mode, (1, 1))
            image.load()
        except Exception as error:  # corrupt data surfaces as OSError, SyntaxError, struct.error, ...
            raise BadImageError(name, f"cannot decode ({error})") from error
    return header


def scan_images(
    paths: Sequence[str | os.PathLike[str]],
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    cache_path: str | os.PathLike[str] | None = None,
    drop_format_outliers: bool = False,
) -> ScanResult:
    """Check every file in `paths` and return their headers, the bad files and the suspects.

    With `cache_path`, results for files whose size and mtime are unchanged (and scanned under
    the same `max_pixels`) are reused, and the cache is rewritten. Files in a format almost absent
    from the collection (see `find_format_outliers`) are listed as suspects and kept, since they
    decode fine; with `drop_format_outliers` they are left out as bad files too.
    """
    names = [os.fspath(p) for p in paths]
    cached = _load_cache(cache_path, max_pixels) if cache_path is not None else {}
    stamps = {name: _stamp(name) for name in names}
    todo = [name for name in names if cached.get(name, {}).get("stamp") != stamps[name]]
    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        fresh = dict(zip(todo, pool.map(lambda n: _check_entry(n, max_pixels), todo)))
    entries = {name: fresh.get(name) or cached[name] for name in names}
    for name in todo:
        entries[name]["stamp"] = stamps[name]
    if cache_path is not None:
        _save_cache(cache_path, max_pixels, entries)
    result = ScanResult()
    for name in names:
        entry = entries[name]
        if "reason" in entry:
            result.bad.append(BadFile(name, entry["reason"]))
        else:
            result.headers[name] = ImageHeader(**entry["header"])
    result.suspects = find_format_outliers(result.headers)
    if drop_format_outliers:
        for suspect in result.suspects:
            del result.headers[suspect.path]
        result.bad.extend(result.suspects)
    return result


def find_format_outliers(headers: dict[str, ImageHeader]) -> list[BadFile]:
    """Files whose format holds at most 1% of a collection that is at least 95% one format.

    A scraped photo set dominated by JPEG that holds one GIF is almost surely holding a
    placeholder graphic (hymenoptera's train/ants/imageNotFound.gif), not a photo of the class.
    Collections under 100 files never have outliers.
    """
    counts = Counter(header.format for header in headers.values())
    if not counts:
        return []
    total = sum(counts.values())
    dominant, dominant_count = counts.most_common(1)[0]
    if dominant_count < DOMINANT_FRACTION * total:
        return []
    rare = {fmt for fmt, count in counts.items() if count <= OUTLIER_FRACTION * total}
    return [
        BadFile(path, _outlier_reason(header.format, dominant, dominant_count))
        for path, header in headers.items()
        if header.format in rare
    ]


def _outlier_reason(fmt: str, dominant: str, dominant_count: int) -> str:
    return f"format outlier: {fmt} among {dominant_count} {dominant} files (likely not a photo)"


def _check_entry(name: str, max_pixels: int) -> dict:
    try:
        return {"header": asdict(check_image_file(name, max_pixels=max_pixels))}
    except BadImageError as error:
        return {"reason": error.reason}
    except OSError as error:
        return {"reason": f"cannot read ({error.strerror or error})"}


def _stamp(name: str) -> list[int]:
    try:
        info = os.stat(name)
    except OSError:
        return [-1, -1]
    return [info.st_size, info.st_mtime_ns]


def _load_cache(cache_path: str | os.PathLike[str], max_pixels: int) -> dict[str, dict]:
    path = Path(cache_path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if data.get("version") != _CACHE_VERSION or data.get("max_pixels") != max_pixels:
        return {}
    return data.get("entries", {})


def _save_cache(cache_path: str | os.PathLike[str], max_pixels: int, entries: dict[str, dict]) -> None:
    path = Path(cache_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": _CACHE_VERSION, "max_pixels": max_pixels, "entries": entries}
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(json.dumps(payload))
    os.replace(temporary, path)
