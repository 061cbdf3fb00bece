"""CelebA aligned faces: `img_align_celeba/*.jpg` (178x218), attributes and the official partition when present.

Preprocessing (documented in the README): the 148x148 square at (15, 40), which holds the face in every
aligned image, resized to the preset's size with a box filter; greyscale when the preset has one channel.
Decoded once into the preprocessing cache.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from jvae.base.errors import DataError
from jvae.data.folder import cached_crops
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import TensorImages, array_source

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

CROP = (15, 40, 163, 188)
PARTITIONS = {"train": 0, "test": 2}
LAYOUT = Layout(
    "celeba",
    "img_align_celeba/*.jpg (optionally list_attr_celeba.txt, list_eval_partition.txt)",
    "download it from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html",
)


def _table(path: Path, skip_header: int) -> dict[str, list[int]]:
    rows = {}
    for line in path.read_text().splitlines()[skip_header:]:
        parts = line.split()
        if len(parts) >= 2:
            rows[parts[0]] = [int(v) for v in parts[1:]]
    return rows


def load_celeba(root: Path, channels: int, image_size: int, split: str) -> TensorImages:
    folder: Path | None  # None when neither root nor its img_align_celeba folder holds the images
    folder = root / "img_align_celeba"
    if not folder.is_dir():
        folder = root if root.name == "img_align_celeba" and root.is_dir() else None
    if folder is None:
        raise not_found(LAYOUT, root)
    base = folder.parent
    files = sorted(folder.glob("*.jpg"))
    if not files:
        raise DataError(f"{folder} holds no .jpg images")
    partition_file = base / "list_eval_partition.txt"
    if split != "all":
        if not partition_file.is_file():
            raise DataError(f"data.split = {split!r} needs {partition_file} (the official partition)")
        partition = _table(partition_file, 0)
        files = [f for f in files if partition.get(f.name, [-1])[0] == PARTITIONS[split]]
    array = cached_crops("celeba", files, channels, image_size, CROP)
    source = array_source(array, f"CelebA ({folder}, {split}, {len(files)} images)", channels, image_size)
    source.paths = files
    attributes_file = base / "list_attr_celeba.txt"
    if attributes_file.is_file():
        lines = attributes_file.read_text().splitlines()
        source.attribute_names = lines[1].split()
        table = _table(attributes_file, 2)
        values = np.array([table.get(f.name, [-1] * len(source.attribute_names)) for f in files])
        source.attributes = torch.from_numpy((values > 0).astype(np.int64))
    return source


def open_celeba(config: DataSection, data_path: str | None) -> TensorImages:
    root = data_root(LAYOUT, data_path, config.path)
    return load_celeba(root, config.channels, config.image_size, config.split)


DATASET = Dataset("celeba", LAYOUT, open_celeba, attributes=True, splits=True)
