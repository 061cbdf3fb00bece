"""Any directory tree of images, converted to the preset's channels and size through the preprocessing cache.

Files that cannot be decoded are either fatal (the default: a training set should not silently shrink) or,
with `on_unreadable = "skip"`, left out and listed on the source for the caller to report.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from jvae.base.errors import DataError
from jvae.base.images import ImageReadError, image_files, load_image
from jvae.data.cache import cached_images
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import TensorImages, array_source

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

LAYOUT = Layout("folder", "a directory tree of images", "pass --data DIR")


def uint8_decoder(
    channels: int, image_size: int, crop: tuple[int, int, int, int] | None = None
) -> Callable[[Path], np.ndarray | str]:
    """A thread-safe file -> (C, H, W) uint8 function for the cache; a string says why a file is unreadable."""

    def decode(path: Path) -> np.ndarray | str:
        try:
            image = load_image(path, channels, image_size, crop)
        except ImageReadError as exc:
            return str(exc)
        return (image.numpy() * 255).round().astype(np.uint8)

    return decode


def load_folder(root: Path, channels: int, image_size: int, on_unreadable: str = "fail") -> TensorImages:
    if not root.is_dir():
        raise not_found(LAYOUT, root)
    paths = image_files([root])
    if not paths:
        raise DataError(
            f"no images found under {root} (looked for png, jpg, jpeg, webp, bmp, gif, tif, ppm, pgm)"
        )
    preprocessing = {"channels": channels, "size": image_size, "crop": "centre square", "resize": "box"}
    array, meta = cached_images(
        "folder",
        paths,
        preprocessing,
        (channels, image_size, image_size),
        uint8_decoder(channels, image_size),
    )
    skipped = [(paths[i], reason) for i, reason in zip(meta["skipped"], meta["reasons"])]
    if skipped and on_unreadable != "skip":
        raise DataError(f'{skipped[0][1]} (set data.on_unreadable = "skip" to leave such files out)')
    if not meta["kept"]:
        raise DataError(f"none of the {len(paths)} image files under {root} could be read")
    source = array_source(array, f"folder {root} ({len(meta['kept'])} images)", channels, image_size)
    source.paths = [paths[i] for i in meta["kept"]]
    source.skipped = skipped
    return source


def cached_crops(
    kind: str, files: list[Path], channels: int, image_size: int, crop: tuple[int, int, int, int]
) -> np.ndarray:
    """A dataset's files through its documented crop into the cache; every file must be readable."""
    preprocessing = {"channels": channels, "size": image_size, "crop": list(crop), "resize": "box"}
    shape = (channels, image_size, image_size)
    array, meta = cached_images(kind, files, preprocessing, shape, uint8_decoder(channels, image_size, crop))
    if meta["skipped"]:
        raise DataError(
            f"{len(meta['skipped'])} {kind} image(s) cannot be read; the first: {meta['reasons'][0]}"
        )
    return array


def open_folder(config: DataSection, data_path: str | None) -> TensorImages:
    root = data_root(LAYOUT, data_path, config.path)
    return load_folder(root, config.channels, config.image_size, config.on_unreadable)


DATASET = Dataset("folder", LAYOUT, open_folder)
