"""SAP, the Separated Attribute Predictability (Kumar et al. 2018), with disentanglement_lib's classifier
settings, from the training and test codes it shares with DCI."""

from __future__ import annotations

import numpy as np
import torch

from jvae.data.capabilities import GroundTruth
from jvae.evaluation.context import Evaluation, split_codes
from jvae.evaluation.registry import Metric, first_paragraph
from jvae.evaluation.sampling import EncodeFn, train_test_codes


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


def _compute(evaluation: Evaluation) -> float:
    return sap_from_codes(*evaluation.shared(split_codes), seed=evaluation.seed)


METRIC = Metric(
    "sap",
    "SAP",
    first_paragraph(sap),
    _compute,
    listed=80,
    reported=80,
    needs=("factors",),
    progress="SAP",
)
