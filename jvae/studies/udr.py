"""Unsupervised model selection: UDR (Duan et al., ICLR 2020, "Unsupervised Model Selection for Variational
Disentangled Representation Learning") over the runs of one setting.

Disentangled runs of one setting agree with each other up to a permutation and sign flips of their units,
while entangled runs each mix the factors in their own way. UDR encodes the same images with every run,
measures for every ordered pair of runs (i, j) how strongly each informative unit of i is tied to a single
unit of j and vice versa, and gives each run the median of its pairs: a score in [0, 1] that needs no labels.

The continuous part follows disentanglement_lib's `compute_udr_sklearn` step for step, so the scores match
it on the same representations: posterior means standardised per unit, units whose mean KL over the images
is at most 0.01 nats zeroed and left out, |Spearman correlation| (UDR_S, what jvae selects by: 1 for runs
equal up to permutation and sign) or |Lasso coefficients| with alpha 0.1 (UDR_L, the library's default,
whose shrinkage gives such runs 1 - alpha = 0.9) between every pair of units, and the "relative strength" of the
resulting matrix: the mean over rows and over columns of max^2 / sum. JointVAE's discrete variables take
part as units of their own: two discrete variables are compared by the normalised mutual information of their
argmax categories (1 for relabelled categories), a continuous unit and a discrete variable by the correlation
ratio of the unit's means across the categories (how much of its variance the categories explain, as a
correlation would, adjusted for chance), and a discrete variable is informative, like a unit, when its mean KL exceeds 0.01.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

KL_THRESHOLD = 0.01  # nats: disentanglement_lib's kl_filter_threshold
LASSO_ALPHA = 0.1
IMAGES = 1000  # disentanglement_lib's num_data_points
METHODS = ("lasso", "spearman")


@dataclass
class Representation:
    """One run's code of the shared images: what UDR compares between runs."""

    means: np.ndarray  # (N, D) posterior means of the continuous units
    kl_continuous: np.ndarray  # (D,) mean KL of each unit over the images
    categories: list[np.ndarray]  # each (N,): argmax category of a discrete variable
    kl_discrete: np.ndarray  # (V,) mean KL of each discrete variable

    @property
    def informative(self) -> np.ndarray:
        """Which units, continuous then discrete, carry more than KL_THRESHOLD nats."""
        return np.concatenate([self.kl_continuous > KL_THRESHOLD, self.kl_discrete > KL_THRESHOLD])


# ----------------------------------------------------------------------------------------------- scores


def relative_strength(matrix: np.ndarray) -> float:
    """How close `matrix` (units of one run x units of another) is to one strong entry per row and per
    column: the mean over columns and over rows of max^2 / sum, averaged (disentanglement_lib's
    `relative_strength_disentanglement`; 0 for an empty or all-zero matrix)."""
    if matrix.size == 0:
        return 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        columns = np.nan_to_num(np.max(matrix, axis=0) ** 2 / np.sum(matrix, axis=0), nan=0.0)
        rows = np.nan_to_num(np.max(matrix, axis=1) ** 2 / np.sum(matrix, axis=1), nan=0.0)
    return float((np.nanmean(columns) + np.nanmean(rows)) / 2)


def spearman_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|Spearman correlation| of every column of `a` with every column of `b`, (Da, Db); NaN for a
    constant column, as scipy gives it."""
    from scipy.stats import rankdata

    ranks_a, ranks_b = rankdata(a, axis=0), rankdata(b, axis=0)
    centred_a, centred_b = ranks_a - ranks_a.mean(axis=0), ranks_b - ranks_b.mean(axis=0)
    norms = np.outer(np.linalg.norm(centred_a, axis=0), np.linalg.norm(centred_b, axis=0))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.abs(centred_a.T @ centred_b / norms)


def lasso_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|coefficients| of a Lasso regression (alpha 0.1) of `b`'s units on `a`'s, as (Da, Db)."""
    from sklearn.linear_model import Lasso

    model = Lasso(alpha=LASSO_ALPHA)
    model.fit(a, b)
    return np.abs(np.asarray(model.coef_).reshape(b.shape[1], a.shape[1])).T


def correlation_ratio(values: np.ndarray, categories: np.ndarray) -> float:
    """eta: how much of `values`' spread the category means explain, sqrt of the between-group share of the
    sum of squares, adjusted for chance (epsilon-squared: what K groups of random labels explain on average
    is taken off, so unrelated labels give about 0 instead of sqrt((K - 1) / N)); 1 when the categories fix
    the value."""
    total = float(np.sum((values - values.mean()) ** 2))
    count = len(values)
    _, inverse, sizes = np.unique(categories, return_inverse=True, return_counts=True)
    groups = len(sizes)
    if total == 0.0 or groups < 2:
        return 0.0
    sums = np.bincount(inverse, weights=values)
    between = float(np.sum(sums**2 / sizes) - values.sum() ** 2 / count)
    within = max(total - between, 0.0)
    chance = (groups - 1) * within / max(count - groups, 1)
    return math.sqrt(min(max((between - chance) / total, 0.0), 1.0))


def category_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information of two category assignments (1 for the same partition relabelled)."""
    from sklearn.metrics import normalized_mutual_info_score

    return float(normalized_mutual_info_score(a, b))


def standardised(representation: Representation) -> np.ndarray:
    """The means scaled to unit variance per unit (sklearn's StandardScaler), uninformative units zeroed."""
    means = representation.means.astype(np.float64)
    spread = means.std(axis=0)
    spread[spread == 0.0] = 1.0
    scaled = (means - means.mean(axis=0)) / spread
    return scaled * (representation.kl_continuous > KL_THRESHOLD)


def similarity(first: Representation, second: Representation, method: str = "spearman") -> np.ndarray:
    """How strongly each unit of `first` is tied to each unit of `second`, continuous units then discrete
    variables on both axes."""
    if method not in METHODS:
        raise ValueError(f"unknown UDR method {method!r}; choose from {', '.join(METHODS)}")
    a, b = standardised(first), standardised(second)
    dims_a, dims_b = a.shape[1], b.shape[1]
    matrix = np.zeros((dims_a + len(first.categories), dims_b + len(second.categories)))
    if dims_a and dims_b:
        matrix[:dims_a, :dims_b] = lasso_matrix(a, b) if method == "lasso" else spearman_matrix(a, b)
    for q, categories in enumerate(second.categories):
        for unit in range(dims_a):
            matrix[unit, dims_b + q] = correlation_ratio(a[:, unit], categories)
    for p, categories in enumerate(first.categories):
        for unit in range(dims_b):
            matrix[dims_a + p, unit] = correlation_ratio(b[:, unit], categories)
        for q, other in enumerate(second.categories):
            matrix[dims_a + p, dims_b + q] = category_agreement(categories, other)
    return matrix


def pair_score(first: Representation, second: Representation, method: str = "spearman") -> float:
    """UDR of the ordered pair: relative strength over the informative units of both."""
    matrix = similarity(first, second, method)
    return relative_strength(matrix[first.informative][:, second.informative])


def pairwise_scores(representations: list[Representation], method: str = "spearman") -> np.ndarray:
    """(K, K): entry (i, j) is `pair_score(i, j)`; the diagonal is NaN (a run is not compared with itself)."""
    count = len(representations)
    scores = np.full((count, count), np.nan)
    for i in range(count):
        for j in range(count):
            if i != j:
                scores[i, j] = pair_score(representations[i], representations[j], method)
    return scores


def run_scores(pairwise: np.ndarray) -> list[float]:
    """Each run's UDR: the median of the scores of the pairs it is the second of (disentanglement_lib's
    `model_scores`)."""
    count = pairwise.shape[0]
    return [float(np.median(np.delete(pairwise[:, i], i))) for i in range(count)]
