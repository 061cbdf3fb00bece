"""The Mutual Information Gap (Chen et al. 2018), to disentanglement_lib's estimator; also watched while
training with `train.eval_mig`."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jvae.data.capabilities import ground_truth
from jvae.evaluation.context import Evaluation, representation
from jvae.evaluation.information import factor_entropy, factor_information, mutual_information_matrix
from jvae.evaluation.registry import Metric, Training, first_paragraph
from jvae.evaluation.sampling import factor_codes

TRAINING_POINTS = 2000  # factor draws of each MIG measured while training


def mig(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> float:
    """Mutual Information Gap (Chen et al. 2018): mean over factors of (top1 - top2 MI over code dims) / H(factor).

    Factors with a single value (zero entropy) are left out; with fewer than two code dimensions the gap is
    the top MI itself.
    """
    factors = np.asarray(factors)
    keep = [j for j in range(factors.shape[1]) if len(np.unique(factors[:, j])) > 1]
    if not keep:
        raise ValueError("every factor has a single value; MIG is undefined")
    m = mutual_information_matrix(codes, factors[:, keep], bins)  # (D, K)
    entropy = np.array([factor_entropy(factors[:, j]) for j in keep])
    return mutual_information_gap(m, entropy)


def mutual_information_gap(mi: np.ndarray, entropy: np.ndarray) -> float:
    """MIG from the MI matrix (D, K) of factors that vary and their entropies (K,)."""
    ranked = np.sort(mi, axis=0)[::-1]
    second = ranked[1] if ranked.shape[0] > 1 else np.zeros(ranked.shape[1])
    return float(np.mean((ranked[0] - second) / entropy))


def _compute(evaluation: Evaluation) -> float:
    found = evaluation.shared(factor_information)
    if not found.informative:
        raise ValueError("every factor has a single value; MIG is undefined")
    keep = found.informative
    return mutual_information_gap(found.mi[:, keep], found.entropy[keep])


def _while_training(training: Training) -> dict[str, Any] | None:
    factors = ground_truth(training.source)
    if not training.preset.train.eval_mig or factors is None:
        return None
    with torch.no_grad():
        codes, values = factor_codes(
            representation(training.model),
            factors,
            TRAINING_POINTS,
            np.random.RandomState(training.seed),
            device=training.device,
        )
    return {"mig": mig(codes, values)}


METRIC = Metric(
    "mig",
    "MIG",
    first_paragraph(mig),
    _compute,
    listed=60,
    reported=50,
    needs=("factors",),
    during_training=_while_training,
)
