"""Any directory tree of images, converted to the preset's channels and size and held in memory as uint8.

Files that cannot be decoded are either fatal (the default: a training set should not silently shrink) or,
with `on_unreadable = "skip"`, left out and listed on the source for the caller to report.
"""

from __future__ import annotations

from pathlib import Path

import torch

from jvae_cli.data.locations import not_found
from jvae_cli.data.sources import TensorImages
from jvae_cli.errors import DataError
from jvae_cli.images import ImageReadError, image_files, load_image


def load_folder(root: Path, channels: int, image_size: int, on_unreadable: str = "fail") -> TensorImages:
    if not root.is_dir():
        raise not_found("folder", root)
    paths = image_files([root])
    if not paths:
        raise DataError(
            f"no images found under {root} (looked for png, jpg, jpeg, webp, bmp, gif, tif, ppm, pgm)"
        )
    kept, skipped = [], []
    data = torch.empty(len(paths), channels, image_size, image_size, dtype=torch.uint8)
    for path in paths:
        try:
            image = load_image(path, channels, image_size)
        except ImageReadError as exc:
            if on_unreadable != "skip":
                raise DataError(f'{exc} (set data.on_unreadable = "skip" to leave such files out)') from None
            skipped.append((path, str(exc)))
            continue
        data[len(kept)] = (image * 255).round().to(torch.uint8)
        kept.append(path)
    if not kept:
        raise DataError(f"none of the {len(paths)} image files under {root} could be read")
    source = TensorImages(
        data[: len(kept)].clone(), f"folder {root} ({len(kept)} images)", channels, image_size
    )
    source.paths = kept
    source.skipped = skipped
    return source
