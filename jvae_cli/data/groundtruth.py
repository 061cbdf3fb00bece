"""The ground-truth interface that disentanglement metrics read (DESIGN.md section 5).

A dataset with known generative factors says what they are called and how many values each has, draws
random factor combinations, and renders (or looks up) the images for given factors.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
from torch import Tensor


class GroundTruth(Protocol):
    factor_names: list[str]
    factor_sizes: list[int]

    def sample_factors(self, n: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
        """Factor class indices, (n, K) int64, uniform over every factor."""
        ...

    def observations(self, factors: np.ndarray, device: torch.device) -> Tensor:
        """Images (n, C, H, W) in [0, 1] for factor class indices (n, K)."""
        ...


def uniform_factors(sizes: list[int], n: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
    """Independent uniform draws; accepts numpy's Generator or the RandomState disentanglement_lib uses."""
    draw = rng.integers if isinstance(rng, np.random.Generator) else rng.randint
    return np.stack([draw(0, size, size=n) for size in sizes], axis=1).astype(np.int64)
