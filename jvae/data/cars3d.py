"""Cars3D (Reed et al. 2015): renders of 183 car models at 4 elevations and 24 azimuths, factors elevation
4, azimuth 24, object 183 (disentanglement_lib's order).

The publisher's `cars/` folder holds one MATLAB file per car (`car_NNN_mesh.mat`) whose `im` array is
(128, 128, 3, 24, 4): height, width, colour, azimuth, elevation. Cars are numbered by their files' sorted
order; the renders are area-resized to 64x64 and stored once in the cache in factor order.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from jvae.base.errors import DataError
from jvae.data.cache import cached_array
from jvae.data.grid import GridSource, strides
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import array_source

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

FACTOR_NAMES = ["elevation", "azimuth", "object"]
ELEVATIONS, AZIMUTHS, OBJECTS = 4, 24, 183
GREY = np.array([0.299, 0.587, 0.114], dtype=np.float32)
LAYOUT = Layout(
    "cars3d",
    "cars/car_NNN_mesh.mat (183 MATLAB files, each with im (128, 128, 3, 24, 4))",
    "download nips2015-analogy-data.tar.gz from http://www.scottreed.info/ and unpack its data/cars",
)


def _files(root: Path) -> list[Path]:
    for folder in (root / "cars", root / "data" / "cars", root):
        found = sorted(folder.glob("*.mat")) if folder.is_dir() else []
        if found:
            return found
    raise not_found(LAYOUT, root)


SIDE_MAX = 256  # the published renders are 128 x 128


def _check_header(path: Path) -> None:
    """The shape of the file's `im`, read from its header before any image is decompressed: a small file
    can hold a compressed array of gigabytes."""
    from scipy.io import whosmat

    shapes = {name: shape for name, shape, _ in whosmat(str(path))}
    if "im" not in shapes:
        raise DataError(f"{path}: not a Cars3D render file (no variable im)")
    shape = tuple(shapes["im"])
    if len(shape) != 5 or shape[2:] != (3, AZIMUTHS, ELEVATIONS) or max(shape[:2]) > SIDE_MAX:
        raise DataError(
            f"{path}: im has shape {shape}, expected (H, W, 3, 24, 4) with H and W at most {SIDE_MAX}"
        )


def load_cars3d(root: Path, channels: int, image_size: int) -> GridSource:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    files = _files(root)
    if len(files) > OBJECTS:
        raise DataError(f"{root}: {len(files)} .mat files, more than Cars3D's {OBJECTS} cars")
    sizes = [ELEVATIONS, AZIMUTHS, len(files)]  # a folder of fewer cars is a smaller grid
    order = strides(sizes)
    stats = "|".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    key = hashlib.sha256(f"{root.resolve()}|{stats}|{channels}".encode()).hexdigest()[:20]

    def fill(array: np.ndarray) -> dict:
        for car, path in enumerate(files):
            try:
                _check_header(path)
                renders = loadmat(str(path), variable_names=["im"])["im"]
            except (OSError, ValueError, KeyError, TypeError, NotImplementedError, MatReadError) as exc:
                raise DataError(
                    f"{path}: not a Cars3D render file ({str(exc).splitlines()[0][:100]})"
                ) from None
            if renders.ndim != 5 or renders.shape[2:] != (3, AZIMUTHS, ELEVATIONS):
                raise DataError(f"{path}: im has shape {renders.shape}, expected (H, W, 3, 24, 4)")
            block = torch.from_numpy(
                np.ascontiguousarray(renders.transpose(4, 3, 2, 0, 1)).astype(np.float32)
            )
            block = block.reshape(ELEVATIONS * AZIMUTHS, 3, *renders.shape[:2])
            if float(block.max()) <= 1.0:  # some releases store 0..1 floats
                block = block * 255
            resized = F.interpolate(block, size=(64, 64), mode="area").round().clamp(0, 255)
            if channels == 1:
                resized = (resized.permute(0, 2, 3, 1) @ torch.from_numpy(GREY)).unsqueeze(1).round()
            elevation, azimuth = np.divmod(np.arange(ELEVATIONS * AZIMUTHS), AZIMUTHS)
            rows = elevation * order[0] + azimuth * order[1] + car * order[2]
            array[rows] = resized.to(torch.uint8).numpy()
        return {"count": int(np.prod(sizes))}

    array, _ = cached_array("cars3d", key, (int(np.prod(sizes)), channels, 64, 64), fill)
    images = array_source(array, "cars3d", channels, image_size)
    return GridSource(images, f"Cars3D ({len(files)} cars)", FACTOR_NAMES, sizes)


def open_cars3d(config: DataSection, data_path: str | None) -> GridSource:
    return load_cars3d(data_root(LAYOUT, data_path, config.path), config.channels, config.image_size)


DATASET = Dataset("cars3d", LAYOUT, open_cars3d, factors=True)
