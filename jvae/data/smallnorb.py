"""smallNORB (LeCun, Huang & Bottou 2004): 48600 greyscale 96x96 photographs of 50 toys, from five factors:
category 5, instance 10, elevation 9, azimuth 18, lighting 6 (the training and test halves together, as
disentanglement_lib uses it, so every combination is present).

The publisher's files are the binary "matrix" format (`.mat`, not MATLAB's): `*-dat.mat` uint8
(24300, 2, 96, 96) stereo pairs (jvae uses the first camera), `*-cat.mat` int32 categories and `*-info.mat`
int32 (24300, 4): instance, elevation, azimuth (0, 2, ..., 34), lighting. The images are area-resized to
64x64 and stored once in the cache, in the files' order, each with its factor row.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from jvae.base.errors import DataError
from jvae.data.cache import cached_array
from jvae.data.grid import TableSource
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import array_source

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

PARTS = {
    "training": "smallnorb-5x46789x9x18x6x2x96x96-training",
    "testing": "smallnorb-5x01235x9x18x6x2x96x96-testing",
}
FACTOR_NAMES = ["category", "instance", "elevation", "azimuth", "lighting"]
FACTOR_SIZES = [5, 10, 9, 18, 6]
MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}
LAYOUT = Layout(
    "smallnorb",
    "smallnorb-5x46789x9x18x6x2x96x96-training-{dat,cat,info}.mat and smallnorb-5x01235x9x18x6x2x96x96-testing-"
    "{dat,cat,info}.mat (unzipped)",
    "download them from https://cs.nyu.edu/~ylclab/data/norb-v1.0-small/",
)


def read_matrix(path: Path) -> np.ndarray:
    """One file of the NORB binary matrix format: magic, rank, dimensions (at least 3), little-endian data."""
    try:
        with open(path, "rb") as handle:
            header = np.fromfile(handle, dtype="<i4", count=2)
            if len(header) < 2 or int(header[0]) & 0xFFFFFFFF not in MAGIC:
                raise DataError(f"{path}: not a NORB matrix file (unknown magic number)")
            dtype = MAGIC[int(header[0]) & 0xFFFFFFFF]
            rank = int(header[1])
            if rank < 1 or rank > 4:
                raise DataError(f"{path}: a NORB matrix header of rank {rank}; expected 1 to 4")
            dims = np.fromfile(handle, dtype="<i4", count=max(rank, 3))[:rank]
            if len(dims) != rank or (dims <= 0).any():
                raise DataError(f"{path}: a NORB matrix header with dimensions {dims.tolist()}")
            count = math.prod(int(d) for d in dims)  # Python integers: the product cannot overflow
            left = os.fstat(handle.fileno()).st_size - handle.tell()
            itemsize = np.dtype(dtype).itemsize
            if count * itemsize > left:  # checked before anything is allocated
                raise DataError(
                    f"{path}: ends after {left // itemsize} of its {count} values (its header declares "
                    f"{dims.tolist()})"
                )
            data = np.fromfile(handle, dtype=np.dtype(dtype).newbyteorder("<"), count=count)
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    if data.size != count:
        raise DataError(f"{path}: ends after {data.size} of its {count} values")
    return data.reshape(tuple(int(d) for d in dims))


def _files(root: Path) -> dict[str, dict[str, Path]]:
    folders = [root, root / "smallnorb"]
    found: dict[str, dict[str, Path]] = {}
    for part, stem in PARTS.items():
        for kind in ("dat", "cat", "info"):
            hit = next(
                (f / f"{stem}-{kind}.mat" for f in folders if (f / f"{stem}-{kind}.mat").is_file()), None
            )
            if hit is None:
                raise not_found(LAYOUT, root)
            found.setdefault(part, {})[kind] = hit
    return found


def _factors(part: dict[str, Path]) -> np.ndarray:
    categories, info = read_matrix(part["cat"]), read_matrix(part["info"])
    if info.ndim != 2 or info.shape[1] != 4 or categories.shape != (info.shape[0],):
        raise DataError(
            f"{part['info']}: {info.shape} and {categories.shape} are not smallNORB's (N, 4) and (N,)"
        )
    factors = np.stack([categories, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]], axis=1).astype(
        np.int64
    )
    if (factors < 0).any() or (factors >= np.array(FACTOR_SIZES)).any():
        raise DataError(f"{part['info']}: factor values outside smallNORB's ranges")
    return factors


def load_smallnorb(root: Path, channels: int, image_size: int) -> TableSource:
    files = _files(root)
    factors = np.concatenate([_factors(part) for part in files.values()])
    stats = "|".join(
        f"{p.resolve()}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for d in files.values() for p in d.values()
    )
    key = hashlib.sha256(f"{stats}|{channels}".encode()).hexdigest()[:20]

    def fill(array: np.ndarray) -> dict:
        offset = 0
        for part in files.values():
            images = read_matrix(part["dat"])
            n = images.shape[0]
            if images.shape[1:] != (2, 96, 96) or offset + n > len(factors):
                raise DataError(f"{part['dat']}: images {images.shape} do not match their labels")
            for start in range(0, n, 2048):
                block = torch.from_numpy(images[start : start + 2048, :1].astype(np.float32))
                resized = (
                    F.interpolate(block, size=(64, 64), mode="area").round().clamp(0, 255).to(torch.uint8)
                )
                array[offset + start : offset + start + block.shape[0]] = resized.expand(
                    -1, channels, -1, -1
                ).numpy()
            offset += n
        return {"count": offset}

    array, _ = cached_array("smallnorb", key, (len(factors), channels, 64, 64), fill)
    images = array_source(array, "smallnorb", channels, image_size)
    return TableSource(images, f"smallNORB ({len(factors)} images)", FACTOR_NAMES, FACTOR_SIZES, factors)


def open_smallnorb(config: DataSection, data_path: str | None) -> TableSource:
    return load_smallnorb(data_root(LAYOUT, data_path, config.path), config.channels, config.image_size)


DATASET = Dataset("smallnorb", LAYOUT, open_smallnorb, factors=True)
