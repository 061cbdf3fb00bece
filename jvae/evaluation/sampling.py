"""Encoding drawn factor combinations: the codes the ground-truth metrics score, drawn as disentanglement_lib
draws them (`generate_batch_factor_code`), so the same seed gives its numbers."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from jvae.data.capabilities import GroundTruth

EncodeFn = Callable[[torch.Tensor], np.ndarray]
"""images (B, C, H, W) -> codes (B, D): any representation a metric can score."""


def factor_codes(
    encode: EncodeFn,
    dataset: GroundTruth,
    n: int,
    rng: np.random.RandomState,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> tuple[np.ndarray, np.ndarray]:
    """(codes (n, D), factors (n, K)) for `n` random factor draws (generate_batch_factor_code)."""
    codes, factors = [], []
    done = 0
    while done < n:
        count = min(batch_size, n - done)
        drawn = dataset.sample_factors(count, rng)
        codes.append(np.asarray(encode(dataset.observations(drawn, torch.device(device)))))
        factors.append(drawn)
        done += count
    return np.concatenate(codes), np.concatenate(factors)


def train_test_codes(
    encode: EncodeFn,
    dataset: GroundTruth,
    seed: int,
    num_train: int,
    num_test: int,
    batch_size: int,
    device: torch.device | str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Training then test (codes, factors), drawn in that order from one RandomState(seed)."""
    rng = np.random.RandomState(seed)
    x_train, y_train = factor_codes(encode, dataset, num_train, rng, batch_size, device)
    x_test, y_test = factor_codes(encode, dataset, num_test, rng, batch_size, device)
    return x_train, y_train, x_test, y_test


def encode_many(
    encode: EncodeFn, dataset: GroundTruth, factors: np.ndarray, device: torch.device | str, batch: int = 256
) -> np.ndarray:
    """The codes of given factor combinations, `batch` images at a time."""
    return np.concatenate(
        [
            np.asarray(encode(dataset.observations(factors[i : i + batch], torch.device(device))))
            for i in range(0, len(factors), batch)
        ]
    )
