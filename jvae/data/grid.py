"""Datasets whose images are every combination of their factors, stored in the mixed-radix order of the
factors (the last one fastest): the row of a factor combination is arithmetic, so the ground-truth interface
needs no lookup table. 3D Shapes, smallNORB and Cars3D are read into this order once, into the cache."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from jvae.base.errors import DataError
from jvae.data.capabilities import uniform_factors
from jvae.data.sources import TensorImages


def strides(sizes: list[int]) -> np.ndarray:
    return np.cumprod([1, *sizes[::-1]])[:-1][::-1].astype(np.int64)


def index_to_factors(index: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Factor class indices (n, K) of grid rows `index`, the last factor fastest."""
    index = np.asarray(index, dtype=np.int64)
    return np.stack([(index // s) % n for s, n in zip(strides(sizes), sizes)], axis=1)


class GridSource:
    """Images (in factor order) with the ground-truth interface; a partial file holds the first rows."""

    def __init__(self, images: TensorImages, description: str, names: list[str], sizes: list[int]) -> None:
        self.inner = images
        self.description = description
        self.factor_names, self.factor_sizes = names, sizes
        self.strides = strides(sizes)
        self.count = int(np.prod(sizes))
        self.channels, self.image_size = images.channels, images.image_size

    def __len__(self) -> int:
        return len(self.inner)

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        return self.inner.images(indices, device)

    def factors(self, indices: np.ndarray) -> np.ndarray:
        """Factor class indices of dataset rows `indices`."""
        return index_to_factors(indices, self.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
        if len(self) < self.count:  # a partial file: draw among the combinations it holds
            draw = rng.integers if isinstance(rng, np.random.Generator) else rng.randint
            return self.factors(draw(0, len(self), size=n))
        return uniform_factors(self.factor_sizes, n, rng)

    def observations(self, factors: np.ndarray, device: torch.device) -> Tensor:
        rows = np.asarray(factors, dtype=np.int64) @ self.strides
        if rows.max(initial=0) >= len(self):
            raise DataError(f"{self.description} holds {len(self)} of the {self.count} factor combinations")
        return self.images(torch.from_numpy(rows), device)


class TableSource:
    """Images in their file's order with a factor row each (N, K): the ground-truth interface through a lookup,
    for datasets whose files need not hold every combination (a test file, a partial download)."""

    def __init__(
        self, images: TensorImages, description: str, names: list[str], sizes: list[int], factors: np.ndarray
    ) -> None:
        self.inner = images
        self.description = description
        self.factor_names, self.factor_sizes = names, sizes
        self.table = np.asarray(factors, dtype=np.int64)
        self.lookup = {tuple(row): i for i, row in enumerate(self.table.tolist())}
        self.complete = len(self.lookup) == int(np.prod(sizes))
        self.channels, self.image_size = images.channels, images.image_size

    def __len__(self) -> int:
        return len(self.inner)

    def images(self, indices: Tensor, device: torch.device) -> Tensor:
        return self.inner.images(indices, device)

    def sample_factors(self, n: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
        if not self.complete:  # draw among the combinations the files hold
            draw = rng.integers if isinstance(rng, np.random.Generator) else rng.randint
            return self.table[draw(0, len(self.table), size=n)]
        return uniform_factors(self.factor_sizes, n, rng)

    def observations(self, factors: np.ndarray, device: torch.device) -> Tensor:
        try:
            rows = [self.lookup[tuple(row)] for row in np.asarray(factors).tolist()]
        except KeyError as exc:
            raise DataError(f"{self.description} has no image with factors {exc.args[0]}") from None
        return self.images(torch.tensor(rows), device)
