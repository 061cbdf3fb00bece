"""The Mutual Information Concentration (Grouped-VAE, eq. 13) of each factor in its top unit."""

from __future__ import annotations

import numpy as np

from jvae.evaluation.context import Evaluation
from jvae.evaluation.information import factor_entropy, factor_information, mutual_information_matrix
from jvae.evaluation.registry import Metric, first_paragraph


def mic(codes: np.ndarray, factor: np.ndarray, dims: list[int] | np.ndarray, bins: int = 20) -> float:
    """Mutual Information Concentration of one factor in the code dimensions `dims` (Grouped-VAE, eq. 13)."""
    factor = np.asarray(factor).reshape(-1)
    m = mutual_information_matrix(codes, factor[:, None], bins)[:, 0]  # (D,)
    return concentration(m, dims, factor_entropy(factor))


def concentration(mi: np.ndarray, dims: list[int] | np.ndarray, entropy: float) -> float:
    """MIC from one factor's MI with every code dimension (D,) and its entropy."""
    inside = np.zeros(mi.shape[0], dtype=bool)
    inside[list(dims)] = True
    if entropy == 0:
        raise ValueError("the factor has a single value; MIC is undefined")
    return float((mi[inside].sum() - mi[~inside].sum()) / entropy)


def _compute(evaluation: Evaluation) -> dict[str, float]:
    """Each factor's MIC in its top unit, also written beside it in the report's table of factor units."""
    found = evaluation.shared(factor_information)
    for j, top, entry in zip(found.informative, found.tops, found.factor_units):
        entry["mic"] = concentration(found.mi[:, j], [top], found.entropy[j])
    return {entry["factor"]: entry["mic"] for entry in found.factor_units}


METRIC = Metric(
    "mic",
    "MIC (factor in its top unit)",
    first_paragraph(mic) + " Reported for each factor in its top unit.",
    _compute,
    listed=90,
    reported=60,
    needs=("factors",),
)
