"""DCI (Eastwood & Williams 2018): disentanglement, completeness and informativeness, to disentanglement_lib's
definition, from the training and test codes it shares with SAP."""

from __future__ import annotations

import numpy as np
import torch

from jvae.data.capabilities import GroundTruth
from jvae.evaluation.context import Evaluation, split_codes
from jvae.evaluation.registry import Metric, first_paragraph
from jvae.evaluation.sampling import EncodeFn, train_test_codes


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
    codes = train_test_codes(encode, dataset, seed, num_train, num_test, batch_size, device)
    return dci_from_codes(*codes, seed=seed)


def dci_from_codes(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, seed: int = 0
) -> dict[str, float]:
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


def _compute(evaluation: Evaluation) -> dict[str, float]:
    return dci_from_codes(*evaluation.shared(split_codes), seed=evaluation.seed)


METRIC = Metric(
    "dci",
    "DCI",
    first_paragraph(dci),
    _compute,
    listed=70,
    reported=70,
    needs=("factors",),
    headline="disentanglement",
    progress="DCI",
)
