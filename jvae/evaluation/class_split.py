"""The class-conditional paper's table 1: where a class-conditional model keeps the label, in its generic
units z or its class-specific units w."""

from __future__ import annotations

from jvae.evaluation.context import Evaluation, labelled_sample
from jvae.evaluation.linear_probe import linear_probe
from jvae.evaluation.registry import Metric


def _compute(evaluation: Evaluation) -> dict[str, float]:
    """A linear probe on one posterior sample of each part ("samples from z and w|y", not the means)."""
    sample, model, seed = evaluation.shared(labelled_sample), evaluation.model, evaluation.seed
    samples, truth, split = sample.samples, sample.truth, sample.split
    return {
        part: linear_probe(samples[:split, cols], truth[:split], samples[split:, cols], truth[split:], seed)
        for part, cols in (("z", slice(0, model.generic)), ("w", slice(model.generic, model.continuous)))
    }


METRIC = Metric(
    "class_split",
    "label accuracy from (class-conditional table 1)",
    "The class-conditional paper's table 1: held-out accuracy of a logistic regression predicting the label "
    "from one posterior sample of the generic units z, and of the class-specific units w.",
    _compute,
    listed=30,
    reported=110,
    needs=("labels", "classes"),
    applies=lambda model: bool(model.classes),
)
