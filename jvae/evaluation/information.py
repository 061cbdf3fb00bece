"""Mutual information between code dimensions and factors: disentanglement_lib's estimator (20-bin histograms
of each code dimension, sklearn's mutual_info_score), and the matrix MIG, MIC and the report's "which unit
carries each factor" table all read, computed once per evaluation."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from jvae.evaluation.context import Evaluation
from jvae.evaluation.sampling import factor_codes
from jvae.modeling.latents import unit_address

CLEAR_MI = 0.1  # a unit clearly carries a factor with this much normalised MI ...
CLEAR_RATIO = 2  # ... and this many times the runner-up's


def mutual_info_score(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import mutual_info_score as score

    return float(score(a, b))


def histogram_discretize(codes: np.ndarray, bins: int = 20) -> np.ndarray:
    """Each column into `bins` equal-width bins over its own range (disentanglement_lib's discretiser)."""
    out = np.zeros(codes.shape, dtype=np.int64)
    for i in range(codes.shape[1]):
        edges = np.histogram(codes[:, i], bins)[1][:-1]
        out[:, i] = np.digitize(codes[:, i], edges)
    return out


def mutual_information_matrix(codes: np.ndarray, factors: np.ndarray, bins: int = 20) -> np.ndarray:
    """I(code dim i; factor j) in nats, (D, K), from histogram-discretised codes."""
    discrete = histogram_discretize(np.asarray(codes, dtype=np.float64), bins)
    factors = np.asarray(factors)
    return np.array(
        [
            [mutual_info_score(factors[:, j], discrete[:, i]) for j in range(factors.shape[1])]
            for i in range(discrete.shape[1])
        ]
    )


def factor_entropy(factor: np.ndarray) -> float:
    return mutual_info_score(factor, factor)


@dataclass
class Information:
    """The codes of `mig_points` drawn factor combinations and what they share with each factor."""

    codes: np.ndarray  # (N, D)
    factors: np.ndarray  # (N, K)
    mi: np.ndarray  # (D, K) mutual information in nats
    entropy: np.ndarray  # (K,) H(factor)
    informative: list[int]  # the factors that take more than one value in the draw
    normalised: np.ndarray  # (D, K) mi / H(factor); NaN for a factor of a single value
    factor_units: list[dict[str, Any]]  # per informative factor: its top unit, as the report lists it
    tops: list[int]  # per informative factor: the code column of its top unit


def factor_information(evaluation: Evaluation) -> Information:
    """`evaluation.shared(factor_information)`: drawn with RandomState(seed), as disentanglement_lib's MIG draws."""
    evaluation.say("mutual information (MIG, MIC)")
    dataset = evaluation.factors
    codes, factors = factor_codes(
        evaluation.encode,
        dataset,
        evaluation.counts["mig_points"],
        np.random.RandomState(evaluation.seed),
        device=evaluation.device,
    )
    informative = [j for j in range(factors.shape[1]) if len(np.unique(factors[:, j])) > 1]
    mi = mutual_information_matrix(codes, factors)
    entropy = np.array([factor_entropy(factors[:, j]) for j in range(factors.shape[1])])
    normalised = mi / np.where(entropy > 0, entropy, np.nan)
    factor_units, tops = [], []
    for j in informative:
        column = normalised[:, j]
        order = np.argsort(column)[::-1]
        top, second = float(column[order[0]]), float(column[order[1]]) if len(order) > 1 else 0.0
        unit = evaluation.units[order[0]]
        factor_units.append(
            {
                "factor": dataset.factor_names[j],
                "unit": unit_address(unit),
                "label": unit.label,
                "normalised_mi": top,
                "runner_up_mi": second,
                "clear": bool(top >= CLEAR_MI and top >= CLEAR_RATIO * second),
            }
        )
        tops.append(int(order[0]))
    return Information(codes, factors, mi, entropy, informative, normalised, factor_units, tops)


def as_table(found: Information) -> tuple[list[list[float]], list[dict[str, Any]]]:
    """The report's `mi_matrix` (factors x code columns, normalised) and `factor_units`."""
    matrix = [[float(v) for v in found.normalised[:, j]] for j in range(found.factors.shape[1])]
    return matrix, found.factor_units
