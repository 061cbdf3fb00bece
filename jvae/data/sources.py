"""What the trainer reads: a numbered set of images, fetched a batch of indices at a time.

Batches are gathered by indexing whole tensors (no per-sample Dataset round trip), which is what keeps the
input pipeline off the profile for in-memory data; a source that renders its images (generated dSprites)
draws them straight on the training device.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor


class ImageSource(Protocol):
    """A dataset as the trainer and the latent tools see it."""

    description: str
    channels: int
    image_size: int

    def __len__(self) -> int: ...

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        """Float images in [0, 1], (B, C, H, W) on `device`, for dataset indices (B,)."""
        ...


def fit_images(images: Tensor, channels: int, image_size: int) -> Tensor:
    """Convert a float batch (B, C, H, W) to the preset's channels and size (area resize, grey <-> RGB)."""
    if images.shape[1] != channels:
        if channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype)
            images = (images * weights.view(1, 3, 1, 1)).sum(dim=1, keepdim=True)
        else:
            images = images.expand(-1, channels, -1, -1)
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        images = F.interpolate(images, size=(image_size, image_size), mode="area")
    return images.contiguous()


class TensorImages:
    """A whole dataset held as one uint8 tensor (N, C, H, W), copied to the training device on first use."""

    # Declared, not set: only a dataset with named binary attributes (CelebA, where its annotation file is
    # present) gives its images these.
    attribute_names: list[str]
    attributes: Tensor  # (N, len(attribute_names)) int64, 1 where the image has the attribute

    def __init__(self, data: Tensor, description: str, channels: int, image_size: int) -> None:
        if data.dtype != torch.uint8 or data.dim() != 4:
            raise ValueError(f"expected uint8 (N, C, H, W), got {data.dtype} {tuple(data.shape)}")
        self.data = data
        self.description = description
        self.channels = channels
        self.image_size = image_size
        self.labels: Tensor | None = None
        self.paths: list[Path] | None = None  # where each image came from, for folder datasets
        self.skipped: list[tuple[Path, str]] = []  # unreadable files left out, with the reason
        self._on_device: dict[torch.device, Tensor] = {}

    def __len__(self) -> int:
        return self.data.shape[0]

    def _resident(self, device: torch.device) -> Tensor:
        if device not in self._on_device:
            self._on_device[device] = self.data.to(device)
        return self._on_device[device]

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        data = self._resident(device)
        batch = data[indices.to(device)].float().div_(255.0)
        return fit_images(batch, self.channels, self.image_size)


class MappedImages(TensorImages):
    """A uint8 (N, C, H, W) array too large for memory, read from its memory-mapped cache file per batch."""

    def __init__(self, array: np.ndarray, description: str, channels: int, image_size: int) -> None:
        super().__init__(
            torch.zeros(0, *array.shape[1:], dtype=torch.uint8), description, channels, image_size
        )
        self.array = array

    def __len__(self) -> int:
        return self.array.shape[0]

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        rows = np.sort(indices.cpu().numpy())  # sorted reads are sequential on disk
        order = np.argsort(np.argsort(indices.cpu().numpy()))
        batch = torch.from_numpy(np.ascontiguousarray(self.array[rows]))[torch.from_numpy(order)]
        return fit_images(batch.to(device).float().div_(255.0), self.channels, self.image_size)


def array_source(array: np.ndarray, description: str, channels: int, image_size: int) -> TensorImages:
    """In memory when the cache was small enough to load, else read through the memory map."""
    if isinstance(array, np.memmap):
        return MappedImages(array, description, channels, image_size)
    return TensorImages(torch.from_numpy(array), description, channels, image_size)
