"""The dSprites variants of disentanglement_lib (Locatello et al. 2019), drawn from jvae's dSprites generator
on the training device: colour-dsprites (each image's sprite in a random colour, every channel uniform in
[0.5, 1]), noisy-dsprites (the background replaced by uniform noise) and scream-dsprites (the background a
random 64x64 patch of Munch's The Scream, its colour shifted at random and averaged with the painting, the
sprite's pixels inverted).

The random draws of image i are a fixed function of i (a counter-based hash, seeded by VARIANT_SEED), so an
image is the same whenever it is drawn: training, evaluation and every process agree without sharing
generator state, and nothing of size 737280 x 64 x 64 x 3 is ever held. The factors are dSprites' five.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from jvae.base.errors import DataError
from jvae.data.dsprites import FACTOR_SIZES, SIDE, STRIDES, GeneratedDSprites, factors_to_index, render
from jvae.data.locations import Layout, data_root, not_found
from jvae.data.registry import Dataset
from jvae.data.sources import fit_images

if TYPE_CHECKING:
    from jvae.base.sections import DataSection
    from jvae.data.sources import ImageSource

VARIANT_SEED = 0
MASK32 = 0xFFFFFFFF
SCREAM_FILE = "The_Scream.jpg"
SCREAM_SIZE = (350, 274)  # (width, height) the painting is resized to, as disentanglement_lib does
SCREAM_URL = "https://upload.wikimedia.org/wikipedia/commons/f/f4/The_Scream.jpg"


def hash32(x: Tensor) -> Tensor:
    """A 32-bit integer hash of int64 values below 2^32 (xorshift-multiply rounds with multipliers below
    2^31, so every product fits in int64): the same bits on every device."""
    x = ((x ^ (x >> 16)) * 0x2C1B3C6D) & MASK32
    x = ((x ^ (x >> 15)) * 0x297A2D39) & MASK32
    return x ^ (x >> 16)


def draws(index: Tensor, slot: int, count: int) -> Tensor:
    """`count` uniform floats in [0, 1) per image (n, count): the slot-th stream of each image's draws, a
    hash of (image, slot) hashed again with each draw's number."""
    stream = hash32((index.long() * 16 + slot + VARIANT_SEED * 0x9E3779B1) & MASK32)  # (n,)
    numbers = torch.arange(count, device=index.device)
    return hash32(stream.unsqueeze(1) ^ numbers).float() / 2**32


class _Variant(GeneratedDSprites):
    """dSprites' factors and generator, three channels, the colouring of `_colour`."""

    def __init__(self, channels: int, image_size: int) -> None:
        super().__init__(channels, image_size)

    def _colour(self, sprite: Tensor, index: Tensor) -> Tensor:
        raise NotImplementedError

    def observations(self, factors: np.ndarray, device: torch.device) -> Tensor:
        factors = np.asarray(factors)
        index = torch.from_numpy(factors_to_index(factors)).to(device)
        sprite = render(torch.from_numpy(factors.astype(np.int64)), device)
        return fit_images(self._colour(sprite, index), self.channels, self.image_size)

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        index = indices.to(device=device, dtype=torch.long)
        strides = torch.as_tensor(STRIDES[1:], device=device)
        sizes = torch.as_tensor(FACTOR_SIZES, device=device)
        sprite = render((index.unsqueeze(1) // strides) % sizes, device)
        return fit_images(self._colour(sprite, index), self.channels, self.image_size)


class ColourDSprites(_Variant):
    description = "colour-dSprites (generated)"

    def _colour(self, sprite: Tensor, index: Tensor) -> Tensor:
        colour = 0.5 + 0.5 * draws(index, 0, 3)  # (n, 3) in [0.5, 1)
        return sprite * colour.view(-1, 3, 1, 1)


class NoisyDSprites(_Variant):
    description = "noisy-dSprites (generated)"

    def _colour(self, sprite: Tensor, index: Tensor) -> Tensor:
        noise = draws(index, 1, 3 * SIDE * SIDE).view(-1, 3, SIDE, SIDE)
        return torch.minimum(sprite + noise, torch.ones((), device=sprite.device))


class ScreamDSprites(_Variant):
    description = "scream-dSprites (generated)"

    def __init__(self, channels: int, image_size: int, painting: Path) -> None:
        super().__init__(channels, image_size)
        from PIL import Image

        try:
            with Image.open(painting) as opened:
                picture = opened.convert("RGB").resize(SCREAM_SIZE, Image.Resampling.BILINEAR)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise DataError(f"cannot read the painting {painting}: {exc}") from None
        self.painting = torch.from_numpy(np.asarray(picture, dtype=np.float32) / 255.0).permute(2, 0, 1)
        self._on: dict[torch.device, Tensor] = {}

    def _colour(self, sprite: Tensor, index: Tensor) -> Tensor:
        device = sprite.device
        if device not in self._on:
            self._on[device] = self.painting.to(device)
        painting = self._on[device]  # (3, H, W)
        n = index.shape[0]
        picks = draws(index, 2, 5)  # x offset, y offset, colour shift of 3 channels
        height, width = painting.shape[1:]
        left = (picks[:, 0] * (width - SIDE)).long()
        top = (picks[:, 1] * (height - SIDE)).long()
        span = torch.arange(SIDE, device=device)
        rows = (top.view(n, 1) + span).view(n, 1, SIDE, 1).expand(n, 3, SIDE, SIDE)
        columns = (left.view(n, 1) + span).view(n, 1, 1, SIDE).expand(n, 3, SIDE, SIDE)
        channels = torch.arange(3, device=device).view(1, 3, 1, 1).expand(n, 3, SIDE, SIDE)
        patch = painting[channels, rows, columns]  # (n, 3, 64, 64)
        background = (patch + picks[:, 2:].view(n, 3, 1, 1)) / 2
        mask = sprite.expand(-1, 3, -1, -1) > 0.5
        return torch.where(mask, 1 - background, background)


def _painting(root: Path) -> Path:
    for candidate in (root, root / SCREAM_FILE, root / "scream-dsprites" / SCREAM_FILE):
        if candidate.is_file():
            return candidate
    raise not_found(SCREAM_LAYOUT, root)


def open_colour(config: DataSection, data_path: str | None) -> ImageSource:
    return ColourDSprites(config.channels, config.image_size)


def open_noisy(config: DataSection, data_path: str | None) -> ImageSource:
    return NoisyDSprites(config.channels, config.image_size)


def open_scream(config: DataSection, data_path: str | None) -> ImageSource:
    root = data_root(SCREAM_LAYOUT, data_path, config.path)
    return ScreamDSprites(config.channels, config.image_size, _painting(root))


GENERATED = Layout("dsprites", "nothing: drawn by jvae's dSprites generator", 'set data.source = "generated"')
SCREAM_LAYOUT = Layout(
    "scream-dsprites",
    f"{SCREAM_FILE} (the painting; any size, resized to 350x274)",
    f"download it from {SCREAM_URL}",
)
DATASETS = (
    Dataset("color-dsprites", GENERATED, open_colour, factors=True, generated=True),
    Dataset("noisy-dsprites", GENERATED, open_noisy, factors=True, generated=True),
    Dataset("scream-dsprites", SCREAM_LAYOUT, open_scream, factors=True, generated=True),
)
