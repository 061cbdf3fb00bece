"""How much of the labels the whole code carries: a linear classifier's held-out accuracy."""

from __future__ import annotations

import numpy as np

from jvae.evaluation.context import Evaluation, labelled_sample
from jvae.evaluation.registry import Metric, first_paragraph


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


def _compute(evaluation: Evaluation) -> float:
    sample = evaluation.shared(labelled_sample)
    codes, truth, split = sample.codes, sample.truth, sample.split
    return linear_probe(codes[:split], truth[:split], codes[split:], truth[split:], evaluation.seed)


METRIC = Metric(
    "linear_probe",
    "linear probe accuracy",
    first_paragraph(linear_probe),
    _compute,
    listed=20,
    reported=100,
    needs=("labels",),
)
