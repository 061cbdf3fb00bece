"""How well each discrete variable clusters the labels: the accuracy of its best one-to-one matching of
categories to classes (the JointVAE paper's MNIST figure); also watched while training."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from jvae.data.capabilities import labels_of
from jvae.data.sources import ImageSource
from jvae.evaluation.context import Evaluation, labelled_codes, labelled_sample
from jvae.evaluation.registry import Metric, Training, first_paragraph
from jvae.modeling.model import JointVAE

TRAINING_IMAGES = 10000  # training images scored while training where the dataset has no test split
TRAINING_BATCH = 1000


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


def label_accuracy(
    model: JointVAE, source: ImageSource, device: torch.device, seed: int, whole: bool
) -> list[float] | None:
    """Each discrete variable's cluster accuracy on all of `source` (`whole`) or a seeded sample of it;
    None without labels or discrete variables."""
    labels = labels_of(source)
    if labels is None or not model.discrete:
        return None
    if whole:
        picks = torch.arange(len(source))
    else:
        generator = torch.Generator().manual_seed(seed)
        picks = torch.randperm(len(source), generator=generator)[:TRAINING_IMAGES]
    batches = list(picks.split(TRAINING_BATCH))
    codes, _ = labelled_codes(model, source, batches, device, seed)
    truth = np.asarray(labels)[picks.numpy()]
    return [cluster_accuracy(codes[:, model.continuous + i], truth) for i in range(len(model.discrete))]


def _compute(evaluation: Evaluation) -> dict[str, float]:
    sample, model = evaluation.shared(labelled_sample), evaluation.model
    return {
        f"d{i}": cluster_accuracy(sample.codes[:, model.continuous + i], sample.truth)
        for i in range(len(model.discrete))
    }


def _while_training(training: Training) -> dict[str, Any] | None:
    """On the test split where the dataset publishes one (so a recipe can be judged from its curve), else
    on a sample of the training images."""
    held_out = training.held_out
    accuracy = label_accuracy(
        training.model,
        held_out or training.source,
        training.device,
        training.seed,
        whole=held_out is not None,
    )
    if accuracy is None:
        return None
    return {"accuracy": accuracy, "accuracy_on": "test" if held_out is not None else "train"}


METRIC = Metric(
    "cluster_accuracy",
    "discrete latent accuracy",
    first_paragraph(cluster_accuracy) + " One score per discrete variable.",
    _compute,
    listed=10,
    reported=90,
    needs=("labels",),
    applies=lambda model: bool(model.discrete),
    during_training=_while_training,
)
