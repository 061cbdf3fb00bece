"""Scores of the encoder means that need no factors or labels (disentanglement_lib's unsupervised scores and
the active units of Burda et al. 2016)."""

from __future__ import annotations

import numpy as np
import torch

from jvae.evaluation.context import Evaluation
from jvae.evaluation.information import histogram_discretize, mutual_info_score
from jvae.evaluation.registry import Metric, first_paragraph
from jvae.modeling.latents import encode_from


def gaussian_total_correlation(means: np.ndarray) -> float:
    """Total correlation of a Gaussian with the encoder means' covariance (disentanglement_lib's unsupervised
    score): 0.5 (sum_i log C_ii - log det C); 0 for independent units. Units that never vary are left out."""
    varying = means[:, np.var(means, axis=0) > 1e-12]
    if varying.shape[1] < 2:
        return 0.0
    covariance = np.cov(varying, rowvar=False)
    sign, logdet = np.linalg.slogdet(covariance)
    if sign <= 0:
        return float("inf")
    return float(0.5 * (np.sum(np.log(np.diag(covariance))) - logdet))


def mutual_information_between_units(means: np.ndarray, bins: int = 20) -> float:
    """Mean mutual information (nats) between pairs of distinct units of the histogram-discretised means
    (disentanglement_lib's unsupervised mutual_info_score); 0 for independent units."""
    units = means.shape[1]
    if units < 2:
        return 0.0
    discrete = histogram_discretize(np.asarray(means, dtype=np.float64), bins)
    total = sum(
        mutual_info_score(discrete[:, i], discrete[:, j])
        for i in range(units)
        for j in range(units)
        if i != j
    )
    return float(total / (units * units - units))


def active_units(means: np.ndarray, threshold: float = 0.01) -> int:
    """Units whose mean varies across the data by more than `threshold` (Burda et al. 2016's criterion)."""
    return int(np.sum(np.var(means, axis=0) > threshold))


SCORES = {
    "gaussian_total_correlation": gaussian_total_correlation,
    "mutual_information": mutual_information_between_units,
    "active_units": active_units,
}


def unsupervised_scores(means: np.ndarray) -> dict[str, float]:
    """Scores that need no factors or labels, on encoder means (N, D)."""
    return {name: float(score(means)) for name, score in SCORES.items()}


def _compute(evaluation: Evaluation) -> dict[str, float]:
    """On the means of num_train images drawn with RandomState(seed + 2)."""
    source, device = evaluation.source, evaluation.device
    rng = np.random.RandomState(evaluation.seed + 2)
    picks = rng.choice(len(source), size=min(len(source), evaluation.counts["num_train"]), replace=False)
    batches = [torch.from_numpy(picks[i : i + 256]) for i in range(0, len(picks), 256)]
    with torch.no_grad():
        means = np.concatenate(
            [
                encode_from(evaluation.model, source, batch, device).mean.float().cpu().numpy()
                for batch in batches
            ]
        )
    return unsupervised_scores(means)


METRIC = Metric(
    "unsupervised",
    "unsupervised (encoder means)",
    " ".join(f"`{name}`: {first_paragraph(score)}" for name, score in SCORES.items()),
    _compute,
    listed=110,
    reported=20,
    applies=lambda model: model.continuous > 0,
    progress="unsupervised scores of the encoder means",
)
