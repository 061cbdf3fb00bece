"""scikit-learn's bundled handwritten digits (1797 images of 8x8, UCI optdigits): real digits with labels that
need no download, upscaled once to the preset's size. Small enough to live in memory (and on the GPU)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from jvae_cli.data.locations import Layout
from jvae_cli.data.registry import Dataset
from jvae_cli.data.sources import TensorImages

if TYPE_CHECKING:
    from jvae_cli.sections import DataSection

MAX_VALUE = 16.0  # the bundled images hold integer intensities 0..16


def load_digits(channels: int, image_size: int) -> TensorImages:
    from sklearn.datasets import load_digits as bundled

    digits = bundled()
    pixels = torch.from_numpy(digits.images).float().unsqueeze(1) / MAX_VALUE  # (1797, 1, 8, 8) in [0, 1]
    resized = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    data = (resized.clamp(0, 1) * 255).round().to(torch.uint8)
    source = TensorImages(data, "digits (scikit-learn, 1797 images)", channels, image_size)
    source.labels = torch.from_numpy(digits.target).long()
    return source


def open_digits(config: DataSection, data_path: str | None) -> TensorImages:
    return load_digits(config.channels, config.image_size)


LAYOUT = Layout("digits", "nothing: scikit-learn ships it", "pip install scikit-learn")
DATASET = Dataset("digits", LAYOUT, open_digits, classes=10, labels=True)
