"""MNIST and FashionMNIST in torchvision's layout, resized once from 28x28 to the preset's size as the paper does."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from jvae_cli.data.locations import not_found
from jvae_cli.data.sources import TensorImages
from jvae_cli.errors import DataError

_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}


def load_mnist(
    dataset: str, root: Path, channels: int, image_size: int, download: bool, split: str = "all"
) -> TensorImages:
    """The 60000 training images (split 'all' or 'train', what the paper trains on) or the 10000 test images."""
    from torchvision import datasets

    folder = _CLASSES[dataset]
    cls = getattr(datasets, folder)
    if not download and not (root / folder / "raw").is_dir():
        raise not_found(dataset, root)
    try:
        train = cls(str(root), train=split != "test", download=download)
    except RuntimeError as exc:
        if "not found" in str(exc).lower():
            raise not_found(dataset, root) from None
        raise DataError(f"{root}: cannot read {folder} ({exc})") from None
    except OSError as exc:
        raise DataError(f"{root}: cannot read or fetch {folder} ({exc})") from None
    pixels = train.data.unsqueeze(1).float()  # (N, 1, 28, 28)
    resized = F.interpolate(pixels, size=(image_size, image_size), mode="bilinear", align_corners=False)
    data = resized.round().clamp(0, 255).to(torch.uint8)
    part = "test" if split == "test" else "train"
    source = TensorImages(data, f"{folder} {part} ({root})", channels, image_size)
    source.labels = train.targets.clone()
    return source
