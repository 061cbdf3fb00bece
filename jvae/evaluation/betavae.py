"""The beta-VAE score (Higgins et al. 2017), to disentanglement_lib's definition and defaults."""

from __future__ import annotations

import warnings

import numpy as np
import torch

from jvae.data.capabilities import GroundTruth
from jvae.evaluation.context import Evaluation
from jvae.evaluation.registry import Metric, first_paragraph
from jvae.evaluation.sampling import EncodeFn


def betavae_score(
    encode: EncodeFn,
    dataset: GroundTruth,
    *,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Higgins et al.'s score: logistic regression from mean |z_a - z_b| over pairs sharing one factor."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    rng = np.random.RandomState(seed)
    sizes = list(dataset.factor_sizes)

    def points(count: int) -> tuple[np.ndarray, np.ndarray]:
        features, labels = [], []
        for _ in range(count):
            index = rng.randint(len(sizes))
            first = dataset.sample_factors(batch_size, rng)
            second = dataset.sample_factors(batch_size, rng)
            second[:, index] = first[:, index]
            a = np.asarray(encode(dataset.observations(first, torch.device(device))))
            b = np.asarray(encode(dataset.observations(second, torch.device(device))))
            features.append(betavae_feature(a, b))
            labels.append(index)
        return np.array(features), np.array(labels)

    x_train, y_train = points(num_train)
    x_eval, y_eval = points(num_eval)
    model = LogisticRegression(random_state=rng)
    with warnings.catch_warnings():  # disentanglement_lib's default solver budget; not converging is expected
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x_train, y_train)
    return {
        "train_accuracy": float(model.score(x_train, y_train)),
        "eval_accuracy": float(model.score(x_eval, y_eval)),
    }


def betavae_feature(codes_a: np.ndarray, codes_b: np.ndarray) -> np.ndarray:
    """The beta-VAE score's input: mean absolute code difference over a batch of pairs, (D,)."""
    return np.mean(np.abs(codes_a - codes_b), axis=0)


def _compute(evaluation: Evaluation) -> dict[str, float]:
    return betavae_score(
        evaluation.encode,
        evaluation.factors,
        seed=evaluation.seed,
        num_train=evaluation.counts["num_train"],
        num_eval=evaluation.counts["num_eval"],
        device=evaluation.device,
    )


METRIC = Metric(
    "betavae",
    "beta-VAE score",
    first_paragraph(betavae_score),
    _compute,
    listed=50,
    reported=40,
    needs=("factors",),
    headline="eval_accuracy",
    progress="beta-VAE score",
)
