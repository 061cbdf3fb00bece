"""The preprocessing cache: image datasets are decoded and resized once into a uint8 array file.

The first use of a folder of JPEGs or PNGs decodes every file (with a few threads, as decoding releases the
GIL), crops and resizes it, and writes `images.npy` (N, C, H, W) plus `meta.json` under
`$JVAE_CACHE` (default: the user's cache folder, `~/.cache/jvae`), in a folder named by a hash of the source
(paths, sizes, modification times) and of the preprocessing. Later uses map that file instead of decoding.
Entries are written to a temporary folder and renamed, so an interrupted build leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from jvae.base.errors import DataError

IN_MEMORY_LIMIT = 2 << 30  # bytes; larger caches are read through a memory map


def cache_root() -> Path:
    env = os.environ.get("JVAE_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "jvae"


def source_key(kind: str, files: Sequence[Path], preprocessing: dict[str, Any]) -> str:
    """A hash that changes when any file, its size or time, or the preprocessing changes."""
    digest = hashlib.sha256(json.dumps({"kind": kind, "pre": preprocessing}, sort_keys=True).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:20]


def cached_images(
    kind: str,
    files: Sequence[Path],
    preprocessing: dict[str, Any],
    shape: tuple[int, int, int],
    decode: Callable[[Path], np.ndarray | str],
    workers: int = 4,
) -> tuple[np.ndarray, dict[str, Any]]:
    """(images (N, C, H, W) uint8, meta) for image files; `decode` gives (C, H, W) uint8, or the reason the
    file cannot be read. meta holds `kept` (indices into `files` of the stored images), `skipped` (the
    others) and `reasons` (one per skipped file)."""

    def fill(array: np.ndarray) -> dict[str, Any]:
        kept: list[int] = []
        skipped: list[int] = []
        reasons: list[str] = []
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for index, image in enumerate(pool.map(decode, files)):
                if isinstance(image, str):
                    skipped.append(index)
                    reasons.append(image)
                else:
                    array[len(kept)] = image
                    kept.append(index)
        return {"kept": kept, "skipped": skipped, "reasons": reasons, "count": len(kept)}

    return cached_array(kind, source_key(kind, files, preprocessing), (len(files), *shape), fill)


def cached_array(
    kind: str, key: str, shape: tuple[int, ...], fill: Callable[[np.ndarray], dict[str, Any]]
) -> tuple[np.ndarray, dict[str, Any]]:
    """A uint8 array built once by `fill` (which returns meta; `count` < shape[0] trims the array)."""
    entry = cache_root() / f"{kind}-{key}"
    found = _read_entry(entry, shape)
    if found is not None:
        return found
    unwritable = f"cannot write the preprocessing cache under {cache_root()}"
    try:
        cache_root().mkdir(parents=True, exist_ok=True)
        building = Path(tempfile.mkdtemp(dir=cache_root(), prefix=f".{entry.name}.", suffix=".tmp"))
    except OSError as exc:
        raise DataError(f"{unwritable} ({exc.strerror}); set JVAE_CACHE") from None
    try:
        array = np.lib.format.open_memmap(building / "images.npy", mode="w+", dtype=np.uint8, shape=shape)
        meta = fill(array)
        array.flush()
        del array
        count = meta.get("count", shape[0])
        if count < shape[0]:  # shrink the file to the rows that were filled
            full = np.load(building / "images.npy", mmap_mode="r")
            trimmed = np.array(full[:count])
            del full
            np.save(building / "images.npy", trimmed)
        (building / "meta.json").write_text(json.dumps(meta))
        if _read_entry(entry, shape) is None:  # another process may have finished the same entry first
            if entry.is_symlink() or entry.is_file():
                entry.unlink()
            shutil.rmtree(entry, ignore_errors=True)
            os.replace(building, entry)
    except OSError as exc:
        raise DataError(f"{unwritable} ({exc.strerror}); set JVAE_CACHE") from None
    finally:
        shutil.rmtree(building, ignore_errors=True)
    found = _read_entry(entry, shape)
    if found is None:
        raise DataError(f"{entry}: the preprocessing cache entry just written cannot be read back")
    return found


def _read_entry(entry: Path, shape: tuple[int, ...]) -> tuple[np.ndarray, dict[str, Any]] | None:
    """The entry's (images, meta), or None when it is missing or damaged (cut short, edited, another
    shape), so that it is built again rather than read as it is."""
    if entry.is_symlink() or not (entry / "meta.json").is_file():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        mapped = np.load(entry / "images.npy", mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, RecursionError, UnicodeDecodeError):
        return None
    count = meta.get("count", shape[0]) if isinstance(meta, dict) else None
    if (
        not isinstance(count, int)
        or mapped.dtype != np.uint8
        or tuple(mapped.shape) != (count, *shape[1:])
        or count > shape[0]
    ):
        return None
    return (np.array(mapped) if mapped.nbytes <= IN_MEMORY_LIMIT else mapped), meta
