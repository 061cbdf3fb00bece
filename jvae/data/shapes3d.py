"""3D Shapes (Burgess & Kim 2018): 480000 RGB 64x64 renders of a shape in a room, from six independent factors
in the published order, the last one fastest: floor hue 10, wall hue 10, object hue 10, scale 8, shape 4,
orientation 15.

The publisher's 3dshapes.h5 holds `images` (480000, 64, 64, 3) uint8 and `labels` (480000, 6); it is read
in chunks once into jvae's preprocessing cache (uint8, channels first) and memory-mapped after that.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jvae.base.errors import DataError
from jvae.data.cache import cached_array
from jvae.data.grid import GridSource
from jvae.data.grid import index_to_factors as grid_factors
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import array_source

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

FILE_NAME = "3dshapes.h5"
FACTOR_NAMES = ["floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation"]
FACTOR_SIZES = [10, 10, 10, 8, 4, 15]
COUNT = int(np.prod(FACTOR_SIZES))
GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)
CHUNK = 4096
LAYOUT = Layout(
    "shapes3d",
    f"{FILE_NAME} (HDF5 with images (480000, 64, 64, 3) and labels (480000, 6))",
    "download it from https://github.com/deepmind/3d-shapes (the 3dshapes.h5 of its storage bucket)",
)


def index_to_factors(index: np.ndarray) -> np.ndarray:
    return grid_factors(index, FACTOR_SIZES)


def _file(root: Path) -> Path:
    for candidate in (root, root / FILE_NAME, root / "shapes3d" / FILE_NAME):
        if candidate.is_file():
            return candidate
    raise not_found(LAYOUT, root)


def load_shapes3d(root: Path, channels: int, image_size: int) -> GridSource:
    import h5py

    path = _file(root)
    try:
        with h5py.File(path, "r") as handle:
            if not all(isinstance(handle.get(name), h5py.Dataset) for name in ("images", "labels")):
                raise DataError(f"{path}: not a 3D Shapes file (it needs datasets 'images' and 'labels')")
            shape, dtype = handle["images"].shape, handle["images"].dtype
            labels = handle["labels"].shape
    except OSError as exc:
        raise DataError(f"{path}: cannot read as HDF5 ({str(exc).splitlines()[0][:120]})") from None
    if len(shape) != 4 or shape[1:] != (64, 64, 3) or dtype != np.uint8 or labels != (shape[0], 6):
        raise DataError(
            f"{path}: images {shape} {dtype} and labels {labels}; expected (N, 64, 64, 3) uint8, (N, 6)"
        )
    if shape[0] > COUNT:
        raise DataError(f"{path}: {shape[0]} images, more than the {COUNT} factor combinations")
    stat = path.stat()
    key = hashlib.sha256(
        f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{channels}".encode()
    ).hexdigest()[:20]

    def fill(array: np.ndarray) -> dict:
        try:
            with h5py.File(path, "r") as handle:
                images = handle["images"]
                for start in range(0, shape[0], CHUNK):
                    block = np.asarray(images[start : start + CHUNK])
                    count = block.shape[0]
                    if channels == 1:
                        grey = (block.astype(np.float32) @ GREY).round().clip(0, 255).astype(np.uint8)
                        array[start : start + count, 0] = grey
                    else:
                        array[start : start + count] = block.transpose(0, 3, 1, 2)
        except OSError as exc:
            raise DataError(f"{path}: cannot read its images ({str(exc).splitlines()[0][:120]})") from None
        return {"count": shape[0], "file": str(path)}

    array, _ = cached_array("shapes3d", key, (shape[0], channels, 64, 64), fill)
    images = array_source(array, "shapes3d", channels, image_size)
    return GridSource(images, f"3D Shapes ({path.name}, {shape[0]} images)", FACTOR_NAMES, FACTOR_SIZES)


def open_shapes3d(config: DataSection, data_path: str | None) -> GridSource:
    return load_shapes3d(data_root(LAYOUT, data_path, config.path), config.channels, config.image_size)


DATASET = Dataset("shapes3d", LAYOUT, open_shapes3d, factors=True)
