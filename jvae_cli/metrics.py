"""Disentanglement metrics, to disentanglement_lib's definitions and defaults.

The field's scores are known to drift between libraries, so each function below follows disentanglement_lib
step for step: the same sample counts, the same estimators (20-bin histograms and sklearn's
mutual_info_score for MIG, majority vote for FactorVAE, logistic regression for beta-VAE, gradient boosted
trees for DCI, LinearSVC(C=0.01, balanced) for SAP) and a numpy RandomState seeded by `seed`, so the same
seed gives the same numbers.

Functions taking `encode` and `dataset` work on any representation: `encode` maps a float image batch
(B, C, H, W) to a codes array (B, D), and `dataset` is a ground-truth dataset (`factor_sizes`,
`sample_factors(n, rng)`, `observations(factors, device)`).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import torch

from jvae_cli.data.capabilities import GroundTruth

EncodeFn = Callable[[torch.Tensor], np.ndarray]

# ----------------------------------------------------------------------------------------------- helpers


def _mutual_info_score(a: np.ndarray, b: np.ndarray) -> float:
    from sklearn.metrics import mutual_info_score

    return float(mutual_info_score(a, b))


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
            [_mutual_info_score(factors[:, j], discrete[:, i]) for j in range(factors.shape[1])]
            for i in range(discrete.shape[1])
        ]
    )


# ----------------------------------------------------------------------------------------------- unsupervised


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
        _mutual_info_score(discrete[:, i], discrete[:, j])
        for i in range(units)
        for j in range(units)
        if i != j
    )
    return float(total / (units * units - units))


def active_units(means: np.ndarray, threshold: float = 0.01) -> int:
    """Units whose mean varies across the data by more than `threshold` (Burda et al. 2016's criterion)."""
    return int(np.sum(np.var(means, axis=0) > threshold))


def unsupervised_scores(means: np.ndarray) -> dict[str, float]:
    """Scores that need no factors or labels, on encoder means (N, D)."""
    return {
        "gaussian_total_correlation": gaussian_total_correlation(means),
        "mutual_information": mutual_information_between_units(means),
        "active_units": float(active_units(means)),
    }


def factor_entropy(factor: np.ndarray) -> float:
    return _mutual_info_score(factor, factor)


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


# ----------------------------------------------------------------------------------------------- information


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
    ranked = np.sort(m, axis=0)[::-1]
    second = ranked[1] if ranked.shape[0] > 1 else np.zeros(ranked.shape[1])
    return float(np.mean((ranked[0] - second) / entropy))


def mic(codes: np.ndarray, factor: np.ndarray, dims: list[int] | np.ndarray, bins: int = 20) -> float:
    """Mutual Information Concentration of one factor in the code dimensions `dims` (Grouped-VAE, eq. 13)."""
    factor = np.asarray(factor).reshape(-1)
    m = mutual_information_matrix(codes, factor[:, None], bins)[:, 0]  # (D,)
    inside = np.zeros(m.shape[0], dtype=bool)
    inside[list(dims)] = True
    entropy = factor_entropy(factor)
    if entropy == 0:
        raise ValueError("the factor has a single value; MIC is undefined")
    return float((m[inside].sum() - m[~inside].sum()) / entropy)


def cluster_accuracy(assignments: np.ndarray, labels: np.ndarray) -> float:
    """Accuracy of the best one-to-one matching of categories to labels (Hungarian algorithm)."""
    from scipy.optimize import linear_sum_assignment

    assignments, labels = np.asarray(assignments).reshape(-1), np.asarray(labels).reshape(-1)
    categories, category_index = np.unique(assignments, return_inverse=True)
    classes, class_index = np.unique(labels, return_inverse=True)
    counts = np.zeros((len(categories), len(classes)), dtype=np.int64)
    np.add.at(counts, (category_index, class_index), 1)
    rows, cols = linear_sum_assignment(counts, maximize=True)
    return float(counts[rows, cols].sum() / len(labels))


def linear_probe(
    train_codes: np.ndarray,
    train_labels: np.ndarray,
    test_codes: np.ndarray,
    test_labels: np.ndarray,
    seed: int = 0,
) -> float:
    """Held-out accuracy of a logistic regression reading labels from codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    model.fit(train_codes, train_labels)
    return float(model.score(test_codes, test_labels))


# ----------------------------------------------------------------------------------------------- scores


def factorvae_score(
    encode: EncodeFn,
    dataset: GroundTruth,
    *,
    seed: int = 0,
    batch_size: int = 64,
    num_train: int = 10000,
    num_eval: int = 5000,
    num_variance_estimate: int = 10000,
    prune_std: float = 0.05,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Kim & Mnih's score: a majority-vote classifier from argmin normalised variance to the fixed factor."""
    rng = np.random.RandomState(seed)
    factors = dataset.sample_factors(num_variance_estimate, rng)
    codes = _encode_many(encode, dataset, factors, device)
    global_var = np.var(codes, axis=0, ddof=1)
    active = np.sqrt(global_var) >= prune_std
    if not active.any():
        return {"train_accuracy": 0.0, "eval_accuracy": 0.0, "num_active_dims": 0}
    sizes = list(dataset.factor_sizes)

    def votes(count: int) -> np.ndarray:
        table = np.zeros((len(sizes), int(active.sum())), dtype=np.int64)
        for _ in range(count):
            index = rng.randint(len(sizes))
            batch = dataset.sample_factors(batch_size, rng)
            batch[:, index] = batch[0, index]
            local = np.var(
                np.asarray(encode(dataset.observations(batch, torch.device(device)))), axis=0, ddof=1
            )
            table[index, np.argmin(local[active] / global_var[active])] += 1
        return table

    train, evaluation = votes(num_train), votes(num_eval)
    return {
        "train_accuracy": majority_vote_accuracy(train, train),
        "eval_accuracy": majority_vote_accuracy(train, evaluation),
        "num_active_dims": int(active.sum()),
    }


def majority_vote_accuracy(train_votes: np.ndarray, eval_votes: np.ndarray) -> float:
    """Votes are (factors, dims) counts; each dim predicts the factor that most often voted for it."""
    classifier = np.argmax(train_votes, axis=0)
    columns = np.arange(train_votes.shape[1])
    return float(eval_votes[classifier, columns].sum() / eval_votes.sum())


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


def dci(
    encode: EncodeFn,
    dataset: GroundTruth,
    *,
    seed: int = 0,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> dict[str, float]:
    """Eastwood & Williams: disentanglement, completeness and informativeness from gradient boosted trees."""
    x_train, y_train, x_test, y_test = train_test_codes(
        encode, dataset, seed, num_train, num_test, batch_size, device
    )
    importance, train_acc, test_acc = dci_importance(x_train, y_train, x_test, y_test, seed)
    return {
        "disentanglement": dci_disentanglement(importance),
        "completeness": dci_completeness(importance),
        "informativeness_train": train_acc,
        "informativeness_test": test_acc,
    }


def dci_importance(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, float, float]:
    """Importance (D, K) of each code dimension for each factor, with mean train and test accuracy.

    The trees are seeded: scikit-learn permutes the features at every split even without subsampling, so
    an unseeded run breaks ties differently each time and the score moves in the third decimal."""
    from sklearn.ensemble import GradientBoostingClassifier

    importance = np.zeros((x_train.shape[1], y_train.shape[1]))
    train_acc, test_acc = [], []
    for j in range(y_train.shape[1]):
        model = GradientBoostingClassifier(random_state=seed)
        model.fit(x_train, y_train[:, j])
        importance[:, j] = np.abs(model.feature_importances_)
        train_acc.append(np.mean(model.predict(x_train) == y_train[:, j]))
        test_acc.append(np.mean(model.predict(x_test) == y_test[:, j]))
    return importance, float(np.mean(train_acc)), float(np.mean(test_acc))


def dci_disentanglement(importance: np.ndarray) -> float:
    from scipy.stats import entropy

    per_code = 1.0 - entropy(importance.T + 1e-11, base=importance.shape[1])
    total = importance.sum()
    weights = importance.sum(axis=1) / total if total else np.ones(importance.shape[0])
    return float(np.sum(per_code * weights))


def dci_completeness(importance: np.ndarray) -> float:
    from scipy.stats import entropy

    per_factor = 1.0 - entropy(importance + 1e-11, base=importance.shape[0])
    total = importance.sum()
    weights = importance.sum(axis=0) / total if total else np.ones(importance.shape[1])
    return float(np.sum(per_factor * weights))


def sap(
    encode: EncodeFn,
    dataset: GroundTruth,
    *,
    seed: int = 0,
    num_train: int = 10000,
    num_test: int = 5000,
    batch_size: int = 16,
    device: torch.device | str = "cpu",
) -> float:
    """Kumar et al.'s Separated Attribute Predictability with disentanglement_lib's classifier settings."""
    codes = train_test_codes(encode, dataset, seed, num_train, num_test, batch_size, device)
    return sap_from_codes(*codes, seed=seed)


def sap_from_codes(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> float:
    """The classifiers are seeded: liblinear shuffles its coordinates from the global random state otherwise,
    so the same --seed would not repeat across processes."""
    from sklearn.svm import LinearSVC

    scores = np.zeros((x_train.shape[1], y_train.shape[1]))
    for i in range(x_train.shape[1]):
        for j in range(y_train.shape[1]):
            classifier = LinearSVC(C=0.01, class_weight="balanced", random_state=seed)
            classifier.fit(x_train[:, i : i + 1], y_train[:, j])
            scores[i, j] = np.mean(classifier.predict(x_test[:, i : i + 1]) == y_test[:, j])
    return sap_from_scores(scores)


def sap_from_scores(scores: np.ndarray) -> float:
    """Mean over factors of the gap between the two code dims that predict it best, scores (D, K)."""
    ranked = np.sort(scores, axis=0)
    return float(np.mean(ranked[-1] - ranked[-2])) if ranked.shape[0] > 1 else float(np.mean(ranked[-1]))


def _encode_many(
    encode: EncodeFn, dataset: GroundTruth, factors: np.ndarray, device: torch.device | str, batch: int = 256
) -> np.ndarray:
    return np.concatenate(
        [
            np.asarray(encode(dataset.observations(factors[i : i + batch], torch.device(device))))
            for i in range(0, len(factors), batch)
        ]
    )
