"""MNIST and FashionMNIST in torchvision's layout, resized once from 28x28 to the preset's size as the paper does."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from jvae_cli.data.locations import Layout, data_root, not_found
from jvae_cli.data.registry import Dataset
from jvae_cli.data.sources import TensorImages
from jvae_cli.errors import DataError

if TYPE_CHECKING:
    from jvae_cli.presets import DataConfig

_CLASSES = {"mnist": "MNIST", "fashion-mnist": "FashionMNIST"}
LAYOUTS = {
    name: Layout(
        name,
        f"{folder}/raw/train-images-idx3-ubyte and train-labels-idx1-ubyte",
        "on a connected machine pass --set data.download=true",
    )
    for name, folder in _CLASSES.items()
}


def load_mnist(
    dataset: str, root: Path, channels: int, image_size: int, download: bool, split: str = "all"
) -> TensorImages:
    """The 60000 training images (split 'all' or 'train', what the paper trains on) or the 10000 test images."""
    from torchvision import datasets

    folder = _CLASSES[dataset]
    cls = getattr(datasets, folder)
    if not download and not (root / folder / "raw").is_dir():
        raise not_found(LAYOUTS[dataset], root)
    try:
        train = cls(str(root), train=split != "test", download=download)
    except RuntimeError as exc:
        if "not found" in str(exc).lower():
            raise not_found(LAYOUTS[dataset], root) from None
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


def open_mnist(config: DataConfig, data_path: str | None) -> TensorImages:
    root = data_root(LAYOUTS[config.dataset], data_path, config.path, config.download)
    return load_mnist(config.dataset, root, config.channels, config.image_size, config.download, config.split)


DATASETS = tuple(
    Dataset(name, LAYOUTS[name], open_mnist, classes=10, labels=True, splits=True) for name in _CLASSES
)
