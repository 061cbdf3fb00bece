"""MPI3D (Gondal et al. 2019): `mpi3d_{toy,realistic,real}.npz`, key `images`, (1036800, 64, 64, 3) uint8.

Seven factors in the published order, the last one fastest: object colour 6, object shape 6, object size
2, camera height 3, background colour 3, horizontal axis 40, vertical axis 40. The npz is read in chunks into
the preprocessing cache (channels-first, converted to the preset's channels), then memory-mapped, so no copy
of the whole set has to fit in memory. A smaller file in the same format (fewer leading images) also loads;
its factors are then those of its first rows.
"""

from __future__ import annotations

import hashlib
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jvae.base.errors import DataError
from jvae.data.cache import cached_array
from jvae.data.dsprites import read_npy_header
from jvae.data.grid import GridSource, strides
from jvae.data.grid import index_to_factors as grid_factors
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import array_source

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

VARIANTS = ("toy", "realistic", "real")
FACTOR_NAMES = ["colour", "shape", "size", "height", "background", "horizontal", "vertical"]
FACTOR_SIZES = [6, 6, 2, 3, 3, 40, 40]
STRIDES = strides(FACTOR_SIZES)  # vertical fastest
COUNT = int(np.prod(FACTOR_SIZES))
LAYOUT = Layout(
    "mpi3d",
    "mpi3d_toy.npz (or mpi3d_realistic.npz, mpi3d_real.npz)",
    "download it from https://github.com/rr-learning/disentanglement_dataset",
)
GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def factors_to_index(factors: np.ndarray) -> np.ndarray:
    return np.asarray(factors, dtype=np.int64) @ STRIDES


def index_to_factors(index: np.ndarray) -> np.ndarray:
    return grid_factors(index, FACTOR_SIZES)


def _file(root: Path, variant: str | None) -> Path:
    if root.is_file():
        return root
    names = [f"mpi3d_{variant}.npz"] if variant else [f"mpi3d_{v}.npz" for v in VARIANTS]
    for name in names:
        for candidate in (root / name, root / "mpi3d" / name):
            if candidate.is_file():
                return candidate
    raise not_found(LAYOUT, root)


def load_mpi3d(root: Path, channels: int, image_size: int) -> GridSource:
    path = _file(root, None)
    stat = path.stat()
    key = hashlib.sha256(
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{channels}".encode()
    ).hexdigest()[:20]
    try:
        with zipfile.ZipFile(path) as archive:
            if "images.npy" not in archive.namelist():
                raise DataError(f"{path}: not an MPI3D npz (it has no 'images' array)")
            with archive.open("images.npy") as handle:
                shape, dtype = read_npy_header(handle)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: cannot read as an MPI3D npz ({exc})") from None
    if len(shape) != 4 or shape[1:] != (64, 64, 3) or dtype != np.uint8:
        raise DataError(f"{path}: images has shape {shape} {dtype}, expected (N, 64, 64, 3) uint8")

    def fill(array: np.ndarray) -> dict:
        with zipfile.ZipFile(path) as archive, archive.open("images.npy") as handle:
            read_npy_header(handle)
            row = 64 * 64 * 3
            for start in range(0, shape[0], 8192):
                count = min(8192, shape[0] - start)
                buffer = handle.read(count * row)
                if len(buffer) != count * row:
                    raise DataError(f"{path}: images ends early at image {start + len(buffer) // row}")
                block = np.frombuffer(buffer, np.uint8).reshape(count, 64, 64, 3)
                if channels == 1:
                    grey = (block.astype(np.float32) @ GREY).round().clip(0, 255).astype(np.uint8)
                    array[start : start + count, 0] = grey
                else:
                    array[start : start + count] = block.transpose(0, 3, 1, 2)
        return {"count": shape[0], "file": str(path)}

    try:
        array, _ = cached_array("mpi3d", key, (shape[0], channels, 64, 64), fill)
    except (zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{path}: cannot read as an MPI3D npz ({exc})") from None
    images = array_source(array, "mpi3d", channels, image_size)
    return GridSource(images, f"MPI3D ({path.name}, {shape[0]} images)", FACTOR_NAMES, FACTOR_SIZES)


def open_mpi3d(config: DataSection, data_path: str | None) -> GridSource:
    return load_mpi3d(data_root(LAYOUT, data_path, config.path), config.channels, config.image_size)


DATASET = Dataset("mpi3d", LAYOUT, open_mpi3d, factors=True)
