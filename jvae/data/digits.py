"""scikit-learn's bundled handwritten digits (1797 images of 8x8, UCI optdigits): real digits with labels that
need no download, upscaled once to the preset's size. Small enough to live in memory (and on the GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from jvae.data.locations import Layout
from jvae.data.registry import Dataset
from jvae.data.sources import TensorImages

if TYPE_CHECKING:
    from jvae.base.sections import DataSection

MAX_VALUE = 16.0  # the bundled images hold integer intensities 0..16


def _bundled() -> tuple[np.ndarray, np.ndarray]:
    """The 8x8 images and their labels. Read straight from the CSV that scikit-learn ships, because importing
    scikit-learn costs about a second, which every `jvae` command on digits (and every child of a sweep)
    would pay for 1797 rows; scikit-learn's own loader is the fallback if that file ever moves."""
    spec = importlib.util.find_spec("sklearn")
    roots = spec.submodule_search_locations if spec is not None else None
    if roots:
        table = Path(next(iter(roots))) / "datasets" / "data" / "digits.csv.gz"
        if table.is_file():
            rows = np.loadtxt(table, delimiter=",")
            return rows[:, :-1].reshape(-1, 8, 8), rows[:, -1].astype(np.int64)
    from sklearn.datasets import load_digits as bundled

    digits = bundled()
    return digits.images, digits.target


def load_digits(channels: int, image_size: int) -> TensorImages:
    images, labels = _bundled()
    pixels = torch.from_numpy(images).float().unsqueeze(1) / MAX_VALUE  # (1797, 1, 8, 8) in [0, 1]
    resized = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    data = (resized.clamp(0, 1) * 255).round().to(torch.uint8)
    source = TensorImages(data, "digits (scikit-learn, 1797 images)", channels, image_size)
    source.labels = torch.from_numpy(labels).long()
    return source


def open_digits(config: DataSection, data_path: str | None) -> TensorImages:
    return load_digits(config.channels, config.image_size)


LAYOUT = Layout("digits", "nothing: scikit-learn ships it", "pip install scikit-learn")
DATASET = Dataset("digits", LAYOUT, open_digits, classes=10, labels=True)
