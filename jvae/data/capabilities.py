"""What a dataset can offer beyond its images, as typed interfaces that metrics and evaluation accept.

Ground truth: a dataset with known generative factors says what they are called and how
many values each has, draws random factor combinations, and renders (or looks up) the images for given
factors. Labels: one class (or identity) per image. Each dataset's registry entry says which it has; the
functions here are the one place a live source is asked.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import Tensor


@runtime_checkable
class GroundTruth(Protocol):
    factor_names: list[str]
    factor_sizes: list[int]

    def sample_factors(self, n: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
        """Factor class indices, (n, K) int64, uniform over every factor."""
        ...

    def observations(self, factors: np.ndarray, device: torch.device) -> Tensor:
        """Images (n, C, H, W) in [0, 1] for factor class indices (n, K)."""
        ...


class Labelled(Protocol):
    labels: Tensor  # (N,) int64, one per image, in dataset order


def ground_truth(source: object) -> GroundTruth | None:
    """The source's factors interface, or None for a dataset without known factors."""
    return source if isinstance(source, GroundTruth) else None


def labels_of(source: object) -> Tensor | None:
    """The source's labels (N,), or None for a dataset without them."""
    labels = getattr(source, "labels", None)
    return labels if isinstance(labels, Tensor) else None


def skipped_files(source: object) -> list[tuple[Path, str]]:
    """Files a folder-like source left out as unreadable, with the reason; empty for other datasets."""
    skipped = getattr(source, "skipped", None)
    return list(skipped) if isinstance(skipped, list) else []


def uniform_factors(sizes: list[int], n: int, rng: np.random.Generator | np.random.RandomState) -> np.ndarray:
    """Independent uniform draws; accepts numpy's Generator or the RandomState disentanglement_lib uses."""
    draw = rng.integers if isinstance(rng, np.random.Generator) else rng.randint
    return np.stack([draw(0, size, size=n) for size in sizes], axis=1).astype(np.int64)
